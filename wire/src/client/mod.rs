//! The native async client: producer, push and pull consumers, admin.

mod accumulator;
mod assignment;
mod cluster;
mod consume_from;
mod fetch;
mod inbound;
mod membership;
mod producer;
mod push_consumer;
mod push_worker;
mod retry;
mod routes;
mod selector;
mod sender;
mod tag_filter;

pub use cluster::{
    Client, ClientConfig, BOOTSTRAP_ADDRESS_DEFAULT, ROUTE_REFRESH_INTERVAL_DEFAULT,
};
pub use consume_from::ConsumeFrom;
pub use fetch::PULL_TIMEOUT_MARGIN;
pub use producer::{
    Producer, ProducerConfig, SendHandle, PRODUCER_BATCH_BYTES_MAX,
    PRODUCER_IN_FLIGHT_PER_QUEUE_MAX,
};
pub use push_consumer::{
    PushConsumer, PushConsumerConfig, CONSUME_BATCH_SIZE_MAX, SESSION_TIMEOUT_MIN,
};
pub use push_worker::ConsumeResult;
pub use retry::{Backoff, DELAY_LEVELS_MS};
pub use selector::{QueueSelector, SelectQueueFn, SHARDING_KEY_PROPERTY};
pub use sender::SendReceipt;
pub use tag_filter::{TagFilter, TAG_EXPRESSION_BYTES_MAX, TAG_EXPRESSION_TAGS_MAX};
