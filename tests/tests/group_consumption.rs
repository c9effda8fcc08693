//! A consumer group reads a large, mixed-compression workload exactly once, intact.
//!
//! Workload: one topic with 8 queues; 100 000 messages with log-uniform body sizes from 1 B to
//! 64 KiB (about 0.6 GB; the sizes 1 and 65 536 always occur; seeded), sent with `send_async`
//! by three producers, one per compression (none, lz4, zstd), round-robin over the queues, so
//! every queue holds batches of all three codecs. Each body is derived from its message
//! number, which travels in a property (see `tests::payload`).
//!
//! Consumers: a group of three push consumers, all started, and the group `Stable` with 3
//! members owning all 8 queues, before the first message is sent. That is what makes "exactly
//! once" a fair check: a push consumer delivers at least once, and only a rebalance (a queue
//! changing owner mid-stream) or a crash replays messages. With the membership settled before
//! producing, and checked unchanged (same generation, still stable) at the end, neither
//! happened, so any duplicate is a bug.
//!
//! Checks: every acknowledged message is delivered exactly once, with an intact body, at the
//! queue and offset its receipt named; the group's total lag (`Admin::describe_group`) reaches
//! 0 once its commits land. After the broker stops, its logs are read back with `log-core`
//! to confirm the premise: every queue stores batches of all three codecs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use log_core::batch::split_batches;
use log_core::{Offset, PartitionLog};
use tests::broker::BrokerProcess;
use tests::payload::{self, NUMBER_PROPERTY};
use tests::wait::{self, client_config, REQUEST_TIMEOUT};
use wire::client::{
    Admin, Client, Compression, ConsumeFrom, ConsumeResult, Producer, ProducerConfig, PushConsumer,
    PushConsumerConfig, SendReceipt,
};
use wire::protocol::GroupState;
use wire::{Message, ReceivedMessage};

