//! One queue of a push consumer: find the start offset, pull one response ahead, hand the
//! messages to the listener in offset order, and keep the position to commit.
//!
//! The position is the offset after the last message the listener accepted (and after any
//! filtered-out messages behind it), so a commit never covers a message that was not
//! consumed. `ReconsumeLater` gives the same messages back to the listener after a back-off
//! (`retry::reconsume_delay`: 1 s, 5 s, 10 s, 30 s, … up to `reconsume_backoff_max`) and
//! blocks the queue meanwhile: messages are never skipped and order holds. Retry and
//! dead-letter topics, which let a queue move on past a failing message, come later.
//!
//! Stopping (a revocation or shutdown) lets the listener call in progress finish, delivers
//! nothing more, drops the pull ahead, and returns the position for the final commit.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::cluster::Client;
use super::consume_from::{resolve_start, ConsumeFrom};
use super::fetch::{pull, Fetched, PullSettings};
use super::retry::{reconsume_delay, Backoff};
use super::tag_filter::TagFilter;
use crate::error::Result;
use crate::message::ReceivedMessage;
use crate::protocol::QueueRef;

/// Back-off after a failed pull or offset lookup.
pub(crate) const PULL_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// What a listener answers for the messages it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConsumeResult {
    /// Consumed: the position moves past them.
    Success,
    /// Not consumed: give the same messages again after a back-off.
    ReconsumeLater,
}

type SyncListener = dyn Fn(&[ReceivedMessage]) -> ConsumeResult + Send + Sync;
type AsyncListener = dyn Fn(Arc<[ReceivedMessage]>) -> Pin<Box<dyn Future<Output = ConsumeResult> + Send>>
    + Send
    + Sync;

/// The application's callback.
#[derive(Clone)]
pub(crate) enum Listener {
    /// Runs on tokio's blocking pool: it may block.
    Sync(Arc<SyncListener>),
    /// Runs as a task: it must not block.
    Async(Arc<AsyncListener>),
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listener::Sync(_) => f.write_str("Listener::Sync"),
            Listener::Async(_) => f.write_str("Listener::Async"),
        }
    }
}

impl Listener {
    /// Calls the listener; a panic counts as `ReconsumeLater` (and is logged), so one bad
    /// message does not take the consumer down or get skipped.
    async fn consume(&self, messages: Arc<[ReceivedMessage]>) -> ConsumeResult {
        let joined = match self {
            Listener::Sync(listener) => {
                let listener = listener.clone();
                tokio::task::spawn_blocking(move || listener(&messages)).await
            }
            Listener::Async(listener) => tokio::spawn(listener(messages)).await,
        };
        joined.unwrap_or_else(|error| {
            tracing::error!(%error, "the message listener panicked; the messages will be redelivered");
            ConsumeResult::ReconsumeLater
        })
    }
}

/// Everything a push consumer's queue workers share.
#[derive(Debug)]
pub(crate) struct PushContext {
    pub(crate) client: Client,
    pub(crate) group: String,
    pub(crate) filters: std::collections::HashMap<String, TagFilter>,
    pub(crate) consume_from: ConsumeFrom,
    pub(crate) pull: PullSettings,
    pub(crate) listener: Listener,
    /// Bounds listener calls in progress across the consumer's queues.
    pub(crate) concurrency: Arc<Semaphore>,
    pub(crate) batch_size: usize,
    pub(crate) reconsume_backoff_max: Duration,
}

/// A queue's position, readable by the commit timer: the next offset to consume.
#[derive(Debug)]
pub(crate) struct Position(AtomicU64);

impl Position {
    const UNKNOWN: u64 = u64::MAX;

    pub(crate) fn unknown() -> Position {
        Position(AtomicU64::new(Self::UNKNOWN))
    }

    pub(crate) fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Acquire)).filter(|p| *p != Self::UNKNOWN)
    }

    fn set(&self, offset: u64) {
        self.0.store(offset, Ordering::Release);
    }
}

