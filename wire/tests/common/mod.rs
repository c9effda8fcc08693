//! Shared by the network tests: a small `Service` of the tests' own, a server started on
//! loopback, a client `InboundHandler`, a raw-frame client for bytes no well-behaved client
//! would send, and a wait-for-an-event helper (no sleeps).

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify, Semaphore};
use tokio::task::JoinHandle;
use wire::codec::{self, Frame, FrameReader};
use wire::protocol::*;
use wire::server::{Server, ServerConfig};
use wire::{ErrorCode, InboundHandler, RequestContext, Service, ServiceError};

/// How long a test waits for something that must happen before it fails loudly.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A log of events with a way to await one.
#[derive(Debug, Default)]
pub struct Events {
    log: Mutex<Vec<String>>,
    changed: Notify,
}

impl Events {
    pub fn record(&self, event: impl Into<String>) {
        self.log.lock().push(event.into());
        self.changed.notify_waiters();
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.log.lock().clone()
    }

    /// Waits until `condition` holds over the log; panics after `EVENT_TIMEOUT`.
    pub async fn wait_until(&self, what: &str, condition: impl Fn(&[String]) -> bool) {
        let waiting = async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if condition(&self.log.lock()) {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(EVENT_TIMEOUT, waiting).await.is_err() {
            panic!(
                "timed out waiting for {what}; events: {:?}",
                self.snapshot()
            );
        }
    }
}

/// The tests' service. `Send` answers with facts about the batches it got; `Pull` answers
/// with a pattern derived from the offset, and with `max_wait_ms > 0` first waits for the
/// gate; `DescribeTopic` names trigger peer actions ("notify:<group>", "call:<topic>") or
/// failures ("fail", "wrong-kind").
#[derive(Debug)]
pub struct TestService {
    pub events: Arc<Events>,
    pub gate: Arc<Semaphore>,
}

impl Default for TestService {
    fn default() -> TestService {
        TestService {
            events: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }
}

/// The bytes a `Pull` at `offset` answers with.
pub fn pull_pattern(offset: u64) -> Bytes {
    let length = (offset as usize * 37) % 20_000;
    Bytes::from(
        (0..length)
            .map(|i| (i as u64 ^ offset) as u8)
            .collect::<Vec<_>>(),
    )
}

impl Service for TestService {
    fn call(
        &self,
        context: RequestContext,
        request: Request,
    ) -> impl Future<Output = Result<Response, ServiceError>> + Send + 'static {
        let events = Arc::clone(&self.events);
        let gate = Arc::clone(&self.gate);
        match &request {
            Request::Send(send) => events.record(format!("send {} {}", send.topic, send.queue)),
            Request::Pull(pull) => events.record(format!("pull {}", pull.offset)),
            other => events.record(format!("{:?}", other.api_key())),
        }
        async move {
            match request {
                Request::ApiVersions(_) => Ok(Response::ApiVersions(ApiVersionsResponse {
                    broker_id: 1,
                    server_version: "test".into(),
                    apis: vec![],
                })),
                Request::Send(send) => Ok(Response::Send(SendResponse {
                    base_offset: send.batches.len() as u64,
                    last_offset: send.batches.iter().map(|b| u64::from(*b)).sum(),
                    log_start_offset: u64::from(send.queue),
                    store_timestamp: 0,
                })),
                Request::Pull(pull) => {
                    if pull.max_wait_ms > 0 {
                        gate.acquire().await.expect("gate closed").forget();
                        events.record(format!("pull {} done", pull.offset));
                    }
                    Ok(Response::Pull(PullResponse {
                        log_start_offset: pull.offset,
                        log_end_offset: pull.offset + 1,
                        batches: pull_pattern(pull.offset),
                    }))
                }
                Request::DescribeTopic(describe) => describe_topic(context, describe.name).await,
                other => Err(ServiceError::new(
                    ErrorCode::InvalidArgument,
                    format!("the test service does not serve {:?}", other.api_key()),
                )),
            }
        }
    }

