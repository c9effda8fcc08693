//! The producer's per-queue sender: one task per (topic, queue) that takes batches from the
//! queue's accumulator and sends them to the queue's leader.
//!
//! Order. A queue's batches leave in the order they were sealed, and each request is polled
//! once on the sender's task before the next batch is looked at. With the route cached and
//! the connection open, that first poll hands the request to the connection, and the broker
//! appends one connection's requests in arrival order; so with no retries a queue's messages
//! are stored in send order even with several requests in flight. This is best effort: a
//! request whose first poll has to wait (a route refresh, a reconnect, a saturated connection)
//! finishes on its own task and may be overtaken, and a retry re-sends a batch after later
//! ones may have been stored. As in Kafka, set `max_in_flight_per_queue` to 1 when order must
//! hold without exception: the sender then waits for each batch's answer before the next.
//!
//! Retries. A batch that fails with a retriable error (`Error::is_retriable`: a transport
//! failure, `NotLeader`, `Busy`, …) is sent again to the same queue, up to `retries` times,
//! after an exponential back-off; the route is refreshed first when the error says it may be
//! wrong. Other errors fail every send of the batch at once. The same queue is kept on retry
//! (RocketMQ would move to another broker) so key-hashed messages never change queue.
//!
//! Lifetime. The task ends when its producer is closed or dropped: it first seals and sends
//! what is left and waits for the answers, so dropping a producer without `close` loses
//! nothing that was accepted; it only stops waiting for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};

use super::accumulator::{Accumulator, BatchPolicy, BuiltBatch, OpenBatch};
use super::cluster::{duplicate_error, Client};
use super::retry::{with_retries, Backoff};
use crate::error::Result;
use crate::message::{Message, MessageId};
use crate::protocol::{Acks, SendRequest, SendResponse};

/// Where one message ended up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendReceipt {
    pub topic: String,
    pub queue: u32,
    pub offset: u64,
    pub message_id: MessageId,
    /// When the broker stored the message's batch (ms since the Unix epoch).
    pub store_timestamp: i64,
}

/// What a queued message needs to be answered; dropping it releases its buffer bytes and its
/// hold on the producer's flush.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) reply: oneshot::Sender<Result<SendReceipt>>,
    pub(crate) _buffer: OwnedSemaphorePermit,
    pub(crate) _flush: mpsc::Sender<()>,
}

/// How sends are made; shared by a producer's queue senders.
#[derive(Debug)]
pub(crate) struct SendSettings {
    pub(crate) client: Client,
    pub(crate) policy: BatchPolicy,
    pub(crate) acks: Acks,
    pub(crate) retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) request_timeout: Duration,
    pub(crate) max_in_flight: usize,
}

/// One queue's accumulator and the wake-up for its task.
#[derive(Debug)]
pub(crate) struct QueueSender {
    topic: String,
    queue: u32,
    accumulator: Mutex<Accumulator<Pending>>,
    wake: Notify,
}

impl QueueSender {
    /// A sender for one queue, with its task spawned; the task ends when `shutdown` says so
    /// or its sender is dropped.
    pub(crate) fn spawn(
        topic: &str,
        queue: u32,
        settings: Arc<SendSettings>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<QueueSender> {
        let sender = Arc::new(QueueSender {
            topic: topic.to_owned(),
            queue,
            accumulator: Mutex::new(Accumulator::new(settings.policy)),
            wake: Notify::new(),
        });
        tokio::spawn(run(sender.clone(), settings, shutdown));
        sender
    }

    /// Queues a message; `urgent` makes its batch ready at once (a synchronous send does not
    /// wait for the linger).
    pub(crate) fn append(&self, message: Message, id: MessageId, pending: Pending, urgent: bool) {
        let mut accumulator = self.accumulator.lock();
        let before = accumulator.ready_at();
        accumulator.append(message, id, pending, Instant::now, urgent);
        let after = accumulator.ready_at();
        drop(accumulator);
        // The task needs waking only when a batch became ready sooner than it planned for: the
        // first message, a full batch, an urgent send.
        let sooner = match (before, after) {
            (None, Some(_)) => true,
            (Some(before), Some(after)) => after < before,
            _ => false,
        };
        if sooner {
            self.wake.notify_one();
        }
    }

    /// Seals the open batch and wakes the task (flush).
    pub(crate) fn seal_now(&self) {
        self.accumulator.lock().seal_now();
        self.wake.notify_one();
    }
}

async fn run(
    sender: Arc<QueueSender>,
    settings: Arc<SendSettings>,
    mut shutdown: watch::Receiver<bool>,
) {
    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight));
    let mut stopping = *shutdown.borrow();
    loop {
        let ready_at = {
            let mut accumulator = sender.accumulator.lock();
            if stopping {
                accumulator.seal_now();
            }
            accumulator.ready_at()
        };
        match ready_at {
            // A batch is ready: take it only once a slot is free, so messages arriving
            // meanwhile still join it.
            Some(due) if due <= Instant::now() => {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break; // never closed
                };
                let ready = sender.accumulator.lock().take_ready(Instant::now());
                if let Some(batch) = ready {
                    dispatch(&sender, &settings, batch, permit).await;
                }
            }
            Some(due) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = sender.wake.notified() => {}
                    changed = shutdown.changed() => stopping = changed.is_err() || *shutdown.borrow(),
                }
            }
            None if stopping => break,
            None => {
                tokio::select! {
                    _ = sender.wake.notified() => {}
                    changed = shutdown.changed() => stopping = changed.is_err() || *shutdown.borrow(),
                }
            }
        }
    }
    // Wait for the answers to what is in flight before the task (and its receipts) ends.
    let permits = u32::try_from(settings.max_in_flight).unwrap_or(u32::MAX);
    let _all = in_flight.acquire_many(permits).await;
}

