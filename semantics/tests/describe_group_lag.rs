//! Describing a group: its members with host, subscriptions and assignment, and per queue the
//! committed offset, the log end, the lag and the owner. Listing groups names it too.

mod common;

use common::*;
use wire::protocol::{
    CommitOffsetsRequest, DescribeGroupRequest, GroupState, HeartbeatRequest, ListGroupsRequest,
    OffsetCommit, Subscription,
};
use wire::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_description_shows_members_and_lag() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "orders", 2).await;
    send(&broker, "orders", 0, numbered("orders", "a", 10)).await;
    send(&broker, "orders", 1, numbered("orders", "b", 6)).await;

    let joined = call(
        &broker,
        HeartbeatRequest {
            group: "billing".into(),
            member_id: "m1".into(),
            generation: None,
            subscriptions: vec![Subscription {
                topic: "orders".into(),
                expression: "TagA || TagB".into(),
            }],
            session_timeout_ms: 30_000,
            strategy: Default::default(),
        },
    )
    .await
    .unwrap();
    call(
        &broker,
        CommitOffsetsRequest {
            group: "billing".into(),
            member_id: "m1".into(),
            generation: Some(joined.generation),
            offsets: vec![OffsetCommit {
                topic: "orders".into(),
                queue: 0,
                offset: 4,
            }],
        },
    )
    .await
    .unwrap();

    let described = call(
        &broker,
        DescribeGroupRequest {
            group: "billing".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(described.state, GroupState::Stable);
    assert_eq!(described.generation, joined.generation);
    assert_eq!(described.members.len(), 1);
    let member = &described.members[0];
    assert_eq!(member.member_id, "m1");
    assert_eq!(member.client_id, "test");
    assert_eq!(member.host, "127.0.0.1:0");
    assert_eq!(member.subscriptions[0].expression, "TagA || TagB");
    assert_eq!(member.assignment.len(), 2);

    let lags: Vec<_> = described
        .offsets
        .iter()
        .map(|o| {
            assert_eq!(o.topic, "orders");
            (
                o.queue,
                o.committed,
                o.log_end_offset,
                o.lag,
                o.owner.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        lags,
        [(0, Some(4), 10, 6, Some("m1")), (1, None, 6, 6, Some("m1")),]
    );

    let listed = call(&broker, ListGroupsRequest {}).await.unwrap();
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group, "billing");
    assert_eq!(listed.groups[0].members, 1);

    let unknown = call(
        &broker,
        DescribeGroupRequest {
            group: "nobody".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code, ErrorCode::UnknownGroup);
    broker.close().await.unwrap();
}
