//! `EtcdCoordinator` against a real etcd process (`coordinator::testing::EtcdServer`, one per
//! test): the topic half of the conformance suite, plus what only a clustered coordinator
//! has — leases that expire, several instances sharing one cluster, concurrent writers, the
//! controller election and its fencing, and etcd going away and coming back.
//!
//! Nothing here sleeps to synchronise: tests await coordinator events or etcd watch events,
//! each with a generous deadline that fails loudly. Calls that must fail while etcd is down
//! and succeed after are retried on `Unavailable`, as a broker would, until a deadline.

mod conformance;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coordinator::testing::EtcdServer;
use coordinator::{
    BrokerInfo, Coordinator, CoordinatorEvent, Error, EtcdConfig, EtcdCoordinator, ManualClock,
};
use etcd_client::EventType;
use tokio::sync::broadcast;

use conformance::{expect_event, member, queues, topic_spec, Harness};

/// The broker lease TTL the tests use: etcd's shortest with the test server's timings.
const LEASE_TTL: Duration = Duration::from_secs(1);
/// How long one etcd request may take in tests (short, so outages answer quickly).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between retries of a call that answered `Unavailable`.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long a test waits for something to happen before failing.
const DEADLINE: Duration = Duration::from_secs(30);

struct Etcd {
    server: EtcdServer,
    cluster: String,
    clock: Arc<ManualClock>,
}

impl Etcd {
    /// A fresh server, and a cluster name no other test uses, so tests could share a server.
    async fn start() -> Etcd {
        // The coordinator's log, shown with a failing test's output (RUST_LOG overrides).
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("coordinator=info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let number = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        Etcd {
            server: EtcdServer::start().await.expect("start etcd"),
            cluster: format!("test-{}-{number}", std::process::id()),
            clock: Arc::new(ManualClock::new()),
        }
    }

    fn config(&self) -> EtcdConfig {
        let mut config = EtcdConfig::new(vec![self.server.endpoint()], self.cluster.clone());
        config.broker_lease_ttl = LEASE_TTL;
        config.request_timeout = REQUEST_TIMEOUT;
        // Sessions expire on the manual clock, when `advance` says so.
        config.reap_sessions = false;
        config
    }

    async fn connect(&self) -> EtcdCoordinator {
        EtcdCoordinator::connect(self.config(), self.clock.clone())
            .await
            .expect("connect to etcd")
    }

    /// A connected instance registered as broker `id`.
    async fn broker(&self, id: u32) -> EtcdCoordinator {
        let c = self.connect().await;
        c.register_broker(broker_info(id)).await.expect("register");
        c
    }

    async fn raw_client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.server.endpoint()], None)
            .await
            .expect("raw etcd client")
    }

    fn broker_key(&self, id: u32) -> String {
        format!("/runnel/{}/brokers/{id}", self.cluster)
    }
}

#[async_trait]
impl Harness for Etcd {
    type C = EtcdCoordinator;

    async fn open(&self) -> Arc<EtcdCoordinator> {
        Arc::new(self.connect().await)
    }

    async fn reopen(&self, coordinator: Arc<EtcdCoordinator>) -> Arc<EtcdCoordinator> {
        let Ok(coordinator) = Arc::try_unwrap(coordinator) else {
            panic!("the suite still holds the coordinator it asked to reopen");
        };
        drop(coordinator);
        Arc::new(self.connect().await)
    }

    async fn advance(&self, coordinator: &EtcdCoordinator, by: Duration) {
        self.clock.advance(by);
        coordinator
            .expire_sessions()
            .await
            .expect("expire sessions");
    }
}

conformance_tests!(Etcd::start().await);

