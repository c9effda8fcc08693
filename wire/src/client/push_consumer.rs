//! `PushConsumer`: a group member that pulls its queues and calls a listener (RocketMQ's
//! `DefaultMQPushConsumer` in clustering mode).
//!
//! The consumer joins `group` with its subscriptions; the broker assigns it queues (see
//! `membership` and `assignment` for the hand-over). Each owned queue has a worker
//! (`push_worker`) that long-polls it and calls the listener with the messages in offset
//! order; different queues are consumed in parallel, at most `consume_concurrency` listener
//! calls at a time. Positions are committed every `auto_commit_interval`, when a queue is
//! taken away, and at shutdown. Delivery is at least once: a crash or a lost membership
//! replays what was consumed after the last commit.
//!
//! The listener is a closure over a slice of messages, called on tokio's blocking pool so it
//! may block (`PushConsumer::new`), or an async closure run as a task
//! (`PushConsumer::with_async_listener`). It answers `ConsumeResult::Success` or
//! `ReconsumeLater`; the latter redelivers the same messages after a back-off and holds the
//! queue (see `push_worker`).
//!
//! `start` makes the first heartbeat itself, so a wrong address or group fails there.
//! `shutdown` stops every queue, waits for listener calls in progress, commits and leaves the
//! group. Dropping the consumer does the same in the background without blocking.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::cluster::Client;
use super::consume_from::ConsumeFrom;
use super::fetch::{PullSettings, PULL_WAIT_MIN};
use super::membership::{
    new_member_id, parse_subscriptions, validate_group, BoxFuture, GroupHandle, Membership,
    MembershipConfig, QueueWorkers, SESSION_TIMEOUT_MIN,
};
use super::push_worker::{self, ConsumeResult, Listener, Position, PushContext};
use crate::error::{Error, Result};
use crate::message::ReceivedMessage;
use crate::protocol::{GroupStrategy, QueueRef, Subscription, PULL_BYTES_MAX, PULL_WAIT_MS_MAX};

/// The most messages one listener call may be given.
pub const CONSUME_BATCH_SIZE_MAX: usize = 1024;

/// How a push consumer joins its group and consumes; see the module docs.
#[derive(Clone, Debug)]
pub struct PushConsumerConfig {
    pub group: String,
    /// `(topic, tag expression)` pairs: `*` or `TagA || TagB`.
    pub subscriptions: Vec<(String, String)>,
    /// Where to start queues the group never committed (see `ConsumeFrom`).
    pub consume_from: ConsumeFrom,
    /// The broker drops a member it has not heard from for this long.
    pub session_timeout: Duration,
    /// How the group's queues are split; the group uses the strategy of its lowest member
    /// id. `Sticky` moves the fewest queues on a membership change.
    pub strategy: GroupStrategy,
    /// The most batch bytes one pull asks for.
    pub pull_batch_bytes: u32,
    /// How long the broker holds a pull that finds nothing (RocketMQ's 15 s long poll).
    pub pull_wait: Duration,
    pub auto_commit_interval: Duration,
    /// Listener calls in progress at once, across queues (each queue has at most one).
    pub consume_concurrency: usize,
    /// The most messages per listener call (RocketMQ's `consumeMessageBatchMaxSize`, 1).
    pub consume_batch_size: usize,
    /// The longest wait before redelivering messages the listener asked to reconsume.
    pub reconsume_backoff_max: Duration,
}

impl Default for PushConsumerConfig {
    fn default() -> PushConsumerConfig {
        PushConsumerConfig {
            group: String::new(),
            subscriptions: Vec::new(),
            consume_from: ConsumeFrom::Last,
            session_timeout: Duration::from_secs(10),
            strategy: GroupStrategy::default(),
            pull_batch_bytes: 1 << 20,
            pull_wait: Duration::from_secs(15),
            auto_commit_interval: Duration::from_secs(1),
            consume_concurrency: 20,
            consume_batch_size: 1,
            reconsume_backoff_max: Duration::from_secs(60),
        }
    }
}

impl PushConsumerConfig {
    /// The defaults, for `group`.
    pub fn new(group: impl Into<String>) -> PushConsumerConfig {
        PushConsumerConfig {
            group: group.into(),
            ..PushConsumerConfig::default()
        }
    }

