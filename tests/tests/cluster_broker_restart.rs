//! A broker of a cluster killed and started again takes its place back: it registers under
//! its id again, keeps leading its queues with every acknowledged message in them, and the
//! cluster serves producers and a consumer group across the crash.
//!
//! Cluster: real etcd, three `runnel broker` processes (default `--flush os`: an acknowledged
//! append is in the page cache, which a process crash does not lose).
//!
//! Fault: SIGKILL of broker 1, started again at once on the same address and data directory
//! (while its old etcd lease may still be alive).
//!
//! Workload: a topic with 6 queues (2 per broker); a group of two push consumers knowing
//! brokers 0 and 2; a producer knowing all three. `PHASE_MESSAGES` numbered messages (bodies
//! of 1 B to 4 KiB derived from their numbers) sent and delivered before the fault,
//! `PHASE_MESSAGES` more after the restart.
//!
//! Checks: after the restart every broker sees all three; each queue keeps its leader, and
//! broker 1's queues still end at least where the acknowledged sends put them; every
//! acknowledged message is delivered (lost: 0), intact, at its receipt's place; duplicates
//! counted and printed. Time printed: from the kill to all three brokers seeing each other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tests::cluster::Cluster;
use tests::ledger::{self, start_recording, Ledger};
use tests::wait::{self, REQUEST_TIMEOUT};
use wire::client::{
    Admin, Client, ConsumeFrom, Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};

const BROKERS: usize = 3;
const TOPIC: &str = "comeback";
const GROUP: &str = "comeback-readers";
const QUEUES: u32 = 6;
const PHASE_MESSAGES: usize = 3_000;
const RESTARTED: u32 = 1;
const BODY_BYTES_MAX: usize = 4 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_broker_restarts_into_its_place_with_its_queues_intact() {
    tests::init_client_logs();
    let started = Instant::now();
    let mut cluster = Cluster::start(BROKERS).await;
    let all: Vec<u32> = (0..BROKERS as u32).collect();
    let admin_client = cluster.client_of(&[0, 2], "admin").await;
    let admin = Admin::new(&admin_client);
    admin
        .create_topic(TOPIC, QUEUES, Vec::new())
        .await
        .expect("create the topic");
    let leaders_before = leaders(&admin).await;

    let ledger = Arc::new(Ledger::new(tests::payload::log_uniform_sizes(
        2 * PHASE_MESSAGES,
        BODY_BYTES_MAX,
        13,
    )));
    let mut consumers = Vec::new();
    for id in [0, 2] {
        consumers.push(start_consumer(&cluster, id, &ledger).await);
    }
    wait::group_stable(&admin, GROUP, consumers.len(), QUEUES as usize).await;
    let producer_client = cluster.client_of(&all, "producer").await;
    let producer = Producer::new(
        &producer_client,
        ProducerConfig {
            request_timeout: REQUEST_TIMEOUT,
            ..ProducerConfig::default()
        },
    )
    .expect("create a producer");

    let mut receipts = ledger::send_all(&producer, &ledger, TOPIC, 0..PHASE_MESSAGES).await;
    wait::until("the first phase to be delivered", || async {
        ledger.delivered_all(0..PHASE_MESSAGES)
    })
    .await;
    let mut acknowledged_end = BTreeMap::<u32, u64>::new();
    for &(_, queue, offset) in &receipts {
        let end = acknowledged_end.entry(queue).or_default();
        *end = (*end).max(offset + 1);
    }

    let killed_at = Instant::now();
    cluster.kill(RESTARTED);
    cluster.restart(RESTARTED);
    cluster.await_brokers(&all).await;
    eprintln!(
        "broker {RESTARTED} killed, restarted and seen by all {} ms later",
        killed_at.elapsed().as_millis()
    );

    let described = wait::until("every queue to be described by its leader", || async {
        let topic = admin
            .describe_topic(TOPIC)
            .await
            .map_err(|e| e.to_string())?;
        let short: Vec<String> = topic
            .queues
            .iter()
            .filter(|q| q.log_end_offset < acknowledged_end.get(&q.queue).copied().unwrap_or(0))
            .map(|q| format!("queue {} ends at {}", q.queue, q.log_end_offset))
            .collect();
        if short.is_empty() {
            Ok(topic)
        } else {
            Err(format!("{short:?}; acknowledged ends {acknowledged_end:?}"))
        }
    })
    .await;
    let leaders_after: BTreeMap<u32, u32> = described
        .queues
        .iter()
        .map(|q| (q.queue, q.leader))
        .collect();
    assert_eq!(
        leaders_after, leaders_before,
        "the queues changed leaders across the restart"
    );

    receipts.extend(
        ledger::send_all(
            &producer,
            &ledger,
            TOPIC,
            PHASE_MESSAGES..2 * PHASE_MESSAGES,
        )
        .await,
    );
    wait::until("every acknowledged message to be delivered", || async {
        ledger.delivered_all(0..2 * PHASE_MESSAGES)
    })
    .await;
    let report = ledger.report(&receipts);
    eprintln!(
        "{} acknowledged, {} lost, {} duplicate deliveries ({} messages); done in {:?}",
        receipts.len(),
        report.lost_count,
        report.duplicates,
        report.redelivered,
        started.elapsed()
    );
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.lost_count, 0, "lost: {:?}", report.lost);

    wait::within("the producer to close", producer.close()).await;
    producer_client.close();
    for (_consumer, client) in &consumers {
        client.close();
    }
    admin_client.close();
}

async fn leaders(admin: &Admin) -> BTreeMap<u32, u32> {
    let route = admin.query_route(TOPIC).await.expect("route the topic");
    route.queues.iter().map(|q| (q.queue, q.leader)).collect()
}

async fn start_consumer(
    cluster: &Cluster,
    id: u32,
    ledger: &Arc<Ledger>,
) -> (PushConsumer, Client) {
    let client = cluster.client(id, &format!("consumer-{id}")).await;
    let config = PushConsumerConfig {
        consume_batch_size: 32,
        ..PushConsumerConfig::new(GROUP)
            .subscribe(TOPIC, "*")
            .consume_from(ConsumeFrom::First)
    };
    let consumer = start_recording(&client, config, ledger.clone()).await;
    (consumer, client)
}
