//! The benchmark's messages: bodies that carry their send time, and the producer batch size
//! that holds exactly `--batch-size` of them.
//!
//! Body layout (`--message-size` bytes, at least [`TIMESTAMP_BYTES`]):
//!
//! ```text
//! 0..8   send time: microseconds since the Unix epoch, u64 little-endian
//! 8..    filler (b'x')
//! ```
//!
//! The send time is the wall clock, read by the producer just before `send_async` (or
//! `send`), so a consumer in any process on the same machine computes born → received with
//! microsecond resolution. A message's own `born_timestamp` has only milliseconds.
//!
//! Bodies are cut from a shared arena (one allocation per [`ARENA_BYTES`], reused once its
//! bodies are dropped), so making a message costs one copy of the template and no
//! allocation of its own. Runs that do not read send times (`produce`) share one body
//! among all messages instead, as Kafka's `kafka-producer-perf-test` sends one payload.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use log_core::{BatchBuilder, Compression};
use wire::client::PRODUCER_BATCH_BYTES_MAX;
use wire::{Message, MessageId};

/// Bytes at the start of every body that hold its send time.
pub const TIMESTAMP_BYTES: usize = 8;
/// Bytes allocated at a time for bodies.
const ARENA_BYTES: usize = 4 << 20;
/// How far the producer's per-record size estimate may exceed a record's encoded size, in
/// bytes. The accumulator seals a batch when the next message's estimate would take it past
/// `batch_bytes`; with `batch_bytes` = (encoded size of N records) + this slack, the N-th
/// message still fits and the (N+1)-th does not. Must lie between the estimate's excess
/// (about 34 bytes today: wire's `RECORD_OVERHEAD_BYTES_MAX` is 86, a benchmark record's
/// framing about 52) and the estimate itself (86 + body bytes).
const BATCH_SLACK_BYTES: usize = 64;

/// Makes bodies of one size.
#[derive(Debug)]
pub struct Payloads {
    template: Vec<u8>,
    arena: BytesMut,
    /// One body for every message that need not carry its send time (stamped 0).
    shared: Bytes,
}

impl Payloads {
    pub fn new(message_size: usize) -> Payloads {
        assert!(
            message_size >= TIMESTAMP_BYTES,
            "checked by the argument parser"
        );
        let mut shared = vec![b'x'; message_size];
        shared[..TIMESTAMP_BYTES].fill(0);
        Payloads {
            template: vec![b'x'; message_size],
            arena: BytesMut::new(),
            // Static, so the per-message clone and drop touch no reference count: a bench
            // producer makes one of these for its whole run.
            shared: Bytes::from_static(Box::leak(shared.into_boxed_slice())),
        }
    }

    /// A body stamped with `sent_us`.
    pub fn body(&mut self, sent_us: u64) -> Bytes {
        let size = self.template.len();
        if self.arena.capacity() < size {
            // Reclaims the arena's allocation in place once every body cut from it is gone
            // (the producer copies bodies into its batches and drops them), so the same
            // pages are reused instead of faulting in fresh ones.
            self.arena.reserve(ARENA_BYTES.max(size));
        }
        self.arena.extend_from_slice(&self.template);
        self.arena[..TIMESTAMP_BYTES].copy_from_slice(&sent_us.to_le_bytes());
        self.arena.split().freeze()
    }

    /// The body every unstamped message shares (send time 0): no copy, no allocation.
    pub fn shared(&self) -> Bytes {
        self.shared.clone()
    }
}

/// The send time a body carries, if it is long enough to carry one.
pub fn sent_micros(body: &[u8]) -> Option<u64> {
    let stamp: [u8; TIMESTAMP_BYTES] = body.get(..TIMESTAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_le_bytes(stamp))
}

/// Microseconds since the Unix epoch by the wall clock.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The producer `batch_bytes` that makes batches of `batch_size` messages of `message_size`
/// bytes (see [`BATCH_SLACK_BYTES`]), capped at what the producer accepts.
pub fn batch_bytes(topic: &str, message_size: usize, batch_size: usize) -> usize {
    let mut builder = BatchBuilder::new(Compression::None);
    let mut payloads = Payloads::new(message_size);
    for _ in 0..batch_size {
        if builder.size_bytes() > PRODUCER_BATCH_BYTES_MAX {
            break;
        }
        let message = Message::new(topic, payloads.body(now_micros()));
        message.append_to(&mut builder, &MessageId::generate());
    }
    (builder.size_bytes() + BATCH_SLACK_BYTES).min(PRODUCER_BATCH_BYTES_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_send_time_and_size() {
        let mut payloads = Payloads::new(1000);
        let a = payloads.body(42);
        let b = payloads.body(43);
        assert_eq!(a.len(), 1000);
        assert_eq!(sent_micros(&a), Some(42));
        assert_eq!(sent_micros(&b), Some(43), "bodies do not share bytes");
        assert_eq!(sent_micros(b"short"), None);
        let shared = payloads.shared();
        assert_eq!(shared.len(), 1000);
        assert_eq!(sent_micros(&shared), Some(0), "unstamped");
    }

    #[test]
    fn batch_bytes_grow_with_the_batch() {
        let one = batch_bytes("bench", 1000, 1);
        let thousand = batch_bytes("bench", 1000, 1000);
        assert!(one > 1000 && one < 1200, "{one}");
        assert!(thousand > 1_000_000 && thousand < 1_100_000, "{thousand}");
        assert_eq!(
            batch_bytes("bench", 1 << 20, 1000),
            PRODUCER_BATCH_BYTES_MAX
        );
    }
}
