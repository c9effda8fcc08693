//! Deleting a topic wakes the pulls waiting on it, which answer `UnknownTopic`.

mod common;

use std::future::Future;
use std::task::Poll;

use common::*;
use wire::protocol::DeleteTopicRequest;
use wire::{ErrorCode, RequestContext, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_ends_its_waiting_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "doomed", 1).await;

    let mut waiting = Box::pin(broker.call(
        RequestContext::detached("consumer"),
        pull_request("doomed", 0, 0, 30_000).into(),
    ));
    let first = std::future::poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx))).await;
    assert!(first.is_pending());

    call(
        &broker,
        DeleteTopicRequest {
            name: "doomed".into(),
        },
    )
    .await
    .unwrap();
    let ended = within(waiting).await.unwrap_err();
    assert_eq!(ended.code, ErrorCode::UnknownTopic);
    broker.close().await.unwrap();
}