    /// Adds a subscription to `topic` with a tag expression.
    #[must_use]
    pub fn subscribe(mut self, topic: impl Into<String>, expression: impl Into<String>) -> Self {
        self.subscriptions.push((topic.into(), expression.into()));
        self
    }

    #[must_use]
    pub fn consume_from(mut self, from: ConsumeFrom) -> Self {
        self.consume_from = from;
        self
    }

    fn validate(&self) -> Result<()> {
        validate_group(&self.group)?;
        let invalid = |reason: &str| Err(Error::InvalidArgument(reason.to_owned()));
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
        if self.auto_commit_interval.is_zero() {
            return invalid("auto_commit_interval must be positive");
        }
        if self.consume_concurrency == 0 {
            return invalid("consume_concurrency must be at least 1");
        }
        if !(1..=CONSUME_BATCH_SIZE_MAX).contains(&self.consume_batch_size) {
            return invalid("consume_batch_size must be 1 to CONSUME_BATCH_SIZE_MAX");
        }
        Ok(())
    }
}

/// A push consumer; see the module docs.
#[derive(Clone, Debug)]
pub struct PushConsumer {
    inner: Arc<PushInner>,
}

#[derive(Debug)]
struct PushInner {
    client: Client,
    context: Arc<PushContext>,
    subscriptions: Vec<Subscription>,
    member_id: String,
    session_timeout: Duration,
    strategy: GroupStrategy,
    auto_commit_interval: Duration,
    state: tokio::sync::Mutex<State>,
}

#[derive(Debug)]
enum State {
    Created,
    Running {
        shutdown: watch::Sender<bool>,
        membership: JoinHandle<()>,
    },
    Stopped,
}

impl PushConsumer {
    /// A consumer calling a blocking-safe `listener`; nothing happens until `start`.
    pub fn new(
        client: &Client,
        config: PushConsumerConfig,
        listener: impl Fn(&[ReceivedMessage]) -> ConsumeResult + Send + Sync + 'static,
    ) -> Result<PushConsumer> {
        PushConsumer::build(client, config, Listener::Sync(Arc::new(listener)))
    }

    /// A consumer calling an async `listener` (it runs as a task and must not block).
    pub fn with_async_listener<F, Fut>(
        client: &Client,
        config: PushConsumerConfig,
        listener: F,
    ) -> Result<PushConsumer>
    where
        F: Fn(Arc<[ReceivedMessage]>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ConsumeResult> + Send + 'static,
    {
        let listener = Listener::Async(Arc::new(move |messages| Box::pin(listener(messages))));
        PushConsumer::build(client, config, listener)
    }

    fn build(
        client: &Client,
        config: PushConsumerConfig,
        listener: Listener,
    ) -> Result<PushConsumer> {
        config.validate()?;
        let (filters, subscriptions) = parse_subscriptions(&config.subscriptions)?;
        let context = Arc::new(PushContext {
            client: client.clone(),
            group: config.group.clone(),
            filters,
            consume_from: config.consume_from,
            pull: PullSettings {
                max_bytes: config.pull_batch_bytes,
                wait: config.pull_wait,
            },
            listener,
            concurrency: Arc::new(Semaphore::new(config.consume_concurrency)),
            batch_size: config.consume_batch_size,
            reconsume_backoff_max: config.reconsume_backoff_max,
        });
        Ok(PushConsumer {
            inner: Arc::new(PushInner {
                client: client.clone(),
                context,
                subscriptions,
                member_id: new_member_id(&client.config().client_id),
                session_timeout: config.session_timeout,
                strategy: config.strategy,
                auto_commit_interval: config.auto_commit_interval,
                state: tokio::sync::Mutex::new(State::Created),
            }),
        })
    }

    /// This consumer's id in its group.
    pub fn member_id(&self) -> &str {
        &self.inner.member_id
    }

    /// Joins the group (the first heartbeat happens here) and starts consuming.
    pub async fn start(&self) -> Result<()> {
        let mut state = self.inner.state.lock().await;
        if !matches!(*state, State::Created) {
            return Err(Error::InvalidArgument(
                "the push consumer was already started".into(),
            ));
        }
        let inner = &self.inner;
        let handle = GroupHandle::new(&inner.client, &inner.context.group, inner.member_id.clone());
        let config = MembershipConfig {
            subscriptions: inner.subscriptions.clone(),
            session_timeout: inner.session_timeout,
            commit_interval: Some(inner.auto_commit_interval),
            strategy: inner.strategy,
        };
        let workers = PushWorkers {
            context: inner.context.clone(),
            running: HashMap::new(),
        };
        let mut membership = Membership::new(inner.client.clone(), handle, config, workers);
        membership.join().await?;
        let (shutdown, signal) = watch::channel(false);
        let membership = tokio::spawn(membership.run(signal));
        *state = State::Running {
            shutdown,
            membership,
        };
        Ok(())
    }

    /// Stops consuming: waits for listener calls in progress, commits, leaves the group.
    pub async fn shutdown(&self) {
        let mut state = self.inner.state.lock().await;
        if let State::Running {
            shutdown,
            membership,
        } = std::mem::replace(&mut *state, State::Stopped)
        {
            shutdown.send_replace(true);
            if let Err(error) = membership.await {
                tracing::error!(%error, "the membership task failed");
            }
        }
    }
}

/// The push consumer's queue workers, one task per owned queue.
#[derive(Debug)]
struct PushWorkers {
    context: Arc<PushContext>,
    running: HashMap<QueueRef, Running>,
}

#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Option<u64>>,
    position: Arc<Position>,
}

