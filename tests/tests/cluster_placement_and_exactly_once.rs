//! A three-broker cluster on etcd spreads a topic's queues evenly, routes a client that knows
//! one broker to every queue's leader, and a group whose members each know a different
//! single broker consumes every message exactly once, intact.
//!
//! Cluster: real etcd, three `runnel broker` processes (ids 0, 1, 2).
//!
//! Workload: one topic with 12 queues; 100 000 messages with log-uniform body sizes from 1 B
//! to 4 KiB (both extremes occur; seeded; each body derived from its number, which travels in
//! a property), sent with `send_async`, round robin, by one producer whose client was given
//! only broker 0's address. A group of three push consumers, consumer `i` given only broker
//! `i`'s address, all joined and the group `Stable` with 3 members owning the 12 queues before
//! the first send (so no rebalance can excuse a duplicate; checked unchanged at the end).
//!
//! Checks: placement — `describe_topic` and `query_route` agree, and each broker leads exactly
//! 4 queues; every acknowledged message delivered (lost: 0), exactly once (duplicates are
//! counted and printed, then must be 0), intact, at the queue and offset its receipt named;
//! every queue received messages; the group's total lag reaches 0. Then groups that only
//! ever committed offsets (by an offset reset), one kept on each broker, are all listed by an
//! admin client that knows one broker, and each one's offsets broker reports the group's
//! whole lag (100 000: reset to the earliest offsets) in `runnel_group_lag`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tests::cluster::Cluster;
use tests::ledger::{self, start_recording, Ledger};
use tests::payload;
use tests::wait::{self, REQUEST_TIMEOUT};
use wire::client::{
    Admin, Client, ConsumeFrom, Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};
use wire::protocol::{offsets_queue_for, GroupState, OffsetSpec, OFFSETS_TOPIC};

const BROKERS: usize = 3;
const TOPIC: &str = "spread";
const GROUP: &str = "spread-readers";
const QUEUES: u32 = 12;
const MESSAGES: usize = 100_000;
const BODY_BYTES_MAX: usize = 4 << 10;
const SIZE_SEED: u64 = 0x0005_9EAD;
/// Messages per listener call.
const CONSUME_BATCH_SIZE: usize = 32;
/// How often brokers refresh `runnel_group_lag`: often, so the test need not wait long.
const LAG_INTERVAL: &str = "200ms";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_brokers_split_twelve_queues_and_a_group_reads_each_message_once() {
    tests::init_client_logs();
    let started = Instant::now();
    let mut cluster = Cluster::start_with(BROKERS, &["--group-lag-interval", LAG_INTERVAL]).await;
    eprintln!("cluster of {BROKERS} up in {:?}", started.elapsed());

    let admin_client = cluster.client(1, "admin").await;
    let admin = Admin::new(&admin_client);
    admin
        .create_topic(TOPIC, QUEUES, Vec::new())
        .await
        .expect("create the topic");
    check_placement(&admin).await;

    let ledger = Arc::new(Ledger::new(payload::log_uniform_sizes(
        MESSAGES,
        BODY_BYTES_MAX,
        SIZE_SEED,
    )));
    let mut consumers = Vec::new();
    for id in 0..BROKERS as u32 {
        consumers.push(start_consumer(&cluster, id, ledger.clone()).await);
    }
    let settled = wait::group_stable(&admin, GROUP, BROKERS, QUEUES as usize).await;
    eprintln!(
        "group stable in generation {} after {:?}",
        settled.generation,
        started.elapsed()
    );

    let producing = Instant::now();
    let producer_client = cluster.client(0, "producer").await;
    let producer = Producer::new(
        &producer_client,
        ProducerConfig {
            request_timeout: REQUEST_TIMEOUT,
            ..ProducerConfig::default()
        },
    )
    .expect("create a producer");
    let receipts = ledger::send_all(&producer, &ledger, TOPIC, 0..MESSAGES).await;
    wait::within("the producer to close", producer.close()).await;
    eprintln!(
        "{MESSAGES} messages acknowledged in {:?} through a client that knew broker 0 only",
        producing.elapsed()
    );
    let mut per_queue = BTreeMap::<u32, usize>::new();
    for (_, queue, _) in &receipts {
        *per_queue.entry(*queue).or_default() += 1;
    }
    assert_eq!(
        per_queue.len(),
        QUEUES as usize,
        "every queue got messages: {per_queue:?}"
    );

    wait::until("every message to be delivered", || async {
        ledger.delivered_all(0..MESSAGES)
    })
    .await;
    eprintln!(
        "every message delivered {:?} after the first send",
        producing.elapsed()
    );
    let caught_up = wait::group_caught_up(&admin, GROUP, QUEUES as usize).await;
    let stored: u64 = caught_up
        .offsets
        .iter()
        .filter(|q| q.topic == TOPIC)
        .map(|q| q.log_end_offset)
        .sum();
    eprintln!("total lag 0 {:?} after the first send", producing.elapsed());

    let after = admin
        .describe_group(GROUP)
        .await
        .expect("describe the group");
    let report = ledger.report(&receipts);
    eprintln!(
        "{} acknowledged, {} lost, {} duplicate deliveries ({} messages), generation {} -> {}; \
         {:?} in all",
        receipts.len(),
        report.lost_count,
        report.duplicates,
        report.redelivered,
        settled.generation,
        after.generation,
        started.elapsed()
    );
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.lost_count, 0, "lost: {:?}", report.lost);
    assert_eq!(receipts.len(), MESSAGES);
    assert_eq!(
        stored, MESSAGES as u64,
        "the queues hold one record per send"
    );
    assert_eq!(
        (after.state, after.members.len(), after.generation),
        (GroupState::Stable, BROKERS, settled.generation),
        "the group rebalanced while consuming though its membership never changed"
    );
    assert_eq!(
        report.duplicates, 0,
        "duplicate deliveries without a rebalance"
    );

    let archives = check_group_listing(&admin).await;
    // Each archive group's offsets broker reports its whole lag, though it leads a third of
    // the topic's queues: the others' ends come from their leaders.
    for (group, broker) in &archives {
        let series = format!("runnel_group_lag{{group=\"{group}\",topic=\"{TOPIC}\"}}");
        let metrics = cluster.broker(*broker);
        wait::until("the lag gauge of a group kept elsewhere", || {
            let seen = match metrics.metric(&series) {
                Some(lag) if lag == MESSAGES as f64 => Ok(()),
                other => Err(format!("{series} = {other:?}")),
            };
            async move { seen }
        })
        .await;
    }

    // Closing the clients is enough: shutting consumers down one by one (each leave bumps
    // the generation) costs the next one's revoked commits a wait for a generation its
    // stopped heartbeat loop never brings.
    for (_consumer, client) in &consumers {
        client.close();
    }
    producer_client.close();
    admin_client.close();
}