const TOPIC: &str = "firehose";
const GROUP: &str = "firehose-readers";
const QUEUES: u32 = 8;
const MESSAGES: usize = 100_000;
const BODY_BYTES_MAX: usize = 64 << 10;
const SIZE_SEED: u64 = 0x00C0_FFEE;
const CONSUMERS: usize = 3;
/// One producer per codec; message `n` goes through producer `n % 3`.
const CODECS: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::Zstd];
/// Receipts a producer task leaves unawaited before it awaits the oldest.
const RECEIPTS_IN_FLIGHT_MAX: usize = 2048;
/// Messages per listener call: fewer hand-offs to the blocking pool than one at a time.
const CONSUME_BATCH_SIZE: usize = 32;
/// Bytes per read when the logs are read back.
const READ_BYTES_MAX: usize = 16 << 20;
/// Problems kept for the failure message; more are counted, not kept.
const PROBLEMS_KEPT_MAX: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_of_three_consumes_every_message_exactly_once_and_intact() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let admin_client = Client::connect(client_config(&broker.address, "admin"))
        .await
        .expect("connect the admin client");
    let admin = Admin::new(&admin_client);
    admin
        .create_topic(TOPIC, QUEUES, Vec::new())
        .await
        .expect("create the topic");

    let sizes = Arc::new(payload::log_uniform_sizes(
        MESSAGES,
        BODY_BYTES_MAX,
        SIZE_SEED,
    ));
    let total_bytes: usize = sizes.iter().sum();
    let ledger = Arc::new(Ledger::new(sizes.clone()));
    let mut consumers = Vec::new();
    for index in 0..CONSUMERS {
        consumers.push(start_consumer(&broker.address, index, ledger.clone()).await);
    }
    let settled = wait::group_stable(&admin, GROUP, CONSUMERS, QUEUES as usize).await;
    eprintln!(
        "group stable in generation {} after {:?}; producing {MESSAGES} messages, {total_bytes} body bytes",
        settled.generation,
        started.elapsed()
    );

    let producing = Instant::now();
    let mut producers = Vec::new();
    for (index, codec) in CODECS.into_iter().enumerate() {
        let numbers: Vec<usize> = (index..MESSAGES).step_by(CODECS.len()).collect();
        producers.push(tokio::spawn(produce(
            broker.address.clone(),
            codec,
            numbers,
            sizes.clone(),
        )));
    }
    let mut receipts: Vec<Option<(u32, u64)>> = vec![None; MESSAGES];
    for producer in producers {
        for (number, receipt) in producer.await.expect("a producer task panicked") {
            assert_eq!(receipt.topic, TOPIC);
            receipts[number] = Some((receipt.queue, receipt.offset));
        }
    }
    assert!(
        receipts.iter().all(Option::is_some),
        "a send has no receipt"
    );
    eprintln!(
        "{MESSAGES} messages acknowledged in {:?}",
        producing.elapsed()
    );

    wait::until("every message to be delivered", || async {
        let delivered = ledger.distinct.load(Ordering::Acquire);
        if delivered == MESSAGES {
            Ok(())
        } else {
            Err(format!(
                "{delivered} of {MESSAGES} delivered; problems: {:?}",
                ledger.problems()
            ))
        }
    })
    .await;
    eprintln!(
        "every message delivered {:?} after the first send",
        producing.elapsed()
    );
    let caught_up = wait::group_caught_up(&admin, GROUP, QUEUES as usize).await;
    eprintln!("total lag 0 {:?} after the first send", producing.elapsed());
    let stored: u64 = caught_up.offsets.iter().map(|q| q.log_end_offset).sum();
    assert_eq!(
        stored, MESSAGES as u64,
        "the queues hold one record per send"
    );

    // Exactly once is only promised without a rebalance: check there was none.
    let after = admin
        .describe_group(GROUP)
        .await
        .expect("describe the group");
    assert_eq!(after.state, GroupState::Stable);
    assert_eq!(after.members.len(), CONSUMERS);
    assert_eq!(
        after.generation, settled.generation,
        "the group rebalanced during consumption; exactly once is not promised then"
    );

    let problems = ledger.problems();
    assert!(problems.is_empty(), "bad deliveries: {problems:?}");
    let placements = ledger.placements.lock().expect("placements lock").clone();
    for number in 0..MESSAGES {
        let count = ledger.counts[number].load(Ordering::Acquire);
        assert_eq!(count, 1, "message {number} was delivered {count} times");
        assert_eq!(
            placements[number], receipts[number],
            "message {number} was delivered at another queue/offset than its receipt named"
        );
    }

    for (consumer, client) in &consumers {
        wait::within("a consumer to shut down", consumer.shutdown()).await;
        // Closing the connection also ends the pull it left parked at the broker.
        client.close();
    }
    admin_client.close();
    eprintln!(
        "consumers shut down {:?} after the first send",
        producing.elapsed()
    );
    let status = broker.terminate();
    assert!(status.success(), "the broker exited with {status}");

    let logs = dir.path().join("logs");
    let codecs = tokio::task::spawn_blocking(move || codecs_on_disk(&logs))
        .await
        .expect("reading the logs back panicked");
    eprintln!("batches per queue (none, lz4, zstd): {codecs:?}");
    for (queue, counts) in codecs.iter().enumerate() {
        assert!(
            counts.iter().all(|&count| count > 0),
            "queue {queue} does not hold batches of all three codecs: {counts:?}"
        );
    }
    eprintln!("done in {:?}", started.elapsed());
}

/// Per queue of the topic, how many stored batches use no compression, lz4 and zstd.
fn codecs_on_disk(logs: &std::path::Path) -> Vec<[u64; 3]> {
    (0..QUEUES)
        .map(|queue| {
            let dir = logs.join(format!("{TOPIC}-{queue}"));
            let log = PartitionLog::open_read_only(&dir)
                .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
            let end = log.log_end_offset();
            let mut counts = [0u64; 3];
            let mut next = Offset(0);
            while next < end {
                let read = log
                    .read(next, READ_BYTES_MAX, end)
                    .unwrap_or_else(|e| panic!("read {} at {next:?}: {e}", dir.display()));
                for batch in split_batches(read.records) {
                    let batch = batch.expect("a stored batch");
                    let header = batch.header();
                    let codec = match header.compression() {
                        Compression::None => 0,
                        Compression::Lz4 => 1,
                        Compression::Zstd => 2,
                    };
                    counts[codec] += 1;
                    next = next.max(header.next_offset());
                }
            }
            counts
        })
        .collect()
}

/// What the consumers received, by message number.
#[derive(Debug)]
struct Ledger {
    sizes: Arc<Vec<usize>>,
    counts: Vec<AtomicU32>,
    /// Where each message was first delivered: (queue, offset).
    placements: Mutex<Vec<Option<(u32, u64)>>>,
    /// Messages delivered at least once.
    distinct: AtomicUsize,
    problems: Mutex<Vec<String>>,
    problems_seen: AtomicUsize,
}