fn broker_info(id: u32) -> BrokerInfo {
    BrokerInfo {
        id,
        address: format!("127.0.0.1:{}", 10_000 + id),
        started_at_ms: 1,
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {DEADLINE:?}"))
}

/// Retries `call` while it answers `Unavailable`, until `DEADLINE`.
async fn once_available<T, F: Future<Output = coordinator::Result<T>>>(
    what: &str,
    mut call: impl FnMut() -> F,
) -> T {
    within(what, async {
        loop {
            match call().await {
                Ok(value) => return value,
                // A broker's retry: back off, do not spin.
                Err(Error::Unavailable(_)) => tokio::time::sleep(RETRY_PAUSE).await,
                Err(other) => panic!("{what}: {other}"),
            }
        }
    })
    .await
}

async fn expect_controller(events: &mut broadcast::Receiver<CoordinatorEvent>, id: u32) {
    expect_event(
        events,
        &format!("broker {id} elected"),
        |e| matches!(e, CoordinatorEvent::ControllerChanged { broker: Some(b) } if *b == id),
    )
    .await;
}

/// The changes to one key, one at a time, as (whether it was a put, the lease it was put
/// with). etcd may deliver several events in one watch response (a deletion and the put
/// that follows at once, under load): each is handed out in turn, none is dropped.
struct KeyChanges {
    stream: etcd_client::WatchStream,
    pending: VecDeque<(bool, i64)>,
}

impl KeyChanges {
    fn new(stream: etcd_client::WatchStream) -> KeyChanges {
        KeyChanges {
            stream,
            pending: VecDeque::new(),
        }
    }

    async fn next(&mut self, what: &str) -> (bool, i64) {
        within(what, async {
            loop {
                if let Some(change) = self.pending.pop_front() {
                    return change;
                }
                let response = self
                    .stream
                    .message()
                    .await
                    .expect("watch")
                    .expect("watch open");
                self.pending.extend(response.events().iter().map(|event| {
                    let lease = event.kv().map_or(0, |kv| kv.lease());
                    (event.event_type() == EventType::Put, lease)
                }));
            }
        })
        .await
    }
}

#[tokio::test]
async fn a_crashed_brokers_key_disappears_when_its_lease_expires() {
    let etcd = Etcd::start().await;
    let a = etcd.broker(1).await;
    let b = etcd.broker(2).await;
    let ids = |list: Vec<BrokerInfo>| list.into_iter().map(|b| b.id).collect::<Vec<_>>();
    assert_eq!(ids(b.brokers().await.expect("brokers")), vec![1, 2]);
    let mut raw = etcd.raw_client().await;
    let mut watch = KeyChanges::new(raw.watch(etcd.broker_key(1), None).await.expect("watch"));
    a.crash();
    let (put, _) = watch.next("expiry of broker 1's key").await;
    assert!(!put, "broker 1's key was put, not deleted");
    b.sync().await.expect("sync");
    assert_eq!(ids(b.brokers().await.expect("brokers")), vec![2]);
}

/// Two brokers that start at once with one id and different addresses: exactly one is
/// registered, the other is refused naming the winner's address. The winner restarting (a new
/// instance, its old lease still alive) registers again at its own address.
#[tokio::test]
async fn one_id_is_registered_once_even_by_simultaneous_brokers() {
    let etcd = Etcd::start().await;
    let (a, b) = tokio::join!(etcd.connect(), etcd.connect());
    let at = |port: u16| BrokerInfo {
        id: 5,
        address: format!("127.0.0.1:{port}"),
        started_at_ms: 1,
    };
    let (from_a, from_b) =
        tokio::join!(a.register_broker(at(10_001)), b.register_broker(at(10_002)));
    let (winner, loser, winning_address, refused) = match (from_a, from_b) {
        (Ok(()), Err(refused)) => (&a, &b, "127.0.0.1:10001", refused),
        (Err(refused), Ok(())) => (&b, &a, "127.0.0.1:10002", refused),
        other => panic!("one registration must win: {other:?}"),
    };
    match refused {
        Error::BrokerIdTaken { id: 5, address } => assert_eq!(address, winning_address),
        other => panic!("the loser was refused with {other:?}"),
    }
    assert_eq!(loser.broker_lease(), None);
    loser.sync().await.expect("sync");
    let brokers = loser.brokers().await.expect("brokers");
    assert_eq!(brokers.len(), 1);
    assert_eq!(brokers[0].address, winning_address);

    let old_lease = winner.broker_lease().expect("the winner's lease");
    winner.pause();
    let restarted = etcd.connect().await;
    let port = winning_address.rsplit(':').next().unwrap().parse().unwrap();
    restarted
        .register_broker(at(port))
        .await
        .expect("the same broker registers again over its live old lease");
    assert_ne!(restarted.broker_lease(), Some(old_lease));
}

#[tokio::test]
async fn two_instances_see_each_others_topics_and_events() {
    let etcd = Etcd::start().await;
    let a = etcd.broker(1).await;
    let b = etcd.broker(2).await;
    let mut a_events = a.events();
    let mut b_events = b.events();

    let created = a
        .create_topic(topic_spec("orders", 12))
        .await
        .expect("create");
    let leaders: Vec<u32> = created.queues.iter().map(|q| q.leader).collect();
    assert_eq!(
        leaders.iter().filter(|l| **l == 1).count(),
        6,
        "{leaders:?}"
    );
    assert_eq!(
        leaders.iter().filter(|l| **l == 2).count(),
        6,
        "{leaders:?}"
    );
    expect_event(
        &mut b_events,
        "orders created, seen by b",
        |e| matches!(e, CoordinatorEvent::TopicCreated { topic } if topic == "orders"),
    )
    .await;
    assert_eq!(b.topic("orders").await.expect("topic"), Some(created));

    b.delete_topic("orders").await.expect("delete");
    expect_event(
        &mut a_events,
        "orders deleted, seen by a",
        |e| matches!(e, CoordinatorEvent::TopicDeleted { topic } if topic == "orders"),
    )
    .await;
    assert_eq!(a.topic("orders").await.expect("topic"), None);
}

/// An instance whose cache lags (here: its watch stopped) still knows every topic whose
/// creation was acknowledged, as etcd has it, including large ones written in several steps;
/// a topic nobody created is unknown, and with etcd down such a lookup is `Unavailable`.
#[tokio::test]
async fn a_lagging_instance_reads_a_topic_it_has_not_heard_of_from_etcd() {
    let mut etcd = Etcd::start().await;
    let a = etcd.broker(1).await;
    let b = etcd.broker(2).await;
    b.crash();

    let created = a
        .create_topic(topic_spec("orders", 12))
        .await
        .expect("create");
    assert_eq!(b.topic("orders").await.expect("topic"), Some(created));
    let large = a
        .create_topic(topic_spec("large", 300))
        .await
        .expect("create a topic written in steps");
    assert_eq!(b.topic("large").await.expect("topic"), Some(large));
    assert_eq!(b.topic("never").await.expect("topic"), None);
    assert!(
        b.topics().await.expect("cached topics").is_empty(),
        "topics() answers from the cache alone"
    );

    etcd.server.stop().await;
    match b.topic("never").await {
        Err(error @ Error::Unavailable(_)) => assert!(error.is_retriable()),
        other => panic!("a lookup with etcd down answered {other:?}"),
    }
}

#[tokio::test]
async fn concurrent_creates_of_one_topic_have_exactly_one_winner() {
    let etcd = Etcd::start().await;
    let a = etcd.broker(1).await;
    let b = etcd.broker(2).await;
    // Small enough for one transaction, and large enough to need several.
    for (name, queues) in [("small", 8), ("large", 300)] {
        let (from_a, from_b) = tokio::join!(
            a.create_topic(topic_spec(name, queues)),
            b.create_topic(topic_spec(name, queues))
        );
        let winners = [&from_a, &from_b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "{name}: {from_a:?} / {from_b:?}");
        for answer in [from_a, from_b] {
            if let Err(error) = answer {
                assert!(
                    matches!(error, Error::TopicExists(ref n) if n == name),
                    "{error}"
                );
            }
        }
        for c in [&a, &b] {
            c.sync().await.expect("sync");
            let topic = c
                .topic(name)
                .await
                .expect("topic")
                .expect("the winner's topic");
            assert_eq!(topic.queues.len(), queues as usize);
        }
    }
}

/// A deposed controller's queue updates, topic creates and deletes are all refused `Fenced`.
#[tokio::test]
async fn the_controller_fails_over_and_a_deposed_controller_is_fenced() {
    let etcd = Etcd::start().await;
    let a = etcd.connect().await;
    let mut a_events = a.events();
    a.register_broker(broker_info(1)).await.expect("register a");
    expect_controller(&mut a_events, 1).await;
    let term = a.election().expect("a holds the election");
    assert!(a.is_controller());
    assert_eq!(a.controller(), Some(1));
    let topic = a
        .create_topic(topic_spec("orders", 2))
        .await
        .expect("create");
    let b = etcd.broker(2).await;
    let mut b_events = b.events();
    assert_eq!(b.controller(), Some(1));
    assert!(!b.is_controller());

    // a's own guarded write works while it is controller.
    let mut state = topic.queues[0].clone();
    state.leader_epoch += 1;
    let written = a
        .update_queue(term, "orders", state)
        .await
        .expect("write as controller");
    assert_eq!(written.version, 1);

    // a stalls: its lease expires, b takes over; a still believes it is the controller.
    a.pause();
    expect_controller(&mut b_events, 2).await;
    let new_term = b.election().expect("b holds the election");
    assert_ne!(new_term.revision, term.revision);
    assert_eq!(a.election(), Some(term), "a's stale view");

    let mut stale = written.clone();
    stale.leader_epoch += 1;
    match a.update_queue(term, "orders", stale.clone()).await {
        Err(Error::Fenced(_)) => {}
        other => panic!("the deposed controller's write answered {other:?}"),
    }
    // Its topic changes are fenced the same way; the new controller's are not.
    match a.create_topic(topic_spec("placed-by-a", 2)).await {
        Err(Error::Fenced(_)) => {}
        other => panic!("the deposed controller's create answered {other:?}"),
    }
    match a.delete_topic("orders").await {
        Err(Error::Fenced(_)) => {}
        other => panic!("the deposed controller's delete answered {other:?}"),
    }
    b.create_topic(topic_spec("placed-by-b", 2))
        .await
        .expect("the controller creates");
    // The topic guard still decides between controllers' creates of one name.
    match b.create_topic(topic_spec("placed-by-b", 2)).await {
        Err(Error::TopicExists(_)) => {}
        other => panic!("a second create answered {other:?}"),
    }
    let taken = b
        .update_queue(new_term, "orders", stale.clone())
        .await
        .expect("b writes");
    assert_eq!((taken.version, taken.leader_epoch), (2, 2));
    // A write from an outdated version is refused too.
    match b.update_queue(new_term, "orders", stale).await {
        Err(Error::Fenced(_)) => {}
        other => panic!("a write at an old version answered {other:?}"),
    }
}

#[tokio::test]
async fn a_revoked_lease_is_replaced_and_the_broker_key_put_back() {
    let etcd = Etcd::start().await;
    let a = etcd.broker(1).await;
    let old = a.broker_lease().expect("a lease");
    let mut raw = etcd.raw_client().await;
    let mut watch = KeyChanges::new(raw.watch(etcd.broker_key(1), None).await.expect("watch"));
    raw.lease_revoke(old).await.expect("revoke");
    let (put, _) = watch.next("deletion of broker 1's key").await;
    assert!(!put);
    let (put, lease) = watch.next("broker 1's key put back").await;
    assert!(put);
    assert_ne!(lease, old, "the key came back under the revoked lease");
    a.sync().await.expect("sync");
    assert_eq!(a.brokers().await.expect("brokers").len(), 1);
}

/// A lease that ran out while the broker could not keep it alive (a partition, a stall) is
/// found gone when the keep-alive stream reconnects, and replaced: the broker registers
/// anew instead of retrying the dead lease forever.
#[tokio::test]
async fn a_lease_lost_while_the_keep_alive_was_down_is_replaced_on_reconnect() {
    let etcd = Etcd::start().await;
    let a = etcd.broker(1).await;
    let old = a.broker_lease().expect("a lease");
    let mut raw = etcd.raw_client().await;
    let mut watch = KeyChanges::new(raw.watch(etcd.broker_key(1), None).await.expect("watch"));
    a.stop_keeping();
    raw.lease_revoke(old).await.expect("revoke");
    let (put, _) = watch.next("deletion of broker 1's key").await;
    assert!(!put);
    a.resume_keeping();
    let (put, lease) = watch.next("broker 1's key put back").await;
    assert!(put);
    assert_ne!(lease, old, "the key came back under the lost lease");
    a.sync().await.expect("sync");
    assert_eq!(a.brokers().await.expect("brokers").len(), 1);
}

#[tokio::test]
async fn an_etcd_outage_fails_calls_keeps_reads_and_recovers() {
    let mut etcd = Etcd::start().await;
    let a = etcd.broker(1).await;
    let topic = a
        .create_topic(topic_spec("orders", 3))
        .await
        .expect("create");
    let lease = a.broker_lease().expect("lease");
    assert!(a.is_connected(), "a's watch serves its own writes");

    etcd.server.stop().await;
    let clock = etcd.clock.clone();
    match EtcdCoordinator::connect(etcd.config(), clock).await {
        Err(Error::Unavailable(_)) => {}
        other => panic!("connecting while etcd is down answered {other:?}"),
    }
    match a.create_topic(topic_spec("audit", 1)).await {
        Err(error @ Error::Unavailable(_)) => assert!(error.is_retriable()),
        other => panic!("create while etcd is down answered {other:?}"),
    }
    assert!(matches!(a.sync().await, Err(Error::Unavailable(_))));
    // A re-registration that cannot reach etcd keeps the registration that was.
    assert!(matches!(
        a.register_broker(broker_info(1)).await,
        Err(Error::Unavailable(_))
    ));
    assert_eq!(a.broker_lease(), Some(lease));
    assert_eq!(
        a.topic("orders").await.expect("cached read"),
        Some(topic.clone())
    );
    assert_eq!(a.brokers().await.expect("cached brokers").len(), 1);

    etcd.server.restart().await.expect("restart etcd");
    let mut events = a.events();
    let b = etcd.broker(2).await;
    b.create_topic(topic_spec("later", 1))
        .await
        .expect("create on b");
    // a's watch is back: it hears of b's topic.
    expect_event(
        &mut events,
        "later created, seen by a",
        |e| matches!(e, CoordinatorEvent::TopicCreated { topic } if topic == "later"),
    )
    .await;
    assert!(a.is_connected(), "a heard b through a re-established watch");
    once_available("a create after the restart", || {
        a.create_topic(topic_spec("audit", 1))
    })
    .await;
    // a is registered again (etcd keeps leases across a restart and renews them).
    let mut raw = etcd.raw_client().await;
    let key = raw.get(etcd.broker_key(1), None).await.expect("get");
    let kv = key.kvs().first().expect("broker 1 is registered");
    let current = a.broker_lease().expect("a lease");
    assert_eq!(kv.lease(), current);
    if current != lease {
        println!("the broker lease was replaced across the outage");
    }
}

/// Members heartbeat to different brokers, neither of them always the controller: the group
/// is one, its assignment outlives the controller, and a member that moves to another broker
/// keeps its queues and its generation.
#[tokio::test]
async fn a_group_spans_brokers_and_outlives_its_controller() {
    let etcd = Etcd::start().await;
    let a = etcd.connect().await;
    let mut a_events = a.events();
    a.register_broker(broker_info(1)).await.expect("register a");
    expect_controller(&mut a_events, 1).await;
    let b = etcd.broker(2).await;
    let mut b_events = b.events();
    a.create_topic(topic_spec("orders", 4))
        .await
        .expect("create");
    let x = member("x", &["orders"]);
    let y = member("y", &["orders"]);

    // x on a (the controller), y on b.
    let x1 = a.heartbeat("g", x.clone(), None).await.expect("x joins");
    let y1 = b.heartbeat("g", y.clone(), None).await.expect("y joins");
    assert!(y1.generation > x1.generation);
    expect_event(&mut b_events, "the rebalance, seen by b", |e| {
        matches!(e, CoordinatorEvent::GroupRebalanced { group, generation }
            if group == "g" && *generation == y1.generation)
    })
    .await;
    let generation = y1.generation;
    let x2 = a
        .heartbeat("g", x.clone(), Some(generation))
        .await
        .expect("x confirms");
    let y2 = b
        .heartbeat("g", y.clone(), Some(generation))
        .await
        .expect("y confirms");
    let mut all = x2.queues.clone();
    all.extend(y2.queues.clone());
    all.sort();
    assert_eq!(all, queues("orders", 4));
    b.check_generation("g", "x", generation)
        .await
        .expect("x is current on b too");

    // a crashes; b becomes controller and carries on from the written assignment.
    a.crash();
    expect_controller(&mut b_events, 2).await;
    let y3 = b
        .heartbeat("g", y.clone(), Some(generation))
        .await
        .expect("y on b");
    assert_eq!((y3.generation, &y3.queues), (generation, &y2.queues));
    // x moves to b: a refresh under a new lease, not a new member.
    let x3 = b
        .heartbeat("g", x.clone(), Some(generation))
        .await
        .expect("x on b");
    assert_eq!((x3.generation, &x3.queues), (generation, &x2.queues));
    let group = b.group("g").await.expect("group").expect("g");
    assert_eq!(group.generation, generation);
    assert_eq!(group.members.len(), 2);

    // A leave through b moves x's queues to y at once.
    b.leave_group("g", "x").await.expect("x leaves");
    let y4 = b
        .heartbeat("g", y.clone(), Some(generation))
        .await
        .expect("y");
    assert!(y4.generation > generation);
    assert_eq!(y4.queues, queues("orders", 4));
}

#[tokio::test]
async fn a_bad_configuration_is_refused() {
    let etcd = Etcd::start().await;
    let clock = etcd.clock.clone();
    let mut no_endpoint = etcd.config();
    no_endpoint.endpoints.clear();
    let mut bad_cluster = etcd.config();
    bad_cluster.cluster = "a/b".into();
    let mut no_timeout = etcd.config();
    no_timeout.request_timeout = Duration::ZERO;
    for config in [no_endpoint, bad_cluster, no_timeout] {
        match EtcdCoordinator::connect(config.clone(), clock.clone()).await {
            Err(Error::InvalidArgument(_)) => {}
            other => panic!("{config:?} answered {other:?}"),
        }
    }
    let mut short_lease = etcd.config();
    short_lease.broker_lease_ttl = Duration::from_millis(10);
    let c = EtcdCoordinator::connect(short_lease, clock)
        .await
        .expect("connect");
    assert_eq!(c.config().broker_lease_ttl, Duration::from_secs(1));
}

/// Records that do not decode are reported naming their key, never a panic; the rest of the
/// cluster's metadata still reads.
#[tokio::test]
async fn a_corrupt_record_is_reported_naming_its_key() {
    let etcd = Etcd::start().await;
    let c = etcd.broker(1).await;
    c.create_topic(topic_spec("good", 1)).await.expect("create");
    let mut raw = etcd.raw_client().await;
    let prefix = format!("/runnel/{}/", etcd.cluster);
    let damaged = [
        (format!("{prefix}topics/bad"), &b"{not json"[..]),
        (format!("{prefix}partitions/good/0"), b"{\"queue\": 7}"),
        (format!("{prefix}groups/g/assignment"), b"[]"),
        (format!("{prefix}groups/g/members/m"), b"{}"),
    ];
    for (key, value) in &damaged {
        raw.put(key.as_str(), *value, None)
            .await
            .expect("put damage");
    }
    c.sync().await.expect("sync");
    let expect_corrupt = |answer: coordinator::Result<()>, key: &str| match answer {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path.to_str(), Some(key)),
        other => panic!("{key}: {other:?}"),
    };
    expect_corrupt(c.topic("bad").await.map(drop), &damaged[0].0);
    expect_corrupt(c.topic("good").await.map(drop), &damaged[1].0);
    assert!(matches!(c.topics().await, Err(Error::Corrupt { .. })));
    expect_corrupt(c.group("g").await.map(drop), &damaged[2].0);
    assert_eq!(c.brokers().await.expect("brokers still read").len(), 1);
    // A repaired record reads again.
    raw.delete(damaged[0].0.as_str(), None)
        .await
        .expect("delete");
    c.create_topic(topic_spec("fresh", 1))
        .await
        .expect("create after damage");
    assert!(c.topic("fresh").await.expect("fresh").is_some());
}

/// With the background reaper on (the default) and the system clock, a silent member
/// expires with nobody asking, and its group is rebalanced.
#[tokio::test]
async fn the_reaper_expires_silent_members_by_itself() {
    let etcd = Etcd::start().await;
    let mut config = etcd.config();
    config.reap_sessions = true;
    let c = EtcdCoordinator::connect(config, Arc::new(coordinator::SystemClock))
        .await
        .expect("connect");
    c.register_broker(broker_info(1)).await.expect("register");
    c.create_topic(topic_spec("orders", 1))
        .await
        .expect("create");
    let mut events = c.events();
    let mut quick = member("a", &["orders"]);
    quick.session_timeout = coordinator::limits::SESSION_TIMEOUT_MIN;
    let joined = c.heartbeat("g", quick, None).await.expect("join");
    assert!(joined.heartbeat_interval < coordinator::limits::SESSION_TIMEOUT_MIN);
    expect_event(&mut events, "expiry of a", |e| {
        matches!(e, CoordinatorEvent::GroupRebalanced { group, generation }
            if group == "g" && *generation > joined.generation)
    })
    .await;
    let group = c.group("g").await.expect("group").expect("g");
    assert!(group.members.is_empty());
}
