//! [`RecordBatch`]: one validated batch over shared bytes, and lazy iteration of its records.
//!
//! A `RecordBatch` is checked once, when it is made (bounds, header fields, CRC-32C, see
//! [`super::validate`]), and then trusted for its header. Its records are still decoded with
//! suspicion, because a producer can write a correct CRC over nonsense:
//!
//! - Uncompressed batches iterate over the original [`Bytes`]: keys, values and headers are
//!   slices of the buffer the batch came in, no copies.
//! - Compressed batches are decompressed once, when [`RecordBatch::records`] is called, into
//!   one buffer of at most [`DECOMPRESSED_BYTES_MAX`] bytes, then iterated the same way.
//! - [`Records`] yields owned [`Record`]s as an iterator, or borrowed
//!   [`super::RecordView`]s through [`Records::next_view`]; both come from the same checks.
//!   It yields at most `records_count` records, stops after the first error, and
//!   reports [`BatchError::RecordsCountMismatch`] when the bytes end before `records_count`
//!   records or go on after them. Offset deltas must increase and stay within
//!   `0..=last_offset_delta`, so no record can claim an offset outside its batch.
//!
//! Timestamps: a record's is `base_timestamp + timestampDelta` (wrapping, as Kafka's Java
//! reader), except in LogAppendTime batches (attribute bit 3), where every record carries the
//! batch's `max_timestamp`: the broker's clock, as Kafka reports it.

use std::fmt;
use std::iter::FusedIterator;

use bytes::Bytes;

use super::record::{self, DecodedRecord, RecordView};
use super::{BatchHeader, Compression, Record, BATCH_HEADER_BYTES};
use crate::error::BatchError;
use crate::types::{Offset, TimestampMs};

/// The most bytes one batch's records may decompress to. Kafka caps a batch at about 1 MiB
/// on the wire (`message.max.bytes`); 64 MiB leaves room for a 64:1 compression ratio at
/// that size while keeping what one hostile batch can make a reader allocate bounded.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// One validated batch. Cheap to clone: the bytes are shared.
#[derive(Clone, Debug)]
pub struct RecordBatch {
    bytes: Bytes,
    header: BatchHeader,
}