/// The worker's task; returns the position to commit, `None` if it never found one.
pub(crate) async fn run(
    context: Arc<PushContext>,
    queue: QueueRef,
    position: Arc<Position>,
    mut stop: watch::Receiver<bool>,
) -> Option<u64> {
    let filter = context
        .filters
        .get(&queue.topic)
        .cloned()
        .unwrap_or_else(TagFilter::all);
    position.set(find_start(&context, &queue, &mut stop).await?);
    let mut offset = position.get()?;
    let mut ahead: Option<JoinHandle<Result<Fetched>>> = None;
    let mut failures = 0;
    loop {
        let pulling = ahead
            .take()
            .unwrap_or_else(|| spawn_pull(&context, &queue, offset, &filter));
        let abort = pulling.abort_handle();
        let joined = tokio::select! {
            _ = stopped(&mut stop) => {
                abort.abort();
                break;
            }
            joined = pulling => joined,
        };
        let fetched = match joined {
            Ok(Ok(fetched)) => fetched,
            Ok(Err(error)) => {
                tracing::warn!(topic = %queue.topic, queue = queue.queue, offset, %error, "pull failed");
                failures += 1;
                if pause(PULL_BACKOFF.delay(failures - 1), &mut stop).await {
                    break;
                }
                continue;
            }
            Err(error) => {
                tracing::error!(topic = %queue.topic, queue = queue.queue, %error, "pull task failed");
                if pause(PULL_BACKOFF.max, &mut stop).await {
                    break;
                }
                continue;
            }
        };
        failures = 0;
        offset = fetched.next_offset;
        if !fetched.messages.is_empty() {
            ahead = Some(spawn_pull(&context, &queue, offset, &filter));
        }
        if !deliver(&context, fetched.messages, &position, &mut stop).await {
            break;
        }
        position.set(fetched.next_offset);
    }
    if let Some(ahead) = ahead {
        ahead.abort();
    }
    position.get()
}

/// Resolves the start offset, retrying until it is found or the worker is stopped.
async fn find_start(
    context: &PushContext,
    queue: &QueueRef,
    stop: &mut watch::Receiver<bool>,
) -> Option<u64> {
    let mut failures = 0;
    loop {
        let found = tokio::select! {
            _ = stopped(stop) => return None,
            found = resolve_start(&context.client, &context.group, queue, context.consume_from) => found,
        };
        match found {
            Ok(offset) => return Some(offset),
            Err(error) => {
                tracing::warn!(topic = %queue.topic, queue = queue.queue, %error, "finding the start offset failed");
                if pause(PULL_BACKOFF.delay(failures), stop).await {
                    return None;
                }
                failures += 1;
            }
        }
    }
}

fn spawn_pull(
    context: &Arc<PushContext>,
    queue: &QueueRef,
    offset: u64,
    filter: &TagFilter,
) -> JoinHandle<Result<Fetched>> {
    let context = context.clone();
    let queue = queue.clone();
    let filter = filter.clone();
    tokio::spawn(async move { pull(&context.client, &queue, offset, context.pull, &filter).await })
}

/// Hands `messages` to the listener in chunks of `batch_size`, in order, each until it is
/// accepted. Returns false if stopped before all were delivered.
async fn deliver(
    context: &PushContext,
    messages: Vec<ReceivedMessage>,
    position: &Position,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut messages = messages.into_iter().peekable();
    while messages.peek().is_some() {
        if *stop.borrow() {
            return false;
        }
        let chunk: Arc<[ReceivedMessage]> = messages.by_ref().take(context.batch_size).collect();
        let next = chunk.last().map_or(0, |m| m.offset + 1);
        let mut attempt = 0;
        loop {
            let result = {
                let Ok(_permit) = context.concurrency.acquire().await else {
                    return false; // never closed
                };
                context.listener.consume(chunk.clone()).await
            };
            if result == ConsumeResult::Success {
                break;
            }
            attempt += 1;
            let delay = reconsume_delay(attempt, context.reconsume_backoff_max);
            tracing::debug!(
                first_offset = chunk[0].offset,
                attempt,
                ?delay,
                "reconsume later"
            );
            if pause(delay, stop).await {
                return false;
            }
        }
        position.set(next);
    }
    true
}

