//! What bad bytes on a socket cost: an oversize length prefix or an undecodable header
//! closes that connection only; an unknown API or version, or a body that does not decode, is
//! answered with its error code and the connection goes on serving.

mod common;

use common::*;
use wire::protocol::*;
use wire::server::ServerConfig;
use wire::{Connection, ConnectionConfig, ErrorCode};

async fn assert_still_serves(raw: &mut RawClient, correlation_id: u32) {
    raw.write(&request_bytes(
        &Request::ApiVersions(api_versions()),
        correlation_id,
        0,
    ))
    .await;
    let header = raw.next_response().await;
    assert_eq!(header.correlation_id, correlation_id);
    assert_eq!(header.error_code, ErrorCode::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_frame_closes_only_that_connection() {
    let server = TestServer::start(ServerConfig::default()).await;
    let connection = Connection::connect(&server.address.to_string(), ConnectionConfig::default())
        .await
        .unwrap();
    connection.call(api_versions()).await.unwrap();

    let mut raw = RawClient::connect(server.address).await;
    raw.write(&(FRAME_BYTES_MAX as u32 + 1).to_be_bytes()).await;
    assert!(
        raw.next_frame().await.is_none(),
        "the connection stayed open"
    );

    // The other client is still served, on the same connection as before.
    let response = connection.call(api_versions()).await.unwrap();
    assert_eq!(response.broker_id, 1);
    assert!(!connection.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_header_closes_the_connection() {
    let server = TestServer::start(ServerConfig::default()).await;
    // Frame kind 9.
    let mut raw = RawClient::connect(server.address).await;
    raw.write(&[0, 0, 0, 3, 9, 0, 0]).await;
    assert!(raw.next_frame().await.is_none());
    // A request header cut short.
    let mut raw = RawClient::connect(server.address).await;
    raw.write(&[0, 0, 0, 4, 0, 0, 1, 0]).await;
    assert!(raw.next_frame().await.is_none());
    // A client id that is not UTF-8.
    let mut raw = RawClient::connect(server.address).await;
    let mut frame = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 2, 0xff, 0xfe];
    let length = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    raw.write(&frame).await;
    assert!(raw.next_frame().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_api_is_answered_unsupported_api() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut raw = RawClient::connect(server.address).await;
    raw.write(&raw_request_bytes(4242, 0, 11, 0, b"whatever"))
        .await;
    let header = raw.next_response().await;
    assert_eq!(header.correlation_id, 11);
    assert_eq!(header.error_code, ErrorCode::UnsupportedApi);
    assert_still_serves(&mut raw, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_version_is_answered_unsupported_version() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut raw = RawClient::connect(server.address).await;
    raw.write(&raw_request_bytes(
        ApiKey::ApiVersions.as_u16(),
        9,
        21,
        0,
        b"",
    ))
    .await;
    let header = raw.next_response().await;
    assert_eq!(header.correlation_id, 21);
    assert_eq!(header.error_code, ErrorCode::UnsupportedVersion);
    assert_still_serves(&mut raw, 22).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_body_is_answered_and_the_connection_keeps_working() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut raw = RawClient::connect(server.address).await;
    let cases: [&[u8]; 4] = [
        b"\x00",                                                             // truncated
        b"\x00\x01t\x00\x00\x00\x00\x07", // acks and more missing
        &[0xff, 0xff, 0xff, 0xff],        // topic length past the name limit
        b"\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00", // acks = 3
    ];
    for (case, body) in cases.iter().enumerate() {
        let correlation_id = 100 + case as u32;
        raw.write(&raw_request_bytes(
            ApiKey::Send.as_u16(),
            0,
            correlation_id,
            0,
            body,
        ))
        .await;
        let header = raw.next_response().await;
        assert_eq!(header.correlation_id, correlation_id);
        assert_eq!(
            header.error_code,
            ErrorCode::MalformedRequest,
            "case {case}"
        );
        assert!(!header.error_message.is_empty());
    }
    // Trailing bytes after a valid body.
    let mut frame = request_bytes(&Request::ApiVersions(api_versions()), 200, 0);
    frame.push(0);
    let length = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    raw.write(&frame).await;
    let header = raw.next_response().await;
    assert_eq!(header.error_code, ErrorCode::MalformedRequest);
    assert_still_serves(&mut raw, 201).await;
}
