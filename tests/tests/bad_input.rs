//! Bad input costs only the request, or at worst the connection, that carried it.
//!
//! Workload: one bad input per test, sent to a real broker while a bystander (a producer and a
//! pull consumer on connections of their own, opened before) uses it:
//!
//! - well-framed requests the broker refuses, through `Connection`: a send larger than
//!   `max_message_bytes` (MESSAGE_TOO_LARGE), to an unknown topic (UNKNOWN_TOPIC) or queue
//!   (UNKNOWN_QUEUE), of a batch that fails its CRC or is no batch at all (CORRUPT_BATCH);
//!   pulls from an unknown topic or queue;
//! - raw bytes on a TCP socket: garbage, a length prefix over `FRAME_BYTES_MAX`, a truncated
//!   frame then EOF (each: the connection is closed, nothing is answered), an unknown API key
//!   (UNSUPPORTED_API), a body that does not decode (MALFORMED_REQUEST) (each: answered, and
//!   the connection keeps serving).
//!
//! Checks, after every bad input: the documented answer; a refused send stored nothing; the
//! bystander still sends a message and consumes it; the broker process is still running.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use log_core::{BatchBuilder, Compression};
use tempfile::TempDir;
use tests::broker::BrokerProcess;
use tests::wait::{self, client_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wire::client::{
    Admin, Client, ConsumeFrom, Producer, ProducerConfig, PullConsumer, PullConsumerConfig,
    QueueRef,
};
use wire::codec::{self, Frame, FrameReader};
use wire::message::{MESSAGE_BODY_BYTES_MAX, MESSAGE_METADATA_BYTES_MAX};
use wire::protocol::{
    Acks, ApiKey, ApiVersionsRequest, PullRequest, Request, ResponseHeader, SendRequest,
    FRAME_BYTES_MAX,
};
use wire::{Connection, ConnectionConfig, ErrorCode, Message};

/// The bystander's topic (one queue).
const BYSTANDER: &str = "bystander";
/// The topic bad sends aim at (two queues, so queue 2 is unknown).
const TARGET: &str = "target";
const TARGET_QUEUES: u32 = 2;
/// The broker's default `max_message_bytes`.
const MAX_MESSAGE_BYTES: usize = semantics::config::MAX_MESSAGE_BYTES_DEFAULT as usize;
/// How long one poll of the bystander's consumer waits.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);

// ---- refused requests, well framed ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_larger_than_max_message_bytes_is_refused_message_too_large() {
    let mut setup = Setup::start().await;
    let connection = setup.connection().await;
    let oversize = batch_of(&vec![0x5a; MAX_MESSAGE_BYTES + 1]);
    let refused = connection.call(send_request(TARGET, 0, oversize)).await;
    expect_code(refused, ErrorCode::MessageTooLarge);
    setup.after("an oversize send", Some(&connection)).await;
}