impl QueueWorkers for PushWorkers {
    fn start(&mut self, queue: &QueueRef) {
        if self.running.contains_key(queue) {
            return;
        }
        let (stop, signal) = watch::channel(false);
        let position = Arc::new(Position::unknown());
        let task = tokio::spawn(push_worker::run(
            self.context.clone(),
            queue.clone(),
            position.clone(),
            signal,
        ));
        self.running.insert(
            queue.clone(),
            Running {
                stop,
                task,
                position,
            },
        );
    }

    fn stop(&mut self, queue: &QueueRef) -> BoxFuture<Option<u64>> {
        match self.running.remove(queue) {
            Some(running) => {
                running.stop.send_replace(true);
                Box::pin(async move {
                    let _keep_signal = running.stop;
                    running.task.await.ok().flatten()
                })
            }
            None => Box::pin(std::future::ready(None)),
        }
    }

    fn abandon(&mut self, queue: &QueueRef) {
        if let Some(running) = self.running.remove(queue) {
            running.stop.send_replace(true);
            running.task.abort();
        }
    }

    fn positions(&self) -> Vec<(QueueRef, u64)> {
        self.running
            .iter()
            .filter_map(|(queue, running)| Some((queue.clone(), running.position.get()?)))
            .collect()
    }
}

impl Drop for PushWorkers {
    fn drop(&mut self) {
        // Workers still running when membership ends (it was aborted) stop with it.
        for (_, running) in self.running.drain() {
            running.stop.send_replace(true);
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

    #[test]
    fn invalid_configs_are_refused() {
        let listener = |_: &[ReceivedMessage]| ConsumeResult::Success;
        let no_subscription = PushConsumerConfig::new("g");
        assert!(PushConsumer::new(&client(), no_subscription, listener).is_err());
        let no_group = PushConsumerConfig::default().subscribe("t", "*");
        assert!(PushConsumer::new(&client(), no_group, listener).is_err());
        let bad_tags = PushConsumerConfig::new("g").subscribe("t", "A ||");
        assert!(PushConsumer::new(&client(), bad_tags, listener).is_err());
        let zero_batch = PushConsumerConfig {
            consume_batch_size: 0,
            ..PushConsumerConfig::new("g").subscribe("t", "*")
        };
        assert!(PushConsumer::new(&client(), zero_batch, listener).is_err());
        let good = PushConsumerConfig::new("g").subscribe("t", "A || B");
        let consumer = PushConsumer::new(&client(), good, listener).unwrap();
        assert!(consumer.member_id().starts_with("runnel-client-"));
    }

    #[tokio::test]
    async fn start_fails_when_no_broker_answers_and_shutdown_still_returns() {
        let config = PushConsumerConfig::new("g").subscribe("t", "*");
        let consumer = PushConsumer::with_async_listener(&client(), config, |_| async {
            ConsumeResult::Success
        })
        .unwrap();
        assert!(consumer.start().await.is_err());
        tokio::time::timeout(Duration::from_secs(10), consumer.shutdown())
            .await
            .expect("shutdown of a consumer that never started returns");
    }
}
