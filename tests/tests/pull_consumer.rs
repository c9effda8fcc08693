//! The pull consumer against a real broker: every message of its queues once, in offset order
//! per queue, across many pulls (each fetcher sends its next pull before decoding the last);
//! a seek back in the middle of a queue (pulls in flight) re-reads from the offset sought and
//! nothing of the old position leaks through; `commit` stores the positions `poll` reached.
//!
//! Workload: a topic with 2 queues, `MESSAGES` numbered messages of 1 B to 4 KiB sent round
//! robin; pulls limited to `PULL_BYTES` so each queue takes dozens of pulls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tests::broker::BrokerProcess;
use tests::ledger::{self, Ledger};
use tests::payload;
use tests::wait::{self, client_config};
use wire::client::{Admin, Client, Producer, ProducerConfig, PullConsumer, PullConsumerConfig};
use wire::protocol::QueueRef;
use wire::ReceivedMessage;

const TOPIC: &str = "pulled";
const QUEUES: u32 = 2;
const MESSAGES: usize = 20_000;
const BODY_BYTES_MAX: usize = 4 << 10;
/// Small pulls, so a queue takes many of them.
const PULL_BYTES: u32 = 64 << 10;
const POLL_TIMEOUT: Duration = Duration::from_secs(1);
/// Where the seek goes back to in queue 0.
const SEEK_TO: u64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_consumer_reads_every_message_once_in_order_and_seeks_back() {
    tests::init_client_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let client = Client::connect(client_config(&broker.address, "pull-consumer"))
        .await
        .expect("connect");
    Admin::new(&client)
        .create_topic(TOPIC, QUEUES, Vec::new())
        .await
        .expect("create the topic");
    let ledger = Arc::new(Ledger::new(payload::log_uniform_sizes(
        MESSAGES,
        BODY_BYTES_MAX,
        7,
    )));
    let producer = Producer::new(&client, ProducerConfig::default()).expect("producer");
    let receipts = ledger::send_all(&producer, &ledger, TOPIC, 0..MESSAGES).await;
    wait::within("the producer to close", producer.close()).await;
    let mut ends = BTreeMap::<u32, u64>::new();
    for (_, queue, offset) in &receipts {
        let end = ends.entry(*queue).or_default();
        *end = (*end).max(offset + 1);
    }

    let consumer = PullConsumer::new(
        &client,
        PullConsumerConfig {
            pull_batch_bytes: PULL_BYTES,
            auto_commit_interval: None,
            ..PullConsumerConfig::new("pullers")
        },
    )
    .expect("a pull consumer");
    let queues: Vec<QueueRef> = (0..QUEUES)
        .map(|queue| QueueRef {
            topic: TOPIC.to_owned(),
            queue,
        })
        .collect();
    consumer.assign(queues).await.expect("assign");
    for queue in 0..QUEUES {
        consumer
            .seek_to_beginning(TOPIC, queue)
            .await
            .expect("seek to the beginning");
    }

    // Read until queue 0 is well under way (its next pulls in flight), seek it back to
    // SEEK_TO, and read everything to the end: queue 0 must go on from SEEK_TO, with nothing
    // of the old position coming through (the order check would see it).
    let mut next = BTreeMap::<u32, u64>::new();
    let reading = async {
        let mut sought_from = None;
        while next != ends {
            let polled = consumer.poll(POLL_TIMEOUT).await.expect("poll");
            check_order(&polled, &mut next);
            ledger.record(&polled);
            let position = next.get(&0).copied().unwrap_or(0);
            if sought_from.is_none() && position >= 5 * SEEK_TO {
                consumer.seek(TOPIC, 0, SEEK_TO).await.expect("seek back");
                next.insert(0, SEEK_TO);
                sought_from = Some(position);
            }
        }
        sought_from
    };
    let sought_from = wait::within("every message to be read", reading)
        .await
        .expect("queue 0 got past the seek point");
    let report = ledger.report(&receipts);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.lost_count, 0, "lost {:?}", report.lost);
    assert_eq!(
        report.duplicates,
        sought_from - SEEK_TO,
        "exactly the messages of queue 0 from {SEEK_TO} to {sought_from} are read twice"
    );

    consumer.commit().await.expect("commit");
    let committed = Admin::new(&client)
        .fetch_offsets("pullers", TOPIC, Vec::new())
        .await
        .expect("fetch the committed offsets");
    let committed: BTreeMap<u32, u64> = committed
        .iter()
        .map(|o| (o.queue, o.offset.expect("a committed offset")))
        .collect();
    assert_eq!(committed, ends, "commit stores the positions poll reached");

    consumer.close().await;
    client.close();
}

/// Checks each queue's messages follow on from where the last poll left it, and moves it on.
fn check_order(polled: &[ReceivedMessage], next: &mut BTreeMap<u32, u64>) {
    for message in polled {
        let expected = next.entry(message.queue).or_default();
        assert_eq!(
            message.offset, *expected,
            "queue {} out of order",
            message.queue
        );
        *expected += 1;
    }
}
