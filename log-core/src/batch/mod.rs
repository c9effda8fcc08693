//! Record batches in Kafka's RecordBatch v2 byte layout, identical on disk and on the wire.
//!
//! ```text
//! off size field                     CRC-covered
//!   0   8  base_offset       i64     no   (assigned by the leader, rewritten in place)
//!   8   4  length            i32     no   (bytes after this field: batch size = length + 12)
//!  12   4  partition_leader_epoch i32 no  (stamped by the leader, rewritten in place)
//!  16   1  magic             i8      no   (= 2)
//!  17   4  crc               u32     no   (CRC-32C of bytes 21..end)
//!  21   2  attributes        i16     yes  (bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control)
//!  23   4  last_offset_delta i32     yes
//!  27   8  base_timestamp    i64     yes
//!  35   8  max_timestamp     i64     yes
//!  43   8  producer_id       i64     yes
//!  51   2  producer_epoch    i16     yes
//!  53   4  base_sequence     i32     yes
//!  57   4  records_count     i32     yes
//!  61   …  records (compressed as one blob when the codec is not 0)
//! ```
//!
//! All integers are big-endian. Because the base offset and leader epoch lie outside the CRC,
//! the leader assigns them by rewriting 12 bytes of the header and never recomputes the CRC
//! or touches the (possibly compressed) records. [`BatchHeader::parse`] reads a header from
//! untrusted bytes and checks its bounds; [`validate`] also checks the CRC. Neither allocates.
//!
//! The builder ([`BatchBuilder`]) and the lazy record reader ([`RecordBatch`]) live in the
//! submodules.

mod builder;
mod compression;
mod reader;
mod record;
mod varint;

pub use builder::BatchBuilder;
pub use compression::{Compression, UnknownCompression};
pub(crate) use reader::check_records;
pub use reader::{split_batches, RecordBatch, Records, SplitBatches, DECOMPRESSED_BYTES_MAX};
pub use record::{Header, HeaderViews, Record, RecordView};

use crate::error::BatchError;
use crate::types::{LeaderEpoch, Offset, TimestampMs};

/// Size of the fixed batch header, before the records.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before and including the length field: base offset (8) + length (4).
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;
/// The only batch format version Runnel reads and writes.
pub const MAGIC_V2: i8 = 2;
/// The smallest value the length field can hold: the header after the length field.
pub const BATCH_LENGTH_MIN: usize = BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES;
/// The largest batch the format can describe (the length field is an i32). Logs and brokers
/// configure much lower limits.
pub const BATCH_BYTES_MAX: usize = i32::MAX as usize;

pub(crate) const BASE_OFFSET_AT: usize = 0;
pub(crate) const LENGTH_AT: usize = 8;
pub(crate) const LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(crate) const BASE_TIMESTAMP_AT: usize = 27;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;
pub(crate) const PRODUCER_ID_AT: usize = 43;
pub(crate) const PRODUCER_EPOCH_AT: usize = 51;
pub(crate) const BASE_SEQUENCE_AT: usize = 53;
pub(crate) const RECORDS_COUNT_AT: usize = 57;

/// Attribute bits.
pub(crate) const ATTR_COMPRESSION_MASK: i16 = 0b111;
pub(crate) const ATTR_TIMESTAMP_LOG_APPEND: i16 = 1 << 3;
pub(crate) const ATTR_TRANSACTIONAL: i16 = 1 << 4;
pub(crate) const ATTR_CONTROL: i16 = 1 << 5;

