//! `PullConsumer`: the application asks for messages (RocketMQ's `DefaultLitePullConsumer`,
//! Kafka's consumer).
//!
//! Two ways to get queues, not to be mixed:
//!
//! - `subscribe(topic, expression)`: the group assigns queues, with the same heartbeat and
//!   hand-over protocol as the push consumer. The group is joined at the first `poll`.
//! - `assign(queues)`: the application picks queues itself. Commits carry no member id and
//!   are accepted only while the group has no live members; with an empty group name there
//!   are no commits at all (and no committed offsets: `ConsumeFrom` decides the start).
//!
//! `poll(timeout)` returns the messages fetched so far (at most `max_poll_messages`), waiting
//! up to `timeout` for the first. Queues are fetched ahead in the background (`pull_queues`).
//! `commit` commits the position of everything `poll` has returned; with
//! `auto_commit_interval` set, `poll` does so itself when the interval has passed, before
//! fetching more: by then the application has processed what the previous `poll` returned.
//!
//! Revocation follows from the same rule. When the group takes a queue away, the consumer
//! stops fetching it at once but hands it over only at the next `poll` (or `close`), so the
//! messages the application is processing are not given to another member meanwhile; with
//! auto-commit on, its position is committed then. **Keep calling `poll`**: a consumer that
//! stops polling holds its queues until it is closed or dropped.
//!
//! `seek` moves a queue's position (messages already fetched from the old position are
//! dropped). `close` commits (with auto-commit on), leaves the group and stops the fetchers;
//! dropping the consumer does the same in the background.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cluster::Client;
use super::consume_from::{queue_bounds, ConsumeFrom};
use super::fetch::{PullSettings, PULL_WAIT_MIN};
use super::membership::{
    new_member_id, parse_subscriptions, validate_group, GroupHandle, Membership, MembershipConfig,
    SESSION_TIMEOUT_MIN,
};
use super::pull_queues::{Chunk, FetchContext, PullWorkers, Queues, PULL_CHUNKS_BUFFERED};
use super::tag_filter::TagFilter;
use crate::error::{Error, Result};
use crate::message::ReceivedMessage;
use crate::protocol::{
    CommitOffsetsRequest, GroupStrategy, OffsetCommit, QueueRef, NAME_BYTES_MAX, PULL_BYTES_MAX,
    PULL_WAIT_MS_MAX,
};

/// How a pull consumer fetches and commits; see the module docs.
#[derive(Clone, Debug)]
pub struct PullConsumerConfig {
    /// The group whose offsets are used; may be empty only with `assign`.
    pub group: String,
    pub consume_from: ConsumeFrom,
    pub session_timeout: Duration,
    /// How the group's queues are split; the group uses the strategy of its lowest member
    /// id. `Sticky` moves the fewest queues on a membership change.
    pub strategy: GroupStrategy,
    pub pull_batch_bytes: u32,
    pub pull_wait: Duration,
    /// `None`: commit only through `commit`.
    pub auto_commit_interval: Option<Duration>,
    /// The most messages one `poll` returns (Kafka's `max.poll.records`).
    pub max_poll_messages: usize,
}

impl Default for PullConsumerConfig {
    fn default() -> PullConsumerConfig {
        PullConsumerConfig {
            group: String::new(),
            consume_from: ConsumeFrom::Last,
            session_timeout: Duration::from_secs(10),
            strategy: GroupStrategy::default(),
            pull_batch_bytes: 1 << 20,
            pull_wait: Duration::from_secs(15),
            auto_commit_interval: Some(Duration::from_secs(5)),
            max_poll_messages: 500,
        }
    }
}

impl PullConsumerConfig {
    pub fn new(group: impl Into<String>) -> PullConsumerConfig {
        PullConsumerConfig {
            group: group.into(),
            ..PullConsumerConfig::default()
        }
    }

