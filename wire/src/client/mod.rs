//! The native async client: `Producer`, `PushConsumer`, `PullConsumer` and `Admin`, sharing one
//! `Client` (connections to brokers and a cache of topic routes).
//!
//! Names follow RocketMQ where its users would look for them (sync / async / one-way sends,
//! queue selectors, tag expressions, `ConsumeFromWhere`, `ReconsumeLater`), and Rust habits
//! elsewhere: typed configs with `Default`, cheap-to-clone handles, `async` everywhere, one
//! error type (`wire::Error`, with `is_retriable`), and `close` / `shutdown` that flush and
//! leave while `Drop` never blocks.
//!
//! ```no_run
//! use std::time::Duration;
//! use wire::client::{
//!     Client, ClientConfig, ConsumeFrom, ConsumeResult, Producer, ProducerConfig,
//!     PushConsumer, PushConsumerConfig,
//! };
//! use wire::Message;
//!
//! # async fn example() -> wire::Result<()> {
//! let client = Client::connect(ClientConfig::with_bootstrap(["127.0.0.1:10911"])).await?;
//!
//! let producer = Producer::new(&client, ProducerConfig::default())?;
//! let receipt = producer.send(Message::new("orders", "placed").with_tag("TagA")).await?;
//! println!("stored at {}:{} as {}", receipt.queue, receipt.offset, receipt.message_id);
//! let pending = producer.send_async(Message::new("orders", "paid")).await?;
//! let receipt = pending.await?;
//! producer.close().await;
//!
//! let config = PushConsumerConfig::new("billing")
//!     .subscribe("orders", "TagA || TagB")
//!     .consume_from(ConsumeFrom::First);
//! let consumer = PushConsumer::new(&client, config, |messages| {
//!     for message in messages {
//!         println!("{} {:?}", message.offset, message.body);
//!     }
//!     ConsumeResult::Success
//! })?;
//! consumer.start().await?;
//! tokio::time::sleep(Duration::from_secs(10)).await;
//! consumer.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Modules, from the bottom up: `cluster` (the `Client`), `routes`, `inbound` (the broker's
//! notifications); `selector`, `accumulator`, `sender`, `producer`; `tag_filter`,
//! `consume_from`, `fetch`, `assignment` (the hand-over rules as plain data), `membership`
//! (the heartbeat task), `push_worker`, `push_consumer`, `pull_queues`, `pull_consumer`;
//! `admin`; `retry` (back-off schedules).

mod accumulator;
mod admin;
mod assignment;
mod cluster;
mod consume_from;
mod fetch;
mod inbound;
mod membership;
mod producer;
mod pull_consumer;
mod pull_queues;
mod push_consumer;
mod push_worker;
mod retry;
mod routes;
mod selector;
mod sender;
mod tag_filter;

pub use admin::Admin;
pub use cluster::{
    Client, ClientConfig, BOOTSTRAP_ADDRESS_DEFAULT, ROUTE_REFRESH_INTERVAL_DEFAULT,
};
pub use consume_from::ConsumeFrom;
pub use fetch::{PULL_TIMEOUT_MARGIN, PULL_WAIT_MIN};
pub use membership::SESSION_TIMEOUT_MIN;
pub use producer::{
    Producer, ProducerConfig, SendHandle, PRODUCER_BATCH_BYTES_MAX,
    PRODUCER_IN_FLIGHT_PER_QUEUE_MAX,
};
pub use pull_consumer::{PullConsumer, PullConsumerConfig};
pub use push_consumer::{PushConsumer, PushConsumerConfig, CONSUME_BATCH_SIZE_MAX};
pub use push_worker::ConsumeResult;
pub use retry::{Backoff, DELAY_LEVELS_MS};
pub use selector::{QueueSelector, SelectQueueFn, SHARDING_KEY_PROPERTY};
pub use sender::SendReceipt;
pub use tag_filter::{TagFilter, TAG_EXPRESSION_BYTES_MAX, TAG_EXPRESSION_TAGS_MAX};

// What users of the client need from the protocol, so `wire::client::*` is enough.
pub use crate::protocol::{Acks, OffsetSpec, QueueRef};
pub use log_core::Compression;
