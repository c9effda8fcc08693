//! Resetting a group's offsets: a dry run only plans; execute applies the plan durably; a
//! group with live members is refused.

mod common;

use common::*;
use log_core::Compression;
use wire::protocol::{
    CommitOffsetsRequest, FetchOffsetsRequest, HeartbeatRequest, OffsetCommit, OffsetResetEntry,
    OffsetSpec, ResetOffsetsRequest,
};
use wire::{ErrorCode, Message};

fn reset(to: OffsetSpec, execute: bool) -> ResetOffsetsRequest {
    ResetOffsetsRequest {
        group: "billing".into(),
        topic: Some("orders".into()),
        to,
        execute,
    }
}

async fn committed(broker: &semantics::Broker) -> Vec<Option<u64>> {
    call(
        broker,
        FetchOffsetsRequest {
            group: "billing".into(),
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
async fn dry_runs_plan_and_executions_apply() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "orders", 2).await;
    for (i, at) in [1_000i64, 2_000, 3_000].into_iter().enumerate() {
        let mut message = Message::new("orders", format!("m{i}"));
        message.born_timestamp = at;
        send(&broker, "orders", 0, batch(&[message], Compression::None)).await;
    }
    call(
        &broker,
        CommitOffsetsRequest {
            group: "billing".into(),
            member_id: String::new(),
            generation: None,
            offsets: vec![OffsetCommit {
                topic: "orders".into(),
                queue: 0,
                offset: 1,
            }],
        },
    )
    .await
    .unwrap();

    let plan = call(&broker, reset(OffsetSpec::Latest, false))
        .await
        .unwrap();
    assert_eq!(
        plan.plan,
        [
            OffsetResetEntry {
                topic: "orders".into(),
                queue: 0,
                current: Some(1),
                new: 3
            },
            OffsetResetEntry {
                topic: "orders".into(),
                queue: 1,
                current: None,
                new: 0
            },
        ]
    );
    assert_eq!(
        committed(&broker).await,
        [Some(1), None],
        "a dry run changes nothing"
    );

    let by_time = call(&broker, reset(OffsetSpec::Timestamp(1_500), true))
        .await
        .unwrap();
    assert_eq!(by_time.plan[0].new, 1);
    call(&broker, reset(OffsetSpec::Latest, true))
        .await
        .unwrap();
    assert_eq!(committed(&broker).await, [Some(3), Some(0)]);
    call(&broker, reset(OffsetSpec::Earliest, true))
        .await
        .unwrap();
    assert_eq!(committed(&broker).await, [Some(0), Some(0)]);

    // Without a topic, every topic the group committed on is reset.
    let all = call(
        &broker,
        ResetOffsetsRequest {
            topic: None,
            ..reset(OffsetSpec::Latest, false)
        },
    )
    .await
    .unwrap();
    assert_eq!(all.plan.len(), 2);

    call(
        &broker,
        HeartbeatRequest {
            group: "billing".into(),
            member_id: "live".into(),
            generation: None,
            subscriptions: Vec::new(),
            session_timeout_ms: 30_000,
            strategy: Default::default(),
        },
    )
    .await
    .unwrap();
    for execute in [false, true] {
        let refused = call(&broker, reset(OffsetSpec::Earliest, execute))
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::GroupNotEmpty, "execute {execute}");
    }
    assert_eq!(committed(&broker).await, [Some(0), Some(0)]);
    broker.close().await.unwrap();
}
