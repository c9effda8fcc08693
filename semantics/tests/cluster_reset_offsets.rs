//! `ResetOffsets` in a cluster: the group's offsets broker plans every queue of the topic,
//! asking the leaders of the queues it does not lead for their offsets, and executes it.

mod common;

use common::cluster::*;
use common::*;
use wire::protocol::{DescribeTopicRequest, FetchOffsetsRequest, OffsetSpec, ResetOffsetsRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_covers_the_queues_other_brokers_lead() {
    let etcd = etcd().await;
    let dir = tempfile::tempdir().unwrap();
    let a = join_served(member_config(dir.path(), &etcd, 1)).await;
    let b = join_served(member_config(dir.path(), &etcd, 2)).await;
    let (ab, bb) = (&a.member.broker, &b.member.broker);
    create_topic(ab, "orders", 4).await;
    await_topic(bb, "orders").await;
    for queue in 0..4 {
        let leader = if ab.queue_leader("orders", queue) == Some(1) {
            ab
        } else {
            bb
        };
        send(
            leader,
            "orders",
            queue,
            numbered("orders", "m", 3 + queue as usize),
        )
        .await;
    }

    // The offsets topic, and a group whose offsets broker is a.
    let fetch = |group: &str| FetchOffsetsRequest {
        group: group.to_owned(),
        topic: "orders".into(),
        queues: Vec::new(),
    };
    let _ = call(ab, fetch("probe")).await;
    await_topic(bb, semantics::OFFSETS_TOPIC).await;
    let offsets = call(
        ab,
        DescribeTopicRequest {
            name: semantics::OFFSETS_TOPIC.into(),
        },
    )
    .await
    .unwrap();
    let leaders: Vec<u32> = offsets.queues.iter().map(|q| q.leader).collect();
    let group = group_led_by(&leaders, 1);

    let reset = |to, execute| ResetOffsetsRequest {
        group: group.clone(),
        topic: Some("orders".into()),
        to,
        execute,
    };
    let latest = call(ab, reset(OffsetSpec::Latest, true)).await.unwrap();
    let planned: Vec<(u32, u64)> = latest.plan.iter().map(|e| (e.queue, e.new)).collect();
    assert_eq!(planned, [(0, 3), (1, 4), (2, 5), (3, 6)]);
    let fetched = call(ab, fetch(&group)).await.unwrap();
    let committed: Vec<Option<u64>> = fetched.offsets.iter().map(|o| o.offset).collect();
    assert_eq!(committed, [Some(3), Some(4), Some(5), Some(6)]);

    let earliest = call(ab, reset(OffsetSpec::Earliest, false)).await.unwrap();
    for entry in &earliest.plan {
        assert_eq!(entry.new, 0, "{entry:?}");
        assert_eq!(entry.current, Some(3 + u64::from(entry.queue)), "{entry:?}");
    }

    a.close().await;
    b.close().await;
}
