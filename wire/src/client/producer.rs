//! `Producer`: sends messages, batched per queue, in RocketMQ's three modes.
//!
//! - `send` waits for the receipt (RocketMQ's synchronous send). Its batch does not wait for
//!   the linger: it leaves as soon as the queue has a free in-flight slot, with whatever else
//!   joined it by then.
//! - `send_async` queues the message and returns a `SendHandle` at once; await the handle for
//!   the receipt. Many sends are in flight at a time: this is the fast path.
//! - `send_one_way` sends one message with `acks` none: no answer, no retry, no receipt.
//! - `send_batch` sends several messages of one topic to one queue as one request.
//!
//! Batching, order and retries are the accumulator's and the sender's (see `accumulator` and
//! `sender`). Defaults follow RocketMQ where it has one (3 attempts, 3 s per request, 4 KiB
//! compression threshold) and Kafka for batching (5 ms linger, 5 requests in flight per
//! queue). Buffered bytes are bounded by `buffer_bytes`: when that much is waiting for
//! answers, `send_async` waits (back-pressure) instead of growing memory without bound.
//!
//! A producer is cheap to clone. `close` sends what is queued, waits for every answer and
//! stops the tasks; dropping the last clone without `close` still sends what was queued,
//! in the background, and never blocks.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use log_core::Compression;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Semaphore};

use super::accumulator::{build_batch, record_size_estimate, BatchPolicy};
use super::cluster::Client;
use super::retry::Backoff;
use super::selector::{QueueChooser, QueueSelector};
use super::sender::{
    receipts, send_with_retries, BatchReply, QueueSender, SendReceipt, SendSettings,
};
use crate::error::{Error, Result};
use crate::message::{Message, MessageId};
use crate::protocol::{Acks, SendRequest, FRAME_BYTES_MAX};

/// The largest `batch_bytes` a producer accepts.
pub const PRODUCER_BATCH_BYTES_MAX: usize = 16 << 20;
/// The most requests a producer keeps in flight per queue.
pub const PRODUCER_IN_FLIGHT_PER_QUEUE_MAX: usize = 64;
/// Room left in a frame for the request header and body fields around the batches.
const SEND_FRAME_OVERHEAD_BYTES: usize = 64 * 1024;

/// How a producer batches, compresses, acknowledges and retries; see the module docs.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// How long a queue's first waiting message waits for others to share its batch.
    pub linger: Duration,
    /// The most uncompressed bytes per batch; a larger message is sent alone.
    pub batch_bytes: usize,
    pub compression: Compression,
    /// Batches smaller than this are sent uncompressed.
    pub compression_threshold_bytes: usize,
    /// `Leader` or `All`; `send_one_way` always uses none.
    pub acks: Acks,
    /// Retries after the first attempt, for retriable errors only.
    pub retries: u32,
    pub retry_backoff: Backoff,
    /// How long one attempt may take (the broker gets it too, to bound its wait for `acks`).
    pub request_timeout: Duration,
    /// Requests in flight per queue. 1 guarantees per-queue send order, retries and
    /// reconnects included; more keeps it in the common case only (see `sender`).
    pub max_in_flight_per_queue: usize,
    /// Message bytes queued or in flight before `send_async` waits.
    pub buffer_bytes: usize,
    pub queue_selector: QueueSelector,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            linger: Duration::from_millis(5),
            batch_bytes: 256 * 1024,
            compression: Compression::None,
            compression_threshold_bytes: 4096,
            acks: Acks::Leader,
            retries: 2,
            retry_backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            request_timeout: Duration::from_secs(3),
            max_in_flight_per_queue: 5,
            buffer_bytes: 32 << 20,
            queue_selector: QueueSelector::RoundRobin,
        }
    }
}

impl ProducerConfig {
    fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidArgument(reason));
        if self.acks == Acks::None {
            return invalid("acks None has no receipts: use send_one_way".into());
        }
        if !(1..=PRODUCER_BATCH_BYTES_MAX).contains(&self.batch_bytes) {
            return invalid(format!(
                "batch_bytes {} is outside 1..={PRODUCER_BATCH_BYTES_MAX}",
                self.batch_bytes
            ));
        }
        if self.buffer_bytes < self.batch_bytes || self.buffer_bytes > u32::MAX as usize {
            return invalid(format!(
                "buffer_bytes {} must be at least batch_bytes and below 4 GiB",
                self.buffer_bytes
            ));
        }
        if !(1..=PRODUCER_IN_FLIGHT_PER_QUEUE_MAX).contains(&self.max_in_flight_per_queue) {
            return invalid(format!(
                "max_in_flight_per_queue {} is outside 1..={PRODUCER_IN_FLIGHT_PER_QUEUE_MAX}",
                self.max_in_flight_per_queue
            ));
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout must be positive".into());
        }
        Ok(())
    }
}

