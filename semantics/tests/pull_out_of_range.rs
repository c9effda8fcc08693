//! A pull outside `[log start, log end]` is refused with the range in its message; the log end
//! itself reads as empty; unknown topics and queues are named.

mod common;

use common::*;
use wire::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_outside_the_stored_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    create_topic(&broker, "orders", 1).await;
    send(&broker, "orders", 0, numbered("orders", "m", 4)).await;

    let beyond = call(&broker, pull_request("orders", 0, 5, 0))
        .await
        .unwrap_err();
    assert_eq!(beyond.code, ErrorCode::OffsetOutOfRange);
    assert!(beyond.message.contains("[0, 4]"), "{beyond}");

    let at_end = pull(&broker, "orders", 0, 4).await;
    assert!(at_end.batches.is_empty());
    assert_eq!(at_end.log_end_offset, 4);

    let unknown_topic = call(&broker, pull_request("missing", 0, 0, 0))
        .await
        .unwrap_err();
    assert_eq!(unknown_topic.code, ErrorCode::UnknownTopic);
    let unknown_queue = call(&broker, pull_request("orders", 9, 0, 0))
        .await
        .unwrap_err();
    assert_eq!(unknown_queue.code, ErrorCode::UnknownQueue);
    assert!(unknown_queue.message.contains("orders"), "{unknown_queue}");
    broker.close().await.unwrap();
}
