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
//! count, and rejects lengths below -1 that Kafka's Java reader would read as null. Decoding
//! finds where each field lies ([`DecodedRecord`] holds ranges); a [`RecordView`] lends them
//! as slices of the records region, and a [`Record`] holds them as [`Bytes`] slices of the
//! batch buffer: no copies either way.

use std::iter::FusedIterator;
use std::ops::Range;

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
        let mut stage = Stage::new(out);
        stage.varint(length_field(body_size));
        stage.byte(0); // attributes: unused in v2
        stage.varlong(self.timestamp_delta);
        stage.varint(self.offset_delta);
        stage.bytes_field(self.key);
        stage.bytes_field(self.value);
        stage.varint(length_field(self.headers.len()));
        for (key, value) in self.headers {
            stage.bytes_field(Some(key.as_bytes()));
            stage.bytes_field(*value);
        }
        stage.flush();
    }
}

/// Bytes of small fields a [`Stage`] gathers before one copy into the batch.
const STAGE_BYTES: usize = 64;

/// A record's small fields (lengths, deltas, short keys, header names and values) gathered
/// on the stack and copied into the batch together. A record has ten or more fields, most a
/// byte or two, and each copy into the batch's buffer pays a capacity check; a 1 KiB message
/// with one header is written in three copies instead of twelve. Whatever does not fit (a
/// message body) is copied straight after what was gathered before it.
struct Stage<'a> {
    out: &'a mut BytesMut,
    gathered: [u8; STAGE_BYTES],
    len: usize,
}

impl Stage<'_> {
    fn new(out: &mut BytesMut) -> Stage<'_> {
        Stage {
            out,
            gathered: [0; STAGE_BYTES],
            len: 0,
        }
    }

    /// Whether `bytes` more fit in the stage, after flushing it if they would not fit now.
    fn room_for(&mut self, bytes: usize) -> bool {
        if self.len + bytes > STAGE_BYTES {
            self.flush();
        }
        bytes <= STAGE_BYTES
    }

    fn byte(&mut self, byte: u8) {
        self.room_for(1);
        self.gathered[self.len] = byte;
        self.len += 1;
    }

    fn varint(&mut self, value: i32) {
        self.room_for(varint::VARINT_BYTES_MAX);
        self.len += varint::write_varint(value, &mut self.gathered[self.len..]);
    }

    fn varlong(&mut self, value: i64) {
        self.room_for(varint::VARLONG_BYTES_MAX);
        self.len += varint::write_varlong(value, &mut self.gathered[self.len..]);
    }

    /// A length-prefixed field, or the null length.
    fn bytes_field(&mut self, field: Option<&[u8]>) {
        match field {
            None => self.varint(NULL_LENGTH),
            Some(bytes) => {
                self.varint(length_field(bytes.len()));
                if self.room_for(bytes.len()) {
                    self.gathered[self.len..self.len + bytes.len()].copy_from_slice(bytes);
                    self.len += bytes.len();
                } else {
                    self.out.put_slice(bytes);
                }
            }
        }
    }

    /// Copies what was gathered into the batch.
    fn flush(&mut self) {
        self.out.put_slice(&self.gathered[..self.len]);
        self.len = 0;
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

/// A record as it lies in the batch, before the reader applies the batch's base offset and
/// timestamp: where its fields are in the records region, every range checked to lie inside
/// the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DecodedRecord {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Range<usize>>,
    pub value: Option<Range<usize>>,
    /// The headers after their count, already walked and checked.
    pub headers: Range<usize>,
    pub header_count: usize,
}

/// A record borrowed from its batch's records region: what [`Record`] holds, without building
/// it. Fields are read in place (`key`, `value`, `headers`); `value_bytes` and `key_bytes`
/// give zero-copy [`Bytes`] when a field must outlive the view. Made by
/// [`super::Records::next_view`].
#[derive(Clone, Debug)]
pub struct RecordView<'a> {
    pub offset: Offset,
    pub timestamp: TimestampMs,
    region: &'a Bytes,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    headers: Range<usize>,
    header_count: usize,
}

