//! The behaviour every `Coordinator` implementation must show, as functions over a `Harness`.
//!
//! An implementation's test file implements `Harness` (how to open its store, reopen it as
//! after a restart, and move its clock) and expands `conformance_tests!` with an expression
//! that builds a fresh harness; each suite function then becomes one test.
//!
//! The suite uses a session timeout of `SESSION` and moves time only through
//! `Harness::advance`, always by clear margins (half a timeout, or a timeout plus
//! `MARGIN`), so it does not depend on how precisely an implementation measures time.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coordinator::{
    BrokerInfo, Coordinator, CoordinatorEvent, Error, GroupMetadata, GroupPhase, MemberAssignment,
    MemberSpec, QueueId, TopicSpec,
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

/// Expands to one `#[tokio::test]` per suite function, each on a fresh `$harness`.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@tests $harness;
            topics_are_created_listed_and_deleted,
            every_queue_is_placed_on_the_registered_broker,
            names_and_queue_counts_are_checked,
            topics_and_generations_survive_a_restart,
            joins_and_leaves_bump_the_generation,
            queues_move_only_after_their_owner_confirms,
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
    (@tests $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let harness = $harness;
                $crate::conformance::$name(&harness).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------
// Helpers.

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

// ---------------------------------------------------------------------------------------
// Topics.

pub async fn topics_are_created_listed_and_deleted<H: Harness>(harness: &H) {
    let c = harness.open().await;
    c.register_broker(broker()).await.expect("register");
    let mut events = c.events();
    assert_eq!(c.topic("orders").await.expect("topic"), None);

    let created = c
        .create_topic(topic_spec("orders", 4))
        .await
        .expect("create");
    assert_eq!(created.name, "orders");
    assert_eq!(created.queues.len(), 4);
    assert_eq!(
        created.config.get("retention.ms").map(String::as_str),
        Some("60000")
    );
    expect_event(
        &mut events,
        "orders created",
        |e| matches!(e, CoordinatorEvent::TopicCreated { topic } if topic == "orders"),
    )
    .await;
    assert_eq!(
        c.topic("orders").await.expect("topic"),
        Some(created.clone())
    );

    let mut internal = topic_spec("%RETRY%g", 1);
    internal.internal = true;
    c.create_topic(internal).await.expect("create internal");
    let names: Vec<String> = c
        .topics()
        .await
        .expect("topics")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["%RETRY%g".to_owned(), "orders".to_owned()]);
    let retry = c
        .topic("%RETRY%g")
        .await
        .expect("topic")
        .expect("retry topic");
    assert!(retry.internal);

    match c.create_topic(topic_spec("orders", 2)).await {
        Err(Error::TopicExists(name)) => assert_eq!(name, "orders"),
        other => panic!("second create answered {other:?}"),
    }
    assert_eq!(c.topic("orders").await.expect("topic"), Some(created));

    c.delete_topic("orders").await.expect("delete");
    expect_event(
        &mut events,
        "orders deleted",
        |e| matches!(e, CoordinatorEvent::TopicDeleted { topic } if topic == "orders"),
    )
    .await;
    assert_eq!(c.topic("orders").await.expect("topic"), None);
    match c.delete_topic("orders").await {
        Err(Error::UnknownTopic(name)) => assert_eq!(name, "orders"),
        other => panic!("second delete answered {other:?}"),
    }
    assert_eq!(c.topics().await.expect("topics").len(), 1);
    // A deleted name can be created again, from scratch.
    let again = c
        .create_topic(topic_spec("orders", 2))
        .await
        .expect("recreate");
    assert_eq!(again.queues.len(), 2);
}

