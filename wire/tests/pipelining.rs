//! Many requests in flight on one connection: responses find their callers, a slow request
//! does not hold up a fast one behind it, and the service sees requests in arrival order.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use wire::protocol::*;
use wire::server::ServerConfig;
use wire::{Connection, ConnectionConfig};

const TASKS: u64 = 50;
const CALLS_PER_TASK: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_in_flight_from_many_tasks_each_get_their_own_response() {
    let server = TestServer::start(ServerConfig::default()).await;
    let config = ConnectionConfig {
        // Fewer slots than calls: callers also wait for slots.
        max_in_flight: 256,
        ..ConnectionConfig::default()
    };
    let connection = Connection::connect(&server.address.to_string(), config)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let connection = connection.clone();
        tasks.push(tokio::spawn(async move {
            for call in 0..CALLS_PER_TASK {
                let offset = task * CALLS_PER_TASK + call;
                if offset.is_multiple_of(2) {
                    let response = connection
                        .call(PullRequest {
                            topic: "t".into(),
                            queue: 0,
                            offset,
                            max_bytes: 1 << 20,
                            max_wait_ms: 0,
                        })
                        .await
                        .unwrap();
                    assert_eq!(response.log_start_offset, offset);
                    assert_eq!(response.batches, pull_pattern(offset));
                } else {
                    let batches = pull_pattern(offset);
                    let response = connection
                        .call(SendRequest {
                            topic: "t".into(),
                            queue: offset as u32,
                            acks: Acks::Leader,
                            timeout_ms: 1000,
                            batches: batches.clone(),
                        })
                        .await
                        .unwrap();
                    assert_eq!(response.base_offset, batches.len() as u64);
                    assert_eq!(
                        response.last_offset,
                        batches.iter().map(|b| u64::from(*b)).sum::<u64>()
                    );
                    assert_eq!(response.log_start_offset, offset);
                }
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(EVENT_TIMEOUT, task)
            .await
            .expect("calls finished in time")
            .unwrap();
    }
    assert_eq!(
        server.events().snapshot().len() as u64,
        TASKS * CALLS_PER_TASK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eight_mebibyte_send_crosses_intact() {
    let server = TestServer::start(ServerConfig::default()).await;
    let connection = Connection::connect(&server.address.to_string(), ConnectionConfig::default())
        .await
        .unwrap();
    let batches = Bytes::from(
        (0..8 << 20)
            .map(|i: u32| (i % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let response = connection
        .call(SendRequest {
            topic: "t".into(),
            queue: 1,
            acks: Acks::All,
            timeout_ms: 1000,
            batches: batches.clone(),
        })
        .await
        .unwrap();
    assert_eq!(response.base_offset, batches.len() as u64);
    assert_eq!(
        response.last_offset,
        batches.iter().map(|b| u64::from(*b)).sum::<u64>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_does_not_block_a_fast_one_behind_it() {
    let server = TestServer::start(ServerConfig::default()).await;
    let connection = Connection::connect(&server.address.to_string(), ConnectionConfig::default())
        .await
        .unwrap();
    let slow = tokio::spawn({
        let connection = connection.clone();
        async move {
            connection
                .call(PullRequest {
                    topic: "t".into(),
                    queue: 0,
                    offset: 5,
                    max_bytes: 1024,
                    max_wait_ms: 60_000,
                })
                .await
        }
    });
    server
        .events()
        .wait_until("the slow pull to reach the service", |events| {
            events.iter().any(|e| e == "pull 5")
        })
        .await;
    let fast = connection.call(api_versions()).await.unwrap();
    assert_eq!(fast.server_version, "test");
    assert!(
        !slow.is_finished(),
        "the slow pull answered before its gate opened"
    );
    server.service.gate.add_permits(1);
    let slow = tokio::time::timeout(EVENT_TIMEOUT, slow)
        .await
        .expect("the slow pull answered once released")
        .unwrap()
        .unwrap();
    assert_eq!(slow.log_start_offset, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_is_called_in_arrival_order() {
    let server = TestServer::start(ServerConfig::default()).await;
    // Raw frames written in one go: arrival order is the byte order.
    let mut raw = RawClient::connect(server.address).await;
    let mut bytes = Vec::new();
    for queue in 0..500u32 {
        let send = Request::Send(SendRequest {
            topic: "ordered".into(),
            queue,
            acks: Acks::Leader,
            timeout_ms: 0,
            batches: Bytes::from_static(b"x"),
        });
        bytes.extend_from_slice(&request_bytes(&send, queue, 0));
    }
    raw.write(&bytes).await;
    for _ in 0..500 {
        raw.next_response().await;
    }
    // One-way sends through a connection: each is queued before the next is.
    let connection = Connection::connect(&server.address.to_string(), ConnectionConfig::default())
        .await
        .unwrap();
    for queue in 500..1000u32 {
        let send = SendRequest {
            topic: "ordered".into(),
            queue,
            acks: Acks::None,
            timeout_ms: 0,
            batches: Bytes::from_static(b"x"),
        };
        connection.send_one_way(send).await.unwrap();
    }
    server
        .events()
        .wait_until("every send to reach the service", |events| {
            events
                .iter()
                .filter(|e| e.starts_with("send ordered"))
                .count()
                == 1000
        })
        .await;
    let expected: Vec<String> = (0..1000).map(|q| format!("send ordered {q}")).collect();
    let seen: Vec<String> = server
        .events()
        .snapshot()
        .into_iter()
        .filter(|e| e.starts_with("send ordered"))
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_in_flight_limit_the_next_request_waits_for_a_slot() {
    let server = TestServer::start(ServerConfig {
        max_in_flight_per_connection: 1,
        ..ServerConfig::default()
    })
    .await;
    let connection = Connection::connect(&server.address.to_string(), ConnectionConfig::default())
        .await
        .unwrap();
    let slow = tokio::spawn({
        let connection = connection.clone();
        async move {
            connection
                .call(PullRequest {
                    topic: "t".into(),
                    queue: 0,
                    offset: 1,
                    max_bytes: 1024,
                    max_wait_ms: 60_000,
                })
                .await
        }
    });
    server
        .events()
        .wait_until("the slow pull", |events| {
            events.iter().any(|e| e == "pull 1")
        })
        .await;
    let fast = tokio::spawn({
        let connection = connection.clone();
        async move { connection.call(api_versions()).await }
    });
    server.service.gate.add_permits(1);
    tokio::time::timeout(EVENT_TIMEOUT, slow)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::timeout(EVENT_TIMEOUT, fast)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The second request reached the service only after the first had finished.
    let events = server.events().snapshot();
    let done = events.iter().position(|e| e == "pull 1 done").unwrap();
    let second = events.iter().position(|e| e == "ApiVersions").unwrap();
    assert!(done < second, "{events:?}");
}

#[tokio::test]
async fn a_call_that_times_out_leaves_the_connection_usable() {
    let server = TestServer::start(ServerConfig::default()).await;
    let connection = Connection::connect(&server.address.to_string(), ConnectionConfig::default())
        .await
        .unwrap();
    let pull = PullRequest {
        topic: "t".into(),
        queue: 0,
        offset: 9,
        max_bytes: 1024,
        max_wait_ms: 60_000,
    };
    let result = connection
        .call_timeout(pull, Duration::from_millis(50))
        .await;
    assert!(matches!(result, Err(wire::Error::Timeout(_))), "{result:?}");
    // The late response arrives for nobody and is dropped; the next call is unaffected.
    server.service.gate.add_permits(1);
    server
        .events()
        .wait_until("the timed-out pull to finish", |events| {
            events.iter().any(|e| e == "pull 9 done")
        })
        .await;
    let response = connection.call(api_versions()).await.unwrap();
    assert_eq!(response.broker_id, 1);
}
