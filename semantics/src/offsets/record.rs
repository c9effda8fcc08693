//! How one committed offset is stored as a record of the consumer-offsets topic.
//!
//! ```text
//! key   = group 0x00 topic 0x00 queue (decimal ASCII)
//! value = version (u8 = 1) | offset (u64, big-endian)        9 bytes
//!         absent (null): a tombstone, the offset was deleted (its topic was deleted)
//! ```
//!
//! Group names and topic names never contain a NUL byte (both are validated), so the key
//! splits unambiguously. The record timestamp is the commit time.

/// The value layout written today.
const VALUE_VERSION: u8 = 1;
const VALUE_BYTES: usize = 9;
const SEPARATOR: u8 = 0;

/// What one record says: the latest offset of `(group, topic, queue)`, or that it is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OffsetRecord {
    pub group: String,
    pub topic: String,
    pub queue: u32,
    /// `None` is a tombstone.
    pub offset: Option<u64>,
}

pub(crate) fn encode_key(group: &str, topic: &str, queue: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(group.len() + topic.len() + 12);
    key.extend_from_slice(group.as_bytes());
    key.push(SEPARATOR);
    key.extend_from_slice(topic.as_bytes());
    key.push(SEPARATOR);
    key.extend_from_slice(queue.to_string().as_bytes());
    key
}

pub(crate) fn encode_value(offset: u64) -> [u8; VALUE_BYTES] {
    let mut value = [0u8; VALUE_BYTES];
    value[0] = VALUE_VERSION;
    value[1..].copy_from_slice(&offset.to_be_bytes());
    value
}

/// Decodes a stored record; `None` when its bytes are not one this module wrote.
pub(crate) fn decode(key: &[u8], value: Option<&[u8]>) -> Option<OffsetRecord> {
    let mut parts = key.split(|b| *b == SEPARATOR);
    let group = std::str::from_utf8(parts.next()?).ok()?;
    let topic = std::str::from_utf8(parts.next()?).ok()?;
    let queue = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    if parts.next().is_some() || group.is_empty() || topic.is_empty() {
        return None;
    }
    let offset = match value {
        None => None,
        Some(value) if value.len() == VALUE_BYTES && value[0] == VALUE_VERSION => {
            Some(u64::from_be_bytes(value[1..].try_into().ok()?))
        }
        Some(_) => return None,
    };
    Some(OffsetRecord {
        group: group.to_owned(),
        topic: topic.to_owned(),
        queue,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let key = encode_key("billing", "orders", 7);
        let value = encode_value(1 << 40);
        let record = decode(&key, Some(&value)).unwrap();
        assert_eq!(
            record,
            OffsetRecord {
                group: "billing".into(),
                topic: "orders".into(),
                queue: 7,
                offset: Some(1 << 40),
            }
        );
        assert_eq!(decode(&key, None).unwrap().offset, None);
    }

    #[test]
    fn foreign_bytes_are_refused() {
        let key = encode_key("g", "t", 0);
        assert!(decode(&key, Some(&[2, 0, 0, 0, 0, 0, 0, 0, 1])).is_none());
        assert!(decode(&key, Some(&[1, 0])).is_none());
        assert!(decode(b"g\0t", Some(&encode_value(1))).is_none());
        assert!(decode(b"g\0t\0x", Some(&encode_value(1))).is_none());
        assert!(decode(b"g\x00t\x001\x00extra", Some(&encode_value(1))).is_none());
        assert!(decode(b"\x00t\x001", Some(&encode_value(1))).is_none());
    }
}
