//! One record inside a v2 batch: its decoded form ([`Record`], [`Header`]) and its byte layout,
//! encoded by the builder and decoded by the reader, so the layout lives in one place.
//!
//! ```text
//! length          varint   bytes after this field
//! attributes      i8       unused, written 0, ignored on read (as Kafka does)
//! timestampDelta  varlong  timestamp - batch base_timestamp (wrapping, as Java's long)
//! offsetDelta     varint   offset - batch base_offset
//! keyLength       varint   -1 = null key
//! key             bytes
//! valueLength     varint   -1 = null value (a tombstone)
//! value           bytes
//! headersCount    varint
//! headers, headersCount times:
//!   keyLength     varint   >= 0
//!   key           bytes    UTF-8 by contract; not checked on read (see Header::key_str)
//!   valueLength   varint   -1 = null
//!   value         bytes
//! ```
//!
//! Varints are zig-zag ([`super::varint`]). There is no per-record checksum: the batch CRC
//! covers the records. Decoding checks every length against the bytes left in the record
//! before slicing, sizes the header vector from the bytes left rather than from the declared
//! count, and rejects lengths below -1 that Kafka's Java reader would read as null. Decoded
//! keys, values and headers are [`Bytes`] slices of the batch buffer: no copies.

use bytes::{BufMut, Bytes, BytesMut};

use super::varint::{self, VarintError};
use crate::types::{Offset, TimestampMs};

/// The length value that stands for a null key, value or header value.
const NULL_LENGTH: i32 = -1;
/// Smallest encoding of one header: key length (1 byte, empty key) + value length (1 byte).
const HEADER_BYTES_MIN: usize = 2;
/// Size of the unused attributes byte.
const RECORD_ATTRIBUTES_BYTES: usize = 1;

/// A record header: a key (UTF-8 by contract) and an optional value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

impl Header {
    /// The key as text, or `None` if a producer wrote bytes that are not UTF-8. Validated on
    /// demand rather than on read, so reading a batch never pays for headers nobody looks at.
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.key).ok()
    }
}

/// One decoded record, with its absolute offset and timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: Offset,
    pub timestamp: TimestampMs,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// What the builder writes for one record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordFields<'a> {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

impl RecordFields<'_> {
    /// Bytes of the record after its length prefix.
    ///
    /// # Panics
    /// If a key, value or header is longer than `i32::MAX` bytes, or there are more than
    /// `i32::MAX` headers: the format cannot express them, and callers cap batch sizes far
    /// below that.
    pub(crate) fn body_size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(key, value)| bytes_field_size(Some(key.as_bytes())) + bytes_field_size(*value))
            .sum();
        RECORD_ATTRIBUTES_BYTES
            + varint::varlong_size(self.timestamp_delta)
            + varint::varint_size(self.offset_delta)
            + bytes_field_size(self.key)
            + bytes_field_size(self.value)
            + varint::varint_size(length_field(self.headers.len()))
            + headers
    }

    /// Appends the whole record, length prefix included. `body_size` must come from
    /// [`RecordFields::body_size`]; the caller reserves `varint_size(body) + body` first so
    /// nothing here reallocates.
    pub(crate) fn encode(&self, out: &mut BytesMut, body_size: usize) {
        varint::put_varint(out, length_field(body_size));
        out.put_u8(0); // attributes: unused in v2
        varint::put_varlong(out, self.timestamp_delta);
        varint::put_varint(out, self.offset_delta);
        put_bytes_field(out, self.key);
        put_bytes_field(out, self.value);
        varint::put_varint(out, length_field(self.headers.len()));
        for (key, value) in self.headers {
            put_bytes_field(out, Some(key.as_bytes()));
            put_bytes_field(out, *value);
        }
    }
}

/// A length as the format stores it.
///
/// # Panics
/// Past `i32::MAX`, which no batch a log accepts comes near.
fn length_field(length: usize) -> i32 {
    i32::try_from(length).expect("record field longer than i32::MAX bytes")
}

fn bytes_field_size(field: Option<&[u8]>) -> usize {
    match field {
        None => varint::varint_size(NULL_LENGTH),
        Some(bytes) => varint::varint_size(length_field(bytes.len())) + bytes.len(),
    }
}

fn put_bytes_field(out: &mut BytesMut, field: Option<&[u8]>) {
    match field {
        None => varint::put_varint(out, NULL_LENGTH),
        Some(bytes) => {
            varint::put_varint(out, length_field(bytes.len()));
            out.put_slice(bytes);
        }
    }
}

