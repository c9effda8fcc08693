//! While etcd is down, a broker cluster keeps serving the queues it owns; when etcd is back,
//! the cluster heals: new topics can be created and used, and the group still consumes.
//!
//! Cluster: real etcd, three `runnel broker` processes. Topic: 12 queues (4 per broker).
//!
//! Fault: etcd stopped with SIGTERM, restarted on the same ports and data after the outage's
//! workload (below) has run.
//!
//! Workload: a group of three push consumers (consumer `i` knowing broker `i`) and one
//! producer (knowing all three brokers), sending numbered messages round robin with
//! log-uniform bodies of 1 B to 4 KiB. Before the outage: `PHASE_MESSAGES`, all delivered.
//! During it: `PHASE_MESSAGES` more, paced (12 every 10 ms) so the outage outlasts the
//! consumers' 3 s session timeout, then awaited until delivered; meanwhile a consumer of a new
//! group, subscribed to a topic that does not exist yet, starts (its join is refused `Busy`
//! until etcd is back, and retried). After the outage: the new topic (created by retrying
//! until etcd answers) gets `PHASE_MESSAGES` messages, read by the new group, and the first
//! topic `PHASE_MESSAGES` more, read by the first group.
//!
//! Checks: every send during the outage is acknowledged; every acknowledged message is
//! delivered (lost: 0), intact, where its receipt put it (duplicates counted and printed);
//! the outage's messages are consumed during the outage; after it, the new topic works end to
//! end and the first group consumes. Times printed: outage length, time to create the topic
//! after etcd is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tests::cluster::Cluster;
use tests::ledger::{self, start_recording, Ledger};
use tests::wait::{self, REQUEST_TIMEOUT};
use wire::client::{
    Admin, Client, ConsumeFrom, Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};
use wire::ErrorCode;

