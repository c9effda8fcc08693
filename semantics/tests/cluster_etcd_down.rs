//! With etcd unreachable a broker of a cluster keeps answering what its coordinator's cache
//! knows (routes, sends to queues it leads) and answers metadata writes `Busy` (retriable)
//! in bounded time, never hanging a request.

mod common;

use common::cluster::*;
use common::*;
use wire::protocol::{CreateTopicRequest, QueryRouteRequest};
use wire::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_writes_answer_busy_while_etcd_is_down() {
    let mut etcd = etcd().await;
    let dir = tempfile::tempdir().unwrap();
    let a = join(member_config(dir.path(), &etcd, 1)).await;
    create_topic(&a.broker, "orders", 2).await;
    etcd.stop().await;

    let route = call(
        &a.broker,
        QueryRouteRequest {
            topic: "orders".into(),
        },
    )
    .await
    .expect("routes answer from the cache");
    assert_eq!(route.queues.len(), 2);
    send(&a.broker, "orders", 0, numbered("orders", "m", 1)).await;

    let create = CreateTopicRequest {
        name: "payments".into(),
        queues: 1,
        config: Vec::new(),
    };
    let failure = refused(&a.broker, create).await;
    assert_eq!(failure.code, ErrorCode::Busy, "{failure}");
    assert!(failure.code.is_retriable());

    within(a.broker.close()).await.unwrap();
}