pub async fn every_queue_is_placed_on_the_registered_broker<H: Harness>(harness: &H) {
    let c = harness.open().await;
    c.register_broker(broker()).await.expect("register");
    assert_eq!(c.brokers().await.expect("brokers"), vec![broker()]);
    let topic = c
        .create_topic(topic_spec("placed", 6))
        .await
        .expect("create");
    let numbers: Vec<u32> = topic.queues.iter().map(|q| q.queue).collect();
    assert_eq!(numbers, (0..6).collect::<Vec<_>>());
    for queue in &topic.queues {
        assert_eq!(queue.leader, BROKER, "{queue:?}");
        assert_eq!(queue.leader_epoch, 0, "{queue:?}");
        assert!(queue.replicas.contains(&BROKER), "{queue:?}");
        assert!(queue.isr.contains(&BROKER), "{queue:?}");
    }
}

pub async fn names_and_queue_counts_are_checked<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[]).await;
    let long = "x".repeat(256);
    for name in ["", "a/b", "a b", "..", &long] {
        let answer = c.create_topic(topic_spec(name, 1)).await;
        assert!(
            matches!(answer, Err(Error::InvalidArgument(_))),
            "topic {name:?}: {answer:?}"
        );
        let answer = c.heartbeat(name, member("m", &["t"]), None).await;
        assert!(
            matches!(answer, Err(Error::InvalidArgument(_))),
            "group {name:?}: {answer:?}"
        );
    }
    let mut no_timeout = member("m", &["t"]);
    no_timeout.session_timeout = Duration::ZERO;
    let answer = c.heartbeat("g", no_timeout, None).await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
    let answer = c.heartbeat("g", member("", &["t"]), None).await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
    for count in [0, 1025] {
        let answer = c.create_topic(topic_spec("t", count)).await;
        assert!(
            matches!(answer, Err(Error::InvalidArgument(_))),
            "{count} queues: {answer:?}"
        );
    }
    c.create_topic(topic_spec(&"x".repeat(255), 1024))
        .await
        .expect("the largest valid topic");
    assert!(c.topics().await.expect("topics").len() == 1);
    assert!(c.groups().await.expect("groups").is_empty());
}

// ---------------------------------------------------------------------------------------
// Persistence.

pub async fn topics_and_generations_survive_a_restart<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 4), ("audit", 1)]).await;
    let a = member("a", &["orders"]);
    let first = heartbeat(&*c, "g", &a, None).await;
    let b = member("b", &["orders"]);
    heartbeat(&*c, "g", &b, None).await;
    c.leave_group("g", "b").await.expect("leave");
    // Everyone leaves first: what a restart does to live members is the implementation's
    // own business (an etcd lease outlives a broker; the embedded store forgets them).
    c.leave_group("g", "a").await.expect("leave");
    let before = describe(&*c, "g").await.generation;
    assert!(before > first.generation);
    let topics = c.topics().await.expect("topics");

    let c = harness.reopen(c).await;
    c.register_broker(broker()).await.expect("register again");
    assert_eq!(c.topics().await.expect("topics"), topics);
    let group = describe(&*c, "g").await;
    assert_eq!(group.generation, before);
    assert_eq!(group.phase, GroupPhase::Empty);
    assert!(group.members.is_empty());

    let rejoined = heartbeat(&*c, "g", &a, Some(before)).await;
    assert!(
        rejoined.generation > before,
        "generation {} after restart, {before} before",
        rejoined.generation
    );
    c.check_generation("g", "a", rejoined.generation)
        .await
        .expect("the new generation is current");
    assert!(matches!(
        c.check_generation("g", "a", before).await,
        Err(Error::IllegalGeneration { .. })
    ));

    // And again: the generation reached after the restart is durable too.
    c.leave_group("g", "a").await.expect("leave");
    let left = describe(&*c, "g").await.generation;
    let c = harness.reopen(c).await;
    assert_eq!(describe(&*c, "g").await.generation, left);
    match c.create_topic(topic_spec("orders", 1)).await {
        Err(Error::TopicExists(_)) => {}
        other => panic!("create of a persisted topic answered {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Membership and hand-over.

pub async fn joins_and_leaves_bump_the_generation<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 4)]).await;
    let mut events = c.events();
    assert_eq!(c.group("g").await.expect("group"), None);

    let a = member("a", &["orders"]);
    let first = heartbeat(&*c, "g", &a, None).await;
    assert!(first.generation >= 1);
    assert!(first.heartbeat_interval > Duration::ZERO);
    assert!(first.heartbeat_interval < SESSION);
    expect_rebalanced(&mut events, "g", first.generation).await;
    // Alone, the first member gets every queue at once.
    assert_eq!(first.queues, queues("orders", 4));
    let group = describe(&*c, "g").await;
    assert_eq!(group.phase, GroupPhase::Stable);
    assert_eq!(group.members.len(), 1);
    assert_eq!(group.members[0].owned, queues("orders", 4));
    assert_eq!(group.members[0].target, queues("orders", 4));

    // A heartbeat that changes nothing keeps the generation.
    let same = heartbeat(&*c, "g", &a, Some(first.generation)).await;
    assert_eq!(same.generation, first.generation);
    assert_eq!(same.queues, queues("orders", 4));
    let group = describe(&*c, "g").await;
    assert_eq!(
        group.members[0].confirmed_generation,
        Some(first.generation)
    );

    let b = member("b", &["orders"]);
    let joined = heartbeat(&*c, "g", &b, None).await;
    assert!(joined.generation > first.generation);
    expect_rebalanced(&mut events, "g", joined.generation).await;

    c.leave_group("g", "b").await.expect("leave b");
    let after_leave = describe(&*c, "g").await;
    assert!(after_leave.generation > joined.generation);
    expect_rebalanced(&mut events, "g", after_leave.generation).await;
    assert_eq!(after_leave.members.len(), 1);

    match c.leave_group("g", "b").await {
        Err(Error::UnknownMember { group, member_id }) => {
            assert_eq!((group.as_str(), member_id.as_str()), ("g", "b"));
        }
        other => panic!("second leave answered {other:?}"),
    }
    assert!(matches!(
        c.leave_group("nope", "a").await,
        Err(Error::UnknownMember { .. })
    ));

    c.leave_group("g", "a").await.expect("leave a");
    let empty = describe(&*c, "g").await;
    assert_eq!(empty.phase, GroupPhase::Empty);
    assert!(empty.generation > after_leave.generation);
}