/// Resolves once `stop` is true or its sender is gone.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Waits `delay`; returns true if stopped meanwhile.
pub(crate) async fn pause(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => *stop.borrow(),
        _ = stopped(stop) => true,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;
    use tokio::sync::mpsc;

    use super::*;
    use crate::client::ClientConfig;

    const GENEROUS: Duration = Duration::from_secs(10);

    fn context(listener: Listener, batch_size: usize, backoff_max: Duration) -> PushContext {
        PushContext {
            client: Client::new(ClientConfig::default()).unwrap(),
            group: "g".into(),
            filters: HashMap::new(),
            consume_from: ConsumeFrom::First,
            pull: PullSettings {
                max_bytes: 1 << 20,
                wait: Duration::from_secs(1),
            },
            listener,
            concurrency: Arc::new(Semaphore::new(4)),
            batch_size,
            reconsume_backoff_max: backoff_max,
        }
    }

    fn messages(offsets: std::ops::Range<u64>) -> Vec<ReceivedMessage> {
        offsets
            .map(|offset| ReceivedMessage {
                topic: "t".into(),
                queue: 0,
                offset,
                message_id: String::new(),
                tag: None,
                keys: Vec::new(),
                properties: Vec::new(),
                body: Bytes::from(format!("m{offset}")),
                born_timestamp: 0,
            })
            .collect()
    }

    /// An async listener that reports each call's offsets and answers from `answers` in turn
    /// (then `Success`).
    fn recording(answers: Vec<ConsumeResult>) -> (Listener, mpsc::Receiver<Vec<u64>>) {
        let (calls, received) = mpsc::channel(64);
        let answers = Arc::new(parking_lot::Mutex::new(answers.into_iter()));
        let listener = Listener::Async(Arc::new(move |batch: Arc<[ReceivedMessage]>| {
            let calls = calls.clone();
            let answer = answers.lock().next().unwrap_or(ConsumeResult::Success);
            Box::pin(async move {
                let _ = calls.send(batch.iter().map(|m| m.offset).collect()).await;
                answer
            })
        }));
        (listener, received)
    }

    #[tokio::test]
    async fn messages_are_delivered_in_order_in_batches() {
        let (listener, mut calls) = recording(Vec::new());
        let context = context(listener, 2, GENEROUS);
        let position = Position::unknown();
        let (_stop, mut signal) = watch::channel(false);
        assert!(deliver(&context, messages(0..5), &position, &mut signal).await);
        let mut batches = Vec::new();
        while let Ok(batch) = calls.try_recv() {
            batches.push(batch);
        }
        assert_eq!(batches, vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(position.get(), Some(5));
    }

    #[tokio::test]
    async fn reconsume_later_redelivers_the_same_messages_without_skipping() {
        let answers = vec![ConsumeResult::ReconsumeLater, ConsumeResult::ReconsumeLater];
        let (listener, mut calls) = recording(answers);
        let context = context(listener, 10, Duration::from_millis(1));
        let position = Position::unknown();
        let (_stop, mut signal) = watch::channel(false);
        assert!(deliver(&context, messages(7..9), &position, &mut signal).await);
        for _ in 0..3 {
            assert_eq!(calls.try_recv().unwrap(), vec![7, 8]);
        }
        assert!(calls.try_recv().is_err());
        assert_eq!(position.get(), Some(9));
    }

    #[tokio::test]
    async fn stopping_during_a_reconsume_wait_keeps_the_position() {
        let (listener, mut calls) = recording(vec![ConsumeResult::ReconsumeLater; 100]);
        let context = Arc::new(context(listener, 1, Duration::from_secs(3600)));
        let position = Arc::new(Position::unknown());
        position.set(3);
        let (stop, mut signal) = watch::channel(false);
        let delivering = {
            let (context, position) = (context.clone(), position.clone());
            tokio::spawn(
                async move { deliver(&context, messages(3..6), &position, &mut signal).await },
            )
        };
        let first = tokio::time::timeout(GENEROUS, calls.recv()).await.unwrap();
        assert_eq!(first, Some(vec![3]));
        stop.send_replace(true);
        let delivered = tokio::time::timeout(GENEROUS, delivering)
            .await
            .unwrap()
            .unwrap();
        assert!(!delivered);
        assert_eq!(
            position.get(),
            Some(3),
            "the refused message is not committed"
        );
    }

    #[tokio::test]
    async fn a_panicking_sync_listener_gets_the_messages_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let listener = Listener::Sync(Arc::new(move |batch: &[ReceivedMessage]| {
            assert_eq!(batch[0].offset, 0);
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("listener bug");
            }
            ConsumeResult::Success
        }));
        let context = context(listener, 1, Duration::from_millis(1));
        let position = Position::unknown();
        let (_stop, mut signal) = watch::channel(false);
        assert!(deliver(&context, messages(0..1), &position, &mut signal).await);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(position.get(), Some(1));
    }

    #[tokio::test]
    async fn a_worker_without_a_broker_stops_when_told() {
        let (listener, _calls) = recording(Vec::new());
        let context = Arc::new(context(listener, 1, GENEROUS));
        let position = Arc::new(Position::unknown());
        let (stop, signal) = watch::channel(false);
        let queue = QueueRef {
            topic: "t".into(),
            queue: 0,
        };
        let worker = tokio::spawn(run(context, queue, position.clone(), signal));
        stop.send_replace(true);
        let committed = tokio::time::timeout(GENEROUS, worker)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(committed, None, "it never found a start offset");
        assert_eq!(position.get(), None);
    }
}
