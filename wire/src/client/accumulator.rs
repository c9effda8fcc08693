//! The per-queue accumulator: messages waiting to be sent, gathered into record batches.
//!
//! A producer keeps one accumulator per (topic, queue). Messages are encoded into the open
//! batch as they arrive (on the sender's task, so encoding spreads over the callers). The open
//! batch is sealed when
//!
//! - it reaches `batch_bytes` (uncompressed), or the next message would take it past that:
//!   a message larger than `batch_bytes` therefore travels alone, never split;
//! - `linger` has passed since its first message;
//! - someone asks for it now (`seal_now`: `flush`, shutdown).
//!
//! A synchronous send marks the open batch urgent instead of sealing it: the batch is ready
//! at once, but until the sender has a free in-flight slot to send it, later messages still
//! join it. Under load, many concurrent synchronous sends therefore share batches rather
//! than each becoming a request of its own.
//!
//! Sealed batches leave in the order they were sealed. Compression is decided when a batch is
//! built: batches whose uncompressed size reaches `compression_threshold_bytes` use the
//! configured codec, smaller ones go uncompressed (compressing a few hundred bytes costs more
//! than it saves, which is why RocketMQ compresses only bodies over 4 KiB). Records are
//! encoded with the configured codec from the start; while a batch is below the threshold it
//! also keeps its messages, so the rare small batch is rebuilt plain, and a large one is never
//! encoded twice.
//!
//! The accumulator is plain data with no clock or task of its own: callers pass `now`, and
//! `next` says whether a batch is ready or when to look again. What a caller needs to answer
//! a batch's messages (the producer's shared reply) is one ticket per batch, made when the
//! batch opens, so nothing is allocated per message beyond its encoded bytes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use log_core::{BatchBuilder, Compression};

use crate::error::{Error, Result};
use crate::message::{Message, MessageId};

/// Bytes of record framing beyond a message's own fields, at most: length, attributes,
/// timestamp delta, offset delta, key length, value length and header count varints, plus
/// the `UNIQ_KEY` header (name and 32-hex-digit id).
const RECORD_OVERHEAD_BYTES_MAX: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5 + (5 + 8 + 5 + 32);
/// Framing of one header beyond its name and value: two length varints.
const HEADER_OVERHEAD_BYTES_MAX: usize = 10;

/// How batches are cut and compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchPolicy {
    pub(crate) batch_bytes: usize,
    pub(crate) linger: Duration,
    pub(crate) compression: Compression,
    pub(crate) compression_threshold_bytes: usize,
}

/// A batch being filled, or sealed and waiting to be built and sent. `T` is what the caller
/// needs to answer the batch's messages (the producer's shared reply).
#[derive(Debug)]
pub(crate) struct OpenBatch<T> {
    builder: BatchBuilder,
    /// The messages and their ids, kept only while the batch is below the compression
    /// threshold.
    small: Option<Vec<(Message, MessageId)>>,
    count: usize,
    ticket: T,
    created: Instant,
    /// Ready without waiting for the linger.
    urgent: bool,
}

/// A finished batch: its bytes, its message count and its ticket.
#[derive(Debug)]
pub(crate) struct BuiltBatch<T> {
    pub(crate) bytes: Bytes,
    pub(crate) count: usize,
    pub(crate) ticket: T,
}

/// A batch that could not be built (a codec failed), with the ticket to answer.
#[derive(Debug)]
pub(crate) struct BuildFailed<T> {
    pub(crate) error: Error,
    pub(crate) ticket: T,
}

/// One queue's accumulator; see the module docs.
#[derive(Debug)]
pub(crate) struct Accumulator<T> {
    policy: BatchPolicy,
    open: Option<OpenBatch<T>>,
    sealed: VecDeque<OpenBatch<T>>,
    /// The uncompressed size of the batch sealed last: what the next one reserves.
    last_sealed_bytes: usize,
}

impl<T> Accumulator<T> {
    pub(crate) fn new(policy: BatchPolicy) -> Accumulator<T> {
        Accumulator {
            policy,
            open: None,
            sealed: VecDeque::new(),
            last_sealed_bytes: 0,
        }
    }

