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
use std::sync::Arc;
use std::time::Instant;

use log_core::batch::split_batches;
use log_core::{Offset, PartitionLog};
use tests::broker::BrokerProcess;
use tests::ledger::{start_recording, Ledger};
use tests::payload::{self, NUMBER_PROPERTY};
use tests::wait::{self, client_config, REQUEST_TIMEOUT};
use wire::client::{
    Admin, Client, Compression, ConsumeFrom, Producer, ProducerConfig, PushConsumer,
    PushConsumerConfig, SendReceipt,
};
use wire::protocol::GroupState;
use wire::Message;

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
    let ledger = Arc::new(Ledger::new(sizes.to_vec()));
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
            assert_eq!(&*receipt.topic, TOPIC);
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
        ledger.delivered_all(0..MESSAGES)
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

    // Every message delivered once, intact, at the queue and offset its receipt named.
    let receipts: Vec<(usize, u32, u64)> = receipts
        .iter()
        .enumerate()
        .filter_map(|(number, r)| r.map(|(queue, offset)| (number, queue, offset)))
        .collect();
    let report = ledger.report(&receipts);
    assert!(
        report.problems.is_empty(),
        "bad deliveries: {:?}",
        report.problems
    );
    assert_eq!(report.lost_count, 0, "never delivered: {:?}", report.lost);
    assert_eq!(
        report.duplicates, 0,
        "{} messages were delivered more than once",
        report.redelivered
    );

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
    let consumer = start_recording(&client, config, ledger).await;
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