pub async fn queues_move_only_after_their_owner_confirms<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 4)]).await;
    let a = member("a", &["orders"]);
    let b = member("b", &["orders"]);
    let g1 = heartbeat(&*c, "g", &a, None).await;
    assert_eq!(g1.queues, queues("orders", 4));

    // b joins: averagely gives a queues 0-1 and b queues 2-3, but a still holds 2-3.
    let b1 = heartbeat(&*c, "g", &b, None).await;
    let g2 = b1.generation;
    assert!(g2 > g1.generation);
    assert!(
        b1.queues.is_empty(),
        "b got {:?} before a released",
        b1.queues
    );
    let group = describe(&*c, "g").await;
    assert_eq!(group.phase, GroupPhase::Rebalancing);
    assert_eq!(owned_by(&group, "a"), queues("orders", 4));
    assert!(owned_by(&group, "b").is_empty());
    assert_disjoint(&group, "after b joined");

    // a heartbeats still in the old generation: it is told to drop 2-3 but still holds them.
    let a2 = heartbeat(&*c, "g", &a, Some(g1.generation)).await;
    assert_eq!(a2.generation, g2);
    assert_eq!(a2.queues, queues("orders", 2));
    let b2 = heartbeat(&*c, "g", &b, Some(g2)).await;
    assert!(
        b2.queues.is_empty(),
        "b got {:?} before a confirmed",
        b2.queues
    );
    assert_eq!(
        owned_by(&describe(&*c, "g").await, "a"),
        queues("orders", 4)
    );

    // a confirms the new generation: 2-3 are released and handed to b.
    let a3 = heartbeat(&*c, "g", &a, Some(g2)).await;
    assert_eq!(a3.queues, queues("orders", 2));
    let group = describe(&*c, "g").await;
    assert_eq!(owned_by(&group, "a"), queues("orders", 2));
    assert_eq!(
        owned_by(&group, "b"),
        vec![QueueId::new("orders", 2), QueueId::new("orders", 3)]
    );
    assert_eq!(group.phase, GroupPhase::Stable);
    let b3 = heartbeat(&*c, "g", &b, Some(g2)).await;
    assert_eq!(b3.generation, g2);
    assert_eq!(
        b3.queues,
        vec![QueueId::new("orders", 2), QueueId::new("orders", 3)]
    );

    // b leaves: its queues go back to a without waiting for anybody.
    c.leave_group("g", "b").await.expect("leave");
    let group = describe(&*c, "g").await;
    assert_eq!(owned_by(&group, "a"), queues("orders", 4));
    assert_eq!(group.phase, GroupPhase::Stable);
    let a4 = heartbeat(&*c, "g", &a, Some(g2)).await;
    assert_eq!(a4.queues, queues("orders", 4));
}