    /// Adds a message; seals the open batch first if the message would overflow it, and
    /// after if the batch is now full. `urgent` makes its batch ready now. When the message
    /// opens a batch, `open` gives the time (so the clock is read once per batch, not per
    /// message) and the batch's ticket. Returns the ticket of the message's batch and the
    /// message's index in it.
    pub(crate) fn append(
        &mut self,
        message: Message,
        id: MessageId,
        urgent: bool,
        open: impl FnOnce() -> (Instant, T),
    ) -> (&mut T, usize) {
        let estimate = record_size_estimate(&message);
        if self
            .open
            .as_ref()
            .is_some_and(|open| open.builder.size_bytes() + estimate > self.policy.batch_bytes)
        {
            self.seal_now();
        }
        let policy = self.policy;
        let reserve = capacity(&policy, estimate, self.last_sealed_bytes);
        let open = self.open.get_or_insert_with(|| {
            let (created, ticket) = open();
            OpenBatch {
                builder: BatchBuilder::with_capacity(policy.compression, reserve),
                small: (policy.compression != Compression::None).then(Vec::new),
                count: 0,
                ticket,
                created,
                urgent: false,
            }
        });
        open.urgent |= urgent;
        message.append_to(&mut open.builder, &id);
        let index = open.count;
        open.count += 1;
        if open.builder.size_bytes() >= policy.compression_threshold_bytes {
            open.small = None;
        } else if let Some(small) = open.small.as_mut() {
            small.push((message, id));
        }
        if open.builder.size_bytes() >= policy.batch_bytes {
            self.seal_now();
        }
        let batch = match self.open.as_mut() {
            Some(open) => open,
            // Just sealed: the message's batch is the newest sealed one.
            None => self
                .sealed
                .back_mut()
                .expect("a batch sealed by this append is in `sealed`"),
        };
        (&mut batch.ticket, index)
    }

    /// Seals the open batch, if any, so it leaves without waiting for its linger.
    pub(crate) fn seal_now(&mut self) {
        if let Some(open) = self.open.take() {
            self.last_sealed_bytes = open.builder.size_bytes();
            self.sealed.push_back(open);
        }
    }

    /// When the next batch is (or was) ready; `None` when nothing waits.
    pub(crate) fn ready_at(&self) -> Option<Instant> {
        if let Some(sealed) = self.sealed.front() {
            return Some(sealed.created);
        }
        let open = self.open.as_ref()?;
        Some(if open.urgent {
            open.created
        } else {
            open.created + self.policy.linger
        })
    }

    /// The next batch to send, if one is ready at `now` (see `ready_at` for when to ask
    /// again).
    pub(crate) fn take_ready(&mut self, now: Instant) -> Option<OpenBatch<T>> {
        if now < self.ready_at()? {
            return None;
        }
        if self.sealed.is_empty() {
            self.seal_now();
        }
        self.sealed.pop_front()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_none() && self.sealed.is_empty()
    }
}

impl<T> OpenBatch<T> {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Finishes the batch, plain when below the compression threshold; see the module docs.
    /// On failure the ticket comes back with the error, so the messages can be answered.
    pub(crate) fn build(self, policy: &BatchPolicy) -> Result<BuiltBatch<T>, BuildFailed<T>> {
        let builder = match self.small {
            Some(messages) if self.builder.size_bytes() < policy.compression_threshold_bytes => {
                let mut plain =
                    BatchBuilder::with_capacity(Compression::None, self.builder.size_bytes());
                for (message, id) in &messages {
                    message.append_to(&mut plain, id);
                }
                plain
            }
            _ => self.builder,
        };
        match builder.build() {
            Ok(bytes) => Ok(BuiltBatch {
                bytes: bytes.freeze(),
                count: self.count,
                ticket: self.ticket,
            }),
            Err(error) => Err(BuildFailed {
                error: Error::Batch(log_core::Error::InvalidBatch(error)),
                ticket: self.ticket,
            }),
        }
    }
}

