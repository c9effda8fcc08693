//! A consumer waiting on an empty queue gets a new message as soon as it is appended: the
//! waiting pull itself returns with it, instead of expiring and being followed by another.
//!
//! Workload: a topic with one empty queue; a pull waiting on it (a raw `Pull` with
//! `max_wait_ms` 30 000 through `Connection`, or a `PushConsumer` with a 30 s long poll);
//! one message sent once the broker reports the pull parked (`runnel_long_polls_waiting`).
//!
//! Checks, on events rather than times: the raw pull's one response carries the message (a
//! wait that expired would have answered with no batches); the push consumer delivers the
//! message, and exactly one pull completed at the broker between the send and the delivery
//! (`runnel_request_duration_seconds_count{api="pull"}`), so the parked pull carried it (an
//! expired wait would have completed empty and needed a second pull).

use std::time::Duration;

use log_core::batch::split_batches;
use tests::broker::{scrape_metric, BrokerProcess};
use tests::wait::{self, client_config};
use tests::AWAIT_TIMEOUT;
use wire::client::{
    Admin, Client, ConsumeFrom, ConsumeResult, Producer, ProducerConfig, PushConsumer,
    PushConsumerConfig,
};
use wire::protocol::PullRequest;
use wire::{Connection, ConnectionConfig, Message};

const TOPIC: &str = "quiet";
/// The long-poll wait both consumers ask for.
const LONG_POLL: Duration = Duration::from_secs(30);
const WAITING_POLLS: &str = "runnel_long_polls_waiting";
const COMPLETED_PULLS: &str = "runnel_request_duration_seconds_count{api=\"pull\"}";
/// Queue capacity for deliveries handed from the listener to the test.
const DELIVERIES_BUFFERED: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_pull_parked_on_an_empty_queue_returns_with_the_new_message() {
    tests::init_client_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let client = create_topic(&broker).await;
    let metrics = broker.admin_address.clone().expect("a metrics address");

    let connection = Connection::connect(&broker.address, ConnectionConfig::default())
        .await
        .expect("connect");
    let request = PullRequest {
        topic: TOPIC.to_owned(),
        queue: 0,
        offset: 0,
        max_bytes: 1 << 20,
        max_wait_ms: LONG_POLL.as_millis() as u32,
    };
    let pulling =
        tokio::spawn(async move { connection.call_timeout(request, AWAIT_TIMEOUT).await });
    await_parked_pulls(&metrics, 1).await;

    let receipt = send(&client, "wake up").await;
    let response = wait::within("the parked pull to answer", pulling)
        .await
        .expect("the pull task panicked")
        .expect("the pull failed");
    assert!(
        !response.batches.is_empty(),
        "the parked pull answered with no batches: its wait expired rather than ending with the append"
    );
    assert_eq!(response.log_end_offset, 1);
    let batch = split_batches(response.batches)
        .next()
        .expect("a batch")
        .expect("a valid batch");
    let record = batch
        .records()
        .expect("records")
        .next()
        .expect("a record")
        .expect("a valid record");
    assert_eq!(record.offset.0, receipt);
    assert_eq!(record.value.as_deref(), Some(&b"wake up"[..]));
    client.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_consumer_waiting_on_an_empty_queue_gets_the_message_from_its_parked_pull() {
    tests::init_client_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let client = create_topic(&broker).await;
    let metrics = broker.admin_address.clone().expect("a metrics address");

    let (delivered, mut deliveries) = tokio::sync::mpsc::channel(DELIVERIES_BUFFERED);
    let config = PushConsumerConfig {
        pull_wait: LONG_POLL,
        ..PushConsumerConfig::new("listeners")
            .subscribe(TOPIC, "*")
            .consume_from(ConsumeFrom::First)
    };
    let consumer = PushConsumer::with_async_listener(&client, config, move |messages| {
        let delivered = delivered.clone();
        async move {
            for message in messages.iter() {
                let _ = delivered.send(message.clone()).await;
            }
            ConsumeResult::Success
        }
    })
    .expect("create a push consumer");
    consumer.start().await.expect("start the push consumer");
    await_parked_pulls(&metrics, 1).await;
    let completed_before = scrape_metric(&metrics, COMPLETED_PULLS)
        .await
        .unwrap_or(0.0);

    let offset = send(&client, "wake up").await;
    let message = wait::within("the push consumer to deliver", deliveries.recv())
        .await
        .expect("the listener channel closed");
    assert_eq!(message.body, &b"wake up"[..]);
    assert_eq!(message.offset, offset);
    let completed_after = scrape_metric(&metrics, COMPLETED_PULLS)
        .await
        .unwrap_or(0.0);
    assert_eq!(
        completed_after - completed_before,
        1.0,
        "pulls completed between the send and the delivery: one means the parked pull carried \
         the message; more means its wait expired (or failed) and another pull fetched it"
    );

    wait::within("the consumer to shut down", consumer.shutdown()).await;
    client.close();
}

async fn create_topic(broker: &BrokerProcess) -> Client {
    let client = Client::connect(client_config(&broker.address, "long-poll"))
        .await
        .expect("connect");
    Admin::new(&client)
        .create_topic(TOPIC, 1, Vec::new())
        .await
        .expect("create the topic");
    client
}

/// Waits until the broker reports `count` pulls parked, waiting for an append.
async fn await_parked_pulls(metrics: &str, count: u32) {
    let what = format!("{count} pulls to be parked at the broker");
    wait::until(&what, || async {
        match scrape_metric(metrics, WAITING_POLLS).await {
            Some(waiting) if waiting == f64::from(count) => Ok(()),
            other => Err(format!("{WAITING_POLLS} = {other:?}")),
        }
    })
    .await;
}

/// Sends one message and returns its offset.
async fn send(client: &Client, body: &'static str) -> u64 {
    let producer = Producer::new(client, ProducerConfig::default()).expect("producer");
    let receipt = wait::within("a send", producer.send(Message::new(TOPIC, body)))
        .await
        .expect("send");
    producer.close().await;
    receipt.offset
}

/// SIGTERM while a pull is parked: the pull is answered (empty, the queue has nothing new)
/// rather than cut off when the connection closes, and the broker exits cleanly. Without the
/// broker ending long polls at the signal, the server's drain would wait the pull out and
/// then abandon it, and the client would see the connection close instead of an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_a_parked_pull_before_closing() {
    tests::init_client_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let client = create_topic(&broker).await;
    let metrics = broker.admin_address.clone().expect("a metrics address");
    let connection = Connection::connect(&broker.address, ConnectionConfig::default())
        .await
        .expect("connect");
    let request = PullRequest {
        topic: TOPIC.to_owned(),
        queue: 0,
        offset: 0,
        max_bytes: 1 << 20,
        max_wait_ms: 60_000,
    };
    let pulling =
        tokio::spawn(async move { connection.call_timeout(request, AWAIT_TIMEOUT).await });
    await_parked_pulls(&metrics, 1).await;
    client.close();

    let status = tokio::task::spawn_blocking(move || broker.terminate())
        .await
        .expect("terminate");
    assert!(status.success(), "the broker exited with {status}");
    let response = wait::within("the parked pull to answer", pulling)
        .await
        .expect("the pull task panicked")
        .expect("the parked pull was cut off instead of answered");
    assert!(response.batches.is_empty());
}
