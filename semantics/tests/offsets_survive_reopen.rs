//! Committed offsets are durable: after the broker closes and opens again on the same
//! directory, a fetch answers the last commit of every queue.

mod common;

use common::*;
use wire::protocol::{CommitOffsetsRequest, FetchOffsetsRequest, OffsetCommit};

async fn commit(broker: &semantics::Broker, group: &str, queue: u32, offset: u64) {
    call(
        broker,
        CommitOffsetsRequest {
            group: group.into(),
            member_id: String::new(),
            generation: None,
            offsets: vec![OffsetCommit {
                topic: "orders".into(),
                queue,
                offset,
            }],
        },
    )
    .await
    .unwrap();
}

async fn fetch(broker: &semantics::Broker, group: &str) -> Vec<Option<u64>> {
    call(
        broker,
        FetchOffsetsRequest {
            group: group.into(),
            topic: "orders".into(),
            queues: Vec::new(),
        },
    )
    .await
    .unwrap()
    .offsets
    .into_iter()
    .map(|o| o.offset)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "orders", 2).await;
    send(&broker, "orders", 0, numbered("orders", "m", 50)).await;
    send(&broker, "orders", 1, numbered("orders", "n", 50)).await;
    for offset in 1..=20 {
        commit(&broker, "billing", 0, offset).await;
    }
    commit(&broker, "billing", 1, 33).await;
    commit(&broker, "audit", 1, 12).await;
    let before = (
        fetch(&broker, "billing").await,
        fetch(&broker, "audit").await,
    );
    assert_eq!(before.0, [Some(20), Some(33)]);
    broker.close().await.unwrap();
    drop(broker);

    let reopened = open(dir.path()).await;
    assert_eq!(fetch(&reopened, "billing").await, [Some(20), Some(33)]);
    assert_eq!(fetch(&reopened, "audit").await, [None, Some(12)]);
    // The messages survived too.
    assert_eq!(pull(&reopened, "orders", 1, 0).await.log_end_offset, 50);
    reopened.close().await.unwrap();
}