/// Sends messages; see the module docs.
#[derive(Clone, Debug)]
pub struct Producer {
    inner: Arc<ProducerInner>,
}

/// A producer's queue senders, by topic. Every send looks its topic up here, so the map uses
/// a fast hasher: its keys are the application's own topic names, not attacker input.
type Topics = HashMap<String, TopicState, foldhash::fast::RandomState>;

/// One topic's queue senders by queue id (kept across route changes: they hold queued
/// batches), and the snapshot sends use.
#[derive(Debug, Default)]
struct TopicState {
    by_queue: HashMap<u32, Arc<QueueSender>>,
    current: Option<Arc<TopicSenders>>,
}

/// What a send to a topic needs, read under one lock: a sender for each queue of the topic's
/// route, in the route's order. It is used while the client's route generation is the one it
/// was made at; after that (a refresh, or a route marked stale) the next send reads the route
/// again. The route's age is checked once per batch, by the sender's own route lookup, rather
/// than here for every message.
#[derive(Debug)]
struct TopicSenders {
    generation: u64,
    /// `senders[i]` sends to the queue at index `i` of the route.
    senders: Vec<Arc<QueueSender>>,
}

#[derive(Debug)]
struct ProducerInner {
    settings: Arc<SendSettings>,
    chooser: QueueChooser,
    buffer_bytes: usize,
    /// Queue senders by topic. `None` once closed.
    topics: Mutex<Option<Topics>>,
    /// Every queued message holds a clone of the current sender; `flush` swaps in a new
    /// channel and waits until the old one has no senders left.
    flush_epoch: Mutex<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
    /// Serialises flushes, so a flush also waits for the epoch an earlier flush waits on.
    flush_serial: tokio::sync::Mutex<()>,
    closing: AtomicBool,
    shutdown: watch::Sender<bool>,
}

/// The receipt of a `send_async`, to await.
#[derive(Debug)]
pub struct SendHandle {
    message_id: MessageId,
    queue: u32,
    /// The reply of the message's batch, and the message's index in the batch.
    reply: Arc<BatchReply>,
    index: u32,
    /// This handle's place among the reply's waiters, once it has waited.
    slot: Option<usize>,
}

impl SendHandle {
    /// The id the message was given, known before it is sent.
    pub fn message_id(&self) -> MessageId {
        self.message_id
    }

    /// The queue the message was queued for.
    pub fn queue(&self) -> u32 {
        self.queue
    }
}

impl Future for SendHandle {
    type Output = Result<SendReceipt>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.reply
            .poll_receipt(cx, &mut this.slot, this.index, this.message_id)
    }
}

impl Producer {
    /// A producer sending through `client`'s connections. No I/O happens until the first send.
    pub fn new(client: &Client, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let settings = Arc::new(SendSettings {
            client: client.clone(),
            policy: BatchPolicy {
                batch_bytes: config.batch_bytes,
                linger: config.linger,
                compression: config.compression,
                compression_threshold_bytes: config.compression_threshold_bytes,
            },
            acks: config.acks,
            retries: config.retries,
            backoff: config.retry_backoff,
            request_timeout: config.request_timeout,
            max_in_flight: config.max_in_flight_per_queue,
            buffer: Arc::new(Semaphore::new(config.buffer_bytes)),
        });
        Ok(Producer {
            inner: Arc::new(ProducerInner {
                settings,
                chooser: QueueChooser::new(config.queue_selector),
                buffer_bytes: config.buffer_bytes,
                topics: Mutex::new(Some(Topics::default())),
                flush_epoch: Mutex::new(mpsc::channel(1)),
                flush_serial: tokio::sync::Mutex::new(()),
                closing: AtomicBool::new(false),
                shutdown: watch::channel(false).0,
            }),
        })
    }

    /// Sends `message` and waits for its receipt.
    pub async fn send(&self, message: Message) -> Result<SendReceipt> {
        self.enqueue(message, true).await?.await
    }

    /// Queues `message` and returns at once with a handle to await its receipt; waits only
    /// while `buffer_bytes` are already queued.
    pub async fn send_async(&self, message: Message) -> Result<SendHandle> {
        self.enqueue(message, false).await
    }