impl<'a> RecordView<'a> {
    pub(crate) fn new(
        offset: Offset,
        timestamp: TimestampMs,
        region: &'a Bytes,
        decoded: DecodedRecord,
    ) -> RecordView<'a> {
        RecordView {
            offset,
            timestamp,
            region,
            key: decoded.key,
            value: decoded.value,
            headers: decoded.headers,
            header_count: decoded.header_count,
        }
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        self.key.clone().and_then(|range| self.region.get(range))
    }

    pub fn value(&self) -> Option<&'a [u8]> {
        self.value.clone().and_then(|range| self.region.get(range))
    }

    /// The key as a zero-copy slice of the batch buffer.
    pub fn key_bytes(&self) -> Option<Bytes> {
        self.key.clone().map(|range| self.region.slice(range))
    }

    /// The value as a zero-copy slice of the batch buffer.
    pub fn value_bytes(&self) -> Option<Bytes> {
        self.value.clone().map(|range| self.region.slice(range))
    }

    /// The headers in order, as (key, value) slices; `None` for a null value.
    pub fn headers(&self) -> HeaderViews<'a> {
        HeaderViews {
            region: self.region,
            ranges: self.header_ranges(),
        }
    }

    pub fn header_count(&self) -> usize {
        self.header_count
    }

    fn header_ranges(&self) -> HeaderRanges<'a> {
        HeaderRanges {
            region: self.region,
            position: self.headers.start,
            end: self.headers.end,
            left: self.header_count,
        }
    }

    /// The owned form: the same fields as [`Bytes`] slices of the batch buffer.
    pub fn to_record(&self) -> Record {
        let headers = self
            .header_ranges()
            .map(|(key, value)| Header {
                key: self.region.slice(key),
                value: value.map(|value| self.region.slice(value)),
            })
            .collect();
        Record {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key_bytes(),
            value: self.value_bytes(),
            headers,
        }
    }
}

/// A record's headers read in place. See [`RecordView::headers`].
#[derive(Clone, Debug)]
pub struct HeaderViews<'a> {
    region: &'a [u8],
    ranges: HeaderRanges<'a>,
}

impl<'a> Iterator for HeaderViews<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, value) = self.ranges.next()?;
        let region = self.region;
        Some((&region[key], value.map(|value| &region[value])))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ranges.size_hint()
    }
}

impl FusedIterator for HeaderViews<'_> {}

/// Where each header's key and value lie in the records region.
#[derive(Clone, Debug)]
struct HeaderRanges<'a> {
    region: &'a [u8],
    position: usize,
    end: usize,
    left: usize,
}