impl Ledger {
    fn new(sizes: Arc<Vec<usize>>) -> Ledger {
        Ledger {
            counts: (0..sizes.len()).map(|_| AtomicU32::new(0)).collect(),
            placements: Mutex::new(vec![None; sizes.len()]),
            sizes,
            distinct: AtomicUsize::new(0),
            problems: Mutex::new(Vec::new()),
            problems_seen: AtomicUsize::new(0),
        }
    }

    fn record(&self, messages: &[ReceivedMessage]) {
        for message in messages {
            let at = (message.queue, message.offset);
            let number = message
                .property(NUMBER_PROPERTY)
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n < self.sizes.len());
            let Some(number) = number else {
                self.problem(format!("the message at {at:?} carries no valid number"));
                continue;
            };
            if !payload::body_matches(number as u64, self.sizes[number], &message.body) {
                self.problem(format!(
                    "message {number} at {at:?}: body of {} bytes is not the {} bytes sent",
                    message.body.len(),
                    self.sizes[number]
                ));
            }
            if self.counts[number].fetch_add(1, Ordering::AcqRel) == 0 {
                self.placements.lock().expect("placements lock")[number] = Some(at);
                self.distinct.fetch_add(1, Ordering::AcqRel);
            } else {
                let first = self.placements.lock().expect("placements lock")[number];
                self.problem(format!(
                    "message {number} delivered again at {at:?} (first at {first:?})"
                ));
            }
        }
    }

    fn problem(&self, problem: String) {
        if self.problems_seen.fetch_add(1, Ordering::AcqRel) < PROBLEMS_KEPT_MAX {
            self.problems.lock().expect("problems lock").push(problem);
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = self.problems.lock().expect("problems lock").clone();
        let seen = self.problems_seen.load(Ordering::Acquire);
        if seen > problems.len() {
            problems.push(format!("… {} problems in all", seen));
        }
        problems
    }
}

async fn start_consumer(
    address: &str,
    index: usize,
    ledger: Arc<Ledger>,
) -> (PushConsumer, Client) {
    let client = Client::connect(client_config(address, &format!("consumer-{index}")))
        .await
        .expect("connect a consumer client");
    let config = PushConsumerConfig {
        consume_batch_size: CONSUME_BATCH_SIZE,
        ..PushConsumerConfig::new(GROUP)
            .subscribe(TOPIC, "*")
            .consume_from(ConsumeFrom::First)
    };
    let consumer = PushConsumer::new(&client, config, move |messages| {
        ledger.record(messages);
        ConsumeResult::Success
    })
    .expect("create a push consumer");
    consumer.start().await.expect("start a push consumer");
    (consumer, client)
}

/// Sends `numbers` through one producer with `codec`, pipelined; returns each receipt.
async fn produce(
    address: String,
    codec: Compression,
    numbers: Vec<usize>,
    sizes: Arc<Vec<usize>>,
) -> Vec<(usize, SendReceipt)> {
    let client = Client::connect(client_config(&address, &format!("producer-{codec:?}")))
        .await
        .expect("connect a producer client");
    let config = ProducerConfig {
        compression: codec,
        request_timeout: REQUEST_TIMEOUT,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(&client, config).expect("create a producer");
    let mut pending = VecDeque::new();
    let mut receipts = Vec::with_capacity(numbers.len());
    for number in numbers {
        let body = payload::body(number as u64, sizes[number]);
        let message = Message::new(TOPIC, body).with_property(NUMBER_PROPERTY, number.to_string());
        let handle = producer
            .send_async(message)
            .await
            .unwrap_or_else(|e| panic!("queueing message {number} ({codec:?}) failed: {e}"));
        pending.push_back((number, handle));
        while pending.len() > RECEIPTS_IN_FLIGHT_MAX {
            receipts.push(await_receipt(&mut pending, codec).await);
        }
    }
    while !pending.is_empty() {
        receipts.push(await_receipt(&mut pending, codec).await);
    }
    wait::within("a producer to close", producer.close()).await;
    client.close();
    receipts
}

async fn await_receipt(
    pending: &mut VecDeque<(usize, wire::client::SendHandle)>,
    codec: Compression,
) -> (usize, SendReceipt) {
    let (number, handle) = pending.pop_front().expect("a pending send");
    let receipt = wait::within("a send receipt", handle)
        .await
        .unwrap_or_else(|e| panic!("sending message {number} ({codec:?}) failed: {e}"));
    (number, receipt)
}
