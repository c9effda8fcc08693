//! The message model and how it maps onto `log-core` records.
//!
//! A RocketMQ-style message (topic, tags, keys, properties, body, born timestamp, unique id)
//! is stored as one record of a RecordBatch v2:
//!
//! | message field    | record field                                        |
//! |------------------|-----------------------------------------------------|
//! | body             | value                                               |
//! | keys             | key: the keys joined by one space (RocketMQ's KEYS) |
//! | born timestamp   | timestamp                                           |
//! | tags             | header `TAGS`                                       |
//! | message id       | header `UNIQ_KEY` (32 hex digits)                   |
//! | properties       | one header each, name → UTF-8 value                 |
//!
//! The topic and queue are not in the record: the partition the record lives in says them.
//! Property names used by the system (`TAGS`, `UNIQ_KEY`, and later `DELAY`, `REAL_TOPIC`, …)
//! are reserved; `Message::property` rejects them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use log_core::batch::RecordView;
use log_core::{BatchBuilder, Record};

use crate::error::{Error, Result};

/// Header holding a message's tag.
pub const HEADER_TAGS: &str = "TAGS";
/// Header holding a message's unique id.
pub const HEADER_MESSAGE_ID: &str = "UNIQ_KEY";
/// Property names clients may not set: the system's own headers.
pub const RESERVED_PROPERTIES: [&str; 2] = [HEADER_TAGS, HEADER_MESSAGE_ID];

/// The largest message body the client accepts before sending.
pub const MESSAGE_BODY_BYTES_MAX: usize = 4 << 20;
/// The most bytes a message's tag, keys and properties (names and values) may take together.
pub const MESSAGE_METADATA_BYTES_MAX: usize = 64 << 10;
/// Room for what a batch holding one message adds around its body and metadata: the batch
/// header (61 bytes), the record's varint framing, the message id header (about 60 bytes)
/// and one varint length per header, with a wide margin.
const MESSAGE_FRAMING_BYTES_MAX: usize = 64 << 10;
/// The largest batch one valid message makes, uncompressed. The broker's default
/// `max_message_bytes` is this, so every message `validate` accepts is accepted by a broker
/// with default settings, even when it travels alone in its batch.
pub const MESSAGE_BATCH_BYTES_MAX: usize =
    MESSAGE_BODY_BYTES_MAX + MESSAGE_METADATA_BYTES_MAX + MESSAGE_FRAMING_BYTES_MAX;

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub tag: Option<String>,
    pub keys: Vec<String>,
    pub properties: Vec<(String, String)>,
    pub body: Bytes,
    /// Milliseconds since the Unix epoch; `Message::new` sets it to now.
    pub born_timestamp: i64,
}

impl Message {
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Message {
        Message {
            topic: topic.into(),
            tag: None,
            keys: Vec::new(),
            properties: Vec::new(),
            body: body.into(),
            born_timestamp: now_ms(),
        }
    }

    #[must_use]
    pub fn with_tag(mut self, tag: impl Into<String>) -> Message {
        self.tag = Some(tag.into());
        self
    }