/// Each broker leads exactly `QUEUES / BROKERS` queues, by `describe_topic` and by
/// `query_route` alike, and the route names every broker.
async fn check_placement(admin: &Admin) {
    let described = admin
        .describe_topic(TOPIC)
        .await
        .expect("describe the topic");
    let route = admin.query_route(TOPIC).await.expect("route the topic");
    let mut leaders = BTreeMap::<u32, Vec<u32>>::new();
    for queue in &described.queues {
        leaders.entry(queue.leader).or_default().push(queue.queue);
    }
    eprintln!("queues by leader: {leaders:?}");
    let by_route: BTreeMap<u32, u32> = route.queues.iter().map(|q| (q.queue, q.leader)).collect();
    let by_description: BTreeMap<u32, u32> = described
        .queues
        .iter()
        .map(|q| (q.queue, q.leader))
        .collect();
    assert_eq!(by_route, by_description, "route and description disagree");
    assert_eq!(
        by_route.keys().copied().collect::<Vec<_>>(),
        (0..QUEUES).collect::<Vec<_>>(),
        "queues 0..{QUEUES}"
    );
    let brokers: Vec<u32> = route.brokers.iter().map(|b| b.broker_id).collect();
    assert_eq!(
        brokers.len(),
        BROKERS,
        "the route names every broker: {:?}",
        route.brokers
    );
    for id in 0..BROKERS as u32 {
        let led = leaders.get(&id).map_or(0, Vec::len);
        assert_eq!(
            led,
            QUEUES as usize / BROKERS,
            "broker {id} leads {led} queues: {leaders:?}"
        );
    }
}

async fn start_consumer(cluster: &Cluster, id: u32, ledger: Arc<Ledger>) -> (PushConsumer, Client) {
    let client = cluster.client(id, &format!("consumer-{id}")).await;
    let config = PushConsumerConfig {
        consume_batch_size: CONSUME_BATCH_SIZE,
        ..PushConsumerConfig::new(GROUP)
            .subscribe(TOPIC, "*")
            .consume_from(ConsumeFrom::First)
    };
    let consumer = start_recording(&client, config, ledger.clone()).await;
    (consumer, client)
}

/// Commits offsets (a reset, no members) for one group per broker, each kept on that broker,
/// and checks the admin lists them all with the consuming group; answers each group with
/// the broker keeping its offsets.
async fn check_group_listing(admin: &Admin) -> Vec<(String, u32)> {
    let offsets = admin
        .query_route(OFFSETS_TOPIC)
        .await
        .expect("route the offsets topic");
    let queues = offsets.queues.len() as u32;
    let mut archives = Vec::new();
    for broker in 0..BROKERS as u32 {
        let group = (0..1000)
            .map(|n| format!("archive-{n}"))
            .find(|g| {
                let queue = offsets_queue_for(g, queues) as usize;
                offsets.queues[queue].leader == broker
            })
            .unwrap_or_else(|| panic!("a group whose offsets broker {broker} keeps"));
        admin
            .reset_offsets(&group, Some(TOPIC), OffsetSpec::Earliest, true)
            .await
            .expect("commit offsets by a reset");
        archives.push((group, broker));
    }
    let listed: Vec<String> = admin
        .list_groups()
        .await
        .expect("list the groups")
        .into_iter()
        .map(|g| g.group)
        .collect();
    for group in archives.iter().map(|(g, _)| g).chain([&GROUP.to_owned()]) {
        assert!(listed.contains(group), "{group} missing from {listed:?}");
    }
    archives
}