/// Builds and sends one batch. The request is polled here once, so it reaches the connection
/// before the next batch's; the rest of its life runs on its own task.
async fn dispatch(
    sender: &QueueSender,
    settings: &Arc<SendSettings>,
    batch: OpenBatch<Pending>,
    permit: OwnedSemaphorePermit,
) {
    let built = match batch.build(&settings.policy) {
        Ok(built) => built,
        Err(failed) => {
            let error = failed.error;
            tracing::error!(topic = %sender.topic, queue = sender.queue, %error, "building a batch failed");
            complete_failed(&error, failed.entries, permit);
            return;
        }
    };
    let count = built.entries.len();
    let request = send_with_retries(
        settings.clone(),
        sender.topic.clone(),
        sender.queue,
        built.bytes.clone(),
    );
    let mut request: Pin<Box<dyn Future<Output = Result<SendResponse>> + Send>> = Box::pin(request);
    let first = std::future::poll_fn(|cx| Poll::Ready(request.as_mut().poll(cx))).await;
    let topic = sender.topic.clone();
    let queue = sender.queue;
    match first {
        Poll::Ready(result) => complete(&topic, queue, built, count, result, permit),
        Poll::Pending => {
            tokio::spawn(async move {
                let result = request.await;
                complete(&topic, queue, built, count, result, permit);
            });
        }
    }
}

/// Sends `batches` to the queue's leader, retrying as the module docs say.
pub(crate) async fn send_with_retries(
    settings: Arc<SendSettings>,
    topic: String,
    queue: u32,
    batches: Bytes,
) -> Result<SendResponse> {
    let timeout_ms = u32::try_from(settings.request_timeout.as_millis()).unwrap_or(u32::MAX);
    let client = &settings.client;
    with_retries("send", settings.retries, settings.backoff, |_| {
        let request = SendRequest {
            topic: topic.clone(),
            queue,
            acks: settings.acks,
            timeout_ms,
            batches: batches.clone(),
        };
        client.call_leader(&topic, queue, request, settings.request_timeout)
    })
    .await
}

/// Receipts for the records of one stored batch: record `i` is at `base_offset + i`.
pub(crate) fn receipts(
    topic: &str,
    queue: u32,
    ids: impl Iterator<Item = MessageId>,
    response: &SendResponse,
) -> Vec<SendReceipt> {
    ids.enumerate()
        .map(|(index, message_id)| SendReceipt {
            topic: topic.to_owned(),
            queue,
            // Saturating: a broker's offsets near u64::MAX must not panic the client.
            offset: response.base_offset.saturating_add(index as u64),
            message_id,
            store_timestamp: response.store_timestamp,
        })
        .collect()
}

fn complete(
    topic: &str,
    queue: u32,
    built: BuiltBatch<Pending>,
    count: usize,
    result: Result<SendResponse>,
    permit: OwnedSemaphorePermit,
) {
    match result {
        Ok(response) => {
            let stored = response
                .last_offset
                .saturating_sub(response.base_offset)
                .saturating_add(1);
            if stored != count as u64 {
                tracing::warn!(
                    topic,
                    queue,
                    count,
                    stored,
                    "the broker stored another record count"
                );
            }
            let ids = built.entries.iter().map(|(id, _)| *id);
            let receipts = receipts(topic, queue, ids, &response);
            for (receipt, (_, pending)) in receipts.into_iter().zip(built.entries) {
                let _ = pending.reply.send(Ok(receipt));
            }
        }
        Err(error) => {
            tracing::debug!(topic, queue, count, %error, "a batch failed");
            complete_failed(&error, built.entries, permit);
            return;
        }
    }
    drop(permit);
}

fn complete_failed(
    error: &crate::error::Error,
    entries: Vec<(MessageId, Pending)>,
    permit: OwnedSemaphorePermit,
) {
    for (_, pending) in entries {
        let _ = pending.reply.send(Err(duplicate_error(error)));
    }
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_number_records_from_the_base_offset() {
        let ids: Vec<MessageId> = (0..3).map(|_| MessageId::generate()).collect();
        let response = SendResponse {
            base_offset: 40,
            last_offset: 42,
            log_start_offset: 0,
            store_timestamp: 1_700_000_000_000,
        };
        let receipts = receipts("orders", 5, ids.iter().copied(), &response);
        let offsets: Vec<u64> = receipts.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [40, 41, 42]);
        for (receipt, id) in receipts.iter().zip(&ids) {
            assert_eq!(receipt.message_id, *id);
            assert_eq!((receipt.topic.as_str(), receipt.queue), ("orders", 5));
            assert_eq!(receipt.store_timestamp, 1_700_000_000_000);
        }
    }
}