/// Builds one batch from `messages` (with their ids) outside any accumulator, by the same
/// compression rule: for `send_batch` and `send_one_way`.
pub(crate) fn build_batch(
    messages: &[Message],
    ids: &[MessageId],
    policy: &BatchPolicy,
) -> Result<(Bytes, Compression)> {
    let encode = |compression: Compression, capacity: usize| {
        let mut builder = BatchBuilder::with_capacity(compression, capacity);
        for (message, id) in messages.iter().zip(ids) {
            message.append_to(&mut builder, id);
        }
        builder
    };
    let estimate: usize = messages.iter().map(record_size_estimate).sum();
    let capacity = log_core::batch::BATCH_HEADER_BYTES + estimate;
    let mut builder = encode(policy.compression, capacity);
    if builder.compression() != Compression::None
        && builder.size_bytes() < policy.compression_threshold_bytes
    {
        builder = encode(Compression::None, capacity);
    }
    let compression = builder.compression();
    let bytes = builder
        .build()
        .map_err(|e| Error::Batch(log_core::Error::InvalidBatch(e)))?;
    Ok((bytes.freeze(), compression))
}

/// An upper bound on the bytes `message` adds to a batch, uncompressed.
pub(crate) fn record_size_estimate(message: &Message) -> usize {
    let keys: usize = message.keys.iter().map(|k| k.len() + 1).sum();
    let tag = message.tag.as_ref().map_or(0, |t| {
        crate::message::HEADER_TAGS.len() + t.len() + HEADER_OVERHEAD_BYTES_MAX
    });
    let properties: usize = message
        .properties
        .iter()
        .map(|(n, v)| n.len() + v.len() + HEADER_OVERHEAD_BYTES_MAX)
        .sum();
    RECORD_OVERHEAD_BYTES_MAX + keys + tag + properties + message.body.len()
}

/// Bytes to reserve for a new batch: enough for the first message, and a quarter more than
/// the queue's previous batch took, at least a little (most queues see small batches, so not
/// the whole `batch_bytes` up front) and at most `batch_bytes`. A busy queue's batches are
/// then built in one buffer instead of being copied as it doubles: a batch sealed for size
/// comes within one message of `batch_bytes`, so the next one, reserving all of it, can
/// never outgrow its buffer, however its size differs by a message from the last.
fn capacity(policy: &BatchPolicy, first: usize, last_sealed: usize) -> usize {
    const INITIAL_BYTES: usize = 16 * 1024;
    let usual = (last_sealed + last_sealed / 4)
        .max(INITIAL_BYTES)
        .min(policy.batch_bytes);
    (log_core::batch::BATCH_HEADER_BYTES + first).max(usual)
}

#[cfg(test)]
mod tests {
    use log_core::batch::split_batches;
    use log_core::BatchHeader;

    use super::*;
    use crate::message::ReceivedMessage;

    const HOUR: Duration = Duration::from_secs(3600);

    fn policy(batch_bytes: usize, linger: Duration, compression: Compression) -> BatchPolicy {
        BatchPolicy {
            batch_bytes,
            linger,
            compression,
            compression_threshold_bytes: 4096,
        }
    }

    fn message(body_bytes: usize, n: usize) -> Message {
        let body: Vec<u8> = format!("{n:08}").bytes().cycle().take(body_bytes).collect();
        Message::new("t", body)
            .with_tag("TagA")
            .with_key(format!("k{n}"))
    }

    /// Each message's id and number, in batch order: the test's batch ticket.
    type Tickets = Vec<(MessageId, usize)>;

    /// Appends message number `n` with a new id, recording both in its batch's ticket.
    fn add(acc: &mut Accumulator<Tickets>, message: Message, n: usize, now: Instant, urgent: bool) {
        let id = MessageId::generate();
        let (tickets, index) = acc.append(message, id, urgent, || (now, Vec::new()));
        assert_eq!(index, tickets.len(), "indexes count the batch's messages");
        tickets.push((id, n));
    }

    /// Every batch the accumulator has ready now, built.
    fn drain(
        acc: &mut Accumulator<Tickets>,
        now: Instant,
        policy: &BatchPolicy,
    ) -> Vec<BuiltBatch<Tickets>> {
        let mut out = Vec::new();
        while let Some(batch) = acc.take_ready(now) {
            out.push(batch.build(policy).unwrap());
        }
        out
    }

