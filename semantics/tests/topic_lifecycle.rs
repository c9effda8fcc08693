//! A topic's life: create, list, describe, route, refuse duplicates and bad requests, delete.

mod common;

use common::*;
use semantics::OFFSETS_TOPIC;
use wire::protocol::{
    ApiKey, ApiVersionsRequest, CreateTopicRequest, DeleteTopicRequest, DescribeClusterRequest,
    DescribeTopicRequest, ListTopicsRequest, QueryRouteRequest,
};
use wire::ErrorCode;

fn create(name: &str, queues: u32, config: Vec<(String, String)>) -> CreateTopicRequest {
    CreateTopicRequest {
        name: name.to_owned(),
        queues,
        config,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_described_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;

    let created = call(&broker, create("orders", 3, Vec::new()))
        .await
        .unwrap();
    assert_eq!(created.name, "orders");
    assert!(!created.internal);
    assert_eq!(created.queues.len(), 3);
    for (i, queue) in created.queues.iter().enumerate() {
        assert_eq!(queue.queue, i as u32);
        assert_eq!(queue.leader, 0);
        assert_eq!((queue.log_start_offset, queue.log_end_offset), (0, 0));
    }

    send(&broker, "orders", 1, numbered("orders", "m", 5)).await;
    let described = call(
        &broker,
        DescribeTopicRequest {
            name: "orders".into(),
        },
    )
    .await
    .unwrap();
    let queue = &described.queues[1];
    assert_eq!(queue.log_end_offset, 5);
    assert_eq!(queue.high_watermark, 5);
    assert!(queue.size_bytes > 0);
    assert_eq!(described.queues[0].log_end_offset, 0);

    let listed = call(&broker, ListTopicsRequest::default()).await.unwrap();
    let names: Vec<&str> = listed.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["orders"], "internal topics are hidden by default");
    let all = call(
        &broker,
        ListTopicsRequest {
            include_internal: true,
        },
    )
    .await
    .unwrap();
    let offsets = all
        .topics
        .iter()
        .find(|t| t.name == OFFSETS_TOPIC)
        .expect("the offsets topic is listed when asked for");
    assert!(offsets.internal);
    assert_eq!(offsets.queues, 4);

    let route = call(
        &broker,
        QueryRouteRequest {
            topic: "orders".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(route.brokers.len(), 1);
    assert_eq!(route.brokers[0].address, "127.0.0.1:10911");
    assert_eq!(route.queues.len(), 3);

    call(
        &broker,
        DeleteTopicRequest {
            name: "orders".into(),
        },
    )
    .await
    .unwrap();
    let gone = call(
        &broker,
        DescribeTopicRequest {
            name: "orders".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(gone.code, ErrorCode::UnknownTopic);
    let send_after = call(
        &broker,
        send_request("orders", 0, numbered("orders", "x", 1)),
    )
    .await
    .unwrap_err();
    assert_eq!(send_after.code, ErrorCode::UnknownTopic);

    // The name is free again, and the new topic starts empty.
    let again = call(&broker, create("orders", 1, Vec::new()))
        .await
        .unwrap();
    assert_eq!(again.queues[0].log_end_offset, 0);
    broker.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_topic_requests_are_refused_with_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "orders", 1).await;

    let cases = [
        (create("orders", 1, Vec::new()), ErrorCode::TopicExists),
        (create("a/b", 1, Vec::new()), ErrorCode::InvalidName),
        (create("", 1, Vec::new()), ErrorCode::InvalidName),
        (create("__mine", 1, Vec::new()), ErrorCode::InvalidName),
        (create(OFFSETS_TOPIC, 1, Vec::new()), ErrorCode::InvalidName),
        (create("none", 0, Vec::new()), ErrorCode::InvalidArgument),
        (
            create("tuned", 1, vec![("retention.ms".into(), "1000".into())]),
            ErrorCode::InvalidArgument,
        ),
    ];
    for (request, code) in cases {
        let name = request.name.clone();
        let refused = call(&broker, request).await.unwrap_err();
        assert_eq!(refused.code, code, "{name:?}: {refused}");
    }
    let refused = call(
        &broker,
        create("tuned", 1, vec![("colour".into(), "blue".into())]),
    )
    .await
    .unwrap_err();
    assert!(refused.message.contains("colour"), "{refused}");

    let internal = call(
        &broker,
        DeleteTopicRequest {
            name: OFFSETS_TOPIC.into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(internal.code, ErrorCode::InvalidArgument);
    let missing = call(
        &broker,
        DeleteTopicRequest {
            name: "missing".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code, ErrorCode::UnknownTopic);
    let route = call(
        &broker,
        QueryRouteRequest {
            topic: "missing".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(route.code, ErrorCode::UnknownTopic);
    broker.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_name_the_broker_and_every_api() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_with(semantics::BrokerConfig {
        broker_id: 7,
        ..config(dir.path())
    })
    .await;
    let versions = call(&broker, ApiVersionsRequest {}).await.unwrap();
    assert_eq!(versions.broker_id, 7);
    assert_eq!(versions.server_version, env!("CARGO_PKG_VERSION"));
    let keys: Vec<u16> = versions.apis.iter().map(|a| a.api_key).collect();
    let expected: Vec<u16> = ApiKey::ALL.iter().map(|k| k.as_u16()).collect();
    assert_eq!(keys, expected);
    broker.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_broker_describes_its_cluster_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    let cluster = call(&broker, DescribeClusterRequest {}).await.unwrap();
    assert_eq!(cluster.coordinator, "embedded");
    assert_eq!(cluster.cluster, "");
    assert_eq!(cluster.controller, Some(broker.config().broker_id));
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.brokers[0].broker_id, broker.config().broker_id);
    assert_eq!(cluster.brokers[0].address, broker.config().advertised());
    assert!(cluster.brokers[0].started_at_ms > 0);
}
