//! A broker whose view of the cluster lags (its etcd watch stopped) still serves a topic
//! another broker created, from the moment the creation was acknowledged: sends, pulls,
//! routes and commits naming it look the topic up in etcd instead of answering
//! `UnknownTopic`. A topic nobody created is still unknown.
//!
//! The lag is made by stopping the lagging broker's coordinator tasks (`crash`): its cache
//! never hears of the topic, as happens for a while after an etcd outage or on a slow watch.

mod common;

use common::cluster::*;
use common::*;
use semantics::OFFSETS_TOPIC;
use wire::protocol::{CommitOffsetsRequest, FetchOffsetsRequest, OffsetCommit, QueryRouteRequest};
use wire::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_behind_on_events_serves_a_topic_created_elsewhere() {
    let etcd = etcd().await;
    let dir = tempfile::tempdir().unwrap();
    let a = join(member_config(dir.path(), &etcd, 1)).await;
    let b = join(member_config(dir.path(), &etcd, 2)).await;
    let group = group_served_by(&a, &b, 2).await;
    // b's broker key stays until its lease runs out, so b still gets queues placed on it.
    b.etcd.crash();

    create_topic(&a.broker, "orders", 4).await;

    let route = call(
        &b.broker,
        QueryRouteRequest {
            topic: "orders".into(),
        },
    )
    .await
    .expect("b routes a topic its cache never heard of");
    let led_by_b: Vec<u32> = route
        .queues
        .iter()
        .filter(|q| q.leader == 2)
        .map(|q| q.queue)
        .collect();
    assert!(!led_by_b.is_empty(), "{:?}", route.queues);

    for &queue in &led_by_b {
        let body = format!("q{queue}");
        send(&b.broker, "orders", queue, numbered("orders", &body, 2)).await;
        assert_eq!(
            bodies(&read_all(&b.broker, "orders", queue, 0).await),
            [format!("{body}-0"), format!("{body}-1")]
        );
    }

    // A group whose offsets b serves commits a position in a topic b never heard of.
    let unknown = refused(&b.broker, commit(&group, "audit", 0)).await;
    assert_eq!(unknown.code, ErrorCode::UnknownTopic, "{unknown}");
    create_topic(&a.broker, "audit", 2).await;
    call(&b.broker, commit(&group, "audit", 1))
        .await
        .expect("a commit naming a topic b's cache never heard of");
    let fetched = call(
        &b.broker,
        FetchOffsetsRequest {
            group,
            topic: "audit".into(),
            queues: vec![0],
        },
    )
    .await
    .expect("fetch");
    assert_eq!(fetched.offsets.len(), 1, "{fetched:?}");
    assert_eq!(fetched.offsets[0].offset, Some(1));

    let unknown = refused(
        &b.broker,
        send_request("never", 0, numbered("never", "x", 1)),
    )
    .await;
    assert_eq!(unknown.code, ErrorCode::UnknownTopic, "{unknown}");

    within(a.broker.close()).await.expect("close a");
    within(b.broker.close()).await.expect("close b");
}

fn commit(group: &str, topic: &str, offset: u64) -> CommitOffsetsRequest {
    CommitOffsetsRequest {
        group: group.to_owned(),
        member_id: String::new(),
        generation: None,
        offsets: vec![OffsetCommit {
            topic: topic.to_owned(),
            queue: 0,
            offset,
        }],
    }
}

/// Has `a` create the offsets topic, waits until `b` serves it too, and answers a group whose
/// offsets broker `leader` serves.
async fn group_served_by(a: &Member, b: &Member, leader: u32) -> String {
    let fetch = FetchOffsetsRequest {
        group: "anyone".into(),
        topic: OFFSETS_TOPIC.into(),
        queues: Vec::new(),
    };
    // The offsets topic is created on a group's first use; this fetch may be redirected.
    let _ = call(&a.broker, fetch).await;
    await_topic(&a.broker, OFFSETS_TOPIC).await;
    await_topic(&b.broker, OFFSETS_TOPIC).await;
    let route = call(
        &a.broker,
        QueryRouteRequest {
            topic: OFFSETS_TOPIC.into(),
        },
    )
    .await
    .expect("route the offsets topic");
    let leaders: Vec<u32> = route.queues.iter().map(|q| q.leader).collect();
    group_led_by(&leaders, leader)
}
