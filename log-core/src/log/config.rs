//! Per-log settings and the flush policy, with Kafka's defaults where Kafka has one.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::segment::{SegmentConfig, BATCH_BYTES_STORED_MAX, SEGMENT_BYTES_MAX};

/// When appended bytes are made durable with `fdatasync`, and what survives a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushPolicy {
    /// The kernel writes dirty pages back when it likes (typically within 30 s); the log
    /// syncs only rolled segments (from the log manager's flusher) and at clean close.
    /// Survives a process crash; a power cut loses what the kernel had not written, and
    /// recovery truncates the log to the last whole batch on disk. Durability comes from
    /// replication, as in Kafka's default.
    #[default]
    Os,
    /// The log manager's flusher syncs every log at this interval. A power cut loses at most
    /// the last interval of appends.
    Interval(Duration),
    /// An append returns only after its bytes are on disk. Concurrent appends that wait share
    /// one `fdatasync` (group commit), so the cost per append falls as concurrency rises. A
    /// power cut loses nothing that was acknowledged.
    EveryWrite,
}

/// Settings of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll the active segment when it would grow past this many bytes.
    pub segment_bytes: u64,
    /// Roll the active segment when its first batch is older than this.
    pub segment_age: Option<Duration>,
    /// Bytes of batches between two sparse index entries.
    pub index_interval_bytes: u64,
    /// Preallocated size of each index file of the active segment.
    pub index_max_bytes: usize,
    /// The largest batch an append accepts.
    pub max_batch_bytes: usize,
    pub flush: FlushPolicy,
    /// Delete sealed segments whose largest timestamp is older than this.
    pub retention_age: Option<Duration>,
    /// Delete the oldest sealed segments while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// Disk space allocated ahead of the write position, in bytes; 0 turns it off.
    pub preallocate_bytes: u64,
    /// Decode every record of a leader append before writing it (see
    /// [`crate::PartitionLog::append_as_leader`]). On by default, as a broker needs: batches
    /// come from producers it does not control. A program that appends only batches it
    /// built itself may turn it off: the check costs a record walk per batch, and a
    /// compressed batch is decompressed once more (lz4 16 KiB batches appended at about
    /// half the speed with it, zstd 1 MiB batches at a sixth; see docs/BENCHMARKS.md).
    pub check_records: bool,
}

/// Kafka's `segment.bytes` default: 1 GiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// Kafka's `segment.ms` default: 7 days.
pub const SEGMENT_AGE_DEFAULT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Kafka's `index.interval.bytes` default.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u64 = 4096;
/// Kafka's `segment.index.bytes` default: 10 MiB.
pub const INDEX_MAX_BYTES_DEFAULT: usize = 10 << 20;
/// RocketMQ's `maxMessageSize` default, applied to a whole batch: 4 MiB.
pub const MAX_BATCH_BYTES_DEFAULT: usize = 4 << 20;
/// Kafka's `retention.ms` default: 7 days.
pub const RETENTION_AGE_DEFAULT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Preallocation chunk: large enough that fallocate calls are rare, small enough that many
/// idle partitions do not reserve much disk.
pub const PREALLOCATE_BYTES_DEFAULT: u64 = 16 << 20;
/// The most bytes one append call may carry.
pub const APPEND_BYTES_MAX: usize = BATCH_BYTES_STORED_MAX;
/// Smallest index file that is still useful.
const INDEX_MAX_BYTES_MIN: usize = 4096;
/// Largest index file: 1 GiB, 128 Mi offset-index entries (Kafka's `segment.index.bytes` is
/// an int, 2 GiB at most).
pub const INDEX_MAX_BYTES_MAX: usize = 1 << 30;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_age: Some(SEGMENT_AGE_DEFAULT),
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            index_max_bytes: INDEX_MAX_BYTES_DEFAULT,
            max_batch_bytes: MAX_BATCH_BYTES_DEFAULT,
            flush: FlushPolicy::default(),
            retention_age: Some(RETENTION_AGE_DEFAULT),
            retention_bytes: None,
            preallocate_bytes: PREALLOCATE_BYTES_DEFAULT,
            check_records: true,
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<()> {
        let segment_bytes_max = SEGMENT_BYTES_MAX - APPEND_BYTES_MAX as u64;
        if self.segment_bytes == 0 || self.segment_bytes > segment_bytes_max {
            return Err(Error::InvalidConfig(format!(
                "segment_bytes must be in 1..={segment_bytes_max}, got {}",
                self.segment_bytes
            )));
        }
        if !(INDEX_MAX_BYTES_MIN..=INDEX_MAX_BYTES_MAX).contains(&self.index_max_bytes) {
            return Err(Error::InvalidConfig(format!(
                "index_max_bytes must be in {INDEX_MAX_BYTES_MIN}..={INDEX_MAX_BYTES_MAX}, got {}",
                self.index_max_bytes
            )));
        }
        if self.max_batch_bytes < crate::batch::BATCH_HEADER_BYTES
            || self.max_batch_bytes > APPEND_BYTES_MAX
        {
            return Err(Error::InvalidConfig(format!(
                "max_batch_bytes must be in {}..={APPEND_BYTES_MAX}, got {}",
                crate::batch::BATCH_HEADER_BYTES,
                self.max_batch_bytes
            )));
        }
        if let FlushPolicy::Interval(interval) = self.flush {
            if interval.is_zero() {
                return Err(Error::InvalidConfig(
                    "flush interval must be positive; use EveryWrite to sync every append".into(),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn segment_config(&self) -> SegmentConfig {
        SegmentConfig {
            index_interval_bytes: self.index_interval_bytes,
            index_max_bytes: self.index_max_bytes,
            preallocate_bytes: self.preallocate_bytes.min(self.segment_bytes),
        }
    }
}