pub async fn a_silent_member_expires_and_its_queues_move<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 4)]).await;
    let a = member("a", &["orders"]);
    let b = member("b", &["orders"]);
    heartbeat(&*c, "g", &a, None).await;
    let joined = heartbeat(&*c, "g", &b, None).await;
    let g2 = joined.generation;
    heartbeat(&*c, "g", &a, Some(g2)).await;
    heartbeat(&*c, "g", &b, Some(g2)).await;
    assert_eq!(describe(&*c, "g").await.phase, GroupPhase::Stable);
    let mut events = c.events();

    // Half a timeout: nobody expires. b heartbeats, a stays silent from here on.
    harness.advance(&c, SESSION / 2).await;
    let b_half = heartbeat(&*c, "g", &b, Some(g2)).await;
    assert_eq!(
        b_half.generation, g2,
        "nobody may expire within the timeout"
    );
    assert_eq!(describe(&*c, "g").await.members.len(), 2);

    // Past a's timeout, within b's.
    harness.advance(&c, SESSION / 2 + MARGIN).await;
    let expired = describe(&*c, "g").await;
    assert!(expired.generation > g2);
    expect_rebalanced(&mut events, "g", expired.generation).await;
    let ids: Vec<&str> = expired
        .members
        .iter()
        .map(|m| m.spec.member_id.as_str())
        .collect();
    assert_eq!(ids, vec!["b"]);
    assert!(matches!(
        c.check_generation("g", "a", expired.generation).await,
        Err(Error::UnknownMember { .. })
    ));
    // a's queues were released by its expiry: b takes all of them.
    let b_after = heartbeat(&*c, "g", &b, Some(g2)).await;
    assert_eq!(b_after.generation, expired.generation);
    assert_eq!(b_after.queues, queues("orders", 4));

    // An expired member that comes back is a new member.
    let back = heartbeat(&*c, "g", &a, Some(g2)).await;
    assert!(back.generation > expired.generation);
    assert!(
        back.queues.is_empty(),
        "a got {:?} back unreleased",
        back.queues
    );

    // Everyone expires: the group is empty but keeps its generation.
    harness.advance(&c, SESSION + MARGIN).await;
    let empty = describe(&*c, "g").await;
    assert_eq!(empty.phase, GroupPhase::Empty);
    assert!(empty.generation > back.generation);
}

pub async fn check_generation_fences_stale_and_unknown_members<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 2)]).await;
    let a = member("a", &["orders"]);
    let g1 = heartbeat(&*c, "g", &a, None).await.generation;
    c.check_generation("g", "a", g1).await.expect("current");
    let g2 = heartbeat(&*c, "g", &member("b", &["orders"]), None)
        .await
        .generation;
    match c.check_generation("g", "a", g1).await {
        Err(Error::IllegalGeneration {
            group,
            given,
            current,
        }) => assert_eq!((group.as_str(), given, current), ("g", g1, g2)),
        other => panic!("stale generation answered {other:?}"),
    }
    assert!(matches!(
        c.check_generation("g", "a", g2 + 1).await,
        Err(Error::IllegalGeneration { .. })
    ));
    c.check_generation("g", "a", g2).await.expect("a in g2");
    c.check_generation("g", "b", g2).await.expect("b in g2");
    match c.check_generation("g", "zed", g2).await {
        Err(Error::UnknownMember { group, member_id }) => {
            assert_eq!((group.as_str(), member_id.as_str()), ("g", "zed"));
        }
        other => panic!("unknown member answered {other:?}"),
    }
    assert!(matches!(
        c.check_generation("other", "a", g2).await,
        Err(Error::UnknownMember { .. })
    ));
    c.leave_group("g", "b").await.expect("leave");
    assert!(matches!(
        c.check_generation("g", "b", g2).await,
        Err(Error::UnknownMember { .. })
    ));
}