impl RecordBatch {
    /// Validates the first batch in `bytes` (CRC included) and keeps exactly its bytes; what
    /// follows it is not looked at. [`split_batches`] walks several.
    pub fn new(bytes: Bytes) -> Result<RecordBatch, BatchError> {
        let header = super::validate(&bytes)?;
        Ok(RecordBatch {
            bytes: bytes.slice(..header.batch_size()),
            header,
        })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes, header included.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The records, decoded lazily. Decompresses first if the batch is compressed; fails with
    /// [`BatchError::DecompressedTooLarge`] past [`DECOMPRESSED_BYTES_MAX`].
    pub fn records(&self) -> Result<Records, BatchError> {
        self.records_with_limit(DECOMPRESSED_BYTES_MAX)
    }

    /// [`RecordBatch::records`] with another decompression limit, so tests can trip it
    /// without allocating 64 MiB.
    pub(crate) fn records_with_limit(&self, limit: usize) -> Result<Records, BatchError> {
        let header = &self.header;
        let records = match records_region(&self.bytes[BATCH_HEADER_BYTES..], header, limit)? {
            Region::Stored => self.bytes.slice(BATCH_HEADER_BYTES..),
            Region::Decompressed(records) => Bytes::from(records),
        };
        Ok(Records {
            records,
            walk: Walk::new(header),
            base_offset: header.base_offset,
            base_timestamp: header.base_timestamp,
            log_append_time: header.is_log_append_time().then_some(header.max_timestamp),
        })
    }
}

/// Where a batch's records are read from.
enum Region {
    /// The stored bytes after the header (uncompressed, or empty).
    Stored,
    Decompressed(Vec<u8>),
}

fn records_region(stored: &[u8], header: &BatchHeader, limit: usize) -> Result<Region, BatchError> {
    let compression = Compression::from_attributes(header.attributes)?;
    // An empty region has nothing to decompress, whatever the codec bits say: compaction
    // may keep the header of a batch whose records are all gone.
    if compression == Compression::None || stored.is_empty() {
        Ok(Region::Stored)
    } else {
        Ok(Region::Decompressed(compression.decompress(stored, limit)?))
    }
}

/// Decodes every record of `batch` (one whole batch, `header` parsed from it) and builds
/// none: the checks [`Records`] makes, so a log can refuse a batch whose CRC is right but
/// whose records are not (a count that does not match, a malformed record, a compressed
/// region past `decompress_limit`). Returns the bytes a compressed batch decompressed to
/// (0 for an uncompressed one), so a caller can bound a whole append.
pub(crate) fn check_records(
    batch: &[u8],
    header: &BatchHeader,
    decompress_limit: usize,
) -> Result<usize, BatchError> {
    let stored =
        batch
            .get(BATCH_HEADER_BYTES..header.batch_size())
            .ok_or(BatchError::Truncated {
                needed: header.batch_size(),
                available: batch.len(),
            })?;
    let decompressed;
    let (region, inflated) = match records_region(stored, header, decompress_limit)? {
        Region::Stored => (stored, 0),
        Region::Decompressed(records) => {
            decompressed = records;
            (&decompressed[..], decompressed.len())
        }
    };
    let mut walk = Walk::new(header);
    while let Some(step) = walk.step(region) {
        step?;
    }
    Ok(inflated)
}

/// The records of one batch, decoded one at a time. See the module docs for what is checked.
pub struct Records {
    /// The records region: a slice of the batch, or the decompressed buffer.
    records: Bytes,
    walk: Walk,
    base_offset: i64,
    base_timestamp: TimestampMs,
    log_append_time: Option<TimestampMs>,
}

/// A walk through a records region, record by record, with every check on the way: the
/// part of [`Records`] that does not depend on who owns the bytes.
#[derive(Debug)]
struct Walk {
    position: usize,
    yielded: usize,
    declared: i32,
    last_offset_delta: i32,
    previous_offset_delta: Option<i32>,
    done: bool,
}

impl Walk {
    fn new(header: &BatchHeader) -> Walk {
        Walk {
            position: 0,
            yielded: 0,
            declared: header.records_count,
            last_offset_delta: header.last_offset_delta,
            previous_offset_delta: None,
            done: false,
        }
    }

    fn declared_usize(&self) -> usize {
        // BatchHeader::parse rejects a negative count.
        usize::try_from(self.declared).unwrap_or(0)
    }

    fn fail(&mut self, error: BatchError) -> BatchError {
        self.done = true;
        error
    }

    fn malformed(&mut self, reason: &'static str) -> BatchError {
        let index = self.yielded;
        self.fail(BatchError::MalformedRecord { index, reason })
    }

    /// Counts the length-prefixed records left after the declared ones, for the error
    /// message; a garbled tail counts as one more. Each step consumes at least one byte.
    fn trailing_records(&self, region: &[u8]) -> usize {
        let mut position = self.position;
        let mut count = 0;
        while position < region.len() {
            count += 1;
            match record::decode(region, position) {
                Ok((_, next)) => position = next,
                Err(_) => break,
            }
        }
        count
    }

    /// Decodes and checks the next record of `region` and moves past it.
    fn step(&mut self, region: &[u8]) -> Option<Result<DecodedRecord, BatchError>> {
        if self.done {
            return None;
        }
        let declared = self.declared;
        if self.yielded == self.declared_usize() {
            self.done = true;
            if self.position < region.len() {
                let found = self.yielded + self.trailing_records(region);
                return Some(Err(
                    self.fail(BatchError::RecordsCountMismatch { declared, found })
                ));
            }
            return None;
        }
        if self.position >= region.len() {
            let found = self.yielded;
            return Some(Err(
                self.fail(BatchError::RecordsCountMismatch { declared, found })
            ));
        }
        let (raw, next) = match record::decode(region, self.position) {
            Ok(decoded) => decoded,
            Err(reason) => return Some(Err(self.malformed(reason))),
        };
        if raw.offset_delta < 0 || raw.offset_delta > self.last_offset_delta {
            return Some(Err(
                self.malformed("offset delta outside the batch's offsets")
            ));
        }
        if self
            .previous_offset_delta
            .is_some_and(|previous| raw.offset_delta <= previous)
        {
            return Some(Err(self.malformed("offset deltas do not increase")));
        }
        self.position = next;
        self.previous_offset_delta = Some(raw.offset_delta);
        self.yielded += 1;
        Some(Ok(raw))
    }
}

impl Records {
    /// Records the batch header declares.
    pub fn declared(&self) -> usize {
        self.walk.declared_usize()
    }

