//! The pull consumer's queues: each owned queue's position and background fetcher, and the
//! rules for which fetched messages `poll` may return.
//!
//! Every owned queue has one fetcher task that long-polls it from its position onwards and
//! sends what it gets (`Chunk`s) into one bounded channel shared by all queues, so at most
//! `PULL_CHUNKS_BUFFERED` pulls' worth of messages wait for `poll` (plus one in each fetcher).
//! A fetcher sends its next pull as soon as a pull's batches are checked, before it decodes
//! their records, so the broker reads and sends the next while this side decodes: two pulls
//! per queue may be in flight, and one more answer may wait in the fetcher.
//! A queue's position is the offset after the last message `poll` returned: what `commit`
//! commits. A fetcher that has to find its start offset first (committed offset or
//! `ConsumeFrom`) reports it as a chunk without a start.
//!
//! Seeking, revoking or re-assigning a queue gives it a new epoch and a new fetcher; chunks of
//! an old epoch, and chunks that do not start at the queue's position, are dropped when they
//! arrive, so a seek never lets stale messages through.
//!
//! `PullWorkers` is the group membership's handle on these queues: it starts assigned queues
//! and revokes taken ones, whose release waits for the next `poll` (see `pull_consumer`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::task::Poll;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::AbortHandle;

use super::cluster::Client;
use super::consume_from::{resolve_start, ConsumeFrom};
use super::fetch::{decode_checked, pull_checked, Checked, PullSettings};
use super::membership::{BoxFuture, QueueWorkers};
use super::push_worker::PULL_BACKOFF;
use super::tag_filter::TagFilter;
use crate::error::{Error, Result};
use crate::message::ReceivedMessage;
use crate::protocol::QueueRef;

/// Chunks waiting in the channel between the fetchers and `poll`.
pub(crate) const PULL_CHUNKS_BUFFERED: usize = 16;

/// What one fetcher pull produced for one queue.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) queue: QueueRef,
    pub(crate) epoch: u64,
    /// The offset the pull started at; `None` for a start-offset report.
    pub(crate) start: Option<u64>,
    pub(crate) messages: VecDeque<ReceivedMessage>,
    pub(crate) next_offset: u64,
}

/// How fetchers pull; shared by a consumer's fetchers.
#[derive(Debug)]
pub(crate) struct FetchContext {
    pub(crate) client: Client,
    /// Empty for manual assignment without a group.
    pub(crate) group: String,
    pub(crate) consume_from: ConsumeFrom,
    pub(crate) pull: PullSettings,
    /// By topic; topics without an entry get every message.
    pub(crate) filters: HashMap<String, TagFilter>,
}

#[derive(Debug)]
struct QueueState {
    epoch: u64,
    position: Option<u64>,
    fetcher: Option<AbortHandle>,
}

/// A revoked queue waiting for the next `poll` to release it.
#[derive(Debug)]
struct Release {
    position: Option<u64>,
    reply: oneshot::Sender<Option<u64>>,
}

/// Owned queues; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    states: HashMap<QueueRef, QueueState>,
    next_epoch: u64,
    releasing: Vec<Release>,
    /// Set by close and drop: revocations are released at once.
    pub(crate) closing: bool,
}

impl Queues {
    /// Starts (or restarts) consuming `queue` from `start` (`None`: find it) with a fresh
    /// fetcher sending to `chunks`; returns the queue's new epoch.
    pub(crate) fn start(
        &mut self,
        queue: &QueueRef,
        start: Option<u64>,
        context: &Arc<FetchContext>,
        chunks: &mpsc::Sender<Chunk>,
    ) -> u64 {
        self.remove(queue);
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        let fetcher = spawn_fetcher(context.clone(), queue.clone(), epoch, start, chunks.clone());
        self.states.insert(
            queue.clone(),
            QueueState {
                epoch,
                position: start,
                fetcher: Some(fetcher),
            },
        );
        epoch
    }

