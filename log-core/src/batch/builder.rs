//! [`BatchBuilder`]: assembles records into one complete v2 batch, as a producer would.
//!
//! Records are encoded straight into one `BytesMut` behind a 61-byte header placeholder, so an
//! append is a size computation, one `reserve` and a few copies, with no allocation of its
//! own. `build` fills the header in place, compresses the records region if a codec is set,
//! and computes the CRC-32C once over the finished bytes.
//!
//! The header it writes is a fresh producer batch's:
//!
//! ```text
//! base_offset 0 (the leader assigns it)   partition_leader_epoch -1 (the leader stamps it)
//! attributes = codec bits (CreateTime, not transactional, not control)
//! last_offset_delta = records - 1         offset deltas 0, 1, 2, ... in append order
//! base_timestamp = first record's         max_timestamp = largest record timestamp
//! producer_id -1, producer_epoch -1, base_sequence -1 unless set_producer was called
//! ```
//!
//! Timestamp deltas are computed with wrapping arithmetic, as Kafka's Java longs do, so every
//! `i64` timestamp survives the round trip.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::record::RecordFields;
use super::{varint, Compression, MAGIC_V2};
use super::{ATTRIBUTES_AT, BATCH_BYTES_MAX, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES, CRC_AT};
use crate::error::BatchError;
use crate::types::{TimestampMs, NO_TIMESTAMP};

/// Bytes reserved by [`BatchBuilder::new`]: Kafka's producer `batch.size` default, the size
/// most producer batches fill.
pub(crate) const BATCH_CAPACITY_BYTES_DEFAULT: usize = 16 * 1024;

/// "None" for the producer id, epoch and base sequence of a non-idempotent producer.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;
const NO_SEQUENCE: i32 = -1;
/// The leader stamps its epoch; until then the field says "none".
const NO_PARTITION_LEADER_EPOCH: i32 = -1;