    /// Sends `message` without waiting for, or getting, an answer (`acks` none, no retry).
    /// It does not wait for the queue's batch either, so it may overtake async sends queued
    /// for the same queue.
    pub async fn send_one_way(&self, message: Message) -> Result<()> {
        self.check_open()?;
        message.validate()?;
        let queue = self.choose_queue(&message).await?;
        let ids = [MessageId::generate()];
        let policy = &self.inner.settings.policy;
        let (batches, _) = build_batch(std::slice::from_ref(&message), &ids, policy)?;
        let client = &self.inner.settings.client;
        let (connection, route) = client.leader(&message.topic, queue).await?;
        let request = SendRequest {
            topic: message.topic.clone(),
            queue,
            acks: Acks::None,
            timeout_ms: 0,
            batches,
        };
        let result = connection.send_one_way(request).await;
        if let Err(error) = &result {
            client.note_failure(&route, error);
        }
        result
    }

    /// Sends messages of one topic to one queue (chosen by the first message) as one request
    /// of one batch, retried as a whole; the receipts come back in message order. The batch
    /// does not pass through the queue's accumulator.
    pub async fn send_batch(&self, messages: Vec<Message>) -> Result<Vec<SendReceipt>> {
        self.check_open()?;
        let Some(first) = messages.first() else {
            return Ok(Vec::new());
        };
        let topic = first.topic.clone();
        if let Some(other) = messages.iter().find(|m| m.topic != topic) {
            return Err(Error::InvalidArgument(format!(
                "send_batch needs one topic: found {topic} and {}",
                other.topic
            )));
        }
        messages.iter().try_for_each(Message::validate)?;
        let queue = self.choose_queue(first).await?;
        let ids: Vec<MessageId> = messages.iter().map(|_| MessageId::generate()).collect();
        let (batches, _) = build_batch(&messages, &ids, &self.inner.settings.policy)?;
        if batches.len() > FRAME_BYTES_MAX - SEND_FRAME_OVERHEAD_BYTES {
            return Err(Error::InvalidArgument(format!(
                "a batch of {} bytes does not fit in one request",
                batches.len()
            )));
        }
        let settings = self.inner.settings.clone();
        let response = send_with_retries(settings, topic.clone(), queue, batches).await?;
        Ok(receipts(&topic.into(), queue, ids.into_iter(), &response))
    }

    /// Sends everything queued before this call and waits until each has its answer (the
    /// answers go to the sends' handles).
    pub async fn flush(&self) {
        let _serial = self.inner.flush_serial.lock().await;
        let (old_sender, mut old_receiver) = {
            let mut epoch = self.inner.flush_epoch.lock();
            std::mem::replace(&mut *epoch, mpsc::channel(1))
        };
        drop(old_sender);
        for sender in self.queue_senders() {
            sender.seal_now();
        }
        // Returns `None` once every message of the old epoch has been answered.
        let _ = old_receiver.recv().await;
    }

    /// Refuses new sends, flushes, and stops the per-queue tasks.
    pub async fn close(&self) {
        self.inner.closing.store(true, Ordering::Release);
        self.flush().await;
        self.inner.shutdown.send_replace(true);
        self.inner.topics.lock().take();
    }

    async fn enqueue(&self, message: Message, urgent: bool) -> Result<SendHandle> {
        self.check_open()?;
        message.validate()?;
        let topic = self.topic_senders(&message.topic).await?;
        // A route holds far fewer than u32::MAX queues.
        let count = u32::try_from(topic.senders.len()).unwrap_or(u32::MAX);
        let index = self.choose_index(&message, count)?;
        // `choose_index` returns an index below the count, and there is a sender per queue.
        let sender = &topic.senders[index as usize];
        let queue = sender.queue();
        // buffer_bytes < 4 GiB, checked in `new`.
        let bytes = record_size_estimate(&message).min(self.inner.buffer_bytes) as u32;
        let buffer = &self.inner.settings.buffer;
        let buffer = match buffer.try_acquire_many(bytes) {
            Ok(permit) => permit,
            Err(_) => {
                // The buffer is full, perhaps of batches waiting for their linger: send them
                // now rather than stall for it.
                for sender in self.queue_senders() {
                    sender.seal_now();
                }
                buffer
                    .acquire_many(bytes)
                    .await
                    .map_err(|_| Error::Closed)?
            }
        };
        let message_id = MessageId::generate_at(message.born_timestamp);
        let flush = || self.inner.flush_epoch.lock().0.clone();
        let (reply, index) = sender.append(message, message_id, buffer, urgent, flush);
        Ok(SendHandle {
            message_id,
            queue,
            reply,
            index,
            slot: None,
        })
    }

