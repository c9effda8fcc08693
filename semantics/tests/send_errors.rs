//! Sends the broker refuses, each with its code, and nothing of them stored.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use semantics::{BrokerConfig, OFFSETS_TOPIC};
use wire::ErrorCode;

const MAX_MESSAGE_BYTES: u32 = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sends_answer_their_codes_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_with(BrokerConfig {
        max_message_bytes: MAX_MESSAGE_BYTES,
        ..config(dir.path())
    })
    .await;
    create_topic(&broker, "orders", 2).await;
    let good = numbered("orders", "ok", 2);

    let mut corrupt = BytesMut::from(&good[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40; // inside the records: the CRC no longer matches
    let oversize = {
        let body = "x".repeat(MAX_MESSAGE_BYTES as usize + 1);
        batch(
            &[wire::Message::new("orders", body)],
            log_core::Compression::None,
        )
    };
    let cases: Vec<(&str, &str, u32, Bytes, ErrorCode)> = vec![
        (
            "unknown topic",
            "missing",
            0,
            good.clone(),
            ErrorCode::UnknownTopic,
        ),
        (
            "unknown queue",
            "orders",
            2,
            good.clone(),
            ErrorCode::UnknownQueue,
        ),
        (
            "oversize",
            "orders",
            0,
            oversize,
            ErrorCode::MessageTooLarge,
        ),
        (
            "corrupt",
            "orders",
            0,
            corrupt.freeze(),
            ErrorCode::CorruptBatch,
        ),
        (
            "truncated",
            "orders",
            0,
            good.slice(..good.len() - 3),
            ErrorCode::CorruptBatch,
        ),
        (
            "empty",
            "orders",
            0,
            Bytes::new(),
            ErrorCode::InvalidArgument,
        ),
        (
            "internal",
            OFFSETS_TOPIC,
            0,
            good.clone(),
            ErrorCode::InvalidArgument,
        ),
    ];
    for (case, topic, queue, batches, code) in cases {
        let refused = call(&broker, send_request(topic, queue, batches))
            .await
            .unwrap_err();
        assert_eq!(refused.code, code, "{case}: {refused}");
        assert!(
            refused.message.contains(topic),
            "{case}: the message names the topic: {refused}"
        );
    }
    let untouched = pull(&broker, "orders", 0, 0).await;
    assert_eq!(untouched.log_end_offset, 0);

    // The queue still takes good sends after refusing bad ones.
    let response = send(&broker, "orders", 0, good).await;
    assert_eq!((response.base_offset, response.last_offset), (0, 1));
    broker.close().await.unwrap();
}