const BROKERS: usize = 3;
const TOPIC: &str = "outage";
const GROUP: &str = "outage-readers";
const NEW_TOPIC: &str = "after-outage";
const NEW_GROUP: &str = "after-outage-readers";
const QUEUES: u32 = 12;
const PHASE_MESSAGES: usize = 6_000;
/// Sent during the outage at `QUEUES` per `OUTAGE_SEND_PERIOD`: about 5 s, longer than the
/// consumers' session timeout.
const OUTAGE_SEND_PERIOD: Duration = Duration::from_millis(10);
const SESSION_TIMEOUT: Duration = Duration::from_secs(3);
const BODY_BYTES_MAX: usize = 4 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn brokers_serve_through_an_etcd_outage_and_heal_after_it() {
    tests::init_client_logs();
    let started = Instant::now();
    let mut cluster = Cluster::start(BROKERS).await;
    let all: Vec<u32> = (0..BROKERS as u32).collect();
    let admin_client = cluster.client_of(&all, "admin").await;
    let admin = Admin::new(&admin_client);
    admin
        .create_topic(TOPIC, QUEUES, Vec::new())
        .await
        .expect("create the topic");

    let ledger = Arc::new(Ledger::new(tests::payload::log_uniform_sizes(
        5 * PHASE_MESSAGES,
        BODY_BYTES_MAX,
        11,
    )));
    let mut consumers = Vec::new();
    for id in 0..BROKERS as u32 {
        consumers.push(start_consumer(&cluster, id, GROUP, TOPIC, &ledger).await);
    }
    let settled = wait::group_stable(&admin, GROUP, BROKERS, QUEUES as usize).await;

    let producer_client = cluster.client_of(&all, "producer").await;
    let producer = Producer::new(
        &producer_client,
        ProducerConfig {
            request_timeout: REQUEST_TIMEOUT,
            ..ProducerConfig::default()
        },
    )
    .expect("create a producer");

    let phase = |n: usize| n * PHASE_MESSAGES..(n + 1) * PHASE_MESSAGES;
    let mut receipts = ledger::send_all(&producer, &ledger, TOPIC, phase(0)).await;
    wait::until("the messages before the outage to be delivered", || async {
        ledger.delivered_all(phase(0))
    })
    .await;

    let outage = Instant::now();
    cluster.stop_etcd().await;
    eprintln!("etcd stopped");
    let joining = {
        let client = cluster.client(1, &format!("{NEW_GROUP}-1")).await;
        let config = consumer_config(NEW_GROUP, NEW_TOPIC);
        let ledger = ledger.clone();
        tokio::spawn(async move {
            let consumer = start_recording(&client, config, ledger).await;
            (consumer, client)
        })
    };
    receipts.extend(send_paced(&producer, &ledger, phase(1)).await);
    eprintln!(
        "{PHASE_MESSAGES} sends acknowledged during the outage, {} ms into it",
        outage.elapsed().as_millis()
    );
    wait::until(
        "the messages sent during the outage to be delivered",
        || async { ledger.delivered_all(phase(1)) },
    )
    .await;
    eprintln!(
        "and delivered {} ms into the outage",
        outage.elapsed().as_millis()
    );
    cluster.restart_etcd().await;
    let healing = Instant::now();
    eprintln!("etcd outage: {} ms", outage.elapsed().as_millis());

    wait::until("a new topic to be created after the outage", || async {
        match admin.create_topic(NEW_TOPIC, QUEUES, Vec::new()).await {
            Ok(_) => Ok(()),
            // An earlier attempt whose answer was lost created it.
            Err(e) if e.code() == Some(ErrorCode::TopicExists) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    eprintln!(
        "topic created {} ms after etcd restarted",
        healing.elapsed().as_millis()
    );
    let newcomer = wait::within("the consumer that started during the outage", joining)
        .await
        .expect("the joining task");
    wait::group_stable(&admin, NEW_GROUP, 1, QUEUES as usize).await;
    receipts.extend(ledger::send_all(&producer, &ledger, NEW_TOPIC, phase(2)).await);
    wait::until("the new topic's messages to be delivered", || async {
        ledger.delivered_all(phase(2))
    })
    .await;

    receipts.extend(ledger::send_all(&producer, &ledger, TOPIC, phase(3)).await);
    wait::until("the first group to consume after the outage", || async {
        ledger.delivered_all(phase(3))
    })
    .await;
    let after = admin
        .describe_group(GROUP)
        .await
        .expect("describe the group after the outage");
    let report = ledger.report(&receipts);
    eprintln!(
        "{} acknowledged, {} lost, {} duplicate deliveries ({} messages); group generation {} \
         before, {} after ({:?}, {} members); done in {:?}",
        receipts.len(),
        report.lost_count,
        report.duplicates,
        report.redelivered,
        settled.generation,
        after.generation,
        after.state,
        after.members.len(),
        started.elapsed()
    );
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.lost_count, 0, "lost: {:?}", report.lost);

    wait::within("the producer to close", producer.close()).await;
    // Closing the clients is enough: shutting consumers down one by one (each leave bumps
    // the generation) costs the next one's revoked commits a wait for a generation its
    // stopped heartbeat loop never brings.
    for (_consumer, client) in consumers.iter().chain([&newcomer]) {
        client.close();
    }
    producer_client.close();
    admin_client.close();
}

/// Sends `numbers` round robin, `QUEUES` every `OUTAGE_SEND_PERIOD`; every send must be
/// acknowledged.
async fn send_paced(
    producer: &Producer,
    ledger: &Ledger,
    numbers: std::ops::Range<usize>,
) -> Vec<(usize, u32, u64)> {
    let mut receipts = Vec::new();
    let mut pace = tokio::time::interval(OUTAGE_SEND_PERIOD);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let numbers: Vec<usize> = numbers.collect();
    for chunk in numbers.chunks(QUEUES as usize) {
        // The interval paces the load; nothing waits on it for an event.
        pace.tick().await;
        receipts.extend(ledger::send_all(producer, ledger, TOPIC, chunk.iter().copied()).await);
    }
    receipts
}

async fn start_consumer(
    cluster: &Cluster,
    id: u32,
    group: &str,
    topic: &str,
    ledger: &Arc<Ledger>,
) -> (PushConsumer, Client) {
    let client = cluster.client(id, &format!("{group}-{id}")).await;
    let consumer = start_recording(&client, consumer_config(group, topic), ledger.clone()).await;
    (consumer, client)
}

fn consumer_config(group: &str, topic: &str) -> PushConsumerConfig {
    PushConsumerConfig {
        consume_batch_size: 32,
        session_timeout: SESSION_TIMEOUT,
        ..PushConsumerConfig::new(group)
            .subscribe(topic, "*")
            .consume_from(ConsumeFrom::First)
    }
}
