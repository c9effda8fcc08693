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