    fn validate(&self) -> Result<()> {
        let invalid = |reason: &str| Err(Error::InvalidArgument(reason.to_owned()));
        if self.group.len() > NAME_BYTES_MAX {
            return invalid("the group name is longer than NAME_BYTES_MAX");
        }
        if self.session_timeout < SESSION_TIMEOUT_MIN {
            return invalid("session_timeout must be at least 1 s");
        }
        if self.pull_batch_bytes == 0 || self.pull_batch_bytes > PULL_BYTES_MAX {
            return invalid("pull_batch_bytes must be 1 to PULL_BYTES_MAX");
        }
        let wait_max = Duration::from_millis(u64::from(PULL_WAIT_MS_MAX));
        if self.pull_wait < PULL_WAIT_MIN || self.pull_wait > wait_max {
            return invalid("pull_wait must be PULL_WAIT_MIN to PULL_WAIT_MS_MAX");
        }
        if self.auto_commit_interval.is_some_and(|i| i.is_zero()) {
            return invalid("auto_commit_interval must be positive");
        }
        if self.max_poll_messages == 0 {
            return invalid("max_poll_messages must be at least 1");
        }
        Ok(())
    }
}

/// A pull consumer; see the module docs.
#[derive(Clone, Debug)]
pub struct PullConsumer {
    inner: Arc<PullInner>,
}

#[derive(Debug)]
struct PullInner {
    client: Client,
    config: PullConsumerConfig,
    member_id: String,
    queues: Arc<Mutex<Queues>>,
    chunks: mpsc::Sender<Chunk>,
    receiving: tokio::sync::Mutex<Receiving>,
    /// A revocation waits for the next `poll` to release it.
    revoked: Arc<Notify>,
    mode: tokio::sync::Mutex<Mode>,
    /// What was last committed per queue, so unchanged positions are not re-sent.
    committed: Mutex<HashMap<QueueRef, u64>>,
}

#[derive(Debug)]
struct Receiving {
    chunks: mpsc::Receiver<Chunk>,
    leftover: Option<Chunk>,
    last_commit: Instant,
}

#[derive(Debug)]
enum Mode {
    Unset,
    Subscribing(Vec<(String, String)>),
    Subscribed {
        context: Arc<FetchContext>,
        handle: Arc<GroupHandle>,
        shutdown: watch::Sender<bool>,
        membership: JoinHandle<()>,
    },
    Assigned {
        context: Arc<FetchContext>,
    },
    Closed,
}