    fn decode(batch: &BuiltBatch<Tickets>) -> Vec<ReceivedMessage> {
        let parsed = split_batches(batch.bytes.clone()).next().unwrap().unwrap();
        parsed
            .records()
            .unwrap()
            .map(|r| ReceivedMessage::from_record("t", 0, r.unwrap()))
            .collect()
    }

    #[test]
    fn batches_are_cut_at_batch_bytes_and_keep_send_order() {
        let policy = policy(1024, HOUR, Compression::None);
        let mut acc = Accumulator::new(policy);
        let now = Instant::now();
        for n in 0..40 {
            add(&mut acc, message(100, n), n, now, false);
        }
        let batches = drain(&mut acc, now, &policy);
        assert!(batches.len() >= 4, "{} batches", batches.len());
        let mut tickets = Vec::new();
        for batch in &batches {
            assert!(
                batch.bytes.len() <= 1024,
                "batch of {} bytes",
                batch.bytes.len()
            );
            let decoded = decode(batch);
            assert_eq!(decoded.len(), batch.count);
            for (message, (id, ticket)) in decoded.iter().zip(&batch.ticket) {
                assert_eq!(message.message_id, id.to_string());
                assert_eq!(message.keys, vec![format!("k{ticket}")]);
                tickets.push(*ticket);
            }
        }
        assert!(
            !acc.is_empty(),
            "the partly filled batch waits for its linger"
        );
        assert!(acc.take_ready(now).is_none());
        assert_eq!(acc.ready_at(), Some(now + HOUR));
        acc.seal_now();
        tickets.extend(
            drain(&mut acc, now, &policy)
                .iter()
                .flat_map(|b| b.ticket.iter().map(|e| e.1)),
        );
        assert_eq!(tickets, (0..40).collect::<Vec<_>>());
        assert!(acc.is_empty());
    }

    #[test]
    fn the_open_batch_leaves_when_its_linger_ends() {
        let linger = Duration::from_millis(5);
        let policy = policy(1 << 20, linger, Compression::None);
        let mut acc = Accumulator::new(policy);
        let start = Instant::now();
        assert!(acc.take_ready(start).is_none());
        assert_eq!(acc.ready_at(), None);
        add(&mut acc, message(10, 0), 0, start, false);
        add(
            &mut acc,
            message(10, 1),
            1,
            start + Duration::from_millis(3),
            false,
        );
        assert!(acc.take_ready(start + Duration::from_millis(4)).is_none());
        assert_eq!(
            acc.ready_at(),
            Some(start + linger),
            "linger counts from the first message"
        );
        let batch = acc
            .take_ready(start + linger)
            .expect("due at the end of the linger");
        assert_eq!(batch.len(), 2);
        assert!(acc.take_ready(start + linger).is_none());
        assert_eq!(acc.ready_at(), None);
    }

    #[test]
    fn an_urgent_batch_is_ready_at_once_and_still_takes_later_messages() {
        let policy = policy(1 << 20, HOUR, Compression::None);
        let mut acc = Accumulator::new(policy);
        let now = Instant::now();
        add(&mut acc, message(10, 0), 0, now, false);
        assert_eq!(acc.ready_at(), Some(now + HOUR));
        add(&mut acc, message(10, 1), 1, now, true);
        assert_eq!(
            acc.ready_at(),
            Some(now),
            "ready without waiting for the linger"
        );
        add(&mut acc, message(10, 2), 2, now, false);
        let batch = acc.take_ready(now).expect("urgent");
        assert_eq!(batch.len(), 3, "joined until it was taken");
        assert_eq!(acc.ready_at(), None);
    }

