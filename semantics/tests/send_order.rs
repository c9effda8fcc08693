//! Sends dispatched back to back (every `call` made before any answer is awaited, as the
//! server does for a pipelining connection) land in dispatch order.

mod common;

use common::*;
use wire::{RequestContext, Service};

const SENDS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_sends_land_in_dispatch_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "ordered", 1).await;

    let pending: Vec<_> = (0..SENDS)
        .map(|i| {
            let request = send_request("ordered", 0, numbered("ordered", &format!("s{i}"), 3));
            broker.call(RequestContext::detached("producer"), request.into())
        })
        .collect();
    let mut expected_base = 0;
    for (i, answer) in pending.into_iter().enumerate() {
        let response = match within(answer).await {
            Ok(wire::protocol::Response::Send(response)) => response,
            other => panic!("send {i}: {other:?}"),
        };
        assert_eq!(response.base_offset, expected_base, "send {i}");
        assert_eq!(response.last_offset, expected_base + 2, "send {i}");
        expected_base += 3;
    }

    let stored = bodies(&read_all(&broker, "ordered", 0, 0).await);
    let expected: Vec<String> = (0..SENDS)
        .flat_map(|i| (0..3).map(move |j| format!("s{i}-{j}")))
        .collect();
    assert_eq!(stored, expected);
    broker.close().await.unwrap();
}
