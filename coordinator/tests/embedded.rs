//! `EmbeddedCoordinator` against the conformance suite, plus what only a file-backed,
//! single-process coordinator has: state files that can be damaged, a directory lock, the
//! restart hold, and the background reaper.

mod conformance;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coordinator::{
    Coordinator, CoordinatorEvent, EmbeddedCoordinator, Error, GroupPhase, ManualClock,
};
use tempfile::TempDir;

use conformance::{broker, member, queues, topic_spec, Harness, SESSION};

struct Embedded {
    dir: TempDir,
    clock: Arc<ManualClock>,
}

impl Embedded {
    fn new() -> Embedded {
        Embedded {
            dir: tempfile::tempdir().expect("tempdir"),
            clock: Arc::new(ManualClock::new()),
        }
    }

    fn open_now(&self) -> EmbeddedCoordinator {
        EmbeddedCoordinator::open_with_clock(self.dir.path(), self.clock.clone())
            .expect("open the embedded coordinator")
    }
}

#[async_trait]
impl Harness for Embedded {
    type C = EmbeddedCoordinator;

    async fn open(&self) -> Arc<EmbeddedCoordinator> {
        Arc::new(self.open_now())
    }

    async fn reopen(&self, coordinator: Arc<EmbeddedCoordinator>) -> Arc<EmbeddedCoordinator> {
        let Ok(coordinator) = Arc::try_unwrap(coordinator) else {
            panic!("the suite still holds the coordinator it asked to reopen");
        };
        drop(coordinator);
        Arc::new(self.open_now())
    }

    async fn advance(&self, coordinator: &EmbeddedCoordinator, by: Duration) {
        self.clock.advance(by);
        coordinator
            .expire_sessions()
            .await
            .expect("expire sessions");
    }
}

conformance_tests!(Embedded::new());

fn write(dir: &TempDir, name: &str, bytes: &[u8]) {
    std::fs::write(dir.path().join(name), bytes).expect("write state file");
}

#[test]
fn a_damaged_state_file_is_refused_naming_its_path() {
    let cases: [(&str, &[u8]); 6] = [
        ("topics.json", b"[{\"name\": \"t\", \"conf"),
        ("topics.json", b"{\"not\": \"a list\"}"),
        (
            "topics.json",
            b"[{\"name\":\"a/b\",\"config\":{},\"internal\":false,\"queues\":[]}]",
        ),
        ("groups.json", b"\x00\x01garbage"),
        ("groups.json", b"{\"version\": 9, \"groups\": {}}"),
        (
            "groups.json",
            b"{\"version\":1,\"groups\":{\"g\":{\"generation\":1,\"members\":[{\"id\":\"\",\"session_timeout_ms\":1}]}}}",
        ),
    ];
    for (name, bytes) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir, name, bytes);
        match EmbeddedCoordinator::open(dir.path()) {
            Err(Error::Corrupt { path, reason }) => {
                assert_eq!(path, dir.path().join(name), "{reason}");
            }
            other => panic!("{name} {bytes:?} opened as {other:?}"),
        }
    }
}

#[test]
fn an_unreadable_state_file_is_an_io_error_naming_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("groups.json")).expect("mkdir");
    match EmbeddedCoordinator::open(dir.path()) {
        Err(Error::Io { path, .. }) => assert_eq!(path, dir.path().join("groups.json")),
        other => panic!("opened as {other:?}"),
    }
}

#[tokio::test]
async fn state_files_are_replaced_whole() {
    let harness = Embedded::new();
    let c = harness.open_now();
    c.register_broker(broker()).await.expect("register");
    c.create_topic(topic_spec("orders", 2))
        .await
        .expect("create");
    c.heartbeat("g", member("a", &["orders"]), None)
        .await
        .expect("join");
    let names: Vec<String> = std::fs::read_dir(harness.dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, vec!["groups.json", "topics.json"]);
    let groups: serde_json::Value = serde_json::from_slice(
        &std::fs::read(harness.dir.path().join("groups.json")).expect("read"),
    )
    .expect("groups.json is JSON");
    assert_eq!(groups["version"], 1);
    assert_eq!(groups["groups"]["g"]["generation"], 1);
}

#[tokio::test]
async fn a_second_coordinator_on_the_same_directory_is_refused() {
    let harness = Embedded::new();
    let first = harness.open_now();
    match EmbeddedCoordinator::open_with_clock(harness.dir.path(), harness.clock.clone()) {
        Err(Error::Io { path, cause }) => {
            assert_eq!(path, harness.dir.path().join(".lock"));
            assert_eq!(cause.kind(), std::io::ErrorKind::WouldBlock);
        }
        other => panic!("second open answered {other:?}"),
    }
    drop(first);
    harness.open_now();
}

#[tokio::test]
async fn create_topic_without_a_broker_is_unavailable() {
    let harness = Embedded::new();
    let c = harness.open_now();
    let answer = c.create_topic(topic_spec("orders", 1)).await;
    assert!(matches!(answer, Err(Error::Unavailable(_))), "{answer:?}");
}

