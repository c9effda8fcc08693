//! Requests from the server to the client over the client's own connection: `Peer::notify`
//! (one-way) and `Peer::call` reach the client's `InboundHandler`; one-way requests are never
//! answered; `Service::disconnected` runs when a client goes.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use wire::codec::Frame;
use wire::protocol::*;
use wire::server::ServerConfig;
use wire::{Connection, ConnectionConfig, ErrorCode};

async fn connect_with_handler(server: &TestServer) -> (Connection, Arc<RecordingHandler>) {
    let handler = Arc::new(RecordingHandler::default());
    let config = ConnectionConfig {
        handler: Some(handler.clone()),
        ..ConnectionConfig::default()
    };
    let connection = Connection::connect(&server.address.to_string(), config)
        .await
        .unwrap();
    (connection, handler)
}

fn describe(name: &str) -> DescribeTopicRequest {
    DescribeTopicRequest { name: name.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_notify_reaches_the_client_handler() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (connection, handler) = connect_with_handler(&server).await;
    let answer = connection.call(describe("notify:orders")).await.unwrap();
    assert_eq!(answer.name, "notified: true");
    handler
        .events
        .wait_until("the notification", |events| {
            events
                .iter()
                .any(|e| e.contains("NotifyAssignment") && e.contains("orders"))
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_call_is_answered_by_the_client_handler() {
    let server = TestServer::start(ServerConfig::default()).await;
    let (connection, _handler) = connect_with_handler(&server).await;
    let answer = connection.call(describe("call:payments")).await.unwrap();
    assert_eq!(answer.name, "answer:payments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_handler_answers_peer_calls_unsupported_api() {
    let server = TestServer::start(ServerConfig::default()).await;
    let connection = Connection::connect(&server.address.to_string(), ConnectionConfig::default())
        .await
        .unwrap();
    let answer = connection.call(describe("call:payments")).await.unwrap();
    assert_eq!(
        answer.name,
        format!("peer call failed: {:?}", Some(ErrorCode::UnsupportedApi))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_errors_reach_the_caller_as_server_errors() {
    let server = TestServer::start(ServerConfig::default()).await;
    let connection = Connection::connect(&server.address.to_string(), ConnectionConfig::default())
        .await
        .unwrap();
    let error = connection.call(describe("fail")).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::UnknownTopic));
    // A service answering with the wrong kind of response is reported, not mis-decoded.
    let error = connection.call(describe("wrong-kind")).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Unknown));
    // A handler that panics is answered at once, not left to the caller's timeout.
    let error = connection
        .call_timeout(describe("panic"), EVENT_TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Unknown), "{error:?}");
    connection.call(api_versions()).await.unwrap();
}

// Single-threaded on purpose: a response the server wrongly queued for a one-way request
// would be queued before the handler of the later request runs, so it would arrive first.
#[tokio::test]
async fn one_way_requests_are_never_answered_not_even_with_an_error() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut raw = RawClient::connect(server.address).await;
    let send = Request::Send(SendRequest {
        topic: "t".into(),
        queue: 3,
        acks: Acks::None,
        timeout_ms: 0,
        batches: Bytes::from_static(b"abc"),
    });
    let failing = Request::DescribeTopic(describe("fail"));
    let mut bytes = request_bytes(&send, 1, FLAG_ONE_WAY);
    bytes.extend(request_bytes(&failing, 2, FLAG_ONE_WAY));
    bytes.extend(raw_request_bytes(999, 0, 3, FLAG_ONE_WAY, b""));
    bytes.extend(raw_request_bytes(
        ApiKey::Pull.as_u16(),
        0,
        4,
        FLAG_ONE_WAY,
        b"\x00",
    ));
    raw.write(&bytes).await;
    server
        .events()
        .wait_until("both one-way requests to be served", |events| {
            events.iter().any(|e| e == "send t 3") && events.iter().any(|e| e == "DescribeTopic")
        })
        .await;
    raw.write(&request_bytes(&Request::ApiVersions(api_versions()), 5, 0))
        .await;
    let header = raw.next_response().await;
    assert_eq!(header.correlation_id, 5);
    assert_eq!(header.error_code, ErrorCode::None);
    // One more round trip, by which any stray answer would long have been written.
    raw.write(&request_bytes(&Request::ApiVersions(api_versions()), 6, 0))
        .await;
    assert_eq!(raw.next_response().await.correlation_id, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_hears_when_a_client_disconnects() {
    let server = TestServer::start(ServerConfig::default()).await;
    let connection = Connection::connect(&server.address.to_string(), ConnectionConfig::default())
        .await
        .unwrap();
    connection.call(api_versions()).await.unwrap();
    connection.close();
    assert!(connection.is_closed());
    server
        .events()
        .wait_until("the disconnect", |events| {
            events.iter().any(|e| e.starts_with("disconnected "))
        })
        .await;
    // Dropping every handle closes too.
    let connection = Connection::connect(&server.address.to_string(), ConnectionConfig::default())
        .await
        .unwrap();
    connection.call(api_versions()).await.unwrap();
    drop(connection);
    server
        .events()
        .wait_until("the second disconnect", |events| {
            events
                .iter()
                .filter(|e| e.starts_with("disconnected "))
                .count()
                == 2
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_frames_show_the_response_header_fields() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut raw = RawClient::connect(server.address).await;
    raw.write(&request_bytes(
        &Request::DescribeTopic(describe("fail")),
        77,
        0,
    ))
    .await;
    let Some(Frame::Response { header, body }) = raw.next_frame().await else {
        panic!("no response");
    };
    assert_eq!(header.correlation_id, 77);
    assert_eq!(header.error_code, ErrorCode::UnknownTopic);
    assert_eq!(header.error_message, "no such topic");
    assert!(body.is_empty());
}