    fn disconnected(&self, connection_id: u64) {
        self.events.record(format!("disconnected {connection_id}"));
    }
}

async fn describe_topic(context: RequestContext, name: String) -> Result<Response, ServiceError> {
    let description = |name: String| {
        Response::DescribeTopic(TopicDescription {
            name,
            internal: false,
            config: vec![],
            queues: vec![],
        })
    };
    if let Some(group) = name.strip_prefix("notify:") {
        let notified = context.peer.notify(NotifyAssignmentRequest {
            group: group.to_owned(),
            generation: 7,
        });
        return Ok(description(format!("notified: {}", notified.is_ok())));
    }
    if let Some(topic) = name.strip_prefix("call:") {
        let request = QueryRouteRequest {
            topic: topic.to_owned(),
        };
        return match context.peer.call(request, EVENT_TIMEOUT).await {
            Ok(route) => Ok(description(route.brokers[0].address.clone())),
            Err(error) => Ok(description(format!("peer call failed: {:?}", error.code()))),
        };
    }
    match name.as_str() {
        "fail" => Err(ServiceError::new(ErrorCode::UnknownTopic, "no such topic")),
        "panic" => panic!("the test service panics on request"),
        "wrong-kind" => Ok(Response::Empty),
        _ => Ok(description(name)),
    }
}

/// A server on a loopback port, serving a `TestService` until `shutdown` or drop.
pub struct TestServer {
    pub address: SocketAddr,
    pub service: Arc<TestService>,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> TestServer {
        let server = Server::bind("127.0.0.1:0", config).await.expect("bind");
        let address = server.local_addr();
        let service = Arc::new(TestService::default());
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(Arc::clone(&service), async move {
            let _ = signal.await;
        }));
        TestServer {
            address,
            service,
            shutdown: Some(shutdown),
            task,
        }
    }

    pub fn events(&self) -> &Events {
        &self.service.events
    }

    /// Signals shutdown; `serve` then winds down.
    pub fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client handler recording what the broker sends, and answering `QueryRoute` with
/// "answer:<topic>" as the first broker's address.
#[derive(Debug, Default)]
pub struct RecordingHandler {
    pub events: Events,
}

impl InboundHandler for RecordingHandler {
    fn handle(
        &self,
        request: Request,
    ) -> Pin<Box<dyn Future<Output = Result<Response, ServiceError>> + Send>> {
        self.events.record(format!("{request:?}"));
        Box::pin(async move {
            match request {
                Request::NotifyAssignment(_) => Ok(Response::Empty),
                Request::QueryRoute(route) => Ok(Response::QueryRoute(QueryRouteResponse {
                    brokers: vec![BrokerAddress {
                        broker_id: 1,
                        address: format!("answer:{}", route.topic),
                    }],
                    queues: vec![],
                })),
                _ => Err(ServiceError::new(ErrorCode::UnsupportedApi, "not here")),
            }
        })
    }
}

/// A client speaking raw frames, for input a `Connection` would never produce.
pub struct RawClient {
    stream: TcpStream,
    frames: FrameReader,
}

impl RawClient {
    pub async fn connect(address: SocketAddr) -> RawClient {
        RawClient {
            stream: TcpStream::connect(address).await.expect("connect"),
            frames: FrameReader::new(true),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next frame, or `None` once the server closed the connection.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        let reading = async {
            loop {
                if let Some(frame) = self.frames.next_frame().expect("a valid frame") {
                    return Some(codec::decode_frame(frame).expect("a decodable frame"));
                }
                match self.stream.read_buf(self.frames.read_buffer()).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(EVENT_TIMEOUT, reading)
            .await
            .expect("no frame and no close in time")
    }

    /// The next frame, which must be a response; returns its header.
    pub async fn next_response(&mut self) -> ResponseHeader {
        match self.next_frame().await {
            Some(Frame::Response { header, .. }) => header,
            other => panic!("expected a response, got {other:?}"),
        }
    }
}

/// A request frame as bytes, length prefix included.
pub fn request_bytes(request: &Request, correlation_id: u32, flags: u8) -> Vec<u8> {
    let header = RequestHeader {
        api_key: request.api_key().as_u16(),
        api_version: 0,
        correlation_id,
        flags,
        client_id: "raw".into(),
    };
    codec::encode_request(&header, request)
        .expect("encodable")
        .to_bytes()
        .to_vec()
}

/// A request frame with any header fields and body bytes, length prefix included.
pub fn raw_request_bytes(
    api_key: u16,
    api_version: u16,
    correlation_id: u32,
    flags: u8,
    body: &[u8],
) -> Vec<u8> {
    let mut frame = vec![FrameKind::Request as u8];
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&api_version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&3u16.to_be_bytes());
    frame.extend_from_slice(b"raw");
    frame.extend_from_slice(body);
    let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    bytes
}

pub fn api_versions() -> ApiVersionsRequest {
    ApiVersionsRequest {}
}
