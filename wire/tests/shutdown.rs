//! How connections end: a server shutdown lets requests in flight finish, flushes their
//! responses and closes; when the server goes away or the client closes, every waiting call
//! fails with `Error::Closed` at once; beyond `max_connections` a connection is closed.

mod common;

use std::time::Duration;

use common::*;
use wire::protocol::*;
use wire::server::ServerConfig;
use wire::{Connection, ConnectionConfig, Error, ErrorCode};

fn slow_pull(offset: u64) -> PullRequest {
    PullRequest {
        topic: "t".into(),
        queue: 0,
        offset,
        max_bytes: 1024,
        max_wait_ms: 60_000,
    }
}

async fn connect(server: &TestServer) -> Connection {
    Connection::connect(&server.address.to_string(), ConnectionConfig::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish_then_closes() {
    let mut server = TestServer::start(ServerConfig {
        shutdown_grace: EVENT_TIMEOUT,
        ..ServerConfig::default()
    })
    .await;
    let connection = connect(&server).await;
    let in_flight = tokio::spawn({
        let connection = connection.clone();
        async move { connection.call(slow_pull(3)).await }
    });
    server
        .events()
        .wait_until("the pull", |events| events.iter().any(|e| e == "pull 3"))
        .await;
    server.shut_down();

    // While draining, new requests are refused with ShuttingDown.
    let refusing = async {
        loop {
            match connection.call(api_versions()).await {
                Ok(_) => tokio::task::yield_now().await,
                Err(error) => break error,
            }
        }
    };
    let refused = tokio::time::timeout(EVENT_TIMEOUT, refusing)
        .await
        .expect("requests are refused once shutdown began");
    assert_eq!(refused.code(), Some(ErrorCode::ShuttingDown));
    assert!(!in_flight.is_finished());

    server.service.gate.add_permits(1);
    let response = tokio::time::timeout(EVENT_TIMEOUT, in_flight)
        .await
        .expect("the request in flight finished")
        .unwrap()
        .expect("and was answered");
    assert_eq!(response.log_start_offset, 3);
    tokio::time::timeout(EVENT_TIMEOUT, &mut server.task)
        .await
        .expect("serve returned")
        .unwrap()
        .unwrap();
    let after = tokio::time::timeout(EVENT_TIMEOUT, connection.call(api_versions()))
        .await
        .expect("a call after the close fails at once");
    assert!(
        matches!(after, Err(Error::Closed | Error::Io(_))),
        "{after:?}"
    );
    assert!(connection.is_closed());
    assert!(
        Connection::connect(&server.address.to_string(), ConnectionConfig::default())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_requests_still_running_after_the_grace() {
    let mut server = TestServer::start(ServerConfig {
        shutdown_grace: Duration::from_millis(100),
        ..ServerConfig::default()
    })
    .await;
    let connection = connect(&server).await;
    let in_flight = tokio::spawn({
        let connection = connection.clone();
        async move { connection.call(slow_pull(4)).await }
    });
    server
        .events()
        .wait_until("the pull", |events| events.iter().any(|e| e == "pull 4"))
        .await;
    server.shut_down();
    tokio::time::timeout(EVENT_TIMEOUT, &mut server.task)
        .await
        .expect("serve returned")
        .unwrap()
        .unwrap();
    let result = tokio::time::timeout(EVENT_TIMEOUT, in_flight)
        .await
        .expect("the abandoned call failed in time")
        .unwrap();
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_calls_fail_with_closed_when_the_server_goes_away() {
    let server = TestServer::start(ServerConfig::default()).await;
    let connection = connect(&server).await;
    let mut waiting = Vec::new();
    for offset in 0..10 {
        let connection = connection.clone();
        waiting.push(tokio::spawn(async move {
            connection.call(slow_pull(offset)).await
        }));
    }
    server
        .events()
        .wait_until("every pull", |events| {
            events.iter().filter(|e| e.starts_with("pull ")).count() == 10
        })
        .await;
    // Aborting `serve` drops every connection at once, as a crash would.
    server.task.abort();
    for call in waiting {
        let result = tokio::time::timeout(EVENT_TIMEOUT, call)
            .await
            .expect("no caller hangs")
            .unwrap();
        assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    }
    assert!(connection.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_connection_fails_its_waiting_calls() {
    let server = TestServer::start(ServerConfig::default()).await;
    let connection = connect(&server).await;
    let waiting = tokio::spawn({
        let connection = connection.clone();
        async move { connection.call(slow_pull(8)).await }
    });
    server
        .events()
        .wait_until("the pull", |events| events.iter().any(|e| e == "pull 8"))
        .await;
    connection.close();
    let result = tokio::time::timeout(EVENT_TIMEOUT, waiting)
        .await
        .expect("the waiting call failed in time")
        .unwrap();
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    let after = connection.call(api_versions()).await;
    assert!(matches!(after, Err(Error::Closed)), "{after:?}");
    let one_way = connection.send_one_way(api_versions()).await;
    assert!(matches!(one_way, Err(Error::Closed)), "{one_way:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let server = TestServer::start(ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    })
    .await;
    let first = connect(&server).await;
    first.call(api_versions()).await.unwrap();
    let second = connect(&server).await;
    let refused = tokio::time::timeout(EVENT_TIMEOUT, second.call(api_versions()))
        .await
        .expect("the refused connection fails in time");
    assert!(
        matches!(refused, Err(Error::Closed | Error::Io(_))),
        "{refused:?}"
    );
    // The first is unaffected.
    first.call(api_versions()).await.unwrap();
}

#[tokio::test]
async fn connecting_to_nothing_fails_with_connect() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let result = Connection::connect(&address, ConnectionConfig::default()).await;
    assert!(matches!(result, Err(Error::Connect { .. })), "{result:?}");
    let config = ConnectionConfig {
        client_id: "c".repeat(NAME_BYTES_MAX + 1),
        ..ConnectionConfig::default()
    };
    let result = Connection::connect(&address, config).await;
    assert!(
        matches!(result, Err(Error::InvalidArgument(_))),
        "{result:?}"
    );
}