    /// Stops consuming `queue`; returns its position.
    pub(crate) fn remove(&mut self, queue: &QueueRef) -> Option<u64> {
        let state = self.states.remove(queue)?;
        if let Some(fetcher) = state.fetcher {
            fetcher.abort();
        }
        state.position
    }

    /// Stops every queue.
    pub(crate) fn clear(&mut self) {
        let queues: Vec<QueueRef> = self.states.keys().cloned().collect();
        for queue in queues {
            self.remove(&queue);
        }
    }

    pub(crate) fn contains(&self, queue: &QueueRef) -> bool {
        self.states.contains_key(queue)
    }

    pub(crate) fn queues(&self) -> Vec<QueueRef> {
        let mut queues: Vec<QueueRef> = self.states.keys().cloned().collect();
        queues.sort();
        queues
    }

    /// Every queue's position, where known.
    pub(crate) fn positions(&self) -> Vec<(QueueRef, u64)> {
        self.states
            .iter()
            .filter_map(|(queue, state)| Some((queue.clone(), state.position?)))
            .collect()
    }

    /// Revokes `queue`; the returned receiver gets its position at the next `release`.
    pub(crate) fn revoke(&mut self, queue: &QueueRef) -> oneshot::Receiver<Option<u64>> {
        let position = self.remove(queue);
        let (reply, receiver) = oneshot::channel();
        if self.closing {
            let _ = reply.send(position);
        } else {
            self.releasing.push(Release { position, reply });
        }
        receiver
    }

    /// Releases revoked queues: everything `poll` returned from them has been processed.
    pub(crate) fn release(&mut self) {
        for release in self.releasing.drain(..) {
            let _ = release.reply.send(release.position);
        }
    }

    /// Takes in a chunk from a fetcher; returns it if it has messages to serve now.
    pub(crate) fn accept(&mut self, mut chunk: Chunk) -> Option<Chunk> {
        let state = self
            .states
            .get_mut(&chunk.queue)
            .filter(|s| s.epoch == chunk.epoch)?;
        match chunk.start {
            None => {
                state.position.get_or_insert(chunk.next_offset);
                None
            }
            Some(start) if state.position != Some(start) => None,
            Some(_) if chunk.messages.is_empty() => {
                state.position = Some(chunk.next_offset);
                None
            }
            Some(_) => {
                chunk.messages.shrink_to_fit();
                Some(chunk)
            }
        }
    }

    /// Moves messages from `chunk` to `out` until `out` holds `max`, advancing the queue's
    /// position. Returns whether `chunk` has more to serve.
    pub(crate) fn take(
        &mut self,
        chunk: &mut Chunk,
        max: usize,
        out: &mut Vec<ReceivedMessage>,
    ) -> bool {
        let Some(state) = self
            .states
            .get_mut(&chunk.queue)
            .filter(|s| s.epoch == chunk.epoch)
        else {
            return false; // revoked or sought meanwhile
        };
        let wanted = max.saturating_sub(out.len()).min(chunk.messages.len());
        if out.is_empty() && wanted == chunk.messages.len() {
            // The whole chunk: hand over its buffer rather than moving each message.
            *out = Vec::from(std::mem::take(&mut chunk.messages));
        } else {
            out.extend(chunk.messages.drain(..wanted));
        }
        if let Some(last) = out.last().filter(|_| wanted > 0) {
            state.position = Some(last.offset + 1);
        }
        if chunk.messages.is_empty() {
            state.position = Some(chunk.next_offset);
            return false;
        }
        true
    }

    /// Moves `queue` to `offset` (a new epoch and fetcher).
    pub(crate) fn seek(
        &mut self,
        queue: &QueueRef,
        offset: u64,
        context: &Arc<FetchContext>,
        chunks: &mpsc::Sender<Chunk>,
    ) -> Result<u64> {
        if !self.contains(queue) {
            return Err(Error::InvalidArgument(format!(
                "cannot seek {} queue {}: this consumer does not own it",
                queue.topic, queue.queue
            )));
        }
        Ok(self.start(queue, Some(offset), context, chunks))
    }
}