    /// Bytes of the records region: for a compressed batch, what it decompressed to.
    pub fn region_bytes(&self) -> usize {
        self.records.len()
    }

    fn offset(&self, offset_delta: i32) -> Offset {
        // Both are non-negative (BatchHeader::parse and the delta check), and
        // base_offset + last_offset_delta was checked not to overflow.
        Offset(self.base_offset as u64 + offset_delta as u64)
    }

    /// The next record, borrowed from the records region: the same checks as the iterator,
    /// without building a [`Record`] (no header vector, no reference counts), for readers
    /// that look at each record once. Mixing it with `next` is fine: both advance the same
    /// position.
    pub fn next_view(&mut self) -> Option<Result<RecordView<'_>, BatchError>> {
        match self.advance()? {
            Ok((offset, timestamp, raw)) => {
                Some(Ok(RecordView::new(offset, timestamp, &self.records, raw)))
            }
            Err(error) => Some(Err(error)),
        }
    }

    /// Decodes and checks the next record and moves past it.
    fn advance(&mut self) -> Option<Result<(Offset, TimestampMs, DecodedRecord), BatchError>> {
        let raw = match self.walk.step(&self.records)? {
            Ok(raw) => raw,
            Err(error) => return Some(Err(error)),
        };
        let timestamp = self
            .log_append_time
            .unwrap_or_else(|| self.base_timestamp.wrapping_add(raw.timestamp_delta));
        Some(Ok((self.offset(raw.offset_delta), timestamp, raw)))
    }
}

impl Iterator for Records {
    type Item = Result<Record, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_view()?.map(|view| view.to_record()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.walk.done {
            return (0, Some(0));
        }
        // One more item than records left: a count mismatch is reported as an item.
        let left = self.walk.declared_usize().saturating_sub(self.walk.yielded);
        (0, Some(left.saturating_add(1)))
    }
}

impl FusedIterator for Records {}

impl fmt::Debug for Records {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records")
            .field("region_bytes", &self.records.len())
            .field("walk", &self.walk)
            .finish_non_exhaustive()
    }
}

/// Walks the batches laid back to back in `bytes`, zero-copy, validating each (CRC included).
/// Stops after the first invalid batch, which it yields as an error once. A fetch response
/// may end in a partial batch: that shows up as [`BatchError::Truncated`] last.
pub fn split_batches(bytes: Bytes) -> SplitBatches {
    SplitBatches {
        bytes,
        position: 0,
        failed: false,
    }
}

/// See [`split_batches`].
#[derive(Clone, Debug)]
pub struct SplitBatches {
    bytes: Bytes,
    position: usize,
    failed: bool,
}

