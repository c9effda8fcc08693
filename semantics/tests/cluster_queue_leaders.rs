//! Two brokers of one cluster on etcd: a topic created on one is taken up by the other; each
//! serves send, pull and offset-for-time only for the queues it leads and answers the rest
//! `NotLeader` naming the leader and its address; routes list every live broker, and a queue
//! whose leader left is still routed; a topic deleted on one is dropped by the other.

mod common;

use common::cluster::*;
use common::*;
use wire::protocol::{
    DeleteTopicRequest, DescribeTopicRequest, OffsetForTimeRequest, QueryRouteRequest,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broker_serves_only_the_queues_it_leads() {
    let etcd = etcd().await;
    let dir = tempfile::tempdir().unwrap();
    let a = join(member_config(dir.path(), &etcd, 1)).await;
    let b = join(member_config(dir.path(), &etcd, 2)).await;

    create_topic(&a.broker, "orders", 4).await;
    await_topic(&b.broker, "orders").await;

    let route = call(
        &b.broker,
        QueryRouteRequest {
            topic: "orders".into(),
        },
    )
    .await
    .unwrap();
    let mut brokers: Vec<(u32, String)> = route
        .brokers
        .iter()
        .map(|b| (b.broker_id, b.address.clone()))
        .collect();
    brokers.sort();
    assert_eq!(
        brokers,
        [
            (1, "127.0.0.1:20001".to_owned()),
            (2, "127.0.0.1:20002".to_owned())
        ]
    );
    assert_eq!(route.queues.len(), 4);
    let leaders: Vec<u32> = route.queues.iter().map(|q| q.leader).collect();
    assert!(leaders.contains(&1) && leaders.contains(&2), "{leaders:?}");

    // Each broker has logs for exactly the queues it leads.
    for queue in &route.queues {
        for id in [1, 2] {
            let log = dir
                .path()
                .join(format!("broker-{id}/logs/orders-{}", queue.queue));
            assert_eq!(log.exists(), queue.leader == id, "{}", log.display());
        }
    }

    for queue in &route.queues {
        let (leader, other) = if queue.leader == 1 {
            (&a, &b)
        } else {
            (&b, &a)
        };
        let q = queue.queue;
        let body = format!("q{q}");
        send(&leader.broker, "orders", q, numbered("orders", &body, 1)).await;
        assert_eq!(
            bodies(&read_all(&leader.broker, "orders", q, 0).await),
            [format!("{body}-0")]
        );

        let naming = format!(
            "broker {} (at 127.0.0.1:2000{})",
            queue.leader, queue.leader
        );
        let send = refused(
            &other.broker,
            send_request("orders", q, numbered("orders", "x", 1)),
        );
        assert_not_leader(&send.await, &naming);
        assert_not_leader(
            &refused(&other.broker, pull_request("orders", q, 0, 0)).await,
            &naming,
        );
        let at = OffsetForTimeRequest {
            topic: "orders".into(),
            queue: q,
            timestamp: 0,
        };
        assert_not_leader(&refused(&other.broker, at).await, &naming);
    }

    // Each broker fills the offsets of the queues it leads and reports the others with
    // their leader and zeros.
    for (member, id) in [(&a, 1), (&b, 2)] {
        let description = call(
            &member.broker,
            DescribeTopicRequest {
                name: "orders".into(),
            },
        )
        .await
        .unwrap();
        for queue in description.queues {
            let expected_end = u64::from(queue.leader == id);
            assert_eq!(queue.log_end_offset, expected_end, "broker {id}: {queue:?}");
            assert_eq!(queue.high_watermark, expected_end, "broker {id}: {queue:?}");
            assert_eq!(queue.leader, leaders[queue.queue as usize]);
        }
    }

    // Deleted through the controller (a: it joined first); b drops it too.
    call(
        &a.broker,
        DeleteTopicRequest {
            name: "orders".into(),
        },
    )
    .await
    .unwrap();
    within(b.broker.await_topic("orders", false)).await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_whose_leader_left_is_still_routed() {
    let etcd = etcd().await;
    let dir = tempfile::tempdir().unwrap();
    let a = join(member_config(dir.path(), &etcd, 1)).await;
    let b = join(member_config(dir.path(), &etcd, 2)).await;
    create_topic(&a.broker, "orders", 2).await;
    b.close().await;
    // After the sync, a's view of the cluster has b's registration gone.
    within(a.etcd.sync()).await.unwrap();

    let route = call(
        &a.broker,
        QueryRouteRequest {
            topic: "orders".into(),
        },
    )
    .await
    .unwrap();
    let brokers: Vec<u32> = route.brokers.iter().map(|b| b.broker_id).collect();
    assert_eq!(brokers, [1]);
    let mut leaders: Vec<u32> = route.queues.iter().map(|q| q.leader).collect();
    leaders.sort();
    assert_eq!(
        leaders,
        [1, 2],
        "the queue led by the broker that left keeps its leader"
    );
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_id_taken_by_a_live_broker_is_refused() {
    let etcd = etcd().await;
    let dir = tempfile::tempdir().unwrap();
    let a = join(member_config(dir.path(), &etcd, 1)).await;
    let mut twin = member_config(dir.path(), &etcd, 1);
    twin.listen = "127.0.0.1:29999".into();
    twin.data_dir = dir.path().join("twin");
    let (opened, twin_etcd) = try_join(twin).await;
    let failure = opened.expect_err("the id is taken");
    assert!(
        matches!(&failure, semantics::Error::BrokerIdTaken { id: 1, address } if address == "127.0.0.1:20001"),
        "{failure}"
    );
    drop(twin_etcd);
    a.close().await;
}
