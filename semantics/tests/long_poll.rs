//! A pull on an empty queue waits for an append and returns it; with a short wait and no
//! append it returns empty.

mod common;

use common::*;
use std::future::Future;
use std::task::Poll;

use wire::{RequestContext, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_pull_wakes_when_a_message_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "events", 1).await;

    let mut waiting = Box::pin(broker.call(
        RequestContext::detached("consumer"),
        pull_request("events", 0, 0, 30_000).into(),
    ));
    // Poll once so the pull is parked on the queue before the send: the send must wake it.
    let first = std::future::poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx))).await;
    assert!(
        first.is_pending(),
        "an empty queue has nothing to answer yet"
    );

    send(&broker, "events", 0, numbered("events", "woke", 1)).await;
    let answer = within(waiting).await.expect("pull");
    let wire::protocol::Response::Pull(response) = answer else {
        panic!("not a pull response: {answer:?}");
    };
    assert_eq!(response.log_end_offset, 1);
    assert_eq!(
        bodies(&messages("events", 0, 0, response.batches)),
        ["woke-0"]
    );
    broker.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_with_a_short_wait_and_no_append_returns_empty() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "quiet", 1).await;
    send(&broker, "quiet", 0, numbered("quiet", "old", 2)).await;

    let response = call(&broker, pull_request("quiet", 0, 2, 50))
        .await
        .unwrap();
    assert!(response.batches.is_empty());
    assert_eq!((response.log_start_offset, response.log_end_offset), (0, 2));
    broker.close().await.unwrap();
}
