//! Committed offsets come back from a fetch; queues never committed answer `None`; commits
//! past the log end or to unknown queues are refused.

mod common;

use common::*;
use wire::protocol::{CommitOffsetsRequest, FetchOffsetsRequest, OffsetCommit, QueueOffset};
use wire::ErrorCode;

pub fn commit(group: &str, offsets: &[(&str, u32, u64)]) -> CommitOffsetsRequest {
    CommitOffsetsRequest {
        group: group.to_owned(),
        member_id: String::new(),
        generation: None,
        offsets: offsets
            .iter()
            .map(|(topic, queue, offset)| OffsetCommit {
                topic: (*topic).to_owned(),
                queue: *queue,
                offset: *offset,
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_are_fetched_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "orders", 3).await;
    send(&broker, "orders", 0, numbered("orders", "a", 10)).await;
    send(&broker, "orders", 2, numbered("orders", "b", 4)).await;

    call(
        &broker,
        commit("billing", &[("orders", 0, 7), ("orders", 2, 4)]),
    )
    .await
    .unwrap();
    call(&broker, commit("billing", &[("orders", 0, 9)]))
        .await
        .unwrap();

    let fetched = call(
        &broker,
        FetchOffsetsRequest {
            group: "billing".into(),
            topic: "orders".into(),
            queues: Vec::new(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        fetched.offsets,
        [
            QueueOffset {
                queue: 0,
                offset: Some(9)
            },
            QueueOffset {
                queue: 1,
                offset: None
            },
            QueueOffset {
                queue: 2,
                offset: Some(4)
            },
        ]
    );
    let other_group = call(
        &broker,
        FetchOffsetsRequest {
            group: "audit".into(),
            topic: "orders".into(),
            queues: vec![2],
        },
    )
    .await
    .unwrap();
    assert_eq!(
        other_group.offsets,
        [QueueOffset {
            queue: 2,
            offset: None
        }]
    );

    let past_end = call(&broker, commit("billing", &[("orders", 2, 5)]))
        .await
        .unwrap_err();
    assert_eq!(past_end.code, ErrorCode::InvalidArgument);
    let unknown_queue = call(&broker, commit("billing", &[("orders", 3, 0)]))
        .await
        .unwrap_err();
    assert_eq!(unknown_queue.code, ErrorCode::UnknownQueue);
    let unknown_topic = call(&broker, commit("billing", &[("missing", 0, 0)]))
        .await
        .unwrap_err();
    assert_eq!(unknown_topic.code, ErrorCode::UnknownTopic);
    let fetch_unknown = call(
        &broker,
        FetchOffsetsRequest {
            group: "billing".into(),
            topic: "missing".into(),
            queues: Vec::new(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(fetch_unknown.code, ErrorCode::UnknownTopic);
    broker.close().await.unwrap();
}
