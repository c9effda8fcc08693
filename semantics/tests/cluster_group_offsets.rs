//! Consumer offsets in a two-broker cluster on etcd: the offsets topic is created on a
//! group's first use, with its queues spread over the brokers; a group's offsets are served
//! only by the broker leading its offsets queue (others answer `NotLeader` naming it), while
//! membership is answered by any broker and commits stay fenced by generation.

mod common;

use common::cluster::*;
use common::*;
use semantics::OFFSETS_TOPIC;
use wire::protocol::{
    CommitOffsetsRequest, DescribeGroupRequest, DescribeTopicRequest, FetchOffsetsRequest,
    HeartbeatRequest, OffsetCommit, OffsetSpec, QueueOffset, ResetOffsetsRequest, Subscription,
};
use wire::ErrorCode;

fn commit(
    group: &str,
    member: &str,
    generation: Option<u64>,
    queue: u32,
    offset: u64,
) -> CommitOffsetsRequest {
    CommitOffsetsRequest {
        group: group.to_owned(),
        member_id: member.to_owned(),
        generation,
        offsets: vec![OffsetCommit {
            topic: "orders".into(),
            queue,
            offset,
        }],
    }
}

fn heartbeat(group: &str, member: &str, generation: Option<u64>) -> HeartbeatRequest {
    HeartbeatRequest {
        group: group.to_owned(),
        member_id: member.to_owned(),
        generation,
        subscriptions: vec![Subscription {
            topic: "orders".into(),
            expression: "*".into(),
        }],
        session_timeout_ms: 30_000,
        strategy: Default::default(),
    }
}

fn fetch(group: &str) -> FetchOffsetsRequest {
    FetchOffsetsRequest {
        group: group.to_owned(),
        topic: "orders".into(),
        queues: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_offsets_are_served_by_its_offsets_queue_leader_only() {
    let etcd = etcd().await;
    let dir = tempfile::tempdir().unwrap();
    let a = join(member_config(dir.path(), &etcd, 1)).await;
    let b = join(member_config(dir.path(), &etcd, 2)).await;
    assert!(
        !a.broker.serves_topic(OFFSETS_TOPIC) && !b.broker.serves_topic(OFFSETS_TOPIC),
        "in a cluster the offsets topic waits for its first use"
    );
    create_topic(&a.broker, "orders", 4).await;
    await_topic(&b.broker, "orders").await;
    for queue in 0..4 {
        let leader = if a.broker.queue_leader("orders", queue) == Some(1) {
            &a
        } else {
            &b
        };
        send(&leader.broker, "orders", queue, numbered("orders", "m", 5)).await;
    }

    // A heartbeat on b creates the offsets topic; its queues are spread over both brokers.
    let first = call(&b.broker, heartbeat("probe", "m-0", None))
        .await
        .unwrap();
    assert!(first.generation > 0);
    await_topic(&a.broker, OFFSETS_TOPIC).await;
    let offsets = call(
        &a.broker,
        DescribeTopicRequest {
            name: OFFSETS_TOPIC.into(),
        },
    )
    .await
    .unwrap();
    let leaders: Vec<u32> = offsets.queues.iter().map(|q| q.leader).collect();
    assert_eq!(leaders.len(), 4);
    assert!(leaders.contains(&1) && leaders.contains(&2), "{leaders:?}");

    // One group whose offsets live on each broker.
    let on = |id: u32| group_led_by(&leaders, id);
    for (home, away, id) in [(&a, &b, 1), (&b, &a, 2)] {
        let group = on(id);
        let naming = format!("group {group}'s offsets are on broker {id} (at 127.0.0.1:2000{id})");
        // Manual commits (no member) on a queue the offsets broker leads or not.
        for queue in 0..4 {
            call(
                &home.broker,
                commit(&group, "", None, queue, u64::from(queue)),
            )
            .await
            .unwrap();
        }
        assert_not_leader(
            &refused(&away.broker, commit(&group, "", None, 0, 1)).await,
            &naming,
        );
        assert_not_leader(&refused(&away.broker, fetch(&group)).await, &naming);
        let describe = DescribeGroupRequest {
            group: group.clone(),
        };
        assert_not_leader(&refused(&away.broker, describe.clone()).await, &naming);
        let reset = ResetOffsetsRequest {
            group: group.clone(),
            topic: None,
            to: OffsetSpec::Earliest,
            execute: false,
        };
        assert_not_leader(&refused(&away.broker, reset).await, &naming);

        let fetched = call(&home.broker, fetch(&group)).await.unwrap();
        let expected: Vec<QueueOffset> = (0..4)
            .map(|queue| QueueOffset {
                queue,
                offset: Some(u64::from(queue)),
            })
            .collect();
        assert_eq!(fetched.offsets, expected);

        // Every queue is described with its committed offset; those led here with their end
        // and lag, the others with zeros for the client to fill from their leader.
        let description = call(&home.broker, describe).await.unwrap();
        assert_eq!(description.offsets.len(), 4);
        for offset in &description.offsets {
            assert_eq!(offset.committed, Some(u64::from(offset.queue)));
            if home.broker.queue_leader("orders", offset.queue) == Some(id) {
                assert_eq!(offset.log_end_offset, 5, "{offset:?}");
                assert_eq!(offset.lag, 5 - u64::from(offset.queue), "{offset:?}");
            } else {
                assert_eq!((offset.log_end_offset, offset.lag), (0, 0), "{offset:?}");
            }
        }
    }

    // Membership goes through any broker; commits are fenced by generation on the offsets
    // broker whichever broker the member heartbeats to.
    let group = on(1);
    let joined = call(&b.broker, heartbeat(&group, "member-1", None))
        .await
        .unwrap();
    call(
        &a.broker,
        commit(&group, "member-1", Some(joined.generation), 0, 3),
    )
    .await
    .unwrap();
    let fetched = call(&a.broker, fetch(&group)).await.unwrap();
    assert_eq!(fetched.offsets[0].offset, Some(3));
    let stale = commit(&group, "member-1", Some(joined.generation - 1), 0, 2);
    let fenced = refused(&a.broker, stale).await;
    assert_eq!(fenced.code, ErrorCode::IllegalGeneration, "{fenced}");

    a.close().await;
    b.close().await;
}
