//! A message sent comes back from a pull with every field intact, whatever the batch codec,
//! at the offsets the send answered.

mod common;

use common::*;
use log_core::Compression;
use wire::protocol::OffsetForTimeRequest;
use wire::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_round_trip_with_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "orders", 2).await;

    let mut sent = Vec::new();
    let mut next = 0;
    for (i, codec) in [Compression::None, Compression::Lz4, Compression::Zstd]
        .into_iter()
        .enumerate()
    {
        let messages: Vec<Message> = (0..4)
            .map(|j| {
                Message::new("orders", format!("body {i}.{j} ").repeat(50))
                    .with_tag(format!("Tag{j}"))
                    .with_key(format!("order-{i}-{j}"))
                    .with_key("user-7")
                    .with_property("region", "eu")
                    .with_property("codec", codec.name())
            })
            .collect();
        let response = send(&broker, "orders", 1, batch(&messages, codec)).await;
        assert_eq!(response.base_offset, next);
        assert_eq!(response.last_offset, next + 3);
        assert_eq!(response.log_start_offset, 0);
        assert!(response.store_timestamp > 0);
        next += 4;
        sent.extend(messages);
    }

    let received = read_all(&broker, "orders", 1, 0).await;
    assert_eq!(received.len(), sent.len());
    for (offset, (got, want)) in received.iter().zip(&sent).enumerate() {
        assert_eq!(got.offset, offset as u64);
        assert_eq!(got.topic, "orders");
        assert_eq!(got.queue, 1);
        assert_eq!(got.body, want.body);
        assert_eq!(got.tag, want.tag);
        assert_eq!(got.keys, want.keys);
        assert_eq!(got.properties, want.properties);
        assert_eq!(got.born_timestamp, want.born_timestamp);
        assert_eq!(got.message_id.len(), 32);
    }

    // A pull from the middle of a batch starts with that batch; the client skips below.
    let middle = pull(&broker, "orders", 1, 6).await;
    assert_eq!(middle.log_end_offset, 12);
    let from_six = messages("orders", 1, 6, middle.batches);
    assert_eq!(from_six.first().map(|m| m.offset), Some(6));

    // The other queue is untouched.
    let other = pull(&broker, "orders", 0, 0).await;
    assert!(other.batches.is_empty());
    assert_eq!(other.log_end_offset, 0);
    broker.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_for_time_finds_the_first_message_at_or_after_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "clock", 1).await;
    for (i, at) in [1_000i64, 2_000, 3_000].into_iter().enumerate() {
        let mut message = Message::new("clock", format!("m{i}"));
        message.born_timestamp = at;
        send(&broker, "clock", 0, batch(&[message], Compression::None)).await;
    }
    let ask = |timestamp| OffsetForTimeRequest {
        topic: "clock".into(),
        queue: 0,
        timestamp,
    };
    assert_eq!(call(&broker, ask(0)).await.unwrap().offset, 0);
    assert_eq!(call(&broker, ask(1_500)).await.unwrap().offset, 1);
    assert_eq!(call(&broker, ask(3_000)).await.unwrap().offset, 2);
    assert_eq!(
        call(&broker, ask(9_000)).await.unwrap().offset,
        3,
        "past every message: the log end"
    );
    broker.close().await.unwrap();
}
