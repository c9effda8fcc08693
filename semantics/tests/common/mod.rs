//! Helpers shared by the broker's tests: a broker on a temporary directory with the real
//! embedded coordinator, typed calls through `Service::call`, and batch building.

#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use coordinator::EmbeddedCoordinator;
use log_core::batch::split_batches;
use log_core::{BatchBuilder, Compression};
use semantics::{Broker, BrokerConfig};
use wire::protocol::{
    ApiRequest, CreateTopicRequest, PullRequest, PullResponse, SendRequest, SendResponse,
};
use wire::{Message, MessageId, ReceivedMessage, RequestContext, Service, ServiceError};

/// How long a test waits for an event before it fails loudly.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        offsets_queues: 4,
        ..BrokerConfig::default()
    }
}

/// Opens a broker on `config` with an embedded coordinator in `config.meta_dir()`.
pub async fn open_with(config: BrokerConfig) -> Arc<Broker> {
    let coordinator =
        Arc::new(EmbeddedCoordinator::open(config.meta_dir()).expect("open the coordinator"));
    within(Broker::open(config, coordinator))
        .await
        .expect("open the broker")
}

pub async fn open(dir: &Path) -> Arc<Broker> {
    open_with(config(dir)).await
}

/// Fails the test if `future` takes longer than `WAIT`.
pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("timed out waiting for the broker")
}

/// Calls the broker as the server would, and picks the typed response.
pub async fn call<R: ApiRequest>(broker: &Broker, request: R) -> Result<R::Response, ServiceError>
where
    R::Response: std::fmt::Debug,
{
    call_as(broker, "test", request).await
}

/// `call`, as a client named `client_id`.
pub async fn call_as<R: ApiRequest>(
    broker: &Broker,
    client_id: &str,
    request: R,
) -> Result<R::Response, ServiceError>
where
    R::Response: std::fmt::Debug,
{
    let pending = broker.call(RequestContext::detached(client_id), request.into());
    let response = within(pending).await?;
    Ok(R::response_from(response).expect("a response of the request's kind"))
}

pub async fn create_topic(broker: &Broker, name: &str, queues: u32) {
    call(
        broker,
        CreateTopicRequest {
            name: name.to_owned(),
            queues,
            config: Vec::new(),
        },
    )
    .await
    .expect("create the topic");
}

/// One batch holding `messages`.
pub fn batch(messages: &[Message], compression: Compression) -> Bytes {
    let mut builder = BatchBuilder::new(compression);
    for message in messages {
        message.append_to(&mut builder, &MessageId::generate());
    }
    builder.build().expect("build a batch").freeze()
}

/// A batch of `count` small messages whose bodies are `{prefix}-{i}`.
pub fn numbered(topic: &str, prefix: &str, count: usize) -> Bytes {
    let messages: Vec<Message> = (0..count)
        .map(|i| Message::new(topic, format!("{prefix}-{i}")))
        .collect();
    batch(&messages, Compression::None)
}

pub fn send_request(topic: &str, queue: u32, batches: Bytes) -> SendRequest {
    SendRequest {
        topic: topic.to_owned(),
        queue,
        acks: wire::protocol::Acks::Leader,
        timeout_ms: 0,
        batches,
    }
}

pub async fn send(broker: &Broker, topic: &str, queue: u32, batches: Bytes) -> SendResponse {
    call(broker, send_request(topic, queue, batches))
        .await
        .expect("send")
}

pub fn pull_request(topic: &str, queue: u32, offset: u64, max_wait_ms: u32) -> PullRequest {
    PullRequest {
        topic: topic.to_owned(),
        queue,
        offset,
        max_bytes: 1 << 20,
        max_wait_ms,
    }
}

pub async fn pull(broker: &Broker, topic: &str, queue: u32, offset: u64) -> PullResponse {
    call(broker, pull_request(topic, queue, offset, 0))
        .await
        .expect("pull")
}

/// The messages in pulled batches, from `from` on.
pub fn messages(topic: &str, queue: u32, from: u64, batches: Bytes) -> Vec<ReceivedMessage> {
    let mut out = Vec::new();
    for batch in split_batches(batches) {
        let batch = batch.expect("a valid batch");
        for record in batch.records().expect("records") {
            let record = record.expect("a valid record");
            if record.offset.0 >= from {
                out.push(ReceivedMessage::from_record(topic, queue, record));
            }
        }
    }
    out
}

/// Every message of a queue from `from` to its end, pulled page by page.
pub async fn read_all(broker: &Broker, topic: &str, queue: u32, from: u64) -> Vec<ReceivedMessage> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let response = pull(broker, topic, queue, at).await;
        let page = messages(topic, queue, at, response.batches);
        match page.last() {
            Some(last) => at = last.offset + 1,
            None => return out,
        }
        out.extend(page);
    }
}

pub fn bodies(messages: &[ReceivedMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

pub mod cluster;
