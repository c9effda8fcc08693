//! The crate's errors: one enum for the log, one for what can be wrong inside a batch.
//!
//! Every variant names what failed and where, so an operator reading a log line can find the
//! file. Faults that come from outside (disk, bytes from a client or from a damaged file) are
//! `Err`; programmer errors are assertions.

use std::io;
use std::path::PathBuf;

use crate::types::Offset;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with the bytes of one record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("unsupported batch magic {0} (only v2 is supported)")]
    UnsupportedMagic(i8),
    #[error("batch length field {length} is out of bounds")]
    LengthOutOfBounds { length: i32 },
    #[error("negative or overflowing base offset {0}")]
    NegativeOffset(i64),
    #[error("bad last offset delta {0}")]
    BadOffsetDelta(i32),
    #[error("records count {count} does not fit last offset delta {last_offset_delta}")]
    BadRecordsCount { count: i32, last_offset_delta: i32 },
    #[error("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(u8),
    #[error("cannot decompress batch ({codec}): {reason}")]
    Decompression { codec: &'static str, reason: String },
    #[error("decompressed records exceed {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("cannot compress batch ({codec}): {reason}")]
    Compression { codec: &'static str, reason: String },
    #[error("malformed record {index}: {reason}")]
    MalformedRecord { index: usize, reason: &'static str },
    #[error("batch has base offset {found}, expected {expected}")]
    OffsetOutOfOrder { found: i64, expected: u64 },
    #[error("batch declares {declared} records but holds {found}")]
    RecordsCountMismatch { declared: i32, found: usize },
    #[error("cannot build a batch with no records")]
    Empty,
}

/// Everything a log operation can fail with.
///
/// Causes are part of each variant's message (not `source()`), so printing an error once,
/// with `{}` or with anyhow's `{:#}`, says everything exactly once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    /// The filesystem is full (ENOSPC). Nothing was appended; the log is consistent and
    /// appends succeed again once space is freed.
    #[error("disk full while {op} {path}: nothing was appended")]
    DiskFull { op: &'static str, path: PathBuf },
    /// An fsync failed earlier. The kernel may have dropped the dirty pages, so nothing after
    /// the last successful sync can be acknowledged; reopen the log to recover.
    #[error("log {dir} is poisoned by a failed fsync; reopen it to recover")]
    Poisoned { dir: PathBuf },
    /// The log was truncated (a follower cut a divergent suffix) before this append's
    /// records were synced: they are gone.
    #[error("records below offset {offset} were truncated before they were synced")]
    TruncatedBeforeSync { offset: Offset },
    #[error("invalid batch in append: {0}")]
    InvalidBatch(BatchError),
    #[error("batch of {size} bytes exceeds the log's max_batch_bytes {max}")]
    BatchTooLarge { size: usize, max: usize },
    #[error("records out of order: expected offset {expected}, found {found}")]
    NonContiguousAppend { expected: Offset, found: Offset },
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: Offset,
        log_start: Offset,
        log_end: Offset,
    },
    /// Bytes on disk failed validation where the log did not expect a torn write: a bit flip
    /// or a damaged file.
    #[error("segment {path} is corrupt at position {position}: {reason}")]
    SegmentCorrupt {
        path: PathBuf,
        position: u64,
        reason: BatchError,
    },
    #[error("index {path} is damaged: {reason}")]
    IndexCorrupt { path: PathBuf, reason: String },
    #[error("checkpoint {path} is damaged: {reason}")]
    CheckpointCorrupt { path: PathBuf, reason: String },
    #[error("log directory {dir} is in use by another process")]
    Locked { dir: PathBuf },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("partition {topic}-{partition} already exists")]
    PartitionExists { topic: String, partition: u32 },
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("log {dir} is closed")]
    Closed { dir: PathBuf },
}

impl Error {
    /// Wraps an I/O error, telling a full disk apart from other failures.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        if is_disk_full(&source) {
            Error::DiskFull { op, path }
        } else {
            Error::Io {
                op,
                path,
                cause: source,
            }
        }
    }

    /// True for errors a caller may retry after the condition clears (a full disk).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Error::DiskFull { .. })
    }
}

pub(crate) fn is_disk_full(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::ENOSPC)
        || error.raw_os_error() == Some(libc::EDQUOT)
        || error.kind() == io::ErrorKind::StorageFull
}
