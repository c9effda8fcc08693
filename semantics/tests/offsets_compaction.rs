//! The consumer-offsets topic is compacted by snapshot: after many commits its log start moves
//! past the superseded records, and the offsets still read back right after a restart.

mod common;

use common::*;
use semantics::{BrokerConfig, OFFSETS_TOPIC};
use wire::protocol::{
    CommitOffsetsRequest, DescribeTopicRequest, FetchOffsetsRequest, OffsetCommit,
};

const COMPACT_RECORDS: u64 = 50;
const COMMITS: u64 = 400;

fn compacting(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        offsets_queues: 1,
        offsets_compact_records: COMPACT_RECORDS,
        ..config(dir)
    }
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

async fn offsets_log_start(broker: &semantics::Broker) -> u64 {
    call(
        broker,
        DescribeTopicRequest {
            name: OFFSETS_TOPIC.into(),
        },
    )
    .await
    .unwrap()
    .queues[0]
        .log_start_offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_bound_the_offsets_topic_and_keep_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_with(compacting(dir.path())).await;
    create_topic(&broker, "orders", 2).await;
    send(&broker, "orders", 0, numbered("orders", "m", 500)).await;
    send(&broker, "orders", 1, numbered("orders", "n", 500)).await;
    for i in 1..=COMMITS {
        for group in ["billing", "audit"] {
            call(
                &broker,
                CommitOffsetsRequest {
                    group: group.into(),
                    member_id: String::new(),
                    generation: None,
                    offsets: vec![
                        OffsetCommit {
                            topic: "orders".into(),
                            queue: 0,
                            offset: i,
                        },
                        OffsetCommit {
                            topic: "orders".into(),
                            queue: 1,
                            offset: i / 2,
                        },
                    ],
                },
            )
            .await
            .unwrap();
        }
    }
    let start = offsets_log_start(&broker).await;
    assert!(
        start > 0,
        "the offsets log was compacted (log start {start})"
    );
    assert_eq!(
        fetch(&broker, "billing").await,
        [Some(COMMITS), Some(COMMITS / 2)]
    );
    broker.close().await.unwrap();
    drop(broker);

    let reopened = open_with(compacting(dir.path())).await;
    assert!(offsets_log_start(&reopened).await >= start);
    assert_eq!(
        fetch(&reopened, "billing").await,
        [Some(COMMITS), Some(COMMITS / 2)]
    );
    assert_eq!(
        fetch(&reopened, "audit").await,
        [Some(COMMITS), Some(COMMITS / 2)]
    );
    reopened.close().await.unwrap();
}
