//! The behaviour every `Coordinator` implementation must show, as functions over a `Harness`.
//!
//! An implementation's test file implements `Harness` (how to open its store, reopen it as
//! after a restart, and move its clock) and expands `conformance_tests!` with an expression
//! that builds a fresh harness (it may `.await`); each suite function then becomes one test.
//! `conformance_topic_tests!` and `conformance_group_tests!` expand one half each, for an
//! implementation that has only one yet.
//!
//! The suite uses a session timeout of `SESSION` and moves time only through
//! `Harness::advance`, always by clear margins (half a timeout, or a timeout plus
//! `MARGIN`), so it does not depend on how precisely an implementation measures time.

mod churn;
mod groups;
mod topics;

pub use churn::*;
pub use groups::*;
pub use topics::*;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coordinator::{
    BrokerInfo, Coordinator, CoordinatorEvent, GroupMetadata, MemberAssignment, MemberSpec,
    QueueId, TopicSpec,
};
use tokio::sync::broadcast;

/// The session timeout every suite member asks for.
pub const SESSION: Duration = Duration::from_secs(10);
/// How far past a timeout the suite moves time to make a session expire for sure.
pub const MARGIN: Duration = Duration::from_secs(2);
/// How long the suite waits for an event before failing.
pub const EVENT_WAIT: Duration = Duration::from_secs(10);
/// The broker id the suite registers.
pub const BROKER: u32 = 7;

/// How the suite drives one implementation.
#[async_trait]
pub trait Harness: Send + Sync {
    type C: Coordinator;

    /// Opens the harness's store: empty the first time, as left by the last instance after.
    async fn open(&self) -> Arc<Self::C>;

    /// Drops `coordinator` (the suite holds no other reference) and opens its store again,
    /// as a process restart would.
    async fn reopen(&self, coordinator: Arc<Self::C>) -> Arc<Self::C>;

    /// Moves the coordinator's clock forward by `by` and lets it expire silent sessions.
    async fn advance(&self, coordinator: &Self::C, by: Duration);
}

/// Expands to one `#[tokio::test]` per suite function, each on a fresh `$harness` (an
/// expression, which may `.await`).
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_topic_tests!($harness);
        $crate::conformance_group_tests!($harness);
    };
}

/// The topic half of the suite: creation, listing, deletion, placement, name limits.
#[macro_export]
macro_rules! conformance_topic_tests {
    ($harness:expr) => {
        $crate::conformance_test_functions!($harness;
            topics_are_created_listed_and_deleted,
            every_queue_is_placed_on_the_registered_broker,
            names_and_queue_counts_are_checked,
        );
    };
}

/// The consumer-group half of the suite, and what must survive a restart.
#[macro_export]
macro_rules! conformance_group_tests {
    ($harness:expr) => {
        $crate::conformance_test_functions!($harness;
            topics_and_generations_survive_a_restart,
            joins_and_leaves_bump_the_generation,
            queues_move_only_after_their_owner_confirms,
            a_grant_within_a_generation_is_announced_to_its_member,
            the_lowest_member_id_chooses_the_strategy,
            a_silent_member_expires_and_its_queues_move,
            check_generation_fences_stale_and_unknown_members,
            a_subscription_change_rebalances,
            a_topic_created_or_deleted_under_subscribers_rebalances,
            members_target_only_topics_they_subscribe_to,
            an_empty_group_keeps_its_generation,
            handover_under_random_churn_seed_1,
            handover_under_random_churn_seed_2,
            handover_under_random_churn_seed_3,
        );
    };
}

/// One `#[tokio::test]` per name.
#[macro_export]
macro_rules! conformance_test_functions {
    ($harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let harness = $harness;
                $crate::conformance::$name(&harness).await;
            }
        )*
    };
}

pub fn broker() -> BrokerInfo {
    BrokerInfo {
        id: BROKER,
        address: "127.0.0.1:10911".into(),
        started_at_ms: 1,
    }
}

pub fn topic_spec(name: &str, queues: u32) -> TopicSpec {
    TopicSpec {
        name: name.into(),
        queues,
        config: BTreeMap::from([("retention.ms".to_owned(), "60000".to_owned())]),
        internal: false,
    }
}

pub fn member(id: &str, topics: &[&str]) -> MemberSpec {
    MemberSpec {
        member_id: id.into(),
        client_id: format!("client-{id}"),
        host: "127.0.0.1:40000".into(),
        subscriptions: topics
            .iter()
            .map(|t| ((*t).to_owned(), "*".to_owned()))
            .collect(),
        session_timeout: SESSION,
        strategy: Default::default(),
    }
}

pub fn queues(topic: &str, count: u32) -> Vec<QueueId> {
    (0..count).map(|q| QueueId::new(topic, q)).collect()
}

/// A coordinator with the broker registered and `topics` created.
async fn with_topics<H: Harness>(harness: &H, topics: &[(&str, u32)]) -> Arc<H::C> {
    let c = harness.open().await;
    c.register_broker(broker()).await.expect("register broker");
    for (name, count) in topics {
        c.create_topic(topic_spec(name, *count))
            .await
            .expect("create topic");
    }
    c
}

async fn heartbeat(
    c: &dyn Coordinator,
    group: &str,
    spec: &MemberSpec,
    generation: Option<u64>,
) -> MemberAssignment {
    c.heartbeat(group, spec.clone(), generation)
        .await
        .unwrap_or_else(|e| panic!("heartbeat of {} failed: {e}", spec.member_id))
}

async fn describe(c: &dyn Coordinator, group: &str) -> GroupMetadata {
    c.group(group)
        .await
        .expect("group")
        .unwrap_or_else(|| panic!("group {group} is missing"))
}

fn owned_by(group: &GroupMetadata, id: &str) -> Vec<QueueId> {
    group
        .members
        .iter()
        .find(|m| m.spec.member_id == id)
        .map(|m| m.owned.clone())
        .unwrap_or_default()
}

/// Waits for the first event `want` accepts, failing after `EVENT_WAIT`.
pub async fn expect_event(
    events: &mut broadcast::Receiver<CoordinatorEvent>,
    what: &str,
    want: impl Fn(&CoordinatorEvent) -> bool,
) -> CoordinatorEvent {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(event) if want(&event) => return event,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("events closed, no {what}"),
            }
        }
    };
    tokio::time::timeout(EVENT_WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {EVENT_WAIT:?}"))
}

async fn expect_rebalanced(
    events: &mut broadcast::Receiver<CoordinatorEvent>,
    group: &str,
    generation: u64,
) {
    expect_event(
        events,
        &format!("rebalance of {group} to {generation}"),
        |e| {
            matches!(e, CoordinatorEvent::GroupRebalanced { group: g, generation: n }
            if g == group && *n == generation)
        },
    )
    .await;
}

/// Checks that no queue is owned by two members.
fn assert_disjoint(group: &GroupMetadata, context: &str) {
    let mut seen: BTreeMap<&QueueId, &str> = BTreeMap::new();
    for m in &group.members {
        for q in &m.owned {
            if let Some(other) = seen.insert(q, &m.spec.member_id) {
                panic!(
                    "{context}: queue {q:?} owned by both {other} and {}",
                    m.spec.member_id
                );
            }
        }
    }
}
