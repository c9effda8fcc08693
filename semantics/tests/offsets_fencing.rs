//! Offset commits are fenced by generation: a member commits in its current generation; a
//! stale generation, an unknown member, or a member-less commit to a live group is refused.

mod common;

use common::*;
use wire::protocol::{
    CommitOffsetsRequest, FetchOffsetsRequest, HeartbeatRequest, HeartbeatResponse,
    LeaveGroupRequest, OffsetCommit, Subscription,
};
use wire::ErrorCode;

fn heartbeat(member: &str, generation: Option<u64>) -> HeartbeatRequest {
    HeartbeatRequest {
        group: "billing".into(),
        member_id: member.into(),
        generation,
        subscriptions: vec![Subscription {
            topic: "orders".into(),
            expression: "*".into(),
        }],
        session_timeout_ms: 30_000,
        strategy: Default::default(),
    }
}

fn commit(member: &str, generation: Option<u64>, offset: u64) -> CommitOffsetsRequest {
    CommitOffsetsRequest {
        group: "billing".into(),
        member_id: member.into(),
        generation,
        offsets: vec![OffsetCommit {
            topic: "orders".into(),
            queue: 0,
            offset,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_fenced_by_generation_and_membership() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "orders", 2).await;
    send(&broker, "orders", 0, numbered("orders", "m", 10)).await;

    let first: HeartbeatResponse = call(&broker, heartbeat("a", None)).await.unwrap();
    assert_eq!(first.assignment.len(), 2, "a lone member owns every queue");
    call(&broker, commit("a", Some(first.generation), 3))
        .await
        .unwrap();

    let second = call(&broker, heartbeat("b", None)).await.unwrap();
    assert!(
        second.generation > first.generation,
        "a join starts a generation"
    );

    let stale = call(&broker, commit("a", Some(first.generation), 5))
        .await
        .unwrap_err();
    assert_eq!(stale.code, ErrorCode::IllegalGeneration);
    let stranger = call(&broker, commit("zed", Some(second.generation), 5))
        .await
        .unwrap_err();
    assert_eq!(stranger.code, ErrorCode::UnknownMember);
    let outsider = call(&broker, commit("", None, 5)).await.unwrap_err();
    assert_eq!(outsider.code, ErrorCode::GroupNotEmpty);
    let no_generation = call(&broker, commit("a", None, 5)).await.unwrap_err();
    assert_eq!(no_generation.code, ErrorCode::InvalidArgument);

    call(&broker, commit("b", Some(second.generation), 6))
        .await
        .unwrap();
    let fetched = call(
        &broker,
        FetchOffsetsRequest {
            group: "billing".into(),
            topic: "orders".into(),
            queues: vec![0],
        },
    )
    .await
    .unwrap();
    assert_eq!(
        fetched.offsets[0].offset,
        Some(6),
        "only the fenced-in commit counted"
    );

    // Once every member has left, a commit outside membership is accepted.
    for member in ["a", "b"] {
        call(
            &broker,
            LeaveGroupRequest {
                group: "billing".into(),
                member_id: member.into(),
            },
        )
        .await
        .unwrap();
    }
    call(&broker, commit("", None, 8)).await.unwrap();
    broker.close().await.unwrap();
}