pub async fn a_subscription_change_rebalances<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 2), ("audit", 3)]).await;
    let mut events = c.events();
    let a = member("a", &["orders"]);
    let g1 = heartbeat(&*c, "g", &a, None).await;
    assert_eq!(g1.queues, queues("orders", 2));

    let wider = member("a", &["orders", "audit"]);
    let g2 = heartbeat(&*c, "g", &wider, Some(g1.generation)).await;
    assert!(g2.generation > g1.generation);
    expect_rebalanced(&mut events, "g", g2.generation).await;
    let mut all = queues("audit", 3);
    all.extend(queues("orders", 2));
    assert_eq!(g2.queues, all);
    assert_eq!(describe(&*c, "g").await.phase, GroupPhase::Stable);

    // Dropping a topic: a keeps holding orders until it confirms, but is told to stop.
    let narrower = member("a", &["audit"]);
    let g3 = heartbeat(&*c, "g", &narrower, Some(g2.generation)).await;
    assert!(g3.generation > g2.generation);
    assert_eq!(g3.queues, queues("audit", 3));
    let group = describe(&*c, "g").await;
    assert_eq!(group.phase, GroupPhase::Rebalancing);
    assert_eq!(group.members[0].target, queues("audit", 3));
    assert_eq!(group.members[0].owned, all);
    heartbeat(&*c, "g", &narrower, Some(g3.generation)).await;
    let group = describe(&*c, "g").await;
    assert_eq!(group.members[0].owned, queues("audit", 3));
    assert_eq!(group.phase, GroupPhase::Stable);

    // Another tag expression on the same topics is not a rebalance.
    let mut retagged = narrower.clone();
    retagged
        .subscriptions
        .insert("audit".into(), "TagA || TagB".into());
    let g4 = heartbeat(&*c, "g", &retagged, Some(g3.generation)).await;
    assert_eq!(g4.generation, g3.generation);
}

pub async fn a_topic_created_or_deleted_under_subscribers_rebalances<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 1)]).await;
    let a = member("a", &["orders", "later"]);
    let b = member("b", &["orders", "later"]);
    heartbeat(&*c, "g", &a, None).await;
    let g1 = heartbeat(&*c, "g", &b, None).await.generation;
    heartbeat(&*c, "g", &a, Some(g1)).await;
    heartbeat(&*c, "g", &b, Some(g1)).await;
    let group = describe(&*c, "g").await;
    assert_eq!(group.phase, GroupPhase::Stable);
    let mut events = c.events();

    c.create_topic(topic_spec("later", 4))
        .await
        .expect("create");
    expect_event(
        &mut events,
        "later created",
        |e| matches!(e, CoordinatorEvent::TopicCreated { topic } if topic == "later"),
    )
    .await;
    let event = expect_event(
        &mut events,
        "rebalance of g",
        |e| matches!(e, CoordinatorEvent::GroupRebalanced { group, .. } if group == "g"),
    )
    .await;
    let CoordinatorEvent::GroupRebalanced { generation: g2, .. } = event else {
        unreachable!()
    };
    assert!(g2 > g1);
    let a2 = heartbeat(&*c, "g", &a, Some(g1)).await;
    let b2 = heartbeat(&*c, "g", &b, Some(g1)).await;
    assert_eq!(a2.generation, g2);
    let mut got: Vec<QueueId> = a2.queues.iter().chain(&b2.queues).cloned().collect();
    got.sort();
    let mut want = queues("later", 4);
    want.extend(queues("orders", 1));
    assert_eq!(got, want, "the new topic's queues are shared at once");
    assert_disjoint(&describe(&*c, "g").await, "after create");

    // A group that does not subscribe to a new topic is not rebalanced.
    heartbeat(&*c, "other", &member("x", &["orders"]), None).await;
    let other_before = describe(&*c, "other").await.generation;
    c.create_topic(topic_spec("unrelated", 2))
        .await
        .expect("create");
    assert_eq!(describe(&*c, "other").await.generation, other_before);

    // Deleting the topic rebalances again; its queues leave the targets.
    c.delete_topic("later").await.expect("delete");
    let group = describe(&*c, "g").await;
    assert!(group.generation > g2);
    for m in &group.members {
        assert!(m.target.iter().all(|q| q.topic == "orders"), "{m:?}");
    }
    let a3 = heartbeat(&*c, "g", &a, Some(group.generation)).await;
    let b3 = heartbeat(&*c, "g", &b, Some(group.generation)).await;
    let mut got: Vec<QueueId> = a3.queues.iter().chain(&b3.queues).cloned().collect();
    got.sort();
    assert_eq!(got, queues("orders", 1));
}

