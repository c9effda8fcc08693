//! `QueueSelector`: which queue of a topic a producer sends a message to.
//!
//! - `RoundRobin` (the default) spreads messages evenly, as RocketMQ's producer does; each
//!   producer starts at a random queue so many producers do not all begin on queue 0.
//! - `KeyHash` keeps every message with the same sharding key on one queue, so a consumer
//!   sees them in send order (RocketMQ's "ordered messages by key"). The sharding key is the
//!   message's `SHARDING_KEY` property when set, else its first key; messages with neither
//!   fall back to round robin. The hash is 32-bit FNV-1a: fixed by this file, stable across
//!   processes, releases and platforms (unlike `std`'s hasher), so two producers agree.
//! - `Custom` calls a function with the message and the topic's queue count; it must return
//!   a queue index below that count (a send fails with `InvalidArgument` otherwise).
//!
//! A selector picks an index into the topic's route (queues ordered by id), not a broker:
//! the route says which broker leads the chosen queue. Changing a topic's queue count moves
//! keys between queues, as in both RocketMQ and Kafka.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::message::Message;

/// The property that overrides the first key as the sharding key of `QueueSelector::KeyHash`.
pub const SHARDING_KEY_PROPERTY: &str = "SHARDING_KEY";

/// A user function choosing a queue index below the queue count.
pub type SelectQueueFn = dyn Fn(&Message, u32) -> u32 + Send + Sync;

/// How a producer picks a queue; see the module docs.
#[derive(Clone, Default)]
pub enum QueueSelector {
    #[default]
    RoundRobin,
    KeyHash,
    Custom(Arc<SelectQueueFn>),
}

impl QueueSelector {
    /// A selector from a function of the message and the queue count.
    pub fn custom(select: impl Fn(&Message, u32) -> u32 + Send + Sync + 'static) -> QueueSelector {
        QueueSelector::Custom(Arc::new(select))
    }
}

impl fmt::Debug for QueueSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueSelector::RoundRobin => f.write_str("RoundRobin"),
            QueueSelector::KeyHash => f.write_str("KeyHash"),
            QueueSelector::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// A selector with its round-robin position: one per producer.
#[derive(Debug)]
pub(crate) struct QueueChooser {
    selector: QueueSelector,
    next: AtomicU32,
}

impl QueueChooser {
    pub(crate) fn new(selector: QueueSelector) -> QueueChooser {
        QueueChooser {
            selector,
            next: AtomicU32::new(rand::random()),
        }
    }

    /// The queue index (below `queue_count`, which must be at least 1) for `message`.
    pub(crate) fn choose(&self, message: &Message, queue_count: u32) -> Result<u32> {
        assert!(queue_count > 0, "callers reject topics without queues");
        match &self.selector {
            QueueSelector::RoundRobin => Ok(self.round_robin(queue_count)),
            QueueSelector::KeyHash => Ok(match sharding_key(message) {
                Some(key) => fnv1a(key.as_bytes()) % queue_count,
                None => self.round_robin(queue_count),
            }),
            QueueSelector::Custom(select) => {
                let index = select(message, queue_count);
                if index < queue_count {
                    Ok(index)
                } else {
                    Err(Error::InvalidArgument(format!(
                        "the queue selector chose queue index {index} of topic {} with {queue_count} queues",
                        message.topic
                    )))
                }
            }
        }
    }

    fn round_robin(&self, queue_count: u32) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed) % queue_count
    }
}

/// The key `KeyHash` hashes: the `SHARDING_KEY` property, else the first key.
pub(crate) fn sharding_key(message: &Message) -> Option<&str> {
    message
        .properties
        .iter()
        .find(|(name, _)| name == SHARDING_KEY_PROPERTY)
        .map(|(_, value)| value.as_str())
        .or_else(|| message.keys.first().map(String::as_str))
}

/// 32-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn round_robin_visits_every_queue_evenly() {
        let chooser = QueueChooser::new(QueueSelector::RoundRobin);
        let message = Message::new("t", "x");
        let mut counts = [0u32; 4];
        for _ in 0..400 {
            counts[chooser.choose(&message, 4).unwrap() as usize] += 1;
        }
        assert_eq!(counts, [100; 4]);
    }

    #[test]
    fn key_hash_is_stable_per_key_and_spreads_keys() {
        let a = QueueChooser::new(QueueSelector::KeyHash);
        let b = QueueChooser::new(QueueSelector::KeyHash);
        let mut used = std::collections::BTreeSet::new();
        for order in 0..64 {
            let message = Message::new("t", "x").with_key(format!("order-{order}"));
            let queue = a.choose(&message, 8).unwrap();
            for _ in 0..3 {
                assert_eq!(a.choose(&message, 8).unwrap(), queue);
            }
            assert_eq!(b.choose(&message, 8).unwrap(), queue, "two producers agree");
            used.insert(queue);
        }
        assert!(used.len() > 4, "64 keys landed on only {used:?}");
    }

    #[test]
    fn the_sharding_key_property_wins_over_the_first_key() {
        let chooser = QueueChooser::new(QueueSelector::KeyHash);
        let by_property = Message::new("t", "x")
            .with_key("k1")
            .with_property(SHARDING_KEY_PROPERTY, "shard-9");
        assert_eq!(sharding_key(&by_property), Some("shard-9"));
        let expected = fnv1a(b"shard-9") % 16;
        assert_eq!(chooser.choose(&by_property, 16).unwrap(), expected);
    }

    #[test]
    fn keyless_messages_fall_back_to_round_robin() {
        let chooser = QueueChooser::new(QueueSelector::KeyHash);
        let message = Message::new("t", "x");
        let first = chooser.choose(&message, 2).unwrap();
        assert_ne!(chooser.choose(&message, 2).unwrap(), first);
    }

    #[test]
    fn custom_selectors_are_called_and_checked() {
        let chooser = QueueChooser::new(QueueSelector::custom(|m, count| {
            m.body.len() as u32 % (count + 1)
        }));
        assert_eq!(chooser.choose(&Message::new("t", "ab"), 3).unwrap(), 2);
        let error = chooser.choose(&Message::new("t", "abc"), 3).unwrap_err();
        assert!(error.to_string().contains("queue index 3"), "{error}");
    }
}