/// Builds one record batch. See the module docs for the header it writes.
pub struct BatchBuilder {
    compression: Compression,
    /// The header placeholder followed by the uncompressed records.
    buffer: BytesMut,
    records: usize,
    base_timestamp: TimestampMs,
    max_timestamp: TimestampMs,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl BatchBuilder {
    /// A builder with room for 16 KiB (Kafka's default `batch.size`) before it grows.
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, BATCH_CAPACITY_BYTES_DEFAULT)
    }

    /// A builder that reserves `bytes` up front (header included): pass the batch size cap
    /// to build without reallocating.
    pub fn with_capacity(compression: Compression, bytes: usize) -> Self {
        let mut buffer = BytesMut::with_capacity(bytes.max(BATCH_HEADER_BYTES));
        buffer.put_bytes(0, BATCH_HEADER_BYTES);
        BatchBuilder {
            compression,
            buffer,
            records: 0,
            base_timestamp: NO_TIMESTAMP,
            max_timestamp: NO_TIMESTAMP,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
        }
    }

    /// Marks the batch as an idempotent producer's: its id, epoch and the sequence number of
    /// the first record.
    pub fn set_producer(&mut self, id: i64, epoch: i16, base_sequence: i32) {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Appends a record; its offset delta is its index in the batch.
    ///
    /// # Panics
    /// If the batch would hold more than `i32::MAX` records or bytes, or a field is longer
    /// than `i32::MAX` bytes: the format cannot describe it. Callers cap batches with
    /// [`BatchBuilder::size_bytes`] long before.
    pub fn append(
        &mut self,
        timestamp: TimestampMs,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        let offset_delta =
            i32::try_from(self.records).expect("a batch holds at most i32::MAX records");
        if self.records == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        let fields = RecordFields {
            timestamp_delta: timestamp.wrapping_sub(self.base_timestamp),
            offset_delta,
            key,
            value,
            headers,
        };
        let body = fields.body_size();
        let record = varint::varint_size(i32::try_from(body).unwrap_or(i32::MAX)) + body;
        assert!(
            self.buffer.len() + record <= BATCH_BYTES_MAX,
            "batch would exceed {BATCH_BYTES_MAX} bytes"
        );
        self.buffer.reserve(record);
        fields.encode(&mut self.buffer, body);
        self.records += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    /// Records appended so far.
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Size of the batch if built now without compression, header included: what a caller
    /// compares against its batch size cap. A compressed batch comes out smaller (or a few
    /// frame bytes larger, for incompressible records).
    pub fn size_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Finishes the batch: header, records (compressed with the builder's codec) and CRC.
    ///
    /// Fails with [`BatchError::Empty`] if no record was appended (producers never send empty
    /// batches, and the header of one would have no honest `last_offset_delta`), or with
    /// [`BatchError::Compression`] if the codec fails.
    pub fn build(mut self) -> Result<BytesMut, BatchError> {
        if self.records == 0 {
            return Err(BatchError::Empty);
        }
        let mut batch = compress_records(self.compression, std::mem::take(&mut self.buffer))?;
        let records = i32::try_from(self.records).expect("append caps records at i32::MAX");
        let length = i32::try_from(batch.len() - BATCH_LOG_OVERHEAD_BYTES).map_err(|_| {
            BatchError::Compression {
                codec: self.compression.name(),
                reason: format!("compressed batch exceeds {BATCH_BYTES_MAX} bytes"),
            }
        })?;
        // Fields in layout order (see batch/mod.rs); the CRC goes in last, over the rest.
        let mut header = &mut batch[..BATCH_HEADER_BYTES];
        header.put_i64(0); // base offset: the leader assigns it
        header.put_i32(length);
        header.put_i32(NO_PARTITION_LEADER_EPOCH);
        header.put_i8(MAGIC_V2);
        header.put_u32(0); // CRC, below
        header.put_i16(self.compression.attribute_bits());
        header.put_i32(records - 1); // last offset delta
        header.put_i64(self.base_timestamp);
        header.put_i64(self.max_timestamp);
        header.put_i64(self.producer_id);
        header.put_i16(self.producer_epoch);
        header.put_i32(self.base_sequence);
        header.put_i32(records);
        debug_assert!(header.is_empty(), "header fields fill exactly 61 bytes");
        let crc = super::checksum(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        Ok(batch)
    }
}

/// The header placeholder followed by the records region in its final (compressed or not)
/// form. Uncompressed batches keep their buffer: no copy.
fn compress_records(compression: Compression, buffer: BytesMut) -> Result<BytesMut, BatchError> {
    if compression == Compression::None {
        return Ok(buffer);
    }
    let (header, records) = buffer.split_at(BATCH_HEADER_BYTES);
    // Room for records that compress 2:1 or better before the Vec grows.
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + records.len() / 2);
    out.extend_from_slice(header);
    compression.compress(records, &mut out)?;
    // Vec -> Bytes -> BytesMut hands the allocation over without copying.
    Ok(BytesMut::from(Bytes::from(out)))
}

impl fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("compression", &self.compression)
            .field("records", &self.records)
            .field("size_bytes", &self.size_bytes())
            .field("base_timestamp", &self.base_timestamp)
            .field("max_timestamp", &self.max_timestamp)
            .field("producer_id", &self.producer_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{validate, RecordBatch};

    #[test]
    fn an_empty_builder_does_not_build() {
        let builder = BatchBuilder::new(Compression::Zstd);
        assert!(builder.is_empty());
        assert_eq!(builder.size_bytes(), BATCH_HEADER_BYTES);
        assert_eq!(builder.build().err(), Some(BatchError::Empty));
    }

    #[test]
    fn header_is_a_fresh_producer_batch() {
        let mut builder = BatchBuilder::new(Compression::Lz4);
        builder.append(500, None, Some(b"a"), &[]);
        builder.append(900, None, Some(b"b"), &[]);
        builder.append(700, None, Some(b"c"), &[]);
        assert_eq!(builder.len(), 3);
        let batch = builder.build().unwrap();
        let header = validate(&batch).unwrap();
        assert_eq!(header.batch_size(), batch.len());
        assert_eq!(header.base_offset, 0);
        assert_eq!(header.partition_leader_epoch, -1);
        assert_eq!(header.magic, MAGIC_V2);
        assert_eq!(header.attributes, Compression::Lz4.attribute_bits());
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.base_timestamp, 500);
        assert_eq!(header.max_timestamp, 900);
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (-1, -1, -1)
        );
        assert_eq!(header.records_count, 3);
    }

    #[test]
    fn producer_fields_are_written_when_set() {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.set_producer(42, 3, 1_000);
        builder.append(1, None, None, &[]);
        let header = validate(&builder.build().unwrap()).unwrap();
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (42, 3, 1_000)
        );
    }

    #[test]
    fn size_bytes_is_the_uncompressed_batch_size() {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.append(1, Some(b"key"), Some(&[0u8; 300]), &[("h", Some(b"v"))]);
        builder.append(2, None, None, &[]);
        let size = builder.size_bytes();
        assert_eq!(builder.build().unwrap().len(), size);
    }

    #[test]
    fn a_presized_builder_never_reallocates() {
        const CAPACITY_BYTES: usize = 64 * 1024;
        let mut builder = BatchBuilder::with_capacity(Compression::None, CAPACITY_BYTES);
        let start = builder.buffer.as_ptr();
        let value = [1u8; 1000];
        while builder.size_bytes() + 1100 < CAPACITY_BYTES {
            builder.append(7, None, Some(&value), &[]);
        }
        let batch = builder.build().unwrap();
        assert_eq!(batch.as_ptr(), start);
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        let timestamps = [i64::MAX, i64::MIN, -1, 0, i64::MIN + 1];
        let mut builder = BatchBuilder::new(Compression::None);
        for timestamp in timestamps {
            builder.append(timestamp, None, None, &[]);
        }
        let batch = RecordBatch::new(builder.build().unwrap().freeze()).unwrap();
        assert_eq!(batch.header().max_timestamp, i64::MAX);
        let read: Vec<i64> = batch
            .records()
            .unwrap()
            .map(|record| record.unwrap().timestamp)
            .collect();
        assert_eq!(read, timestamps);
    }

    #[test]
    fn compressed_batches_are_smaller_and_valid() {
        for codec in [Compression::Lz4, Compression::Zstd] {
            let mut builder = BatchBuilder::new(codec);
            for _ in 0..100 {
                builder.append(1, None, Some(&[b'x'; 1000]), &[]);
            }
            let raw = builder.size_bytes();
            let batch = builder.build().unwrap();
            assert!(batch.len() < raw / 10, "{codec}: {} of {raw}", batch.len());
            assert_eq!(validate(&batch).unwrap().compression(), codec);
        }
    }
}
