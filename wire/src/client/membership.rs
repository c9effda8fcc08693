//! Group membership as a task: heartbeats, assignment changes, revocations and commits, for
//! both the push and the pull consumer.
//!
//! The task heartbeats every `heartbeat_interval_ms` (as the broker asks), at once when the
//! broker sends `NotifyAssignment`, when a revocation finishes, and after a commit is fenced.
//! It applies each response to an `Assignment` (the hand-over rules live there) and tells the
//! consumer's `QueueWorkers` which queues to start and stop. A revocation runs on its own
//! task: stop the queue, wait for its in-flight messages, commit its position, report back;
//! heartbeats go on meanwhile so the session stays alive.
//!
//! Joining (the first heartbeat, which `start` awaits) retries retriable refusals (`Busy`
//! while the broker's coordinator reconnects) within the client's request timeout.
//!
//! Failures never end the task. A heartbeat the broker refuses with `UnknownMember` or
//! `IllegalGeneration` drops every queue and rejoins with no generation; a commit refused that
//! way asks for a heartbeat now, whose answer decides (a commit can race a generation change
//! that the next heartbeat simply takes up). Transport failures are retried after a back-off.
//!
//! Shutdown (the owner's signal, or the owner dropped): stop every queue, wait for their
//! in-flight messages, commit, leave the group.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use super::assignment::Assignment;
use super::cluster::Client;
use super::retry::Backoff;
use super::tag_filter::TagFilter;
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{
    CommitOffsetsRequest, GroupStrategy, HeartbeatRequest, LeaveGroupRequest, OffsetCommit,
    QueueRef, Subscription, NAME_BYTES_MAX,
};

/// The shortest session timeout a consumer accepts.
pub const SESSION_TIMEOUT_MIN: Duration = Duration::from_secs(1);
/// The heartbeat interval until the broker names one.
const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(3);
/// The shortest heartbeat interval honoured, whatever the broker asks.
const HEARTBEAT_INTERVAL_MIN: Duration = Duration::from_millis(100);
/// Back-off between heartbeats that could not reach the broker.
const HEARTBEAT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
/// Attempts at committing a revoked queue's position before giving it up anyway (its
/// messages are then consumed again by the next owner: at least once, never lost).
const REVOKE_COMMIT_ATTEMPTS: u32 = 8;
/// How long a fenced revocation commit waits for a heartbeat to bring the generation to
/// commit with before it gives up.
const REVOKE_GENERATION_WAIT: Duration = Duration::from_secs(10);
/// Revocation reports waiting for the membership task.
const REVOKED_CHANNEL_CAPACITY: usize = 64;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a consumer does with the queues membership gives and takes.
pub(crate) trait QueueWorkers: Send + 'static {
    /// Begin consuming `queue` (the worker finds its start offset).
    fn start(&mut self, queue: &QueueRef);
    /// Stop consuming `queue`; resolves once its in-flight messages are consumed, with the
    /// position to commit (`None` if it never had one).
    fn stop(&mut self, queue: &QueueRef) -> BoxFuture<Option<u64>>;
    /// Stop at once, committing nothing: the membership was lost.
    fn abandon(&mut self, queue: &QueueRef);
    /// The position (next offset to consume) of every queue being consumed that has one.
    fn positions(&self) -> Vec<(QueueRef, u64)>;
}

/// The part of membership other tasks need: who we are and the generation to commit with.
#[derive(Debug)]
pub(crate) struct GroupHandle {
    pub(crate) group: String,
    pub(crate) member_id: String,
    /// Set by `NotifyAssignment` and by anyone wanting a heartbeat now.
    pub(crate) wake: Arc<Notify>,
    /// The generation commits carry; `None` while the member is not in the group.
    generation: watch::Sender<Option<u64>>,
}

impl GroupHandle {
    pub(crate) fn new(client: &Client, group: &str, member_id: String) -> Arc<GroupHandle> {
        Arc::new(GroupHandle {
            group: group.to_owned(),
            member_id,
            wake: client.register_group_member(group),
            generation: watch::Sender::new(None),
        })
    }

    pub(crate) fn generation(&self) -> Option<u64> {
        *self.generation.borrow()
    }

    fn set_generation(&self, generation: Option<u64>) {
        self.generation.send_if_modified(|current| {
            let changed = *current != generation;
            *current = generation;
            changed
        });
    }

    /// Commits `offsets` as this member; a fenced commit asks for a heartbeat now.
    pub(crate) async fn commit(&self, client: &Client, offsets: Vec<OffsetCommit>) -> Result<()> {
        let request = CommitOffsetsRequest {
            group: self.group.clone(),
            member_id: self.member_id.clone(),
            generation: self.generation(),
            offsets,
        };
        let result = client.call_group(&self.group, request).await;
        if let Err(error) = &result {
            if matches!(
                error.code(),
                Some(ErrorCode::IllegalGeneration | ErrorCode::UnknownMember)
            ) {
                self.wake.notify_one();
            }
        }
        result
    }
}