    async fn choose_queue(&self, message: &Message) -> Result<u32> {
        let route = self.inner.settings.client.route(&message.topic).await?;
        let index = self.choose_index(message, route.queue_count())?;
        Ok(route.queue_at(index).unwrap_or(index))
    }

    /// The index, below `count`, of the queue `message` goes to among its topic's `count`.
    fn choose_index(&self, message: &Message, count: u32) -> Result<u32> {
        if count == 0 {
            return Err(Error::InvalidArgument(format!(
                "topic {} has no queues",
                message.topic
            )));
        }
        self.inner.chooser.choose(message, count)
    }

    /// `topic`'s current `TopicSenders`; reads the route and makes the missing senders when
    /// the snapshot is missing or its generation has passed.
    async fn topic_senders(&self, topic: &str) -> Result<Arc<TopicSenders>> {
        let client = &self.inner.settings.client;
        // Read before the route, so a route stored meanwhile only costs another look.
        let generation = client.route_generation();
        {
            let topics = self.inner.topics.lock();
            let topics = topics.as_ref().ok_or(Error::Closed)?;
            if let Some(current) = topics.get(topic).and_then(|t| t.current.as_ref()) {
                if current.generation == generation {
                    return Ok(current.clone());
                }
            }
        }
        let route = client.route(topic).await?;
        let mut topics = self.inner.topics.lock();
        let topics = topics.as_mut().ok_or(Error::Closed)?;
        let state = topics.entry(topic.to_owned()).or_default();
        let senders = route
            .queue_ids()
            .map(|queue| {
                let sender = state.by_queue.entry(queue).or_insert_with(|| {
                    QueueSender::spawn(
                        topic,
                        queue,
                        self.inner.settings.clone(),
                        self.inner.shutdown.subscribe(),
                    )
                });
                sender.clone()
            })
            .collect();
        let current = Arc::new(TopicSenders {
            generation,
            senders,
        });
        state.current = Some(current.clone());
        Ok(current)
    }

    fn queue_senders(&self) -> Vec<Arc<QueueSender>> {
        let topics = self.inner.topics.lock();
        topics
            .iter()
            .flat_map(|topics| topics.values())
            .flat_map(|topic| topic.by_queue.values().cloned())
            .collect()
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closing.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;

    fn client() -> Client {
        Client::new(ClientConfig::default()).unwrap()
    }

    /// A client whose route for `topic` names two queues on a broker nobody listens on.
    fn unreachable(topic: &str) -> Client {
        let client = client();
        client.insert_route(topic, unreachable_route(0..2));
        client
    }

    /// A route naming `queues`, led by a broker nobody listens on.
    fn unreachable_route(queues: impl Iterator<Item = u32>) -> crate::protocol::QueryRouteResponse {
        use crate::protocol::{BrokerAddress, QueryRouteResponse, QueueRoute};
        let queues = queues
            .map(|queue| QueueRoute {
                queue,
                leader: 1,
                leader_epoch: 0,
            })
            .collect();
        let brokers = vec![BrokerAddress {
            broker_id: 1,
            address: "127.0.0.1:1".into(),
        }];
        QueryRouteResponse { brokers, queues }
    }

    fn failing_fast() -> ProducerConfig {
        ProducerConfig {
            linger: Duration::from_secs(3600),
            batch_bytes: 1024,
            buffer_bytes: 1024,
            retries: 1,
            retry_backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(1)),
            ..ProducerConfig::default()
        }
    }

    const GENEROUS: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn flush_sends_lingering_batches_and_every_send_gets_its_answer() {
        let producer = Producer::new(&unreachable("t"), failing_fast()).unwrap();
        let mut handles = Vec::new();
        for n in 0..4 {
            handles.push(
                producer
                    .send_async(Message::new("t", format!("m{n}")))
                    .await
                    .unwrap(),
            );
        }
        let queues: std::collections::BTreeSet<u32> = handles.iter().map(|h| h.queue()).collect();
        assert_eq!(queues.len(), 2, "round robin used both queues");
        tokio::time::timeout(GENEROUS, producer.flush())
            .await
            .expect("flush does not wait for the one-hour linger");
        for handle in handles {
            let id = handle.message_id();
            let error = tokio::time::timeout(GENEROUS, handle)
                .await
                .unwrap()
                .unwrap_err();
            assert!(error.is_retriable(), "{id}: {error}");
        }
    }