impl PullConsumer {
    pub fn new(client: &Client, config: PullConsumerConfig) -> Result<PullConsumer> {
        config.validate()?;
        let (chunks, receiver) = mpsc::channel(PULL_CHUNKS_BUFFERED);
        Ok(PullConsumer {
            inner: Arc::new(PullInner {
                client: client.clone(),
                member_id: new_member_id(&client.config().client_id),
                config,
                queues: Arc::new(Mutex::new(Queues::default())),
                chunks,
                receiving: tokio::sync::Mutex::new(Receiving {
                    chunks: receiver,
                    leftover: None,
                    last_commit: Instant::now(),
                }),
                revoked: Arc::new(Notify::new()),
                mode: tokio::sync::Mutex::new(Mode::Unset),
                committed: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Subscribes to `topic` with a tag expression; the group is joined at the first `poll`.
    pub async fn subscribe(
        &self,
        topic: impl Into<String>,
        expression: impl Into<String>,
    ) -> Result<()> {
        validate_group(&self.inner.config.group)?;
        let subscription = (topic.into(), expression.into());
        TagFilter::parse(&subscription.1)?;
        let mut mode = self.inner.mode.lock().await;
        match &mut *mode {
            Mode::Unset => *mode = Mode::Subscribing(vec![subscription]),
            Mode::Subscribing(subscriptions) => subscriptions.push(subscription),
            Mode::Subscribed { .. } => {
                return Err(Error::InvalidArgument(
                    "subscribe before the first poll".into(),
                ))
            }
            Mode::Assigned { .. } => {
                return Err(Error::InvalidArgument("this consumer uses assign".into()))
            }
            Mode::Closed => return Err(Error::Closed),
        }
        Ok(())
    }

    /// Consumes exactly `queues` (replacing an earlier assignment), without group membership.
    pub async fn assign(&self, queues: Vec<QueueRef>) -> Result<()> {
        let mut mode = self.inner.mode.lock().await;
        let context = match &*mode {
            Mode::Unset => Arc::new(FetchContext {
                client: self.inner.client.clone(),
                group: self.inner.config.group.clone(),
                consume_from: self.inner.config.consume_from,
                pull: self.pull_settings(),
                filters: HashMap::new(),
            }),
            Mode::Assigned { context } => context.clone(),
            Mode::Closed => return Err(Error::Closed),
            _ => {
                return Err(Error::InvalidArgument(
                    "this consumer uses subscribe".into(),
                ))
            }
        };
        let mut owned = self.inner.queues.lock();
        for queue in owned.queues() {
            if !queues.contains(&queue) {
                owned.remove(&queue);
            }
        }
        for queue in &queues {
            if !owned.contains(queue) {
                owned.start(queue, None, &context, &self.inner.chunks);
            }
        }
        *mode = Mode::Assigned { context };
        Ok(())
    }

    /// The queues this consumer fetches now.
    pub fn assignment(&self) -> Vec<QueueRef> {
        self.inner.queues.lock().queues()
    }

    /// This consumer's id in its group.
    pub fn member_id(&self) -> &str {
        &self.inner.member_id
    }

    /// Returns fetched messages, waiting up to `timeout` for at least one; an empty vector
    /// means none arrived in time.
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<ReceivedMessage>> {
        self.ensure_joined().await?;
        let deadline = Instant::now() + timeout;
        let mut receiving = self.inner.receiving.lock().await;
        self.inner.queues.lock().release();
        self.auto_commit(&mut receiving).await;
        let max = self.inner.config.max_poll_messages;
        let mut out = Vec::new();
        loop {
            if let Some(chunk) = receiving.leftover.as_mut() {
                if !self.inner.queues.lock().take(chunk, max, &mut out) {
                    receiving.leftover = None;
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
            tokio::select! {
                received = tokio::time::timeout_at(deadline, receiving.chunks.recv()) => {
                    match received {
                        Err(_elapsed) => return Ok(out),
                        Ok(None) => return Err(Error::Closed),
                        Ok(Some(chunk)) => receiving.leftover = self.inner.queues.lock().accept(chunk),
                    }
                }
                _ = self.inner.revoked.notified() => self.inner.queues.lock().release(),
            }
        }
    }

    /// Commits the position of everything `poll` has returned.
    pub async fn commit(&self) -> Result<()> {
        let target = self.commit_target().await?;
        self.commit_to(&target).await
    }

    /// Moves `queue`'s position to `offset`; the next `poll` returns messages from there.
    pub async fn seek(&self, topic: &str, queue: u32, offset: u64) -> Result<()> {
        let queue = QueueRef {
            topic: topic.to_owned(),
            queue,
        };
        let mode = self.inner.mode.lock().await;
        let context = match &*mode {
            Mode::Subscribed { context, .. } | Mode::Assigned { context } => context.clone(),
            Mode::Closed => return Err(Error::Closed),
            _ => return Err(Error::InvalidArgument("seek needs an owned queue".into())),
        };
        let mut queues = self.inner.queues.lock();
        queues.seek(&queue, offset, &context, &self.inner.chunks)?;
        Ok(())
    }

    /// Moves `queue` to its log start offset (the oldest message kept).
    pub async fn seek_to_beginning(&self, topic: &str, queue: u32) -> Result<()> {
        let bounds = self.bounds(topic, queue).await?;
        self.seek(topic, queue, bounds.start).await
    }

    /// Moves `queue` to its log end offset (only messages sent from now on).
    pub async fn seek_to_end(&self, topic: &str, queue: u32) -> Result<()> {
        let bounds = self.bounds(topic, queue).await?;
        self.seek(topic, queue, bounds.end).await
    }

    /// Commits (with auto-commit on), leaves the group and stops fetching.
    pub async fn close(&self) {
        {
            let mut queues = self.inner.queues.lock();
            queues.closing = true;
            queues.release();
        }
        if self.inner.config.auto_commit_interval.is_some() {
            if let Ok(target) = self.commit_target().await {
                if let Err(error) = self.commit_to(&target).await {
                    tracing::warn!(%error, "the closing commit failed");
                }
            }
        }
        let mode = std::mem::replace(&mut *self.inner.mode.lock().await, Mode::Closed);
        if let Mode::Subscribed {
            shutdown,
            membership,
            ..
        } = mode
        {
            shutdown.send_replace(true);
            if let Err(error) = membership.await {
                tracing::error!(%error, "the membership task failed");
            }
        }
        self.inner.queues.lock().clear();
    }

    async fn ensure_joined(&self) -> Result<()> {
        let mut mode = self.inner.mode.lock().await;
        let subscriptions = match &*mode {
            Mode::Unset => {
                return Err(Error::InvalidArgument(
                    "subscribe or assign before polling".into(),
                ))
            }
            Mode::Closed => return Err(Error::Closed),
            Mode::Subscribing(subscriptions) => subscriptions.clone(),
            Mode::Subscribed { .. } | Mode::Assigned { .. } => return Ok(()),
        };
        let inner = &self.inner;
        let (filters, announced) = parse_subscriptions(&subscriptions)?;
        let context = Arc::new(FetchContext {
            client: inner.client.clone(),
            group: inner.config.group.clone(),
            consume_from: inner.config.consume_from,
            pull: self.pull_settings(),
            filters,
        });
        let handle = GroupHandle::new(&inner.client, &inner.config.group, inner.member_id.clone());
        let workers = PullWorkers {
            queues: inner.queues.clone(),
            context: context.clone(),
            chunks: inner.chunks.clone(),
            revoked: inner.revoked.clone(),
            commit_on_revoke: inner.config.auto_commit_interval.is_some(),
        };
        let config = MembershipConfig {
            subscriptions: announced,
            session_timeout: inner.config.session_timeout,
            strategy: inner.config.strategy,
            commit_interval: None, // `poll` commits, after the application processed
        };
        let mut membership = Membership::new(inner.client.clone(), handle.clone(), config, workers);
        membership.join().await?;
        let (shutdown, signal) = watch::channel(false);
        *mode = Mode::Subscribed {
            context,
            handle,
            shutdown,
            membership: tokio::spawn(membership.run(signal)),
        };
        Ok(())
    }

    async fn auto_commit(&self, receiving: &mut Receiving) {
        let Some(interval) = self.inner.config.auto_commit_interval else {
            return;
        };
        if receiving.last_commit.elapsed() < interval {
            return;
        }
        receiving.last_commit = Instant::now();
        let Ok(target) = self.commit_target().await else {
            return;
        };
        if let Err(error) = self.commit_to(&target).await {
            tracing::warn!(%error, "auto-commit failed");
        }
    }

    async fn commit_target(&self) -> Result<CommitTarget> {
        match &*self.inner.mode.lock().await {
            Mode::Subscribed { handle, .. } => Ok(CommitTarget::Member(handle.clone())),
            Mode::Assigned { .. } if !self.inner.config.group.is_empty() => {
                Ok(CommitTarget::Manual)
            }
            Mode::Closed => Err(Error::Closed),
            _ => Err(Error::InvalidArgument("no group to commit to".into())),
        }
    }

    async fn commit_to(&self, target: &CommitTarget) -> Result<()> {
        let positions = self.inner.queues.lock().positions();
        let moved: Vec<(QueueRef, u64)> = {
            let committed = self.inner.committed.lock();
            positions
                .into_iter()
                .filter(|(queue, offset)| committed.get(queue) != Some(offset))
                .collect()
        };
        if moved.is_empty() {
            return Ok(());
        }
        let offsets: Vec<OffsetCommit> = moved
            .iter()
            .map(|(queue, offset)| OffsetCommit {
                topic: queue.topic.clone(),
                queue: queue.queue,
                offset: *offset,
            })
            .collect();
        let client = &self.inner.client;
        match target {
            CommitTarget::Member(handle) => handle.commit(client, offsets).await?,
            CommitTarget::Manual => {
                let request = CommitOffsetsRequest {
                    group: self.inner.config.group.clone(),
                    member_id: String::new(),
                    generation: None,
                    offsets,
                };
                client.call_group(&self.inner.config.group, request).await?;
            }
        }
        self.inner.committed.lock().extend(moved);
        Ok(())
    }

    async fn bounds(&self, topic: &str, queue: u32) -> Result<super::consume_from::QueueBounds> {
        let queue = QueueRef {
            topic: topic.to_owned(),
            queue,
        };
        queue_bounds(&self.inner.client, &queue).await
    }

    fn pull_settings(&self) -> PullSettings {
        PullSettings {
            max_bytes: self.inner.config.pull_batch_bytes,
            wait: self.inner.config.pull_wait,
        }
    }
}

#[derive(Debug)]
enum CommitTarget {
    Member(Arc<GroupHandle>),
    Manual,
}

impl Drop for PullInner {
    fn drop(&mut self) {
        let mut queues = self.queues.lock();
        queues.closing = true;
        queues.release();
        queues.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;

    fn new_consumer(group: &str) -> PullConsumer {
        let client = Client::new(ClientConfig::default()).unwrap();
        PullConsumer::new(&client, PullConsumerConfig::new(group)).unwrap()
    }

    fn q(queue: u32) -> QueueRef {
        QueueRef {
            topic: "t".into(),
            queue,
        }
    }

    #[test]
    fn invalid_configs_are_refused() {
        let client = Client::new(ClientConfig::default()).unwrap();
        for config in [
            PullConsumerConfig {
                pull_wait: Duration::ZERO,
                ..PullConsumerConfig::default()
            },
            PullConsumerConfig {
                max_poll_messages: 0,
                ..PullConsumerConfig::default()
            },
            PullConsumerConfig {
                auto_commit_interval: Some(Duration::ZERO),
                ..PullConsumerConfig::default()
            },
        ] {
            assert!(PullConsumer::new(&client, config).is_err());
        }
    }

    #[tokio::test]
    async fn subscribe_and_assign_do_not_mix() {
        let consumer = new_consumer("g");
        let error = consumer.poll(Duration::ZERO).await.unwrap_err();
        assert!(error.to_string().contains("subscribe or assign"), "{error}");
        consumer.subscribe("t", "A || B").await.unwrap();
        assert!(consumer.assign(vec![q(0)]).await.is_err());
        assert!(
            consumer.subscribe("u", "A |").await.is_err(),
            "bad expression"
        );

        let assigned = new_consumer("g");
        assigned.assign(vec![q(0)]).await.unwrap();
        assert!(assigned.subscribe("t", "*").await.is_err());
        assigned.close().await;

        let groupless = new_consumer("");
        assert!(
            groupless.subscribe("t", "*").await.is_err(),
            "a subscription needs a group"
        );
    }

    #[tokio::test]
    async fn assign_replaces_the_queues_and_seek_needs_an_owned_one() {
        let consumer = new_consumer("");
        consumer.assign(vec![q(0), q(1)]).await.unwrap();
        assert_eq!(consumer.assignment(), vec![q(0), q(1)]);
        consumer.assign(vec![q(1), q(2)]).await.unwrap();
        assert_eq!(consumer.assignment(), vec![q(1), q(2)]);
        consumer.seek("t", 2, 50).await.unwrap();
        assert!(consumer.seek("t", 0, 50).await.is_err());
        let polled = consumer.poll(Duration::from_millis(20)).await.unwrap();
        assert!(polled.is_empty(), "no broker, no messages");
        let error = consumer.commit().await.unwrap_err();
        assert!(error.to_string().contains("no group"), "{error}");
        consumer.close().await;
        assert!(consumer.assignment().is_empty());
        assert!(matches!(
            consumer.poll(Duration::ZERO).await,
            Err(Error::Closed)
        ));
    }

    #[tokio::test]
    async fn the_first_poll_of_a_subscriber_joins_and_reports_failure() {
        let consumer = new_consumer("g");
        consumer.subscribe("t", "*").await.unwrap();
        assert!(
            consumer.poll(Duration::ZERO).await.is_err(),
            "no broker to join"
        );
        tokio::time::timeout(Duration::from_secs(10), consumer.close())
            .await
            .expect("close returns");
    }
}