/// Static membership settings.
#[derive(Clone, Debug)]
pub(crate) struct MembershipConfig {
    pub(crate) subscriptions: Vec<Subscription>,
    pub(crate) session_timeout: Duration,
    /// `None`: the consumer commits on its own (manual commits).
    pub(crate) commit_interval: Option<Duration>,
    pub(crate) strategy: GroupStrategy,
}

/// The membership task's state; see the module docs.
pub(crate) struct Membership<W: QueueWorkers> {
    client: Client,
    handle: Arc<GroupHandle>,
    config: MembershipConfig,
    assignment: Assignment,
    workers: W,
    /// What this member last committed per queue, so unchanged positions are not re-sent.
    committed: HashMap<QueueRef, u64>,
    revoked_sender: mpsc::Sender<QueueRef>,
    revoked: mpsc::Receiver<QueueRef>,
    interval: Duration,
    failures: u32,
}

impl<W: QueueWorkers> std::fmt::Debug for Membership<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("group", &self.handle.group)
            .field("member_id", &self.handle.member_id)
            .field("assignment", &self.assignment)
            .finish_non_exhaustive()
    }
}

impl<W: QueueWorkers> Membership<W> {
    pub(crate) fn new(
        client: Client,
        handle: Arc<GroupHandle>,
        config: MembershipConfig,
        workers: W,
    ) -> Membership<W> {
        let (revoked_sender, revoked) = mpsc::channel(REVOKED_CHANNEL_CAPACITY);
        Membership {
            client,
            handle,
            config,
            assignment: Assignment::new(),
            workers,
            committed: HashMap::new(),
            revoked_sender,
            revoked,
            interval: HEARTBEAT_INTERVAL_DEFAULT,
            failures: 0,
        }
    }