    /// Adds a business key (RocketMQ's KEYS); keys may not contain spaces.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Message {
        self.keys.push(key.into());
        self
    }

    #[must_use]
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Message {
        self.properties.push((name.into(), value.into()));
        self
    }

    /// Checks what the record mapping cannot represent: reserved property names, keys with
    /// spaces, oversize bodies or metadata.
    pub fn validate(&self) -> Result<()> {
        if self.body.len() > MESSAGE_BODY_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "message body of {} bytes exceeds {MESSAGE_BODY_BYTES_MAX}",
                self.body.len()
            )));
        }
        let metadata = self.metadata_bytes();
        if metadata > MESSAGE_METADATA_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "message tag, keys and properties take {metadata} bytes; the limit is \
                 {MESSAGE_METADATA_BYTES_MAX}"
            )));
        }
        if let Some(key) = self.keys.iter().find(|k| k.is_empty() || k.contains(' ')) {
            return Err(Error::InvalidArgument(format!(
                "message key {key:?} is empty or contains a space"
            )));
        }
        if let Some((name, _)) = self
            .properties
            .iter()
            .find(|(n, _)| RESERVED_PROPERTIES.contains(&n.as_str()))
        {
            return Err(Error::InvalidArgument(format!(
                "property name {name} is reserved"
            )));
        }
        Ok(())
    }

    /// Bytes of the tag, keys (with their separators) and properties (names and values).
    fn metadata_bytes(&self) -> usize {
        let tag = self.tag.as_ref().map_or(0, String::len);
        let keys: usize = self.keys.iter().map(|k| k.len() + 1).sum();
        let properties: usize = self.properties.iter().map(|(n, v)| n.len() + v.len()).sum();
        tag + keys + properties
    }

    /// Appends this message to a batch as one record carrying `id`.
    pub fn append_to(&self, batch: &mut BatchBuilder, id: &MessageId) {
        // The common case, no keys, allocates nothing for them.
        let keys = match self.keys.as_slice() {
            [] => std::borrow::Cow::Borrowed(""),
            [one] => std::borrow::Cow::Borrowed(one.as_str()),
            many => std::borrow::Cow::Owned(many.join(" ")),
        };
        let id = id.to_hex();
        // The id and the tag go in an array; only properties need a vector (the common
        // message has none, and then nothing is allocated per message).
        let mut fixed: [(&str, Option<&[u8]>); 2] = [(HEADER_MESSAGE_ID, Some(&id)), ("", None)];
        let mut fixed_len = 1;
        if let Some(tag) = &self.tag {
            fixed[1] = (HEADER_TAGS, Some(tag.as_bytes()));
            fixed_len = 2;
        }
        let with_properties: Vec<(&str, Option<&[u8]>)>;
        let headers = if self.properties.is_empty() {
            &fixed[..fixed_len]
        } else {
            with_properties = fixed[..fixed_len]
                .iter()
                .copied()
                .chain(
                    self.properties
                        .iter()
                        .map(|(name, value)| (name.as_str(), Some(value.as_bytes()))),
                )
                .collect();
            &with_properties[..]
        };
        let key = (!keys.is_empty()).then_some(keys.as_bytes());
        batch.append(self.born_timestamp, key, Some(&self.body), headers);
    }
}

/// A message as a consumer receives it: where it is stored and what was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub topic: String,
    pub queue: u32,
    pub offset: u64,
    /// The producer-assigned id; empty for records written by something other than a Runnel
    /// producer.
    pub message_id: String,
    pub tag: Option<String>,
    pub keys: Vec<String>,
    pub properties: Vec<(String, String)>,
    pub body: Bytes,
    pub born_timestamp: i64,
}

impl ReceivedMessage {
    /// Maps a stored record back to a message. Header values that are not UTF-8 are kept
    /// lossily; a record without a value has an empty body.
    pub fn from_record(topic: &str, queue: u32, record: Record) -> ReceivedMessage {
        let mut message = ReceivedMessage::bare(topic, queue, record.offset.0, record.timestamp);
        let headers = record
            .headers
            .iter()
            .map(|h| (&h.key[..], h.value.as_deref()));
        message.fill(record.key.as_deref(), headers);
        message.body = record.value.unwrap_or_default();
        message
    }

    /// [`ReceivedMessage::from_record`] from a record read in place: the body is a zero-copy
    /// slice of the batch, and only the strings the message keeps are allocated.
    pub fn from_view(topic: &str, queue: u32, record: &RecordView<'_>) -> ReceivedMessage {
        let mut message = ReceivedMessage::bare(topic, queue, record.offset.0, record.timestamp);
        message.body = record.value_bytes().unwrap_or_default();
        message.fill(record.key(), record.headers());
        message
    }

    fn bare(topic: &str, queue: u32, offset: u64, born_timestamp: i64) -> ReceivedMessage {
        ReceivedMessage {
            topic: topic.to_owned(),
            queue,
            offset,
            message_id: String::new(),
            tag: None,
            keys: Vec::new(),
            properties: Vec::new(),
            body: Bytes::new(),
            born_timestamp,
        }
    }

