//! Awaiting events with `AWAIT_TIMEOUT`, failing loudly with what was last seen; the client
//! settings the scenarios share; and the group conditions they wait for.
//!
//! Some events have no notification a test can subscribe to (a group becoming stable, a
//! commit reaching the broker, a pull parking): `until` checks the condition, and between
//! checks waits `POLL_INTERVAL`. The interval only paces the checks; nothing depends on how
//! long it is, and nothing is assumed to have happened after it.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use wire::client::{Admin, ClientConfig};
use wire::protocol::{GroupDescription, GroupState};

use crate::AWAIT_TIMEOUT;

/// Pause between two checks of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long one client request may take: long, because a debug-build broker on a loaded
/// two-core machine can stall for seconds, and a client-side timeout would turn that stall
/// into a retry (and a duplicate) that the scenario did not ask for.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Checks `check` until it answers `Ok`, and returns that. `Err` carries what was seen, shown
/// if `AWAIT_TIMEOUT` passes first (then this panics, naming `what`).
pub async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + AWAIT_TIMEOUT;
    let mut seen = "nothing: the first check did not finish".to_owned();
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(now)) => seen = now,
            Err(_) => seen = format!("{seen} (then a check did not finish)"),
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {AWAIT_TIMEOUT:?} waiting for {what}; last seen: {seen}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Awaits `future`, panicking (naming `what`) if it takes longer than `AWAIT_TIMEOUT`.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(AWAIT_TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {AWAIT_TIMEOUT:?} waiting for {what}"),
    }
}

/// A client configuration for a broker at `address`, named `client_id`, with the generous
/// `REQUEST_TIMEOUT`.
pub fn client_config(address: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::with_bootstrap([address.to_owned()]);
    config.client_id = client_id.to_owned();
    config.request_timeout = REQUEST_TIMEOUT;
    config
}

/// Waits until `group` is `Stable` with `members` members and every one of `queues` queues
/// has an owner; returns that description.
pub async fn group_stable(
    admin: &Admin,
    group: &str,
    members: usize,
    queues: usize,
) -> GroupDescription {
    let what = format!("group {group} to be Stable with {members} members owning {queues} queues");
    until(&what, || async {
        let description = admin
            .describe_group(group)
            .await
            .map_err(|e| e.to_string())?;
        let owned = description
            .offsets
            .iter()
            .filter(|q| q.owner.is_some())
            .count();
        if description.state == GroupState::Stable
            && description.members.len() == members
            && owned == queues
        {
            Ok(description)
        } else {
            Err(format!(
                "{:?}, generation {}, {} members, {owned} queues owned",
                description.state,
                description.generation,
                description.members.len()
            ))
        }
    })
    .await
}

/// Waits until `group` has committed the log end of every non-empty queue it has offsets for
/// (total lag 0, and at least `queues` queues described); returns that description.
pub async fn group_caught_up(admin: &Admin, group: &str, queues: usize) -> GroupDescription {
    let what = format!("group {group} to commit every queue's log end (total lag 0)");
    until(&what, || async {
        let description = admin
            .describe_group(group)
            .await
            .map_err(|e| e.to_string())?;
        let lag: u64 = description.offsets.iter().map(|q| q.lag).sum();
        let committed_all = description
            .offsets
            .iter()
            .all(|q| q.committed == Some(q.log_end_offset) || q.log_end_offset == 0);
        if lag == 0 && committed_all && description.offsets.len() >= queues {
            Ok(description)
        } else {
            let per_queue: Vec<String> = description
                .offsets
                .iter()
                .map(|q| format!("{}:{:?}/{}", q.queue, q.committed, q.log_end_offset))
                .collect();
            Err(format!("total lag {lag}; committed/end {per_queue:?}"))
        }
    })
    .await
}
