//! The broker bounds the memory pulls hold: a client that pipelines large pulls and does not
//! read its socket makes later pulls wait, instead of making the broker hold every response.
//!
//! Workload: a broker whose config file sets `pull_memory_bytes` to 32 MiB; a queue holding
//! 17 MiB; a raw TCP client that writes three pulls of 16 MiB (`max_wait_ms` 30 s) at once and
//! reads nothing. The first response cannot leave (socket buffers hold a few MiB), the second
//! waits behind it, and the third must wait for budget.
//!
//! Checks, on events: the broker reports 32 MiB held and one pull waiting
//! (`runnel_pull_memory_held_bytes`, `runnel_pulls_waiting_for_memory`); a pull from another
//! client that asks not to wait is answered `Busy`; once the stuck client reads, all three
//! pulls are answered in full, and the budget is free again.

use bytes::Bytes;
use log_core::batch::split_batches;
use tests::broker::{scrape_metric, BrokerProcess};
use tests::wait::{self, client_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wire::client::{Admin, Client, Producer, ProducerConfig};
use wire::codec::{self, Frame, FrameReader};
use wire::protocol::{ApiKey, PullRequest, Request, Response};
use wire::{Connection, ConnectionConfig, ErrorCode, Message};

const TOPIC: &str = "large";
const BUDGET: u64 = 32 << 20;
const PULL_BYTES: u32 = 16 << 20;
const MESSAGE_BYTES: usize = 1 << 20;
const MESSAGES: usize = 17;
const HELD: &str = "runnel_pull_memory_held_bytes";
const WAITING: &str = "runnel_pulls_waiting_for_memory";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_past_the_memory_budget_wait_until_earlier_responses_are_written() {
    tests::init_client_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("broker.toml");
    std::fs::write(&config, format!("pull_memory_bytes = {BUDGET}\n")).expect("write config");
    let config = config.to_str().expect("a UTF-8 path");
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--config", config]);
    let metrics = broker.admin_address.clone().expect("a metrics address");
    fill_queue(&broker.address).await;

    let mut socket = TcpStream::connect(&broker.address).await.expect("connect");
    let mut requests = Vec::new();
    for correlation_id in 1..=3 {
        requests.extend_from_slice(&pull_frame(correlation_id));
    }
    socket.write_all(&requests).await.expect("write the pulls");

    wait::until(
        "two pulls holding the budget and a third waiting",
        || async {
            let held = scrape_metric(&metrics, HELD).await;
            let waiting = scrape_metric(&metrics, WAITING).await;
            if held == Some(BUDGET as f64) && waiting == Some(1.0) {
                Ok(())
            } else {
                Err(format!("{HELD} = {held:?}, {WAITING} = {waiting:?}"))
            }
        },
    )
    .await;

    // Meanwhile another consumer that asks not to wait is told to come back later.
    let other = Connection::connect(&broker.address, ConnectionConfig::default())
        .await
        .expect("connect");
    let mut request = pull_request();
    request.max_wait_ms = 0;
    match wait::within("the other pull to be answered", other.call(request)).await {
        Err(error) => assert_eq!(error.code(), Some(ErrorCode::Busy), "{error}"),
        Ok(response) => panic!("the budget was exhausted, yet a pull was served: {response:?}"),
    }
    other.close();

    let mut frames = FrameReader::new(true);
    let mut answered = Vec::new();
    while answered.len() < 3 {
        let frame = wait::within("the pulls to be answered", async {
            loop {
                if let Some(frame) = frames.next_frame().expect("a frame") {
                    return frame;
                }
                let read = socket.read_buf(frames.read_buffer()).await.expect("read");
                assert_ne!(read, 0, "the broker closed the connection");
            }
        })
        .await;
        let Frame::Response { header, body } = codec::decode_frame(frame).expect("decode") else {
            panic!("expected a response");
        };
        assert_eq!(
            header.error_code,
            ErrorCode::None,
            "{}",
            header.error_message
        );
        let Response::Pull(pull) = codec::decode_response(ApiKey::Pull, 0, body).expect("body")
        else {
            panic!("expected a pull response");
        };
        answered.push((header.correlation_id, batch_bytes(pull.batches)));
    }
    answered.sort_unstable();
    for (index, (correlation_id, bytes)) in answered.iter().enumerate() {
        assert_eq!(*correlation_id, index as u32 + 1);
        assert!(
            *bytes >= 15 * MESSAGE_BYTES,
            "pull {correlation_id} carried {bytes} bytes of whole batches"
        );
    }
    wait::until("the budget to be free again", || async {
        let held = scrape_metric(&metrics, HELD).await;
        if held == Some(0.0) {
            Ok(())
        } else {
            Err(format!("{HELD} = {held:?}"))
        }
    })
    .await;
}

/// Creates the topic and sends `MESSAGES` incompressible messages of `MESSAGE_BYTES`.
async fn fill_queue(address: &str) {
    let client = Client::new(client_config(address, "filler")).expect("client");
    Admin::new(&client)
        .create_topic(TOPIC, 1, Vec::new())
        .await
        .expect("create the topic");
    let producer = Producer::new(&client, ProducerConfig::default()).expect("producer");
    for n in 0..MESSAGES {
        let body: Vec<u8> = (0..MESSAGE_BYTES)
            .map(|i| {
                (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(n as u32) as u8
            })
            .collect();
        wait::within("a send", producer.send(Message::new(TOPIC, body)))
            .await
            .expect("send");
    }
    producer.close().await;
    client.close();
}

fn pull_request() -> PullRequest {
    PullRequest {
        topic: TOPIC.to_owned(),
        queue: 0,
        offset: 0,
        max_bytes: PULL_BYTES,
        // Long enough that the third pull waits for budget rather than being answered Busy.
        max_wait_ms: 30_000,
    }
}

fn pull_frame(correlation_id: u32) -> Bytes {
    tests::raw::request_frame(&Request::Pull(pull_request()), correlation_id, "no-reader")
}

/// Bytes of the whole, valid batches in a pull response.
fn batch_bytes(batches: Bytes) -> usize {
    split_batches(batches)
        .map(|batch| batch.expect("a valid batch").bytes().len())
        .sum()
}