/// The other side of the limit: the largest message the client accepts (a body of
/// `MESSAGE_BODY_BYTES_MAX`, metadata of `MESSAGE_METADATA_BYTES_MAX`, alone in its batch,
/// uncompressed) is stored and read back intact by a broker with default settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_message_the_client_accepts_is_stored_intact() {
    let mut setup = Setup::start().await;
    let client = Client::connect(client_config(&setup.broker.address, "largest"))
        .await
        .expect("connect");
    let producer = Producer::new(&client, ProducerConfig::default()).expect("producer");
    let body: Vec<u8> = (0..MESSAGE_BODY_BYTES_MAX)
        .map(|i| (i % 251) as u8)
        .collect();
    let tag = "t".repeat(1000);
    let value_bytes = MESSAGE_METADATA_BYTES_MAX - tag.len() - "p".len();
    let message = Message::new(TARGET, body.clone())
        .with_tag(tag)
        .with_property("p", "v".repeat(value_bytes));
    let largest = message.clone().with_key("k");
    assert!(
        largest.validate().is_err(),
        "one more byte of metadata is refused"
    );
    let receipt = wait::within("the largest send", producer.send(message))
        .await
        .expect("the largest valid message is accepted");

    let consumer = assigned_consumer(&client, TARGET, receipt.queue).await;
    let received = wait::within("the largest message to come back", async {
        loop {
            let polled = consumer.poll(POLL_TIMEOUT).await.expect("poll");
            if let Some(message) = polled.into_iter().find(|m| m.offset == receipt.offset) {
                return message;
            }
        }
    })
    .await;
    assert!(received.body == body, "the body came back changed");
    setup.after("the largest message", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_or_pull_for_an_unknown_topic_is_refused_unknown_topic() {
    let mut setup = Setup::start().await;
    let connection = setup.connection().await;
    let refused = connection
        .call(send_request("no-such-topic", 0, batch_of(b"lost")))
        .await;
    expect_code(refused, ErrorCode::UnknownTopic);
    let refused = connection.call(pull_request("no-such-topic", 0)).await;
    expect_code(refused, ErrorCode::UnknownTopic);
    setup.after("an unknown topic", Some(&connection)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_or_pull_for_an_unknown_queue_is_refused_unknown_queue() {
    let mut setup = Setup::start().await;
    let connection = setup.connection().await;
    let refused = connection
        .call(send_request(TARGET, TARGET_QUEUES, batch_of(b"lost")))
        .await;
    expect_code(refused, ErrorCode::UnknownQueue);
    let refused = connection.call(pull_request(TARGET, TARGET_QUEUES)).await;
    expect_code(refused, ErrorCode::UnknownQueue);
    setup.after("an unknown queue", Some(&connection)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_batch_is_refused_corrupt_batch_and_nothing_is_stored() {
    // Three kinds: a CRC that does not match, bytes that are no batch, and a batch whose CRC
    // matches but whose records are fewer than its header says.
    let mut setup = Setup::start().await;
    let connection = setup.connection().await;
    let good = batch_of(b"a record whose last byte flips");
    let mut flipped = BytesMut::from(&good[..]);
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    let refused = connection
        .call(send_request(TARGET, 0, flipped.freeze()))
        .await;
    expect_code(refused, ErrorCode::CorruptBatch);
    let not_a_batch = Bytes::from_static(b"this is not a record batch at all, just text");
    let refused = connection.call(send_request(TARGET, 1, not_a_batch)).await;
    expect_code(refused, ErrorCode::CorruptBatch);
    // A correct CRC over a header that claims 1000 records and holds one: stored, it would
    // fail every consumer of the queue.
    let mut lying = BytesMut::from(&batch_of(b"one record, 1000 claimed")[..]);
    lying[23..27].copy_from_slice(&999i32.to_be_bytes());
    lying[57..61].copy_from_slice(&1000i32.to_be_bytes());
    let crc = crc32c::crc32c(&lying[21..]);
    lying[17..21].copy_from_slice(&crc.to_be_bytes());
    let refused = connection
        .call(send_request(TARGET, 0, lying.freeze()))
        .await;
    expect_code(refused, ErrorCode::CorruptBatch);
    let stored = setup
        .admin()
        .describe_topic(TARGET)
        .await
        .expect("describe");
    for queue in &stored.queues {
        assert_eq!(
            queue.log_end_offset, 0,
            "queue {} stored a refused batch",
            queue.queue
        );
    }
    setup.after("a corrupt batch", Some(&connection)).await;
}

// ---- raw bytes ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_that_connection_without_an_answer() {
    let mut setup = Setup::start().await;
    let mut http = RawSocket::connect(&setup.broker.address).await;
    // "GET " read as a length prefix is about 1.2 GB: over the frame limit.
    http.write(b"GET /metrics HTTP/1.1\r\nHost: runnel\r\n\r\n")
        .await;
    http.expect_closed("an HTTP request").await;
    let mut unknown_kind = RawSocket::connect(&setup.broker.address).await;
    unknown_kind.write(&[0, 0, 0, 5, 0x7f, 1, 2, 3, 4]).await;
    unknown_kind.expect_closed("a frame of unknown kind").await;
    setup.after("garbage bytes", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_prefix_beyond_frame_bytes_max_closes_the_connection() {
    let mut setup = Setup::start().await;
    for length in [FRAME_BYTES_MAX as u32 + 1, u32::MAX] {
        let mut raw = RawSocket::connect(&setup.broker.address).await;
        raw.write(&length.to_be_bytes()).await;
        raw.expect_closed("an oversize length prefix").await;
    }
    setup.after("an oversize length prefix", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_frame_then_eof_is_dropped_without_an_answer() {
    let mut setup = Setup::start().await;
    let mut raw = RawSocket::connect(&setup.broker.address).await;
    let whole = api_versions_frame(7);
    raw.write(&whole[..whole.len() - 3]).await;
    raw.stream.shutdown().await.expect("close the sending side");
    raw.expect_closed("a truncated frame then EOF").await;
    setup.after("a truncated frame", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_api_key_is_answered_unsupported_api_and_the_connection_stays_usable() {
    let mut setup = Setup::start().await;
    let mut raw = RawSocket::connect(&setup.broker.address).await;
    raw.write(&raw_request(4242, 0, 11, b"whatever")).await;
    let header = raw.expect_response("an unknown API").await;
    assert_eq!(header.correlation_id, 11);
    assert_eq!(header.error_code, ErrorCode::UnsupportedApi);
    raw.expect_still_served(12).await;
    setup.after("an unknown API key", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_body_is_answered_malformed_request_and_the_connection_stays_usable() {
    let mut setup = Setup::start().await;
    let mut raw = RawSocket::connect(&setup.broker.address).await;
    let bodies: [&[u8]; 3] = [
        b"\x00",                   // a Send body cut short in its topic name
        &[0xff, 0xff, 0xff, 0xff], // a topic name longer than NAME_BYTES_MAX
        // Every field present, but acks 9, which no Acks variant has.
        b"\x00\x06target\x00\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00\x00",
    ];
    for (case, body) in bodies.iter().enumerate() {
        let correlation_id = 100 + case as u32;
        raw.write(&raw_request(ApiKey::Send.as_u16(), 0, correlation_id, body))
            .await;
        let header = raw.expect_response("a malformed body").await;
        assert_eq!(header.correlation_id, correlation_id);
        assert_eq!(
            header.error_code,
            ErrorCode::MalformedRequest,
            "case {case}"
        );
        assert!(!header.error_message.is_empty(), "the refusal says why");
    }
    raw.expect_still_served(200).await;
    let stored = setup
        .admin()
        .describe_topic(TARGET)
        .await
        .expect("describe");
    assert!(stored.queues.iter().all(|q| q.log_end_offset == 0));
    setup.after("a malformed body", None).await;
}

// ---- the setup and the bystander ----

/// A broker with the target topic, and a bystander using it.
struct Setup {
    _dir: TempDir,
    broker: BrokerProcess,
    bystander: Bystander,
}

impl Setup {
    async fn start() -> Setup {
        tests::init_client_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = BrokerProcess::start(dir.path(), &[]);
        let bystander = Bystander::join(&broker.address).await;
        bystander
            .admin()
            .create_topic(TARGET, TARGET_QUEUES, Vec::new())
            .await
            .expect("create the target topic");
        Setup {
            _dir: dir,
            broker,
            bystander,
        }
    }

    fn admin(&self) -> Admin {
        self.bystander.admin()
    }

    /// A connection of its own for the bad requests.
    async fn connection(&self) -> Connection {
        Connection::connect(&self.broker.address, ConnectionConfig::default())
            .await
            .expect("connect")
    }

    /// After a bad input: the connection that carried a refused request (if any) still
    /// serves, the bystander still sends and consumes, and the broker still runs.
    async fn after(&mut self, bad_input: &str, connection: Option<&Connection>) {
        if let Some(connection) = connection {
            let versions = connection.call(ApiVersionsRequest {}).await;
            assert!(
                versions.is_ok(),
                "the connection stopped serving after {bad_input}: {versions:?}"
            );
        }
        self.bystander.round_trip(bad_input).await;
        assert!(
            self.broker.is_running(),
            "the broker process exited after {bad_input}"
        );
    }
}

/// A producer and a consumer, each on a connection of its own made before the bad input.
struct Bystander {
    producer_client: Client,
    producer: Producer,
    consumer: PullConsumer,
    sent: usize,
}

impl Bystander {
    async fn join(address: &str) -> Bystander {
        let producer_client = Client::connect(client_config(address, "bystander-producer"))
            .await
            .expect("connect the bystander's producer");
        Admin::new(&producer_client)
            .create_topic(BYSTANDER, 1, Vec::new())
            .await
            .expect("create the bystander topic");
        let producer =
            Producer::new(&producer_client, ProducerConfig::default()).expect("producer");
        let consumer_client = Client::connect(client_config(address, "bystander-consumer"))
            .await
            .expect("connect the bystander's consumer");
        let consumer = assigned_consumer(&consumer_client, BYSTANDER, 0).await;
        let mut bystander = Bystander {
            producer_client,
            producer,
            consumer,
            sent: 0,
        };
        bystander.round_trip("joining").await;
        bystander
    }

    fn admin(&self) -> Admin {
        Admin::new(&self.producer_client)
    }

    /// Sends one message and polls until it comes back.
    async fn round_trip(&mut self, after: &str) {
        self.sent += 1;
        let body = format!("bystander message {} (after {after})", self.sent);
        let send = self.producer.send(Message::new(BYSTANDER, body.clone()));
        let receipt = wait::within("the bystander's send", send)
            .await
            .unwrap_or_else(|e| panic!("the bystander could not send after {after}: {e}"));
        let what = format!("the bystander to consume its message after {after}");
        wait::within(&what, async {
            loop {
                let polled =
                    self.consumer.poll(POLL_TIMEOUT).await.unwrap_or_else(|e| {
                        panic!("the bystander could not poll after {after}: {e}")
                    });
                if let Some(message) = polled.iter().find(|m| m.offset == receipt.offset) {
                    assert_eq!(message.body, body.as_bytes());
                    return;
                }
            }
        })
        .await;
    }
}

/// A pull consumer outside any group, assigned `topic`'s `queue` from its first offset.
async fn assigned_consumer(client: &Client, topic: &str, queue: u32) -> PullConsumer {
    let config = PullConsumerConfig {
        consume_from: ConsumeFrom::First,
        auto_commit_interval: None,
        pull_wait: POLL_TIMEOUT,
        ..PullConsumerConfig::new("")
    };
    let consumer = PullConsumer::new(client, config).expect("pull consumer");
    let queue = QueueRef {
        topic: topic.to_owned(),
        queue,
    };
    consumer.assign(vec![queue]).await.expect("assign");
    consumer
}

// ---- requests and frames ----

/// One record batch holding one record with `value`.
fn batch_of(value: &[u8]) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    builder.append(0, None, Some(value), &[]);
    builder.build().expect("build a batch").freeze()
}

fn send_request(topic: &str, queue: u32, batches: Bytes) -> SendRequest {
    SendRequest {
        topic: topic.to_owned(),
        queue,
        acks: Acks::Leader,
        timeout_ms: 0,
        batches,
    }
}

fn pull_request(topic: &str, queue: u32) -> PullRequest {
    PullRequest {
        topic: topic.to_owned(),
        queue,
        offset: 0,
        max_bytes: 1 << 20,
        max_wait_ms: 0,
    }
}

fn expect_code<T: std::fmt::Debug>(result: wire::Result<T>, code: ErrorCode) {
    match result {
        Err(error) => assert_eq!(error.code(), Some(code), "refused with {error}"),
        Ok(answer) => panic!("expected {code}, the broker answered {answer:?}"),
    }
}

/// A request frame built by hand: any API key and version, any body bytes.
fn raw_request(api_key: u16, api_version: u16, correlation_id: u32, body: &[u8]) -> Vec<u8> {
    let client_id = b"raw";
    let mut frame = vec![0; 4];
    frame.push(0); // frame kind: request
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&api_version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.push(0); // flags
    frame.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    frame.extend_from_slice(client_id);
    frame.extend_from_slice(body);
    let length = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    frame
}

/// A well-formed `ApiVersions` request frame, encoded by the codec.
fn api_versions_frame(correlation_id: u32) -> Bytes {
    let request = Request::ApiVersions(ApiVersionsRequest {});
    tests::raw::request_frame(&request, correlation_id, "raw")
}

/// A plain TCP socket to the broker, reading frames with the protocol's own frame reader.
struct RawSocket {
    stream: TcpStream,
    frames: FrameReader,
}

impl RawSocket {
    async fn connect(address: &str) -> RawSocket {
        RawSocket {
            stream: TcpStream::connect(address).await.expect("connect"),
            frames: FrameReader::new(true),
        }
    }

    /// Writes `bytes`; a broker that already closed the socket may make this fail, which
    /// the reads after it report.
    async fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next frame, or `None` once the broker closed the connection.
    async fn next_frame(&mut self) -> Option<Frame> {
        let reading = async {
            loop {
                if let Some(frame) = self.frames.next_frame().expect("a frame from the broker") {
                    return Some(codec::decode_frame(frame).expect("a decodable frame"));
                }
                match self.stream.read_buf(self.frames.read_buffer()).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        wait::within("the broker to answer or close", reading).await
    }

    async fn expect_closed(&mut self, after: &str) {
        if let Some(frame) = self.next_frame().await {
            panic!("after {after} the broker answered {frame:?} instead of closing");
        }
    }

    async fn expect_response(&mut self, after: &str) -> ResponseHeader {
        match self.next_frame().await {
            Some(Frame::Response { header, .. }) => header,
            other => panic!("after {after} the broker sent {other:?}, not a response"),
        }
    }

    /// A well-formed request on this socket is answered successfully.
    async fn expect_still_served(&mut self, correlation_id: u32) {
        let frame = api_versions_frame(correlation_id);
        self.write(&frame).await;
        let header = self.expect_response("a well-formed request").await;
        assert_eq!(header.correlation_id, correlation_id);
        assert_eq!(
            header.error_code,
            ErrorCode::None,
            "{}",
            header.error_message
        );
    }
}
