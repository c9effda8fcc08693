//! The Runnel broker: RocketMQ semantics over `log-core` and the coordinator.
//!
//! [`Broker`] implements `wire`'s [`Service`](wire::Service) trait over a `log-core`
//! [`LogManager`](log_core::LogManager) and a [`Coordinator`](coordinator::Coordinator). It
//! knows nothing of how bytes lie on a socket: the server in `wire` decodes frames and calls
//! [`Service::call`](wire::Service::call) in each connection's arrival order.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use coordinator::EmbeddedCoordinator;
//! use semantics::{Broker, BrokerConfig};
//!
//! let config = BrokerConfig::default();
//! let coordinator = Arc::new(EmbeddedCoordinator::open(config.meta_dir())?);
//! let broker = Broker::open(config, coordinator).await?;
//! // hand `broker` (an `Arc<Broker>`, or `BrokerService(broker)`) to the server …
//! broker.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Request paths
//!
//! **Send** (`send.rs`, `appender.rs`, `queue.rs`). Inside `call`, synchronously: look up the
//! queue in the broker's map of queues it leads (`UnknownTopic`, `UnknownQueue`, `NotLeader`;
//! internal topics refuse sends), check the payload against `max_message_bytes`
//! (`MessageTooLarge`), and put the batch bytes on the queue's bounded appender channel
//! (`Busy` when full). The returned future awaits the append's result. The appender task
//! takes every waiting job per wake-up and appends them in order on one blocking thread with
//! `PartitionLog::append_as_leader`, which validates each batch (bounds, CRC, then every
//! record, decompressing within a per-append budget) and rewrites base offset and leader epoch in place — in the frame's own
//! buffer when nothing else shares it. After each append the queue's high watermark moves to
//! the log end (one node: the leader is the whole in-sync set) and a `watch` channel wakes
//! long polls. Under the every-write flush policy the jobs of one wake-up share one write and
//! one `fdatasync`.
//!
//! **Pull** (`pull.rs`). Checks the offset against `[log start, log end]`
//! (`OffsetOutOfRange`), reads whole batches as stored up to the high watermark on a blocking
//! thread, and with nothing to return waits on the queue's `watch` channel (subscribed before
//! the first read, so no append is missed) until an append, the deadline, topic deletion
//! (`UnknownTopic`) or broker close (answered empty). `OffsetForTime` uses the time index.
//!
//! **Topics** (`topics.rs`). The coordinator decides; the broker creates or deletes the logs
//! of the queues it leads, under one admin lock shared with the task that follows coordinator
//! events (`events.rs`). Internal topics (`__consumer_offsets`) are created by the broker,
//! live in their own log directory without retention, are hidden from `ListTopics` unless
//! asked, and can be read but not sent to.
//!
//! **Groups and offsets** (`groups.rs`, `offsets/`). Heartbeats and leaves go to the
//! coordinator; the broker remembers each member's connection and, when the coordinator
//! announces a new generation, sends its members `NotifyAssignment`. Commits are checked
//! (topic, queue, offset ≤ log end) and queued synchronously on their group's offsets writer
//! with a fence (the coordinator's generation check, started at once); the writer awaits the
//! fence, appends the offsets to `__consumer_offsets`, and acknowledges once the append is
//! durable per the flush policy. The latest offsets live in memory and are rebuilt on open by
//! replaying the topic, which is compacted by snapshot as it grows.
//!
//! **In a cluster** (`cluster.rs`; `BrokerConfig::etcd` set, an `EtcdCoordinator`): each
//! broker opens logs only for the queues it leads and answers the others `NotLeader`, naming
//! the leader and its address; topics created or deleted elsewhere are taken up or dropped from
//! coordinator events. A group's offsets are served by the broker leading its offsets queue
//! only (others answer `NotLeader` naming it); heartbeats and leaves are answered everywhere.
//! The offsets topic is created on its first use rather than at start-up.
//!
//! **Shutdown** (`broker.rs`). `Broker::close` makes every new request answer
//! `ShuttingDown`, ends waiting pulls empty, lets appenders and offsets writers finish what
//! they hold, and closes every log cleanly.
//!
//! Metrics (`metrics.rs`) go through the `metrics` facade; the binary installs the exporter.
//!
//! Not built yet: replication (a queue lives on its leader only; the high watermark is the
//! log end), moving a queue's leadership, tag filtering on the broker, delay levels,
//! transactions, retry and dead-letter topics, per-topic settings.

mod appender;
mod broker;
mod cluster;
pub mod config;
mod error;
mod events;
mod groups;
pub mod metrics;
mod offsets;
mod pull;
mod queue;
mod remote;
mod send;
mod service;
mod topics;

pub use broker::Broker;
pub use config::{BrokerConfig, Flush};
pub use error::{Error, Result};
pub use groups::{SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN};
pub use offsets::OFFSETS_TOPIC;
pub use service::BrokerService;
pub use topics::{INTERNAL_PREFIX, QUEUES_PER_TOPIC_MAX};

/// Limits of the send path, for tools and tests.
pub mod limits {
    pub use crate::appender::{
        APPEND_DRAIN_REQUESTS_MAX, APPEND_QUEUE_BYTES_MAX, APPEND_QUEUE_REQUESTS_MAX,
        SYNC_GROUP_BYTES_MAX,
    };
}