impl Iterator for HeaderRanges<'_> {
    type Item = (Range<usize>, Option<Range<usize>>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let mut cursor = Cursor {
            records: self.region,
            position: self.position,
            end: self.end,
        };
        // The headers were checked when the record was decoded, so this cannot fail; if it
        // did, the iteration would end rather than panic.
        let parsed = cursor.header();
        self.position = cursor.position;
        match parsed {
            Ok(header) => {
                self.left -= 1;
                Some(header)
            }
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Decodes the record that starts at `position` in `records` (a batch's records region) and
/// returns it with the position just after it. Errors are fixed reasons for
/// [`crate::error::BatchError::MalformedRecord`].
pub(crate) fn decode(
    records: &[u8],
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
    cursor.field(RECORD_ATTRIBUTES_BYTES)?;
    let timestamp_delta = cursor.varlong()?;
    let offset_delta = cursor.varint()?;
    let key = cursor.nullable_field("negative key length")?;
    let value = cursor.nullable_field("negative value length")?;
    let (header_count, headers_start) = cursor.headers()?;
    if cursor.remaining() != 0 {
        return Err("record length is longer than its fields");
    }
    let record = DecodedRecord {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers: headers_start..cursor.end,
        header_count,
    };
    Ok((record, cursor.end))
}

/// A read position inside `records[..end]`; `end` is the end of the current record, so no
/// field can reach into the next one.
struct Cursor<'a> {
    records: &'a [u8],
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

    /// Where the next `length` bytes lie, checked to be inside the record.
    fn field(&mut self, length: usize) -> Result<Range<usize>, &'static str> {
        if length > self.remaining() {
            return Err("field length runs past the end of the record");
        }
        let start = self.position;
        self.position += length;
        Ok(start..self.position)
    }

    /// A length-prefixed field where -1 means null.
    fn nullable_field(
        &mut self,
        negative: &'static str,
    ) -> Result<Option<Range<usize>>, &'static str> {
        match self.varint()? {
            NULL_LENGTH => Ok(None),
            length => {
                let length = usize::try_from(length).map_err(|_| negative)?;
                self.field(length).map(Some)
            }
        }
    }

    /// Walks and checks the headers; returns their count and where they start (after the
    /// count).
    fn headers(&mut self) -> Result<(usize, usize), &'static str> {
        let count = self.varint()?;
        let count = usize::try_from(count).map_err(|_| "negative headers count")?;
        // A count the bytes left cannot hold is refused before walking it.
        if count > self.remaining() / HEADER_BYTES_MIN {
            return Err("headers count exceeds the record's bytes");
        }
        let start = self.position;
        for _ in 0..count {
            self.header()?;
        }
        Ok((count, start))
    }

    /// One header: where its key and value lie.
    fn header(&mut self) -> Result<(Range<usize>, Option<Range<usize>>), &'static str> {
        let key_length = self.varint()?;
        let key_length = usize::try_from(key_length).map_err(|_| "negative header key length")?;
        let key = self.field(key_length)?;
        let value = self.nullable_field("negative header value length")?;
        Ok((key, value))
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
        let (decoded, end) = decode(&bytes, 0).unwrap();
        assert_eq!(end, bytes.len());
        assert_eq!(decoded.timestamp_delta, -5);
        assert_eq!(decoded.offset_delta, 7);
        let view = RecordView::new(Offset(7), 95, &bytes, decoded);
        assert_eq!(view.key(), Some(&b"k"[..]));
        assert_eq!(view.value(), Some(&b""[..]));
        assert_eq!(view.header_count(), 2);
        let headers: Vec<_> = view.headers().collect();
        assert_eq!(headers, [(&b"h1"[..], Some(&b"v1"[..])), (&b""[..], None)]);

        let record = view.to_record();
        assert_eq!((record.offset, record.timestamp), (Offset(7), 95));
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.value.as_deref(), Some(&b""[..]));
        assert_eq!(record.headers.len(), 2);
        assert_eq!(record.headers[0].key_str(), Some("h1"));
        assert_eq!(record.headers[0].value.as_deref(), Some(&b"v1"[..]));
        assert_eq!(record.headers[1].key_str(), Some(""));
        assert_eq!(record.headers[1].value, None);
        // Zero-copy: the key and header values point into the input buffer.
        let inside = bytes.as_ptr_range();
        assert!(inside.contains(&record.key.unwrap().as_ptr()));
        assert!(inside.contains(&record.headers[0].value.as_ref().unwrap().as_ptr()));
    }

    #[test]
    fn non_minimal_varints_still_slice_the_right_bytes() {
        // Key length 1 written in two bytes (0x82 0x00), header value length 2 likewise:
        // valid varints that a reader must not assume are minimal.
        let bytes = Bytes::from_static(&[
            0x1e, // length 15
            0x00, 0x00, 0x00, // attributes, timestamp delta, offset delta
            0x82, 0x00, b'k', // key "k"
            0x01, // null value
            0x02, // one header
            0x82, 0x00, b'h', // key "h"
            0x84, 0x00, b'v', b'w', // value "vw"
        ]);
        let (decoded, end) = decode(&bytes, 0).unwrap();
        assert_eq!(end, bytes.len());
        let view = RecordView::new(Offset(0), 0, &bytes, decoded);
        assert_eq!(view.key(), Some(&b"k"[..]));
        assert_eq!(view.value(), None);
        assert_eq!(
            view.headers().collect::<Vec<_>>(),
            [(&b"h"[..], Some(&b"vw"[..]))]
        );
        let record = view.to_record();
        assert_eq!(record.headers[0].key_str(), Some("h"));
        assert_eq!(record.headers[0].value.as_deref(), Some(&b"vw"[..]));
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
