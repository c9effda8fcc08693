//! Under the every-write flush policy, sends waiting together are appended together: every
//! good send lands, in dispatch order, and a corrupt one among them fails alone.

mod common;

use bytes::BytesMut;
use common::*;
use semantics::{BrokerConfig, Flush};
use wire::protocol::Response;
use wire::{ErrorCode, RequestContext, Service};

const SENDS: usize = 120;
const CORRUPT_EVERY: usize = 17;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_appends_keep_order_and_isolate_a_corrupt_send() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_with(BrokerConfig {
        flush: Flush::EveryWrite,
        ..config(dir.path())
    })
    .await;
    create_topic(&broker, "synced", 1).await;

    let pending: Vec<_> = (0..SENDS)
        .map(|i| {
            let mut batches = numbered("synced", &format!("s{i}"), 2);
            if i % CORRUPT_EVERY == 5 {
                let mut corrupt = BytesMut::from(&batches[..]);
                let last = corrupt.len() - 1;
                corrupt[last] ^= 1;
                batches = corrupt.freeze();
            }
            broker.call(
                RequestContext::detached("producer"),
                send_request("synced", 0, batches).into(),
            )
        })
        .collect();
    let mut expected = Vec::new();
    let mut next = 0;
    for (i, answer) in pending.into_iter().enumerate() {
        let result = within(answer).await;
        if i % CORRUPT_EVERY == 5 {
            assert_eq!(
                result.unwrap_err().code,
                ErrorCode::CorruptBatch,
                "send {i}"
            );
            continue;
        }
        let Ok(Response::Send(response)) = result else {
            panic!("send {i}: {result:?}");
        };
        assert_eq!(
            (response.base_offset, response.last_offset),
            (next, next + 1),
            "send {i}"
        );
        next += 2;
        expected.extend([format!("s{i}-0"), format!("s{i}-1")]);
    }
    assert_eq!(bodies(&read_all(&broker, "synced", 0, 0).await), expected);
    broker.close().await.unwrap();
}