impl SplitBatches {
    /// Byte position of the next batch in the input.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl Iterator for SplitBatches {
    type Item = Result<RecordBatch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.bytes.len() {
            return None;
        }
        match RecordBatch::new(self.bytes.slice(self.position..)) {
            Ok(batch) => {
                // batch_size >= BATCH_HEADER_BYTES, so every step moves forward.
                self.position += batch.bytes.len();
                Some(Ok(batch))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

impl FusedIterator for SplitBatches {}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::batch::{
        BatchBuilder, ATTRIBUTES_AT, ATTR_TIMESTAMP_LOG_APPEND, CRC_AT, LAST_OFFSET_DELTA_AT,
        RECORDS_COUNT_AT,
    };

    const CODECS: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::Zstd];

    fn build(codec: Compression, values: &[&[u8]]) -> Bytes {
        let mut builder = BatchBuilder::new(codec);
        for (index, value) in values.iter().enumerate() {
            builder.append(1_000 + index as i64, None, Some(value), &[]);
        }
        builder.build().unwrap().freeze()
    }

    /// Recomputes the CRC after a test edits CRC-covered bytes.
    fn reseal(batch: &mut [u8]) {
        let crc = crate::batch::checksum(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }

    fn put_i32(batch: &mut [u8], at: usize, value: i32) {
        batch[at..at + 4].copy_from_slice(&value.to_be_bytes());
        reseal(batch);
    }

    fn collect(batch: &RecordBatch) -> Vec<Result<Record, BatchError>> {
        batch.records().unwrap().collect()
    }

    #[test]
    fn records_come_back_with_offsets_and_timestamps() {
        for codec in CODECS {
            let batch = RecordBatch::new(build(codec, &[b"a", b"bb", b"ccc"])).unwrap();
            let records: Vec<Record> = batch.records().unwrap().map(Result::unwrap).collect();
            assert_eq!(records.len(), 3);
            for (index, record) in records.iter().enumerate() {
                assert_eq!(record.offset, Offset(index as u64));
                assert_eq!(record.timestamp, 1_000 + index as i64);
                assert_eq!(record.value.as_ref().unwrap().len(), index + 1);
            }
        }
    }

    #[test]
    fn uncompressed_values_are_slices_of_the_batch() {
        let batch = RecordBatch::new(build(Compression::None, &[b"zero-copy"])).unwrap();
        let record = batch.records().unwrap().next().unwrap().unwrap();
        let value = record.value.unwrap();
        assert!(batch.bytes().as_ptr_range().contains(&value.as_ptr()));
    }

    #[test]
    fn new_keeps_only_the_first_batch() {
        let first = build(Compression::None, &[b"one"]);
        let mut both = first.to_vec();
        both.extend_from_slice(&build(Compression::Zstd, &[b"two"]));
        let batch = RecordBatch::new(Bytes::from(both)).unwrap();
        assert_eq!(batch.bytes(), &first);
    }

    #[test]
    fn offsets_follow_the_leaders_base_offset() {
        let mut bytes = BytesMut::from(&build(Compression::Lz4, &[b"a", b"b"])[..]);
        crate::batch::set_base_offset(&mut bytes, Offset(1_000));
        let batch = RecordBatch::new(bytes.freeze()).unwrap();
        let offsets: Vec<Offset> = batch
            .records()
            .unwrap()
            .map(|r| r.unwrap().offset)
            .collect();
        assert_eq!(offsets, [Offset(1_000), Offset(1_001)]);
    }

    #[test]
    fn log_append_time_gives_every_record_the_max_timestamp() {
        let mut bytes = build(Compression::None, &[b"a", b"b"]).to_vec();
        let attributes = i16::from_be_bytes([bytes[ATTRIBUTES_AT], bytes[ATTRIBUTES_AT + 1]])
            | ATTR_TIMESTAMP_LOG_APPEND;
        bytes[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        reseal(&mut bytes);
        let batch = RecordBatch::new(Bytes::from(bytes)).unwrap();
        let max = batch.header().max_timestamp;
        assert_eq!(max, 1_001);
        for record in collect(&batch) {
            assert_eq!(record.unwrap().timestamp, max);
        }
    }

    #[test]
    fn fewer_records_than_declared_is_a_count_mismatch() {
        let mut bytes = build(Compression::None, &[b"a", b"b"]).to_vec();
        put_i32(&mut bytes, RECORDS_COUNT_AT, 3);
        put_i32(&mut bytes, LAST_OFFSET_DELTA_AT, 2);
        let results = collect(&RecordBatch::new(Bytes::from(bytes)).unwrap());
        assert_eq!(results.len(), 3);
        assert_eq!(
            results[2],
            Err(BatchError::RecordsCountMismatch {
                declared: 3,
                found: 2
            })
        );
    }

    #[test]
    fn more_records_than_declared_is_a_count_mismatch() {
        for codec in CODECS {
            let mut bytes = build(codec, &[b"a", b"b", b"c"]).to_vec();
            put_i32(&mut bytes, RECORDS_COUNT_AT, 1);
            let results = collect(&RecordBatch::new(Bytes::from(bytes)).unwrap());
            assert_eq!(results.len(), 2, "{codec}");
            assert!(results[0].is_ok());
            assert_eq!(
                results[1],
                Err(BatchError::RecordsCountMismatch {
                    declared: 1,
                    found: 3
                })
            );
        }
    }

    #[test]
    fn offset_deltas_beyond_the_batch_are_malformed() {
        let mut bytes = build(Compression::None, &[b"a", b"b"]).to_vec();
        put_i32(&mut bytes, LAST_OFFSET_DELTA_AT, 0);
        let results = collect(&RecordBatch::new(Bytes::from(bytes)).unwrap());
        assert_eq!(
            results[1],
            Err(BatchError::MalformedRecord {
                index: 1,
                reason: "offset delta outside the batch's offsets"
            })
        );
    }

    #[test]
    fn repeated_offset_deltas_are_malformed() {
        // Two records both at offset delta 0: a batch of two single-record batches' records.
        let one = build(Compression::None, &[b"a"]);
        let record = &one[BATCH_HEADER_BYTES..];
        let mut bytes = build(Compression::None, &[b"a", b"b"]).to_vec();
        bytes.truncate(BATCH_HEADER_BYTES);
        bytes.extend_from_slice(record);
        bytes.extend_from_slice(record);
        let length = (bytes.len() - crate::batch::BATCH_LOG_OVERHEAD_BYTES) as i32;
        put_i32(&mut bytes, crate::batch::LENGTH_AT, length);
        let results = collect(&RecordBatch::new(Bytes::from(bytes)).unwrap());
        assert_eq!(
            results[1],
            Err(BatchError::MalformedRecord {
                index: 1,
                reason: "offset deltas do not increase"
            })
        );
    }

    #[test]
    fn decompression_is_bounded() {
        let values: Vec<Vec<u8>> = (0..64).map(|_| vec![7u8; 1024]).collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        for codec in [Compression::Lz4, Compression::Zstd] {
            let batch = RecordBatch::new(build(codec, &refs)).unwrap();
            assert!(batch.bytes().len() < 4 * 1024, "{codec} compresses");
            assert_eq!(
                batch.records_with_limit(32 * 1024).err(),
                Some(BatchError::DecompressedTooLarge { limit: 32 * 1024 })
            );
            assert_eq!(batch.records_with_limit(1 << 20).unwrap().count(), 64);
        }
    }

    #[test]
    fn empty_compressed_region_with_no_records_is_empty() {
        let mut bytes = build(Compression::Zstd, &[b"a"]).to_vec();
        bytes.truncate(BATCH_HEADER_BYTES);
        put_i32(&mut bytes, RECORDS_COUNT_AT, 0);
        put_i32(
            &mut bytes,
            crate::batch::LENGTH_AT,
            crate::batch::BATCH_LENGTH_MIN as i32,
        );
        let batch = RecordBatch::new(Bytes::from(bytes)).unwrap();
        assert_eq!(collect(&batch), []);
    }

    #[test]
    fn split_batches_walks_and_stops_at_the_first_error() {
        let mut bytes = Vec::new();
        for codec in CODECS {
            bytes.extend_from_slice(&build(codec, &[b"x", b"y"]));
        }
        let whole = bytes.len();
        // A partial batch at the end, as a fetch response may carry.
        bytes.extend_from_slice(&build(Compression::None, &[b"z"])[..65]);
        let mut batches = split_batches(Bytes::from(bytes));
        for codec in CODECS {
            let batch = batches.next().unwrap().unwrap();
            assert_eq!(batch.header().compression(), codec);
            assert_eq!(batch.records().unwrap().count(), 2);
        }
        assert_eq!(batches.position(), whole);
        assert!(matches!(
            batches.next(),
            Some(Err(BatchError::Truncated { .. }))
        ));
        assert!(batches.next().is_none());
    }

    #[test]
    fn iteration_stops_after_an_error() {
        let mut bytes = build(Compression::None, &[b"a", b"b"]).to_vec();
        // Corrupt the first record's length to -1, then fix the CRC.
        bytes[BATCH_HEADER_BYTES] = 0x01;
        reseal(&mut bytes);
        let results = collect(&RecordBatch::new(Bytes::from(bytes)).unwrap());
        assert_eq!(
            results,
            [Err(BatchError::MalformedRecord {
                index: 0,
                reason: "negative record length"
            })]
        );
    }
}