/// A record as it lies in the batch, before the reader applies the batch's base offset and
/// timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DecodedRecord {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Decodes the record that starts at `position` in `records` (a batch's records region) and
/// returns it with the position just after it. Errors are fixed reasons for
/// [`crate::error::BatchError::MalformedRecord`].
pub(crate) fn decode(
    records: &Bytes,
    position: usize,
) -> Result<(DecodedRecord, usize), &'static str> {
    let mut outer = Cursor {
        records,
        position,
        end: records.len(),
    };
    let length = outer.varint()?;
    let length = usize::try_from(length).map_err(|_| "negative record length")?;
    if length > outer.remaining() {
        return Err("record length runs past the end of the batch");
    }
    let mut cursor = Cursor {
        records,
        position: outer.position,
        end: outer.position + length,
    };
    cursor.bytes(RECORD_ATTRIBUTES_BYTES)?;
    let timestamp_delta = cursor.varlong()?;
    let offset_delta = cursor.varint()?;
    let key = cursor.nullable_bytes("negative key length")?;
    let value = cursor.nullable_bytes("negative value length")?;
    let headers = cursor.headers()?;
    if cursor.remaining() != 0 {
        return Err("record length is longer than its fields");
    }
    let record = DecodedRecord {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    };
    Ok((record, cursor.end))
}