    /// The first heartbeat, made by the caller so a wrong address or group fails `start`.
    pub(crate) async fn join(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.client.config().request_timeout;
        let mut attempt = 0;
        let response = loop {
            match self.client.call_any(self.heartbeat_request()).await {
                Ok(response) => break response,
                // The broker answered that it cannot answer yet (its coordinator
                // reconnecting, say): keep trying, as later heartbeats would, until the
                // request timeout. A broker that cannot be reached fails `start` at once.
                Err(error)
                    if error.code().is_some_and(ErrorCode::is_retriable)
                        && !self.client.is_closed() =>
                {
                    let delay = HEARTBEAT_BACKOFF.delay(attempt);
                    if Instant::now() + delay > deadline {
                        return Err(error);
                    }
                    tracing::debug!(group = %self.handle.group, %error, ?delay, "join failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
        self.apply(
            response.generation,
            &response.assignment,
            response.heartbeat_interval_ms,
        );
        Ok(())
    }

    /// Runs until `shutdown` turns true or its sender is dropped, then leaves the group.
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        // `join` may have confirmed a generation: tell the broker now.
        let mut heartbeat_at = Instant::now();
        let mut commit_at = self.config.commit_interval.map(|i| Instant::now() + i);
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                Some(queue) = self.revoked.recv() => {
                    self.committed.remove(&queue);
                    if self.assignment.on_revoked(&queue) {
                        heartbeat_at = Instant::now();
                    }
                }
                _ = self.handle.wake.notified() => heartbeat_at = Instant::now(),
                _ = tokio::time::sleep_until(heartbeat_at) => {
                    heartbeat_at = Instant::now() + self.heartbeat().await;
                }
                _ = sleep_until_some(commit_at) => {
                    self.commit_positions().await;
                    commit_at = self.config.commit_interval.map(|i| Instant::now() + i);
                }
            }
        }
        self.leave().await;
    }

    /// One heartbeat; returns how long to wait before the next.
    async fn heartbeat(&mut self) -> Duration {
        match self.client.call_any(self.heartbeat_request()).await {
            Ok(response) => {
                self.failures = 0;
                let now = self.apply(
                    response.generation,
                    &response.assignment,
                    response.heartbeat_interval_ms,
                );
                if now {
                    Duration::ZERO
                } else {
                    self.interval
                }
            }
            Err(error)
                if matches!(
                    error.code(),
                    Some(ErrorCode::UnknownMember | ErrorCode::IllegalGeneration)
                ) =>
            {
                tracing::warn!(group = %self.handle.group, %error, "membership lost; rejoining");
                for queue in self.assignment.on_fenced() {
                    self.workers.abandon(&queue);
                    self.committed.remove(&queue);
                }
                self.handle
                    .set_generation(self.assignment.commit_generation());
                self.backoff_after_failure()
            }
            Err(error) => {
                tracing::warn!(group = %self.handle.group, %error, "heartbeat failed");
                self.backoff_after_failure()
            }
        }
    }

    fn backoff_after_failure(&mut self) -> Duration {
        let delay = HEARTBEAT_BACKOFF.delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        delay.min(self.interval)
    }

    /// Applies a heartbeat response; returns whether to heartbeat again at once.
    fn apply(&mut self, generation: u64, assignment: &[QueueRef], interval_ms: u32) -> bool {
        if interval_ms > 0 {
            let session_third = self.config.session_timeout / 3;
            self.interval = Duration::from_millis(u64::from(interval_ms)).clamp(
                HEARTBEAT_INTERVAL_MIN,
                session_third.max(HEARTBEAT_INTERVAL_MIN),
            );
        }
        let changes = self.assignment.on_heartbeat(generation, assignment);
        self.handle
            .set_generation(self.assignment.commit_generation());
        if !changes.start.is_empty() || !changes.revoke.is_empty() {
            tracing::info!(
                group = %self.handle.group,
                generation,
                start = ?changes.start,
                revoke = ?changes.revoke,
                "assignment changed"
            );
        }
        for queue in &changes.start {
            self.workers.start(queue);
        }
        for queue in changes.revoke {
            self.spawn_revoke(queue, true);
        }
        changes.heartbeat_now
    }

    /// Stops `queue` and commits its position on a task of its own; `await_generation`: a
    /// commit fenced by a newer generation waits for the heartbeat that brings it.
    fn spawn_revoke(&mut self, queue: QueueRef, await_generation: bool) {
        let stopped = self.workers.stop(&queue);
        let client = self.client.clone();
        let handle = self.handle.clone();
        let report = self.revoked_sender.clone();
        tokio::spawn(async move {
            if let Some(offset) = stopped.await {
                commit_revoked(&client, &handle, &queue, offset, await_generation).await;
            }
            // The receiver is gone only when membership ended; nothing is waiting then.
            let _ = report.send(queue).await;
        });
    }

    /// Commits positions that moved since the last commit.
    async fn commit_positions(&mut self) {
        let moved: Vec<(QueueRef, u64)> = self
            .workers
            .positions()
            .into_iter()
            .filter(|(queue, offset)| self.committed.get(queue) != Some(offset))
            .collect();
        if moved.is_empty() || self.handle.generation().is_none() {
            return;
        }
        let offsets = moved
            .iter()
            .map(|(queue, offset)| OffsetCommit {
                topic: queue.topic.clone(),
                queue: queue.queue,
                offset: *offset,
            })
            .collect();
        match self.handle.commit(&self.client, offsets).await {
            Ok(()) => self.committed.extend(moved),
            Err(error) => tracing::warn!(group = %self.handle.group, %error, "commit failed"),
        }
    }

    async fn leave(mut self) {
        // The heartbeat loop has stopped, so no newer generation can arrive for a fenced
        // commit to wait for: such a commit is given up at once (at least once, never lost).
        for queue in self.assignment.release_all() {
            self.spawn_revoke(queue, false);
        }
        while self.assignment.is_revoking() {
            match self.revoked.recv().await {
                Some(queue) => {
                    self.assignment.on_revoked(&queue);
                }
                None => break,
            }
        }
        let request = LeaveGroupRequest {
            group: self.handle.group.clone(),
            member_id: self.handle.member_id.clone(),
        };
        if let Err(error) = self.client.call_any(request).await {
            tracing::warn!(group = %self.handle.group, %error, "leaving the group failed");
        }
    }

    fn heartbeat_request(&self) -> HeartbeatRequest {
        HeartbeatRequest {
            group: self.handle.group.clone(),
            member_id: self.handle.member_id.clone(),
            generation: self.assignment.heartbeat_generation(),
            subscriptions: self.config.subscriptions.clone(),
            session_timeout_ms: u32::try_from(self.config.session_timeout.as_millis())
                .unwrap_or(u32::MAX),
            strategy: self.config.strategy,
        }
    }
}

/// Commits a revoked queue's position. The member still owns the queue (it confirms the new
/// generation only after this returns), so a commit fenced because the generation moved on is
/// retried with the generation the heartbeat it triggered brings back; a member that lost its
/// place in the group (generation `None`) gives up, as another member may own the queue, and
/// so does one leaving the group (`await_generation` false: it heartbeats no more).
async fn commit_revoked(
    client: &Client,
    handle: &GroupHandle,
    queue: &QueueRef,
    offset: u64,
    await_generation: bool,
) {
    let offsets = || {
        vec![OffsetCommit {
            topic: queue.topic.clone(),
            queue: queue.queue,
            offset,
        }]
    };
    let mut generations = handle.generation.subscribe();
    for attempt in 0..REVOKE_COMMIT_ATTEMPTS {
        generations.mark_unchanged();
        let error = match handle.commit(client, offsets()).await {
            Ok(()) => return,
            Err(error) => error,
        };
        let last = attempt + 1 == REVOKE_COMMIT_ATTEMPTS;
        if error.code() == Some(ErrorCode::IllegalGeneration) && await_generation && !last {
            let moved = tokio::time::timeout(REVOKE_GENERATION_WAIT, generations.changed()).await;
            if matches!(moved, Ok(Ok(()))) && generations.borrow().is_some() {
                continue;
            }
        } else if error.is_retriable() && !last {
            tokio::time::sleep(HEARTBEAT_BACKOFF.delay(attempt)).await;
            continue;
        }
        tracing::warn!(
            group = %handle.group,
            topic = %queue.topic,
            queue = queue.queue,
            offset,
            %error,
            "could not commit a revoked queue; its next owner may consume some messages again"
        );
        return;
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Checks a group name the way the broker will, so a bad one fails at construction.
pub(crate) fn validate_group(group: &str) -> Result<()> {
    if group.is_empty() || group.len() > NAME_BYTES_MAX {
        return Err(Error::InvalidArgument(format!(
            "group name {group:?} must be 1 to {NAME_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

/// Parses `(topic, tag expression)` pairs: the filters by topic, and the subscriptions to
/// announce in heartbeats (with canonical expressions). Topics must be distinct.
pub(crate) fn parse_subscriptions(
    subscriptions: &[(String, String)],
) -> Result<(HashMap<String, TagFilter>, Vec<Subscription>)> {
    if subscriptions.is_empty() {
        return Err(Error::InvalidArgument(
            "a group consumer needs at least one subscription".into(),
        ));
    }
    let mut filters = HashMap::new();
    let mut announced = Vec::with_capacity(subscriptions.len());
    for (topic, expression) in subscriptions {
        if topic.is_empty() || topic.len() > NAME_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "topic name {topic:?} must be 1 to {NAME_BYTES_MAX} bytes"
            )));
        }
        let filter = TagFilter::parse(expression)?;
        announced.push(Subscription {
            topic: topic.clone(),
            expression: filter.expression(),
        });
        if filters.insert(topic.clone(), filter).is_some() {
            return Err(Error::InvalidArgument(format!(
                "topic {topic} is subscribed twice; use one expression `A || B`"
            )));
        }
    }
    Ok((filters, announced))
}

/// A member id unique to this consumer instance: the client id and 8 random bytes.
pub(crate) fn new_member_id(client_id: &str) -> String {
    let random: [u8; 8] = rand::random();
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    // Room for the dash and 16 hex digits within NAME_BYTES_MAX.
    let limit = NAME_BYTES_MAX - 17;
    let mut end = client_id.len().min(limit);
    while !client_id.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = if end == 0 {
        "member"
    } else {
        &client_id[..end]
    };
    format!("{prefix}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_are_parsed_and_checked() {
        let pairs = vec![
            ("orders".to_owned(), "B || A".to_owned()),
            ("audit".to_owned(), "*".to_owned()),
        ];
        let (filters, announced) = parse_subscriptions(&pairs).unwrap();
        assert!(filters["orders"].matches(Some("A")));
        assert!(!filters["orders"].matches(Some("C")));
        assert_eq!(
            announced[0].expression, "A || B",
            "announced in canonical form"
        );
        assert_eq!(announced[1].topic, "audit");

        let twice = vec![
            ("orders".to_owned(), "A".to_owned()),
            ("orders".to_owned(), "B".to_owned()),
        ];
        assert!(parse_subscriptions(&twice).is_err());
        assert!(parse_subscriptions(&[]).is_err());
        let bad = vec![("orders".to_owned(), "A |".to_owned())];
        assert!(parse_subscriptions(&bad).is_err());
        assert!(validate_group("").is_err());
        assert!(validate_group(&"g".repeat(NAME_BYTES_MAX + 1)).is_err());
        assert!(validate_group("billing").is_ok());
    }

    #[test]
    fn member_ids_are_unique_and_fit_a_name() {
        let a = new_member_id("app");
        let b = new_member_id("app");
        assert_ne!(a, b);
        assert!(a.starts_with("app-"));
        let long = "é".repeat(300);
        let id = new_member_id(&long);
        assert!(id.len() <= NAME_BYTES_MAX, "{} bytes", id.len());
        assert!(new_member_id("").starts_with("member-"));
    }
}