pub async fn members_target_only_topics_they_subscribe_to<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 3), ("audit", 2)]).await;
    let a = member("a", &["orders"]);
    let b = member("b", &["audit"]);
    let ab = member("c", &["orders", "audit"]);
    for spec in [&a, &b, &ab] {
        heartbeat(&*c, "g", spec, None).await;
    }
    let generation = describe(&*c, "g").await.generation;
    for spec in [&a, &b, &ab] {
        heartbeat(&*c, "g", spec, Some(generation)).await;
    }
    let group = describe(&*c, "g").await;
    assert_eq!(group.phase, GroupPhase::Stable);
    let mut all = Vec::new();
    for m in &group.members {
        for q in &m.target {
            assert!(
                m.spec.subscriptions.contains_key(&q.topic),
                "{} targets {q:?} without subscribing",
                m.spec.member_id
            );
        }
        all.extend(m.owned.clone());
    }
    all.sort();
    let mut want = queues("audit", 2);
    want.extend(queues("orders", 3));
    assert_eq!(all, want);
}

pub async fn an_empty_group_keeps_its_generation<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 1)]).await;
    heartbeat(&*c, "quiet", &member("a", &["orders"]), None).await;
    heartbeat(&*c, "busy", &member("b", &["orders"]), None).await;
    c.leave_group("quiet", "a").await.expect("leave");
    let groups = c.groups().await.expect("groups");
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, vec!["busy", "quiet"]);
    let quiet = &groups[1];
    assert_eq!(quiet.phase, GroupPhase::Empty);
    assert!(quiet.generation >= 2);
    assert!(quiet.members.is_empty());
    // Rejoining continues from the kept generation.
    let again = heartbeat(&*c, "quiet", &member("a", &["orders"]), None).await;
    assert!(again.generation > quiet.generation);
}

// ---------------------------------------------------------------------------------------
// The hand-over invariant under random churn.

pub async fn handover_under_random_churn_seed_1<H: Harness>(harness: &H) {
    handover_under_random_churn(harness, 1, 300).await;
}

pub async fn handover_under_random_churn_seed_2<H: Harness>(harness: &H) {
    handover_under_random_churn(harness, 0x5eed2, 300).await;
}

pub async fn handover_under_random_churn_seed_3<H: Harness>(harness: &H) {
    handover_under_random_churn(harness, 0xdead_beef, 300).await;
}

/// A deterministic generator (splitmix64), so a failing seed reproduces.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One simulated consumer, honest as the protocol asks and otherwise as slow as allowed:
/// when it heartbeats it has applied its last answer (consumes nothing else) and reports that
/// answer's generation; between a heartbeat and the next it may still be stopping the queues
/// the new answer dropped, so it counts as consuming both answers. It stops consuming before
/// it leaves or goes silent.
#[derive(Clone, Debug, Default)]
struct Client {
    live: bool,
    topics: Vec<&'static str>,
    last_generation: Option<u64>,
    last_answer: BTreeSet<QueueId>,
    consuming: BTreeSet<QueueId>,
}