    /// Sets the keys, id, tag and properties from a record's key and headers.
    fn fill<'a>(
        &mut self,
        key: Option<&[u8]>,
        headers: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) {
        if let Some(key) = key {
            let keys = String::from_utf8_lossy(key);
            // A key longer than any producer may write is kept whole: split, a hostile key
            // of spaces would cost a string per byte.
            self.keys = if keys.len() > MESSAGE_METADATA_BYTES_MAX {
                vec![keys.into_owned()]
            } else {
                keys.split(' ').map(str::to_owned).collect()
            };
        }
        let text = |value: Option<&[u8]>| {
            value
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        for (name, value) in headers {
            if name == HEADER_MESSAGE_ID.as_bytes() {
                self.message_id = text(value);
            } else if name == HEADER_TAGS.as_bytes() {
                self.tag = Some(text(value));
            } else {
                let name = String::from_utf8_lossy(name).into_owned();
                self.properties.push((name, text(value)));
            }
        }
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A message's unique id: 16 bytes shown as 32 hex digits, RocketMQ's `UNIQ_KEY` shape —
/// a per-process prefix (random 6 bytes + the low 16 bits of the pid), seconds since the
/// process's id epoch, and a counter. Unique within a process for 2^32 messages per second;
/// across processes with overwhelming probability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    pub fn generate() -> MessageId {
        MessageId::generate_at(now_ms())
    }

    /// A new id for a message born at `now_ms` (saves reading the clock again).
    pub fn generate_at(now_ms: i64) -> MessageId {
        static PREFIX: OnceLock<[u8; 8]> = OnceLock::new();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let prefix = PREFIX.get_or_init(|| {
            let mut prefix = [0u8; 8];
            let random: [u8; 6] = rand::random();
            prefix[..6].copy_from_slice(&random);
            prefix[6..].copy_from_slice(&(std::process::id() as u16).to_be_bytes());
            prefix
        });
        let seconds = (now_ms / 1000) as u32;
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(prefix);
        id[8..12].copy_from_slice(&seconds.to_be_bytes());
        id[12..].copy_from_slice(&count.to_be_bytes());
        MessageId(id)
    }
}

impl MessageId {
    /// The id as 32 upper-case hex digits, without allocating (it is on every message's
    /// path: formatting through `fmt` cost a producer a sixth of its CPU).
    pub fn to_hex(&self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut hex = [0u8; 32];
        for (i, byte) in self.0.iter().enumerate() {
            hex[2 * i] = DIGITS[usize::from(byte >> 4)];
            hex[2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
        }
        hex
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = self.to_hex();
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| std::fmt::Error)?)
    }
}

/// Milliseconds since the Unix epoch by the system clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_core::batch::split_batches;
    use log_core::Compression;

    #[test]
    fn a_message_survives_the_record_mapping() {
        let message = Message::new("orders", &b"placed"[..])
            .with_tag("TagA")
            .with_key("order-1")
            .with_key("user-7")
            .with_property("region", "eu");
        let id = MessageId::generate();
        let mut batch = BatchBuilder::new(Compression::None);
        message.append_to(&mut batch, &id);
        let bytes = batch.build().unwrap().freeze();
        let batch = split_batches(bytes).next().unwrap().unwrap();
        let mut records = batch.records().unwrap();
        let viewed =
            ReceivedMessage::from_view("orders", 3, &records.next_view().unwrap().unwrap());
        let record = batch.records().unwrap().next().unwrap().unwrap();
        let received = ReceivedMessage::from_record("orders", 3, record);
        assert_eq!(viewed, received, "both mappings agree");
        assert_eq!(received.message_id, id.to_string());
        assert_eq!(received.tag.as_deref(), Some("TagA"));
        assert_eq!(received.keys, vec!["order-1", "user-7"]);
        assert_eq!(received.property("region"), Some("eu"));
        assert_eq!(received.body, message.body);
        assert_eq!(received.born_timestamp, message.born_timestamp);
        assert_eq!(received.queue, 3);
    }

    #[test]
    fn a_key_longer_than_any_producer_writes_is_kept_whole() {
        let spaces = vec![b' '; MESSAGE_METADATA_BYTES_MAX + 1];
        let mut builder = BatchBuilder::new(Compression::None);
        builder.append(0, Some(&spaces), Some(b"body"), &[]);
        builder.append(0, Some(b"a b"), Some(b"body"), &[]);
        let batch = split_batches(builder.build().unwrap().freeze())
            .next()
            .unwrap()
            .unwrap();
        let mut records = batch.records().unwrap();
        let long = ReceivedMessage::from_view("t", 0, &records.next_view().unwrap().unwrap());
        assert_eq!(long.keys.len(), 1, "not split into a string per space");
        assert_eq!(long.keys[0].len(), spaces.len());
        let short = ReceivedMessage::from_view("t", 0, &records.next_view().unwrap().unwrap());
        assert_eq!(short.keys, ["a", "b"]);
    }

    #[test]
    fn reserved_properties_and_spaced_keys_are_rejected() {
        let bad = Message::new("t", "x").with_property("TAGS", "A");
        assert!(bad.validate().is_err());
        let bad = Message::new("t", "x").with_key("two words");
        assert!(bad.validate().is_err());
    }

    #[test]
    fn ids_are_distinct_and_hex() {
        let a = MessageId::generate().to_string();
        let b = MessageId::generate().to_string();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        let id = MessageId([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 0xff, 0x10, 0x0f, 0xa5, 0x5a, 0x7e,
            0xe7,
        ]);
        assert_eq!(id.to_string(), "0123456789ABCDEF00FF100FA55A7EE7");
    }
}
