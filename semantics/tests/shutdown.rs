//! A closing broker answers waiting pulls empty, and a closed one answers every request
//! `ShuttingDown`; its logs reopen cleanly.

mod common;

use std::future::Future;
use std::task::Poll;

use common::*;
use wire::protocol::{ApiVersionsRequest, Response};
use wire::{ErrorCode, RequestContext, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_broker_answers_shutting_down() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "orders", 1).await;
    send(&broker, "orders", 0, numbered("orders", "m", 3)).await;

    let mut waiting = Box::pin(broker.call(
        RequestContext::detached("consumer"),
        pull_request("orders", 0, 3, 30_000).into(),
    ));
    let first = std::future::poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx))).await;
    assert!(first.is_pending());

    within(broker.close()).await.unwrap();
    match within(waiting).await {
        Ok(Response::Pull(response)) => assert!(response.batches.is_empty()),
        other => panic!("a waiting pull ends empty at close: {other:?}"),
    }

    for refused in [
        call(&broker, ApiVersionsRequest {}).await.map(|_| ()),
        call(
            &broker,
            send_request("orders", 0, numbered("orders", "late", 1)),
        )
        .await
        .map(|_| ()),
        call(&broker, pull_request("orders", 0, 0, 0))
            .await
            .map(|_| ()),
    ] {
        assert_eq!(refused.unwrap_err().code, ErrorCode::ShuttingDown);
    }
    within(broker.close()).await.unwrap();
    drop(broker);

    let reopened = open(dir.path()).await;
    assert_eq!(
        bodies(&read_all(&reopened, "orders", 0, 0).await),
        ["m-0", "m-1", "m-2"]
    );
    reopened.close().await.unwrap();
}