    #[test]
    fn a_message_larger_than_batch_bytes_travels_alone() {
        let policy = policy(1024, HOUR, Compression::None);
        let mut acc = Accumulator::new(policy);
        let now = Instant::now();
        add(&mut acc, message(10, 0), 0, now, false);
        add(&mut acc, message(5000, 1), 1, now, false);
        add(&mut acc, message(10, 2), 2, now, false);
        let batches = drain(&mut acc, now, &policy);
        let shapes: Vec<Vec<usize>> = batches
            .iter()
            .map(|b| b.ticket.iter().map(|e| e.1).collect())
            .collect();
        assert_eq!(shapes, vec![vec![0], vec![1]]);
        assert_eq!(decode(&batches[1])[0].body.len(), 5000);
        acc.seal_now();
        let rest = drain(&mut acc, now, &policy);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].ticket[0].1, 2);
    }

    #[test]
    fn only_batches_past_the_threshold_are_compressed() {
        for codec in [Compression::Lz4, Compression::Zstd] {
            let policy = policy(1 << 20, HOUR, codec);
            let mut acc = Accumulator::new(policy);
            let now = Instant::now();
            add(&mut acc, message(100, 0), 0, now, false);
            acc.seal_now();
            for n in 1..=100 {
                add(&mut acc, message(100, n), n, now, false);
            }
            acc.seal_now();
            let batches = drain(&mut acc, now, &policy);
            assert_eq!(batches.len(), 2);
            let small = BatchHeader::parse(&batches[0].bytes).unwrap();
            let large = BatchHeader::parse(&batches[1].bytes).unwrap();
            assert_eq!(small.compression(), Compression::None, "{codec:?}");
            assert_eq!(large.compression(), codec);
            assert!(
                batches[1].bytes.len() < 100 * 100,
                "compressible bodies shrink"
            );
            let decoded = decode(&batches[1]);
            assert_eq!(decoded.len(), 100);
            assert_eq!(decoded[99].body, message(100, 100).body);
            assert_eq!(decode(&batches[0])[0].keys, vec!["k0"]);
        }
    }

    #[test]
    fn build_batch_follows_the_same_threshold() {
        let policy = policy(1 << 20, HOUR, Compression::Zstd);
        let small = [message(10, 0), message(10, 1)];
        let ids = [MessageId::generate(), MessageId::generate()];
        let (bytes, codec) = build_batch(&small, &ids, &policy).unwrap();
        assert_eq!(codec, Compression::None);
        assert_eq!(BatchHeader::parse(&bytes).unwrap().records_count, 2);
        let large: Vec<Message> = (0..10).map(|n| message(1000, n)).collect();
        let ids: Vec<MessageId> = large.iter().map(|_| MessageId::generate()).collect();
        let (bytes, codec) = build_batch(&large, &ids, &policy).unwrap();
        assert_eq!(codec, Compression::Zstd);
        assert_eq!(
            BatchHeader::parse(&bytes).unwrap().compression(),
            Compression::Zstd
        );
    }

    #[test]
    fn a_busy_queue_reserves_its_whole_batch_and_a_quiet_one_a_little() {
        let policy = policy(1 << 20, HOUR, Compression::None);
        // Sealed for size: within a message of `batch_bytes`, and the next batch may take one
        // message more, so it reserves all of `batch_bytes`.
        assert_eq!(capacity(&policy, 1100, (1 << 20) - 1100), 1 << 20);
        assert_eq!(
            capacity(&policy, 100, 0),
            16 * 1024,
            "a new queue starts small"
        );
        assert_eq!(
            capacity(&policy, 100, 40_000),
            50_000,
            "a quarter more than the last"
        );
        assert_eq!(
            capacity(&policy, 200_000, 0),
            log_core::batch::BATCH_HEADER_BYTES + 200_000,
            "always room for the first message"
        );
    }

    #[test]
    fn the_size_estimate_bounds_the_encoded_record() {
        for n in [0, 1, 127, 128, 5000] {
            let message = message(n, n).with_property("region", "eu-west");
            let mut builder = BatchBuilder::new(Compression::None);
            message.append_to(&mut builder, &MessageId::generate());
            let encoded = builder.size_bytes() - log_core::batch::BATCH_HEADER_BYTES;
            let estimate = record_size_estimate(&message);
            assert!(encoded <= estimate, "{encoded} > {estimate}");
            assert!(
                estimate <= encoded + 64,
                "estimate {estimate} far above {encoded}"
            );
        }
    }
}
