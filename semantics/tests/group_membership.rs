//! Group membership through the coordinator: heartbeats join and answer the assignment and
//! generation; a second member splits the queues; leaving hands them back; bad requests are
//! refused.

mod common;

use common::*;
use wire::protocol::{HeartbeatRequest, LeaveGroupRequest, Subscription};
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
        session_timeout_ms: 10_000,
        strategy: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_split_the_queues_and_leave() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "orders", 4).await;

    let alone = call(&broker, heartbeat("a", None)).await.unwrap();
    assert_eq!(alone.assignment.len(), 4);
    assert!(alone.heartbeat_interval_ms > 0);

    let b = call(&broker, heartbeat("b", None)).await.unwrap();
    assert!(b.generation > alone.generation);
    assert!(
        b.assignment.is_empty(),
        "b gets nothing while a still owns every queue"
    );
    // a learns the new generation (keeping only its new target), then confirms it, which
    // releases the queues it lost; b's next heartbeat takes them.
    let a = call(&broker, heartbeat("a", Some(alone.generation)))
        .await
        .unwrap();
    assert_eq!(a.generation, b.generation);
    assert_eq!(a.assignment.len(), 2);
    let a = call(&broker, heartbeat("a", Some(a.generation)))
        .await
        .unwrap();
    let b = call(&broker, heartbeat("b", Some(b.generation)))
        .await
        .unwrap();
    assert_eq!(a.generation, b.generation);
    let mut owned: Vec<u32> = a
        .assignment
        .iter()
        .chain(&b.assignment)
        .map(|q| q.queue)
        .collect();
    owned.sort_unstable();
    assert_eq!(owned, [0, 1, 2, 3], "the queues are split without overlap");

    call(
        &broker,
        LeaveGroupRequest {
            group: "billing".into(),
            member_id: "b".into(),
        },
    )
    .await
    .unwrap();
    let after = call(&broker, heartbeat("a", Some(a.generation)))
        .await
        .unwrap();
    assert!(after.generation > a.generation);
    assert_eq!(after.assignment.len(), 4);

    let unknown = call(
        &broker,
        LeaveGroupRequest {
            group: "billing".into(),
            member_id: "b".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code, ErrorCode::UnknownMember);
    let no_member = call(&broker, heartbeat("", None)).await.unwrap_err();
    assert_eq!(no_member.code, ErrorCode::InvalidArgument);
    let bad_group = call(
        &broker,
        HeartbeatRequest {
            group: String::new(),
            ..heartbeat("a", None)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad_group.code, ErrorCode::InvalidName);
    let bad_timeout = call(
        &broker,
        HeartbeatRequest {
            session_timeout_ms: 1,
            ..heartbeat("a", None)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad_timeout.code, ErrorCode::InvalidArgument);
    broker.close().await.unwrap();
}