    #[tokio::test]
    async fn sends_follow_their_topics_new_route() {
        use std::collections::BTreeSet;
        let client = unreachable("t");
        let producer = Producer::new(&client, failing_fast()).unwrap();
        let mut queues = BTreeSet::new();
        for _ in 0..4 {
            let handle = producer.send_async(Message::new("t", "x")).await.unwrap();
            queues.insert(handle.queue());
        }
        assert_eq!(queues, BTreeSet::from([0, 1]));

        // The topic's route changes (as a refresh would find): the producer's snapshot of it
        // is read again at the next send.
        client.insert_route("t", unreachable_route(10..13));
        let mut queues = BTreeSet::new();
        for _ in 0..6 {
            let handle = producer.send_async(Message::new("t", "x")).await.unwrap();
            queues.insert(handle.queue());
        }
        assert_eq!(queues, BTreeSet::from([10, 11, 12]));
    }

    #[tokio::test]
    async fn a_synchronous_send_does_not_wait_for_the_linger() {
        let producer = Producer::new(&unreachable("t"), failing_fast()).unwrap();
        let result = tokio::time::timeout(GENEROUS, producer.send(Message::new("t", "x")))
            .await
            .expect("the batch left at once");
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn full_batches_and_a_full_buffer_do_not_wait_for_the_linger() {
        // A one-hour linger and a 1 KiB buffer: sends go on only because full batches leave
        // at once and a full buffer pushes the open batches out.
        let producer = Producer::new(&unreachable("t"), failing_fast()).unwrap();
        let body = "x".repeat(200);
        let mut handles = Vec::new();
        for _ in 0..20 {
            let send = producer.send_async(Message::new("t", body.clone()));
            let handle = tokio::time::timeout(GENEROUS, send)
                .await
                .expect("buffer space came back without a flush")
                .unwrap();
            handles.push(handle);
        }
        let first = handles.remove(0);
        let answered = tokio::time::timeout(GENEROUS, first).await;
        assert!(answered.expect("answered without a flush").is_err());
        producer.close().await;
        for handle in handles {
            assert!(handle.await.is_err());
        }
    }

    #[tokio::test]
    async fn buffer_bytes_are_returned_when_sends_are_answered() {
        // 40 sends of ~300 bytes through a 1 KiB buffer: this finishes only if each answered
        // send gives its bytes back.
        let producer = Producer::new(&unreachable("t"), failing_fast()).unwrap();
        let body = "x".repeat(200);
        for _ in 0..40 {
            let handle = tokio::time::timeout(
                GENEROUS,
                producer.send_async(Message::new("t", body.clone())),
            )
            .await
            .expect("buffer space came back")
            .unwrap();
            producer.flush().await;
            assert!(handle.await.is_err());
        }
        tokio::time::timeout(GENEROUS, producer.close())
            .await
            .unwrap();
    }

    #[test]
    fn invalid_configs_are_refused() {
        let bad = [
            ProducerConfig {
                acks: Acks::None,
                ..ProducerConfig::default()
            },
            ProducerConfig {
                batch_bytes: 0,
                ..ProducerConfig::default()
            },
            ProducerConfig {
                buffer_bytes: 1024,
                ..ProducerConfig::default()
            },
            ProducerConfig {
                max_in_flight_per_queue: 0,
                ..ProducerConfig::default()
            },
        ];
        for config in bad {
            assert!(Producer::new(&client(), config).is_err());
        }
        assert!(Producer::new(&client(), ProducerConfig::default()).is_ok());
    }

    #[tokio::test]
    async fn invalid_messages_fail_before_any_io() {
        let producer = Producer::new(&client(), ProducerConfig::default()).unwrap();
        let reserved = Message::new("t", "x").with_property("UNIQ_KEY", "1");
        assert!(matches!(
            producer.send_async(reserved).await,
            Err(Error::InvalidArgument(_))
        ));
        let mixed = vec![Message::new("a", "x"), Message::new("b", "y")];
        let error = producer.send_batch(mixed).await.unwrap_err();
        assert!(error.to_string().contains("one topic"), "{error}");
        assert!(producer.send_batch(Vec::new()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_closed_producer_refuses_sends_and_flush_returns() {
        let producer = Producer::new(&client(), ProducerConfig::default()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), producer.close())
            .await
            .expect("closing an idle producer finishes");
        assert!(matches!(
            producer.send(Message::new("t", "x")).await,
            Err(Error::Closed)
        ));
        assert!(matches!(
            producer.send_one_way(Message::new("t", "x")).await,
            Err(Error::Closed)
        ));
        tokio::time::timeout(Duration::from_secs(10), producer.flush())
            .await
            .expect("flushing a closed producer finishes");
    }
}