/// The pull consumer's side of membership: starting and revoking queues in `Queues`.
#[derive(Debug)]
pub(crate) struct PullWorkers {
    pub(crate) queues: Arc<Mutex<Queues>>,
    pub(crate) context: Arc<FetchContext>,
    pub(crate) chunks: mpsc::Sender<Chunk>,
    pub(crate) revoked: Arc<Notify>,
    pub(crate) commit_on_revoke: bool,
}

impl QueueWorkers for PullWorkers {
    fn start(&mut self, queue: &QueueRef) {
        self.queues
            .lock()
            .start(queue, None, &self.context, &self.chunks);
    }

    fn stop(&mut self, queue: &QueueRef) -> BoxFuture<Option<u64>> {
        let released = self.queues.lock().revoke(queue);
        self.revoked.notify_one();
        let commit = self.commit_on_revoke;
        Box::pin(async move { released.await.ok().flatten().filter(|_| commit) })
    }

    fn abandon(&mut self, queue: &QueueRef) {
        self.queues.lock().remove(queue);
    }

    fn positions(&self) -> Vec<(QueueRef, u64)> {
        self.queues.lock().positions()
    }
}

fn spawn_fetcher(
    context: Arc<FetchContext>,
    queue: QueueRef,
    epoch: u64,
    start: Option<u64>,
    chunks: mpsc::Sender<Chunk>,
) -> AbortHandle {
    tokio::spawn(fetch(context, queue, epoch, start, chunks)).abort_handle()
}

/// A fetcher: finds the start if needed, then pulls and forwards until aborted or the
/// consumer is gone.
async fn fetch(
    context: Arc<FetchContext>,
    queue: QueueRef,
    epoch: u64,
    start: Option<u64>,
    chunks: mpsc::Sender<Chunk>,
) {
    let filter = context
        .filters
        .get(&queue.topic)
        .cloned()
        .unwrap_or_else(TagFilter::all);
    let chunk = |start, messages: Vec<ReceivedMessage>, next_offset| Chunk {
        queue: queue.clone(),
        epoch,
        start,
        messages: messages.into(),
        next_offset,
    };
    let mut offset = match start {
        Some(offset) => offset,
        None => {
            let Some(offset) = find_start(&context, &queue, &chunks).await else {
                return;
            };
            if chunks.send(chunk(None, Vec::new(), offset)).await.is_err() {
                return;
            }
            offset
        }
    };
    let mut failures = 0;
    let mut ahead: Option<Ahead> = None;
    // A closed channel means the consumer is gone (its drop aborts fetchers, but membership
    // may start one more while it winds down).
    while !chunks.is_closed() {
        let answer = match ahead.take() {
            Some(ahead) if ahead.offset == offset => ahead.answer().await,
            _ => pull_checked(&context.client, &queue, offset, context.pull).await,
        };
        let decoded = match answer {
            Ok(checked) => {
                // The next pull goes out before this one is decoded: the broker reads and
                // sends while this side decodes.
                if checked.next_offset > offset {
                    let next = Ahead::send(context.clone(), queue.clone(), checked.next_offset);
                    ahead = Some(next.await);
                }
                decode_checked(&queue, offset, checked, &filter)
            }
            Err(error) => Err(error),
        };
        match decoded {
            Ok(fetched) => {
                failures = 0;
                if fetched.messages.is_empty() && fetched.next_offset == offset {
                    continue; // the long poll ended with nothing new
                }
                let next = fetched.next_offset;
                if chunks
                    .send(chunk(Some(offset), fetched.messages, next))
                    .await
                    .is_err()
                {
                    return;
                }
                offset = next;
            }
            Err(error) => {
                tracing::warn!(topic = %queue.topic, queue = queue.queue, offset, %error, "pull failed");
                tokio::time::sleep(PULL_BACKOFF.delay(failures)).await;
                failures += 1;
            }
        }
    }
}

/// A fetcher's next pull, sent before the records of the last one are decoded.
struct Ahead {
    offset: u64,
    answer: AheadAnswer,
}