const CHURN_TOPICS: [(&str, u32); 3] = [("a", 5), ("b", 3), ("c", 1)];
const CHURN_CLIENTS: usize = 6;

struct Churn<'h, H: Harness> {
    harness: &'h H,
    c: Arc<H::C>,
    clients: Vec<Client>,
    random: Random,
    step: usize,
    /// What happened, so a run that exercised nothing fails instead of passing.
    seen: Seen,
}

#[derive(Debug, Default)]
struct Seen {
    leaves: usize,
    expiries: usize,
    /// Queues a client started consuming that another client consumed before.
    moves: usize,
    rebalancing: usize,
    last_consumer: BTreeMap<QueueId, usize>,
}

impl<H: Harness> Churn<'_, H> {
    fn id(i: usize) -> String {
        format!("m{i}")
    }

    async fn heartbeat(&mut self, i: usize) {
        let client = &mut self.clients[i];
        client.consuming = client.last_answer.clone();
        let client = &self.clients[i];
        let spec = member(&Self::id(i), &client.topics);
        let answer = heartbeat(&*self.c, "churn", &spec, client.last_generation).await;
        for q in &answer.queues {
            if let Some(before) = self.seen.last_consumer.insert(q.clone(), i) {
                self.seen.moves += usize::from(before != i);
            }
        }
        let client = &mut self.clients[i];
        client.live = true;
        client.last_generation = Some(answer.generation);
        client.last_answer = answer.queues.into_iter().collect();
        client.consuming.extend(client.last_answer.iter().cloned());
        self.check("heartbeat").await;
    }

    /// No queue owned twice; every live client consumes only queues it owns.
    async fn check(&mut self, what: &str) {
        self.step += 1;
        let context = format!("step {} ({what})", self.step);
        let group = describe(&*self.c, "churn").await;
        assert_disjoint(&group, &context);
        self.seen.rebalancing += usize::from(group.phase == GroupPhase::Rebalancing);
        let mut consumed: BTreeMap<&QueueId, usize> = BTreeMap::new();
        for (i, client) in self.clients.iter().enumerate() {
            for q in &client.consuming {
                if let Some(other) = consumed.insert(q, i) {
                    panic!("{context}: m{other} and m{i} both consume {q:?}");
                }
            }
            if client.consuming.is_empty() {
                continue;
            }
            let owned = owned_by(&group, &Self::id(i));
            for q in &client.consuming {
                assert!(
                    owned.contains(q),
                    "{context}: m{i} consumes {q:?} but owns {owned:?}"
                );
            }
        }
    }

    /// Every live client heartbeats twice (taking up, then confirming, the current
    /// generation); then every subscribed queue must be owned exactly once, by a member
    /// subscribed to its topic.
    async fn converge(&mut self) {
        for _ in 0..2 {
            for i in 0..CHURN_CLIENTS {
                if self.clients[i].live {
                    self.heartbeat(i).await;
                }
            }
        }
        let group = describe(&*self.c, "churn").await;
        let context = format!("step {} (converged)", self.step);
        let live = self.clients.iter().filter(|c| c.live).count();
        assert_eq!(group.members.len(), live, "{context}");
        if live == 0 {
            assert_eq!(group.phase, GroupPhase::Empty, "{context}");
            return;
        }
        assert_eq!(group.phase, GroupPhase::Stable, "{context}: {group:?}");
        let subscribed: BTreeSet<&str> = self
            .clients
            .iter()
            .filter(|c| c.live)
            .flat_map(|c| c.topics.iter().copied())
            .collect();
        let mut want: Vec<QueueId> = CHURN_TOPICS
            .iter()
            .filter(|(t, _)| subscribed.contains(t))
            .flat_map(|(t, n)| queues(t, *n))
            .collect();
        want.sort();
        let mut owned: Vec<QueueId> = Vec::new();
        for m in &group.members {
            assert_eq!(m.owned, m.target, "{context}: {}", m.spec.member_id);
            for q in &m.owned {
                assert!(m.spec.subscriptions.contains_key(&q.topic), "{context}");
            }
            owned.extend(m.owned.clone());
        }
        owned.sort();
        assert_eq!(
            owned, want,
            "{context}: not every queue is owned exactly once"
        );
        // One more round: every client's answer is now its whole target.
        for i in 0..CHURN_CLIENTS {
            if self.clients[i].live {
                self.heartbeat(i).await;
            }
        }
        let consumed: usize = self.clients.iter().map(|c| c.last_answer.len()).sum();
        assert_eq!(
            consumed,
            want.len(),
            "{context}: some queue is not consumed"
        );
    }

    fn random_topics(&mut self) -> Vec<&'static str> {
        let mut topics: Vec<&'static str> = CHURN_TOPICS
            .iter()
            .map(|(t, _)| *t)
            .filter(|_| self.random.below(2) == 0)
            .collect();
        if topics.is_empty() {
            topics.push(CHURN_TOPICS[0].0);
        }
        topics
    }

    fn random_live(&mut self) -> Option<usize> {
        let live: Vec<usize> = (0..CHURN_CLIENTS)
            .filter(|i| self.clients[*i].live)
            .collect();
        (!live.is_empty()).then(|| live[self.random.below(live.len())])
    }

    async fn run_step(&mut self) {
        match self.random.below(10) {
            // Heartbeats are the common case; a client not in the group joins afresh.
            0..=5 => {
                let i = self.random.below(CHURN_CLIENTS);
                if !self.clients[i].live {
                    let topics = self.random_topics();
                    self.clients[i] = Client {
                        topics,
                        ..Client::default()
                    };
                }
                self.heartbeat(i).await;
            }
            6 => {
                if let Some(i) = self.random_live() {
                    self.clients[i].topics = self.random_topics();
                    self.heartbeat(i).await;
                }
            }
            7 => {
                if let Some(i) = self.random_live() {
                    self.clients[i].consuming.clear();
                    self.c
                        .leave_group("churn", &Self::id(i))
                        .await
                        .expect("leave");
                    self.clients[i] = Client::default();
                    self.seen.leaves += 1;
                    self.check("leave").await;
                }
            }
            8 => {
                // A client goes silent (and, honest, stops consuming); the others keep
                // heartbeating across its session timeout.
                if let Some(i) = self.random_live() {
                    self.clients[i] = Client::default();
                    for j in 0..CHURN_CLIENTS {
                        if self.clients[j].live {
                            self.heartbeat(j).await;
                        }
                    }
                    self.harness.advance(&self.c, SESSION / 2).await;
                    self.check("half a timeout").await;
                    for j in 0..CHURN_CLIENTS {
                        if self.clients[j].live {
                            self.heartbeat(j).await;
                        }
                    }
                    self.harness.advance(&self.c, SESSION / 2 + MARGIN).await;
                    self.seen.expiries += 1;
                    self.check("expiry").await;
                }
            }
            _ => self.converge().await,
        }
    }
}

pub async fn handover_under_random_churn<H: Harness>(harness: &H, seed: u64, steps: usize) {
    let c = with_topics(harness, &CHURN_TOPICS).await;
    let mut churn = Churn {
        harness,
        c,
        clients: vec![Client::default(); CHURN_CLIENTS],
        random: Random(seed),
        step: 0,
        seen: Seen::default(),
    };
    for _ in 0..steps {
        churn.run_step().await;
    }
    churn.converge().await;
    let seen = &churn.seen;
    assert!(
        seen.leaves > 0 && seen.expiries > 0 && seen.moves > 0 && seen.rebalancing > 0,
        "seed {seed} exercised too little: {} leaves, {} expiries, {} moves, {} checks \
         while rebalancing",
        seen.leaves,
        seen.expiries,
        seen.moves,
        seen.rebalancing
    );
}