/// A read position inside `records[..end]`; `end` is the end of the current record, so no
/// field can reach into the next one.
struct Cursor<'a> {
    records: &'a Bytes,
    position: usize,
    end: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.position)
    }

    fn rest(&self) -> Result<&[u8], &'static str> {
        self.records
            .get(self.position..self.end)
            .ok_or("record cursor out of bounds")
    }

    fn varint(&mut self) -> Result<i32, &'static str> {
        let mut rest = self.rest()?;
        let before = rest.len();
        let value = varint::read_varint(&mut rest).map_err(VarintError::reason)?;
        self.position += before - rest.len();
        Ok(value)
    }

    fn varlong(&mut self) -> Result<i64, &'static str> {
        let mut rest = self.rest()?;
        let before = rest.len();
        let value = varint::read_varlong(&mut rest).map_err(VarintError::reason)?;
        self.position += before - rest.len();
        Ok(value)
    }

    /// The next `length` bytes, as a zero-copy slice of the batch.
    fn bytes(&mut self, length: usize) -> Result<Bytes, &'static str> {
        if length > self.remaining() {
            return Err("field length runs past the end of the record");
        }
        let start = self.position;
        self.position += length;
        Ok(self.records.slice(start..self.position))
    }

    /// A length-prefixed field where -1 means null.
    fn nullable_bytes(&mut self, negative: &'static str) -> Result<Option<Bytes>, &'static str> {
        match self.varint()? {
            NULL_LENGTH => Ok(None),
            length => {
                let length = usize::try_from(length).map_err(|_| negative)?;
                self.bytes(length).map(Some)
            }
        }
    }

    fn headers(&mut self) -> Result<Vec<Header>, &'static str> {
        let count = self.varint()?;
        let count = usize::try_from(count).map_err(|_| "negative headers count")?;
        // Bound the allocation by the bytes present, not by the declared count.
        if count > self.remaining() / HEADER_BYTES_MIN {
            return Err("headers count exceeds the record's bytes");
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let key_length = self.varint()?;
            let key_length =
                usize::try_from(key_length).map_err(|_| "negative header key length")?;
            let key = self.bytes(key_length)?;
            let value = self.nullable_bytes("negative header value length")?;
            headers.push(Header { key, value });
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(fields: RecordFields<'_>) -> Bytes {
        let body = fields.body_size();
        let mut out = BytesMut::new();
        fields.encode(&mut out, body);
        assert_eq!(out.len(), varint::varint_size(body as i32) + body);
        out.freeze()
    }

    const EMPTY: RecordFields<'static> = RecordFields {
        timestamp_delta: 0,
        offset_delta: 0,
        key: None,
        value: None,
        headers: &[],
    };

    #[test]
    fn smallest_record_is_seven_bytes() {
        let bytes = encode(EMPTY);
        // length 6, attributes 0, deltas 0, null key (-1 -> 01), null value, no headers.
        assert_eq!(&bytes[..], [0x0c, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00]);
        // Length, attributes, two deltas, two null lengths and a headers count: one byte each.
        assert_eq!(bytes.len(), 7);
    }

    #[test]
    fn fields_round_trip_as_slices_of_the_input() {
        let fields = RecordFields {
            timestamp_delta: -5,
            offset_delta: 7,
            key: Some(b"k"),
            value: Some(b""),
            headers: &[("h1", Some(b"v1")), ("", None)],
        };
        let bytes = encode(fields);
        let (record, end) = decode(&bytes, 0).unwrap();
        assert_eq!(end, bytes.len());
        assert_eq!(record.timestamp_delta, -5);
        assert_eq!(record.offset_delta, 7);
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.value.as_deref(), Some(&b""[..]));
        assert_eq!(record.headers.len(), 2);
        assert_eq!(record.headers[0].key_str(), Some("h1"));
        assert_eq!(record.headers[0].value.as_deref(), Some(&b"v1"[..]));
        assert_eq!(record.headers[1].key_str(), Some(""));
        assert_eq!(record.headers[1].value, None);
        // Zero-copy: the key points into the input buffer.
        let key = record.key.unwrap();
        assert!(bytes.as_ptr_range().contains(&key.as_ptr()));
    }

    #[test]
    fn decode_starts_and_stops_at_record_boundaries() {
        let mut out = BytesMut::new();
        for offset_delta in 0..3 {
            let fields = RecordFields {
                offset_delta,
                ..EMPTY
            };
            fields.encode(&mut out, fields.body_size());
        }
        let bytes = out.freeze();
        let mut position = 0;
        for offset_delta in 0..3 {
            let (record, next) = decode(&bytes, position).unwrap();
            assert_eq!(record.offset_delta, offset_delta);
            position = next;
        }
        assert_eq!(position, bytes.len());
    }

    #[test]
    fn non_utf8_header_keys_decode_but_have_no_str() {
        let header = Header {
            key: Bytes::from_static(&[0xff, 0xfe]),
            value: None,
        };
        assert_eq!(header.key_str(), None);
    }

    /// Builds a record body by hand: `length` prefix over the given body bytes.
    fn with_length(body: &[u8]) -> Bytes {
        let mut out = Vec::new();
        varint::put_varint(&mut out, body.len() as i32);
        out.extend_from_slice(body);
        Bytes::from(out)
    }

    #[test]
    fn malformed_records_name_their_fault() {
        let cases: [(&[u8], &str); 9] = [
            (&[0x01], "negative record length"),
            (
                &[0x0c, 0x00],
                "record length runs past the end of the batch",
            ),
            (&[0x80], "varint truncated"),
            // Key length 5 in a record with no bytes left for it.
            (
                &with_length(&[0, 0, 0, 0x0a, 1, 0]),
                "field length runs past the end of the record",
            ),
            // Key length -2.
            (&with_length(&[0, 0, 0, 0x03, 1, 0]), "negative key length"),
            (
                &with_length(&[0, 0, 0, 1, 0x03, 0]),
                "negative value length",
            ),
            (
                &with_length(&[0, 0, 0, 1, 1, 0x01]),
                "negative headers count",
            ),
            // 100 headers declared, 0 bytes for them.
            (
                &with_length(&[0, 0, 0, 1, 1, 0xc8, 0x01]),
                "headers count exceeds the record's bytes",
            ),
            (
                &with_length(&[0, 0, 0, 1, 1, 0, 0xaa]),
                "record length is longer than its fields",
            ),
        ];
        for (bytes, reason) in cases {
            let bytes = Bytes::copy_from_slice(bytes);
            assert_eq!(decode(&bytes, 0).map(|_| ()), Err(reason), "{bytes:?}");
        }
    }

    #[test]
    fn header_faults_are_caught() {
        // One header whose key length is -1.
        let bytes = with_length(&[0, 0, 0, 1, 1, 0x02, 0x01, 0x01]);
        assert_eq!(
            decode(&bytes, 0).map(|_| ()),
            Err("negative header key length")
        );
        // One header whose value length is -3.
        let bytes = with_length(&[0, 0, 0, 1, 1, 0x02, 0x00, 0x05]);
        assert_eq!(
            decode(&bytes, 0).map(|_| ()),
            Err("negative header value length")
        );
    }

    #[test]
    fn decode_past_the_end_fails_cleanly() {
        let bytes = encode(EMPTY);
        assert_eq!(
            decode(&bytes, bytes.len()).map(|_| ()),
            Err("varint truncated")
        );
        assert_eq!(
            decode(&bytes, bytes.len() + 10).map(|_| ()),
            Err("record cursor out of bounds")
        );
    }
}
