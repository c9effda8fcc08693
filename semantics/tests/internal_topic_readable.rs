//! Clients may read the internal consumer-offsets topic (but not send to it, see
//! `send_errors.rs`): a commit shows up there as a record keyed by group, topic and queue.

mod common;

use common::*;
use log_core::batch::split_batches;
use semantics::OFFSETS_TOPIC;
use wire::protocol::{CommitOffsetsRequest, OffsetCommit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_readable_from_the_offsets_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "orders", 1).await;
    send(&broker, "orders", 0, numbered("orders", "m", 3)).await;
    call(
        &broker,
        CommitOffsetsRequest {
            group: "billing".into(),
            member_id: String::new(),
            generation: None,
            offsets: vec![OffsetCommit {
                topic: "orders".into(),
                queue: 0,
                offset: 2,
            }],
        },
    )
    .await
    .unwrap();

    let mut found = Vec::new();
    for queue in 0..4 {
        let response = pull(&broker, OFFSETS_TOPIC, queue, 0).await;
        for batch in split_batches(response.batches) {
            for record in batch.unwrap().records().unwrap() {
                let record = record.unwrap();
                found.push((queue, record.key.unwrap(), record.value.unwrap()));
            }
        }
    }
    assert_eq!(found.len(), 1, "one commit, one record: {found:?}");
    let (_, key, value) = &found[0];
    assert_eq!(&key[..], b"billing\0orders\x000");
    assert_eq!(&value[..], [1, 0, 0, 0, 0, 0, 0, 0, 2]);
    broker.close().await.unwrap();
}
