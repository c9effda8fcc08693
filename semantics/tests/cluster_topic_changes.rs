//! Topic creates and deletes are the controller's: asked of another broker, they are
//! forwarded to the controller, which places the queues over the live brokers, and its answer
//! comes back. A request another broker forwarded is not forwarded again, and a controller
//! that cannot be reached makes the change fail `Busy` (retriable), not hang.

mod common;

use common::cluster::*;
use common::*;
use coordinator::Coordinator;
use wire::protocol::{CreateTopicRequest, DeleteTopicRequest};
use wire::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_changes_asked_of_any_broker_are_made_by_the_controller() {
    let etcd = etcd().await;
    let dir = tempfile::tempdir().unwrap();
    let a = join_served(member_config(dir.path(), &etcd, 1)).await;
    await_controller(&a.member, 1).await;
    let b = join(member_config(dir.path(), &etcd, 2)).await;
    within(b.etcd.sync()).await.expect("b sees both brokers");

    let created = call(&b.broker, create_request("orders", 6))
        .await
        .expect("create through b");
    assert_eq!(created.queues.len(), 6);
    let leaders: Vec<u32> = created.queues.iter().map(|q| q.leader).collect();
    assert_eq!(
        leaders.iter().filter(|l| **l == 1).count(),
        3,
        "placed over both brokers: {leaders:?}"
    );
    let placed = a
        .member
        .etcd
        .topic("orders")
        .await
        .expect("read the topic")
        .expect("the topic exists");
    assert_eq!(
        placed.queues.iter().map(|q| q.leader).collect::<Vec<_>>(),
        leaders
    );
    await_topic(&b.broker, "orders").await;

    let again = call(&b.broker, create_request("orders", 6))
        .await
        .expect_err("the name is taken");
    assert_eq!(again.code, ErrorCode::TopicExists, "{again}");

    // A request forwarded to a broker that is not the controller stops there.
    let forwarded = call_as(&b.broker, "runnel-broker-1", create_request("audit", 2))
        .await
        .expect_err("b is not the controller");
    assert_eq!(forwarded.code, ErrorCode::Busy, "{forwarded}");
    assert!(
        forwarded.message.contains("not the controller"),
        "{forwarded}"
    );

    call(
        &b.broker,
        DeleteTopicRequest {
            name: "orders".into(),
        },
    )
    .await
    .expect("delete through b");
    within(b.broker.await_topic("orders", false)).await;
    assert_eq!(a.member.etcd.topic("orders").await.expect("read"), None);

    // The controller stops serving clients (it is still the controller): changes through b
    // fail retriably, naming it.
    let mut a = a;
    a.stop_serving().await;
    let unreachable = call(&b.broker, create_request("audit", 2))
        .await
        .expect_err("the controller cannot be reached");
    assert_eq!(unreachable.code, ErrorCode::Busy, "{unreachable}");
    assert!(unreachable.message.contains("broker 1"), "{unreachable}");
    assert_eq!(b.etcd.topic("audit").await.expect("read"), None);

    b.close().await;
    a.member.close().await;
}

fn create_request(name: &str, queues: u32) -> CreateTopicRequest {
    CreateTopicRequest {
        name: name.to_owned(),
        queues,
        config: Vec::new(),
    }
}

/// Waits until `member`'s coordinator names broker `id` the controller.
async fn await_controller(member: &Member, id: u32) {
    let mut events = member.etcd.events();
    within(async {
        while member.etcd.controller() != Some(id) {
            // Any event, or a lagging receiver, is a reason to look again.
            let _ = events.recv().await;
        }
    })
    .await;
}