/// The fixed header of one batch, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: TimestampMs,
    pub max_timestamp: TimestampMs,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Decodes the header at the start of `bytes` and checks that it is a v2 header whose
    /// length field is sane and fits in `bytes`. Does not check the CRC.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        let prefix = Self::parse_prefix(bytes)?;
        let size = prefix.batch_size;
        if size > bytes.len() {
            return Err(BatchError::Truncated {
                needed: size,
                available: bytes.len(),
            });
        }
        let header = BatchHeader {
            base_offset: prefix.base_offset,
            length: read_i32(bytes, LENGTH_AT),
            partition_leader_epoch: read_i32(bytes, LEADER_EPOCH_AT),
            magic: bytes[MAGIC_AT] as i8,
            crc: read_u32(bytes, CRC_AT),
            attributes: read_i16(bytes, ATTRIBUTES_AT),
            last_offset_delta: read_i32(bytes, LAST_OFFSET_DELTA_AT),
            base_timestamp: read_i64(bytes, BASE_TIMESTAMP_AT),
            max_timestamp: read_i64(bytes, MAX_TIMESTAMP_AT),
            producer_id: read_i64(bytes, PRODUCER_ID_AT),
            producer_epoch: read_i16(bytes, PRODUCER_EPOCH_AT),
            base_sequence: read_i32(bytes, BASE_SEQUENCE_AT),
            records_count: read_i32(bytes, RECORDS_COUNT_AT),
        };
        header.check_fields()?;
        Ok(header)
    }

    /// Reads only what is needed to step over a batch: base offset, size and magic. Needs
    /// at least [`BATCH_HEADER_BYTES`] bytes but not the whole batch, so a scan can read
    /// headers alone.
    pub fn parse_prefix(bytes: &[u8]) -> Result<BatchPrefix, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: bytes.len(),
            });
        }
        let magic = bytes[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let length = read_i32(bytes, LENGTH_AT);
        if length < BATCH_LENGTH_MIN as i32 {
            return Err(BatchError::LengthOutOfBounds { length });
        }
        let base_offset = read_i64(bytes, BASE_OFFSET_AT);
        if base_offset < 0 {
            return Err(BatchError::NegativeOffset(base_offset));
        }
        let last_offset_delta = read_i32(bytes, LAST_OFFSET_DELTA_AT);
        if last_offset_delta < 0 {
            return Err(BatchError::BadOffsetDelta(last_offset_delta));
        }
        Ok(BatchPrefix {
            base_offset,
            last_offset_delta,
            batch_size: length as usize + BATCH_LOG_OVERHEAD_BYTES,
            max_timestamp: read_i64(bytes, MAX_TIMESTAMP_AT),
            records_count: read_i32(bytes, RECORDS_COUNT_AT),
        })
    }

    fn check_fields(&self) -> Result<(), BatchError> {
        if self.records_count < 0 {
            return Err(BatchError::BadRecordsCount {
                count: self.records_count,
                last_offset_delta: self.last_offset_delta,
            });
        }
        if self
            .base_offset
            .checked_add(i64::from(self.last_offset_delta))
            .is_none()
        {
            return Err(BatchError::NegativeOffset(self.base_offset));
        }
        Compression::from_attributes(self.attributes)?;
        Ok(())
    }

    /// Total bytes of the batch, header included.
    pub fn batch_size(&self) -> usize {
        self.length as usize + BATCH_LOG_OVERHEAD_BYTES
    }

    pub fn base_offset(&self) -> Offset {
        Offset(self.base_offset as u64)
    }

    pub fn last_offset(&self) -> Offset {
        Offset(self.base_offset as u64 + self.last_offset_delta as u64)
    }

    /// The offset after this batch: where the next batch starts.
    pub fn next_offset(&self) -> Offset {
        self.last_offset().plus(1)
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        LeaderEpoch(self.partition_leader_epoch)
    }

    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes).unwrap_or(Compression::None)
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_LOG_APPEND != 0
    }
}

/// The part of a header a scan needs to step from batch to batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPrefix {
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub batch_size: usize,
    pub max_timestamp: TimestampMs,
    pub records_count: i32,
}

impl BatchPrefix {
    pub fn base_offset(&self) -> Offset {
        Offset(self.base_offset as u64)
    }

    pub fn last_offset(&self) -> Offset {
        Offset(self.base_offset as u64 + self.last_offset_delta as u64)
    }
}

/// Checks the batch at the start of `bytes`: bounds, header fields and CRC-32C. Returns its
/// header; the batch occupies `bytes[..header.batch_size()]`.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    let computed = checksum(&bytes[ATTRIBUTES_AT..header.batch_size()]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// CRC-32C (Castagnoli), the batch checksum, over `bytes`. `crc-fast` folds with carry-less
/// multiplication (VPCLMULQDQ where the CPU has it): about twice the speed of the SSE4.2
/// `crc32` instruction loop on this project's machines, where the checksum is the largest
/// cost of an append that log-core itself adds.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// Rewrites a batch's base offset in place. Outside the CRC: the batch stays valid.
pub fn set_base_offset(batch: &mut [u8], offset: Offset) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&(offset.0 as i64).to_be_bytes());
}

/// Rewrites a batch's partition leader epoch in place. Outside the CRC: the batch stays valid.
pub fn set_leader_epoch(batch: &mut [u8], epoch: LeaderEpoch) {
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.0.to_be_bytes());
}

/// Iterates over the batches laid back to back in `bytes`, validating each (CRC included).
/// Stops at the first invalid batch, yielding its error once.
pub fn batches(bytes: &[u8]) -> Batches<'_> {
    Batches {
        bytes,
        position: 0,
        failed: false,
    }
}

/// See [`batches`].
#[derive(Debug)]
pub struct Batches<'a> {
    bytes: &'a [u8],
    position: usize,
    failed: bool,
}

impl<'a> Batches<'a> {
    /// Byte position of the next batch in the input.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for Batches<'a> {
    /// The batch's position in the input, its header, and its bytes.
    type Item = Result<(usize, BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.position..];
        match validate(rest) {
            Ok(header) => {
                let at = self.position;
                let size = header.batch_size();
                self.position += size;
                Some(Ok((at, header, &rest[..size])))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

pub(crate) fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn read_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::checksum;

    #[test]
    fn checksum_is_crc32c() {
        assert_eq!(checksum(b"123456789"), 0xe306_9283);
        let bytes: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0, 1, 7, 15, 16, 63, 64, 255, 4096, 65_537, 70_000] {
            assert_eq!(
                checksum(&bytes[..len]),
                crc32c::crc32c(&bytes[..len]),
                "length {len}"
            );
        }
    }
}