#[tokio::test]
async fn a_new_broker_id_takes_over_every_queue_with_a_new_epoch() {
    let harness = Embedded::new();
    let c = harness.open_now();
    c.register_broker(broker()).await.expect("register");
    c.create_topic(topic_spec("orders", 2))
        .await
        .expect("create");
    drop(c);
    let c = harness.open_now();
    let mut moved = broker();
    moved.id = 9;
    c.register_broker(moved).await.expect("register");
    drop(c);
    let c = harness.open_now();
    let topic = c.topic("orders").await.expect("topic").expect("orders");
    for queue in &topic.queues {
        assert_eq!((queue.leader, queue.leader_epoch), (9, 1), "{queue:?}");
        assert_eq!(queue.isr, vec![9]);
    }
}

/// After a restart the coordinator no longer knows who held which queue: nothing is granted
/// until the previous members are back and confirmed, or silent for their timeout.
#[tokio::test]
async fn after_a_restart_queues_wait_for_the_previous_members() {
    let harness = Embedded::new();
    let c = harness.open().await;
    c.register_broker(broker()).await.expect("register");
    c.create_topic(topic_spec("orders", 4))
        .await
        .expect("create");
    let a = member("a", &["orders"]);
    let b = member("b", &["orders"]);
    let g1 = c
        .heartbeat("g", a.clone(), None)
        .await
        .expect("a")
        .generation;
    let g2 = c
        .heartbeat("g", b.clone(), None)
        .await
        .expect("b")
        .generation;
    c.heartbeat("g", a.clone(), Some(g2)).await.expect("a");
    c.heartbeat("g", b.clone(), Some(g2)).await.expect("b");
    assert!(g2 > g1);

    let c = harness.reopen(c).await;
    // a comes back; b (which may still be consuming 2-3) has not yet.
    let a1 = c.heartbeat("g", a.clone(), Some(g2)).await.expect("a");
    assert!(
        a1.queues.is_empty(),
        "granted {:?} while b may consume",
        a1.queues
    );
    let a2 = c
        .heartbeat("g", a.clone(), Some(a1.generation))
        .await
        .expect("a confirms");
    assert!(
        a2.queues.is_empty(),
        "granted {:?} while b may consume",
        a2.queues
    );
    assert_eq!(
        c.group("g").await.expect("group").expect("g").phase,
        GroupPhase::Rebalancing
    );

    // b comes back and confirms: the hold ends and queues flow.
    let b1 = c.heartbeat("g", b.clone(), Some(g2)).await.expect("b");
    let b2 = c
        .heartbeat("g", b.clone(), Some(b1.generation))
        .await
        .expect("b confirms");
    let a3 = c
        .heartbeat("g", a.clone(), Some(b1.generation))
        .await
        .expect("a");
    let mut all = a3.queues.clone();
    all.extend(b2.queues.clone());
    all.sort();
    assert_eq!(all, queues("orders", 4));

    // Another restart; this time b never returns: a waits out b's session timeout.
    let c = harness.reopen(c).await;
    let a4 = c.heartbeat("g", a.clone(), None).await.expect("a");
    let a5 = c
        .heartbeat("g", a.clone(), Some(a4.generation))
        .await
        .expect("a");
    assert!(a5.queues.is_empty());
    harness.advance(&c, SESSION / 2).await;
    let a6 = c
        .heartbeat("g", a.clone(), Some(a4.generation))
        .await
        .expect("a");
    assert!(a6.queues.is_empty(), "the hold ended before b's timeout");
    harness
        .advance(&c, SESSION / 2 + Duration::from_secs(1))
        .await;
    let a7 = c
        .heartbeat("g", a.clone(), Some(a4.generation))
        .await
        .expect("a");
    assert_eq!(a7.queues, queues("orders", 4));
}

/// `open` inside a runtime starts the reaper: a silent member expires with nobody asking.
#[tokio::test]
async fn the_reaper_expires_silent_members_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = EmbeddedCoordinator::open(dir.path()).expect("open");
    c.register_broker(broker()).await.expect("register");
    c.create_topic(topic_spec("orders", 1))
        .await
        .expect("create");
    let mut events = c.events();
    let mut quick = member("a", &["orders"]);
    quick.session_timeout = coordinator::limits::SESSION_TIMEOUT_MIN;
    let joined = c.heartbeat("g", quick, None).await.expect("join");
    assert!(joined.heartbeat_interval < coordinator::limits::SESSION_TIMEOUT_MIN);
    conformance::expect_event(&mut events, "expiry of a", |e| {
        matches!(e, CoordinatorEvent::GroupRebalanced { group, generation }
            if group == "g" && *generation > joined.generation)
    })
    .await;
    drop(c);
    // The reaper held only a weak reference: the directory is free again.
    EmbeddedCoordinator::open(dir.path()).expect("reopen after drop");
}