enum AheadAnswer {
    Waiting(BoxFuture<Result<Checked>>),
    Done(Result<Checked>),
}

impl Ahead {
    /// Starts the pull of `queue` at `offset` and drives it until it waits for the broker's
    /// answer, its request queued on the connection; dropping it abandons the request.
    async fn send(context: Arc<FetchContext>, queue: QueueRef, offset: u64) -> Ahead {
        let mut pull: BoxFuture<Result<Checked>> =
            Box::pin(
                async move { pull_checked(&context.client, &queue, offset, context.pull).await },
            );
        let answer = match std::future::poll_fn(|cx| Poll::Ready(pull.as_mut().poll(cx))).await {
            Poll::Ready(done) => AheadAnswer::Done(done),
            Poll::Pending => AheadAnswer::Waiting(pull),
        };
        Ahead { offset, answer }
    }

    async fn answer(self) -> Result<Checked> {
        match self.answer {
            AheadAnswer::Waiting(pull) => pull.await,
            AheadAnswer::Done(done) => done,
        }
    }
}

/// The queue's start offset, retried until found; `None` once the consumer is gone.
async fn find_start(
    context: &FetchContext,
    queue: &QueueRef,
    chunks: &mpsc::Sender<Chunk>,
) -> Option<u64> {
    let mut failures = 0;
    while !chunks.is_closed() {
        match resolve_start(&context.client, &context.group, queue, context.consume_from).await {
            Ok(offset) => return Some(offset),
            Err(error) => {
                tracing::warn!(topic = %queue.topic, queue = queue.queue, %error, "finding the start offset failed");
                tokio::time::sleep(PULL_BACKOFF.delay(failures)).await;
                failures += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::client::ClientConfig;

    struct Fixture {
        queues: Queues,
        context: Arc<FetchContext>,
        chunks: mpsc::Sender<Chunk>,
        _receiver: mpsc::Receiver<Chunk>,
    }

    /// Queues whose fetchers cannot reach a broker (they retry in the background and never
    /// send): the tests feed chunks by hand.
    fn fixture() -> Fixture {
        let (chunks, receiver) = mpsc::channel(PULL_CHUNKS_BUFFERED);
        let context = Arc::new(FetchContext {
            client: Client::new(ClientConfig::default()).unwrap(),
            group: String::new(),
            consume_from: ConsumeFrom::First,
            pull: PullSettings {
                max_bytes: 1 << 20,
                wait: Duration::from_secs(1),
            },
            filters: HashMap::new(),
        });
        Fixture {
            queues: Queues::default(),
            context,
            chunks,
            _receiver: receiver,
        }
    }

    fn q(queue: u32) -> QueueRef {
        QueueRef {
            topic: "t".into(),
            queue,
        }
    }

    fn message(queue: u32, offset: u64) -> ReceivedMessage {
        ReceivedMessage {
            topic: "t".into(),
            queue,
            offset,
            message_id: String::new(),
            tag: None,
            keys: Vec::new(),
            properties: Vec::new(),
            body: Bytes::new(),
            born_timestamp: 0,
        }
    }

    fn chunk(queue: u32, epoch: u64, start: Option<u64>, offsets: &[u64], next: u64) -> Chunk {
        Chunk {
            queue: q(queue),
            epoch,
            start,
            messages: offsets.iter().map(|&o| message(queue, o)).collect(),
            next_offset: next,
        }
    }

    fn position(queues: &Queues, queue: u32) -> Option<u64> {
        queues
            .positions()
            .into_iter()
            .find(|(r, _)| r.queue == queue)
            .map(|(_, p)| p)
    }

    #[tokio::test]
    async fn a_start_report_positions_the_queue_once() {
        let mut f = fixture();
        let epoch = f.queues.start(&q(0), None, &f.context, &f.chunks);
        assert_eq!(position(&f.queues, 0), None);
        assert!(f
            .queues
            .accept(chunk(0, epoch + 7, None, &[], 40))
            .is_none());
        assert_eq!(
            position(&f.queues, 0),
            None,
            "another epoch's report is ignored"
        );
        assert!(f.queues.accept(chunk(0, epoch, None, &[], 40)).is_none());
        assert_eq!(position(&f.queues, 0), Some(40));
        f.queues.accept(chunk(0, epoch, None, &[], 99));
        assert_eq!(position(&f.queues, 0), Some(40));
        f.queues.clear();
    }

    #[tokio::test]
    async fn poll_takes_messages_in_order_up_to_the_limit() {
        let mut f = fixture();
        let epoch = f.queues.start(&q(1), Some(10), &f.context, &f.chunks);
        // Offsets 11 and 13 were filtered out by the fetcher; the pull ended at 15.
        let mut served = f
            .queues
            .accept(chunk(1, epoch, Some(10), &[10, 12, 14], 15))
            .expect("a chunk at the position is served");
        let mut out = Vec::new();
        assert!(f.queues.take(&mut served, 2, &mut out));
        assert_eq!(out.iter().map(|m| m.offset).collect::<Vec<_>>(), [10, 12]);
        assert_eq!(position(&f.queues, 1), Some(13));
        let mut rest = Vec::new();
        assert!(!f.queues.take(&mut served, 10, &mut rest));
        assert_eq!(rest[0].offset, 14);
        assert_eq!(
            position(&f.queues, 1),
            Some(15),
            "the filtered tail is passed too"
        );

        assert!(f
            .queues
            .accept(chunk(1, epoch, Some(15), &[], 18))
            .is_none());
        assert_eq!(
            position(&f.queues, 1),
            Some(18),
            "an all-filtered pull moves on"
        );
        assert!(
            f.queues
                .accept(chunk(1, epoch, Some(12), &[12], 13))
                .is_none(),
            "a chunk that does not start at the position is dropped"
        );
        f.queues.clear();
    }

    #[tokio::test]
    async fn a_seek_drops_what_was_fetched_before_it() {
        let mut f = fixture();
        let old = f.queues.start(&q(2), Some(0), &f.context, &f.chunks);
        let mut fetched = f
            .queues
            .accept(chunk(2, old, Some(0), &[0, 1, 2], 3))
            .unwrap();
        let new = f.queues.seek(&q(2), 100, &f.context, &f.chunks).unwrap();
        assert_ne!(new, old);
        let mut out = Vec::new();
        assert!(!f.queues.take(&mut fetched, 10, &mut out));
        assert!(
            out.is_empty(),
            "messages from before the seek are not returned"
        );
        assert_eq!(position(&f.queues, 2), Some(100));
        assert!(f
            .queues
            .accept(chunk(2, old, Some(100), &[100], 101))
            .is_none());
        assert!(f
            .queues
            .accept(chunk(2, new, Some(100), &[100], 101))
            .is_some());
        assert!(f.queues.seek(&q(9), 0, &f.context, &f.chunks).is_err());
        f.queues.clear();
    }

    #[tokio::test]
    async fn a_revoked_queue_is_released_at_the_next_poll() {
        let mut f = fixture();
        let epoch = f.queues.start(&q(3), Some(5), &f.context, &f.chunks);
        let mut fetched = f
            .queues
            .accept(chunk(3, epoch, Some(5), &[5, 6], 7))
            .unwrap();
        f.queues.take(&mut fetched, 1, &mut Vec::new());
        let mut released = f.queues.revoke(&q(3));
        assert!(!f.queues.contains(&q(3)));
        assert!(released.try_recv().is_err(), "held until the next poll");
        assert!(
            !f.queues.take(&mut fetched, 10, &mut Vec::new()),
            "nothing more is served"
        );
        f.queues.release();
        assert_eq!(released.await.unwrap(), Some(6));

        f.queues.start(&q(4), Some(9), &f.context, &f.chunks);
        f.queues.closing = true;
        let released = f.queues.revoke(&q(4));
        assert_eq!(released.await.unwrap(), Some(9), "closing releases at once");
    }
}
