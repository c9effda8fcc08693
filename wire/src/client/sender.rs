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
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use super::accumulator::{Accumulator, BatchPolicy, BuiltBatch, OpenBatch};
use super::cluster::{duplicate_error, Client};
use super::retry::{with_retries, Backoff};
use crate::error::Result;
use crate::message::{Message, MessageId};
use crate::protocol::{Acks, SendRequest, SendResponse};

/// Where one message ended up. The topic is shared by the receipts of a batch (a receipt
/// allocates nothing of its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendReceipt {
    pub topic: Arc<str>,
    pub queue: u32,
    pub offset: u64,
    pub message_id: MessageId,
    /// When the broker stored the message's batch (ms since the Unix epoch).
    pub store_timestamp: i64,
}

/// The answer to one batch, shared by the `SendHandle`s of its messages. It is set once, by
/// the batch's `BatchTicket`; one per batch rather than a channel per message keeps the
/// producer's cost per message low.
#[derive(Debug)]
pub(crate) struct BatchReply {
    topic: Arc<str>,
    queue: u32,
    outcome: OnceLock<Result<SendResponse>>,
    /// The tasks waiting for the outcome: one slot per waiting handle (see `poll_receipt`).
    waiters: Mutex<Vec<Waker>>,
}

impl BatchReply {
    fn new(topic: Arc<str>, queue: u32) -> BatchReply {
        BatchReply {
            topic,
            queue,
            outcome: OnceLock::new(),
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// Sets the outcome, if not set yet, and wakes every waiting handle.
    fn set(&self, outcome: Result<SendResponse>) {
        if self.outcome.set(outcome).is_err() {
            return;
        }
        let waiters = std::mem::take(&mut *self.waiters.lock());
        for waker in waiters {
            waker.wake();
        }
    }

    /// The receipt of the batch's message `index`, once the batch is answered. `slot` is the
    /// handle's place among the waiters, so a handle polled again replaces its own waker
    /// instead of adding one.
    pub(crate) fn poll_receipt(
        &self,
        cx: &mut Context<'_>,
        slot: &mut Option<usize>,
        index: u32,
        message_id: MessageId,
    ) -> Poll<Result<SendReceipt>> {
        let ready = |outcome: &Result<SendResponse>| match outcome {
            Ok(response) => Poll::Ready(Ok(receipt(
                &self.topic,
                self.queue,
                u64::from(index),
                message_id,
                response,
            ))),
            Err(error) => Poll::Ready(Err(duplicate_error(error))),
        };
        if let Some(outcome) = self.outcome.get() {
            return ready(outcome);
        }
        let mut waiters = self.waiters.lock();
        // `set` stores the outcome before it takes the waiters: looking again under the lock
        // means a waker added here is always woken.
        if let Some(outcome) = self.outcome.get() {
            return ready(outcome);
        }
        match *slot {
            Some(at) if at < waiters.len() => {
                if !waiters[at].will_wake(cx.waker()) {
                    waiters[at] = cx.waker().clone();
                }
            }
            _ => {
                *slot = Some(waiters.len());
                waiters.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

/// What one batch needs to be answered: the reply its handles wait on, the buffer bytes of
/// its messages and a hold on the producer's flush epoch the batch opened in. Dropping it
/// releases both; a ticket dropped unanswered (its task ended) answers `Closed`.
///
/// Why one flush hold per batch suffices: a message joins a batch only while the batch is
/// open, so it arrived in the batch's epoch or after a flush that swapped epochs but had not
/// yet sealed the batch. That flush seals the batch and waits for the batch's (older) epoch,
/// and flushes run one at a time, so no later flush returns before the batch is answered.
#[derive(Debug)]
pub(crate) struct BatchTicket {
    reply: Arc<BatchReply>,
    buffer: BufferHold,
    _flush: mpsc::Sender<()>,
}

/// Bytes of a producer's buffer (a semaphore counting bytes) held by one batch, given back
/// when the hold is dropped. A batch counts its messages' bytes in one number instead of
/// merging a permit per message, so queuing a message costs one atomic operation on the
/// buffer rather than three.
#[derive(Debug)]
pub(crate) struct BufferHold {
    buffer: Arc<Semaphore>,
    bytes: usize,
}

impl BufferHold {
    fn new(buffer: Arc<Semaphore>) -> BufferHold {
        BufferHold { buffer, bytes: 0 }
    }

    /// Takes over `permit`'s bytes, which must be of this hold's buffer.
    fn add(&mut self, permit: SemaphorePermit<'_>) {
        self.bytes += permit.num_permits();
        permit.forget();
    }
}

impl Drop for BufferHold {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.buffer.add_permits(self.bytes);
        }
    }
}

impl BatchTicket {
    fn answer(self, outcome: Result<SendResponse>) {
        self.reply.set(outcome);
    }
}

impl Drop for BatchTicket {
    fn drop(&mut self) {
        self.reply.set(Err(crate::error::Error::Closed));
    }
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
    /// The producer's buffer, in bytes.
    pub(crate) buffer: Arc<Semaphore>,
}

/// One queue's accumulator and the wake-up for its task.
#[derive(Debug)]
pub(crate) struct QueueSender {
    topic: Arc<str>,
    queue: u32,
    buffer: Arc<Semaphore>,
    accumulator: Mutex<Accumulator<BatchTicket>>,
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
            topic: topic.into(),
            queue,
            buffer: settings.buffer.clone(),
            accumulator: Mutex::new(Accumulator::new(settings.policy)),
            wake: Notify::new(),
        });
        tokio::spawn(run(sender.clone(), settings, shutdown));
        sender
    }

    /// The queue this sender sends to.
    pub(crate) fn queue(&self) -> u32 {
        self.queue
    }

    /// Queues a message holding `buffer` (its bytes of the producer's buffer, which its batch
    /// keeps until answered); `urgent` makes
    /// its batch ready at once (a synchronous send does not wait for the linger). `flush`
    /// gives the producer's current flush hold, asked for only when the message opens a
    /// batch. Returns the reply of the message's batch and the message's index in it.
    pub(crate) fn append(
        &self,
        message: Message,
        id: MessageId,
        buffer: SemaphorePermit<'_>,
        urgent: bool,
        flush: impl FnOnce() -> mpsc::Sender<()>,
    ) -> (Arc<BatchReply>, u32) {
        let mut accumulator = self.accumulator.lock();
        let before = accumulator.ready_at();
        let (ticket, index) = accumulator.append(message, id, urgent, || {
            let ticket = BatchTicket {
                reply: Arc::new(BatchReply::new(self.topic.clone(), self.queue)),
                buffer: BufferHold::new(self.buffer.clone()),
                _flush: flush(),
            };
            (Instant::now(), ticket)
        });
        ticket.buffer.add(buffer);
        let reply = ticket.reply.clone();
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
        // A batch holds far fewer than u32::MAX messages (`batch_bytes` is at most 16 MiB).
        (reply, u32::try_from(index).unwrap_or(u32::MAX))
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
    batch: OpenBatch<BatchTicket>,
    permit: OwnedSemaphorePermit,
) {
    let built = match batch.build(&settings.policy) {
        Ok(built) => built,
        Err(failed) => {
            let error = failed.error;
            tracing::error!(topic = %sender.topic, queue = sender.queue, %error, "building a batch failed");
            failed.ticket.answer(Err(error));
            drop(permit);
            return;
        }
    };
    let request = send_with_retries(
        settings.clone(),
        sender.topic.to_string(),
        sender.queue,
        built.bytes.clone(),
    );
    let mut request: Pin<Box<dyn Future<Output = Result<SendResponse>> + Send>> = Box::pin(request);
    let first = std::future::poll_fn(|cx| Poll::Ready(request.as_mut().poll(cx))).await;
    let topic = sender.topic.clone();
    let queue = sender.queue;
    match first {
        Poll::Ready(result) => complete(&topic, queue, built, result, permit),
        Poll::Pending => {
            tokio::spawn(async move {
                let result = request.await;
                complete(&topic, queue, built, result, permit);
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
    topic: &Arc<str>,
    queue: u32,
    ids: impl Iterator<Item = MessageId>,
    response: &SendResponse,
) -> Vec<SendReceipt> {
    ids.enumerate()
        .map(|(index, message_id)| receipt(topic, queue, index as u64, message_id, response))
        .collect()
}

/// The receipt of record `index` of a stored batch.
fn receipt(
    topic: &Arc<str>,
    queue: u32,
    index: u64,
    message_id: MessageId,
    response: &SendResponse,
) -> SendReceipt {
    SendReceipt {
        topic: topic.clone(),
        queue,
        // Saturating: a broker's offsets near u64::MAX must not panic the client.
        offset: response.base_offset.saturating_add(index),
        message_id,
        store_timestamp: response.store_timestamp,
    }
}

fn complete(
    topic: &str,
    queue: u32,
    built: BuiltBatch<BatchTicket>,
    result: Result<SendResponse>,
    permit: OwnedSemaphorePermit,
) {
    let count = built.count;
    match &result {
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
        }
        Err(error) => tracing::debug!(topic, queue, count, %error, "a batch failed"),
    }
    built.ticket.answer(result);
    drop(permit);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// A ticket for a new reply, with one permit of a fresh semaphore.
    fn ticket() -> (BatchTicket, Arc<Semaphore>, mpsc::Receiver<()>) {
        let semaphore = Arc::new(Semaphore::new(1));
        let (flush, held) = mpsc::channel(1);
        let mut buffer = BufferHold::new(semaphore.clone());
        buffer.add(semaphore.try_acquire().unwrap());
        let ticket = BatchTicket {
            reply: Arc::new(BatchReply::new("orders".into(), 3)),
            buffer,
            _flush: flush,
        };
        (ticket, semaphore, held)
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn every_waiting_handle_is_woken_once_with_its_latest_waker() {
        let (ticket, semaphore, _held) = ticket();
        let reply = ticket.reply.clone();
        let first = Arc::new(Counter::default());
        let second = Arc::new(Counter::default());
        let other = Arc::new(Counter::default());
        let id = MessageId::generate();
        let mut slot = None;
        let mut other_slot = None;
        for waker in [&first, &first, &second] {
            let waker = Waker::from(waker.clone());
            let poll = reply.poll_receipt(&mut Context::from_waker(&waker), &mut slot, 1, id);
            assert!(poll.is_pending());
        }
        let waker = Waker::from(other.clone());
        let poll = reply.poll_receipt(&mut Context::from_waker(&waker), &mut other_slot, 0, id);
        assert!(poll.is_pending());
        assert_eq!(
            reply.waiters.lock().len(),
            2,
            "a handle polled again keeps its slot"
        );

        let response = SendResponse {
            base_offset: 10,
            last_offset: 11,
            log_start_offset: 0,
            store_timestamp: 7,
        };
        ticket.answer(Ok(response));
        assert_eq!(
            first.0.load(Ordering::SeqCst),
            0,
            "replaced by the later waker"
        );
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert_eq!(other.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            semaphore.available_permits(),
            1,
            "answered: the buffer is back"
        );
        let waker = Waker::noop();
        let Poll::Ready(Ok(receipt)) =
            reply.poll_receipt(&mut Context::from_waker(waker), &mut slot, 1, id)
        else {
            panic!("answered");
        };
        assert_eq!(
            (&*receipt.topic, receipt.queue, receipt.offset),
            ("orders", 3, 11)
        );
        assert_eq!((receipt.message_id, receipt.store_timestamp), (id, 7));
    }

    #[test]
    fn a_ticket_dropped_unanswered_answers_closed_and_releases_its_holds() {
        let (ticket, semaphore, mut held) = ticket();
        let reply = ticket.reply.clone();
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        let mut slot = None;
        let id = MessageId::generate();
        assert!(reply
            .poll_receipt(&mut Context::from_waker(&waker), &mut slot, 0, id)
            .is_pending());
        drop(ticket);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(matches!(
            reply.poll_receipt(&mut Context::from_waker(&waker), &mut slot, 0, id),
            Poll::Ready(Err(crate::error::Error::Closed))
        ));
        assert_eq!(semaphore.available_permits(), 1);
        assert!(
            matches!(
                held.try_recv(),
                Err(mpsc::error::TryRecvError::Disconnected)
            ),
            "the flush hold is released"
        );
    }

    #[test]
    fn receipts_number_records_from_the_base_offset() {
        let ids: Vec<MessageId> = (0..3).map(|_| MessageId::generate()).collect();
        let response = SendResponse {
            base_offset: 40,
            last_offset: 42,
            log_start_offset: 0,
            store_timestamp: 1_700_000_000_000,
        };
        let receipts = receipts(&"orders".into(), 5, ids.iter().copied(), &response);
        let offsets: Vec<u64> = receipts.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [40, 41, 42]);
        for (receipt, id) in receipts.iter().zip(&ids) {
            assert_eq!(receipt.message_id, *id);
            assert_eq!((&*receipt.topic, receipt.queue), ("orders", 5));
            assert_eq!(receipt.store_timestamp, 1_700_000_000_000);
        }
    }
}
