//! The partition log: an ordered set of segments with one writer and many readers.
//!
//! Locking: appends, rolls, truncation and segment deletion hold the writer lock (one writer
//! per partition). The segment map sits behind a read-write lock that the writer takes only to
//! add or remove a segment; readers take it just long enough to clone the segment they need,
//! then read with `pread` outside any lock. Offsets are published with release ordering after
//! the bytes are written, so readers never see a partial batch.
//!
//! Watermarks keep one order, checked after every change in debug builds:
//! `log_start <= high_watermark <= log_end` and `recovery_point <= log_end`.
//!
//! Opening a log and recovering it after an unclean stop live in `recovery.rs`.

mod checkpoint;
mod config;
mod epoch_cache;
mod group_commit;
mod read_only;
mod recovery;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use self::checkpoint::Checkpoint;
pub use self::config::{
    FlushPolicy, LogConfig, APPEND_BYTES_MAX, INDEX_INTERVAL_BYTES_DEFAULT, INDEX_MAX_BYTES_MAX,
    MAX_BATCH_BYTES_DEFAULT, SEGMENT_BYTES_DEFAULT,
};
use self::epoch_cache::LeaderEpochCache;
use self::group_commit::GroupCommit;
use crate::batch::{self, BatchHeader};
use crate::clock::Clock;
use crate::error::{BatchError, Error, Result};
use crate::fsio::{self, DirLock};
use crate::segment::{Access, Damage, Segment};
use crate::types::{LeaderEpoch, Offset, TimestampMs, NO_TIMESTAMP, RELATIVE_OFFSET_MAX};

/// Reads retried when a truncation raced them, before reporting the error.
const READ_ATTEMPTS_MAX: usize = 3;

/// What an append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: Offset,
    pub last_offset: Offset,
    /// The largest record timestamp among the appended batches.
    pub max_timestamp: TimestampMs,
    pub batches: usize,
    pub bytes: usize,
}

/// What a read returned: whole batches as stored, and the log's bounds at the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches, back to back. The first may start before the offset asked for (a
    /// batch is never split); readers skip records below it.
    pub records: Bytes,
    pub log_start: Offset,
    pub log_end: Offset,
    pub high_watermark: Offset,
}

/// Statistics for tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStats {
    pub log_start: Offset,
    pub log_end: Offset,
    pub high_watermark: Offset,
    pub recovery_point: Offset,
    pub segments: usize,
    pub size_bytes: u64,
    /// The largest timestamp of the batch at the log start.
    pub oldest_timestamp: TimestampMs,
    pub newest_timestamp: TimestampMs,
}

/// What [`PartitionLog::verify`] checked and found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub segments: usize,
    /// Whole, valid batches checked.
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    /// Every problem found; empty for a healthy log.
    pub damage: Vec<Damage>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.damage.is_empty()
    }
}

/// What retention deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

/// How far a flush goes.
#[derive(Debug, Clone, Copy)]
enum FlushTarget {
    LogEnd,
    /// Up to the active segment's base: what rolled segments hold.
    SealedSegments,
}

#[derive(Debug)]
struct WriterState {
    /// Wall-clock time the active segment was created, for roll-by-age when its batches
    /// carry no timestamps.
    active_created_ms: TimestampMs,
    epochs: LeaderEpochCache,
}

/// A durable, append-only partition log in one directory.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    clock: Arc<dyn Clock>,
    lock: Mutex<Option<DirLock>>,
    read_only: bool,
    writer: Mutex<WriterState>,
    segments: RwLock<BTreeMap<Offset, Arc<Segment>>>,
    log_start: AtomicU64,
    log_end: AtomicU64,
    high_watermark: AtomicU64,
    recovery_point: AtomicU64,
    last_flush_ms: AtomicU64,
    /// Serialises checkpoint writes (flusher, truncation, retention, close).
    checkpoint_lock: Mutex<()>,
    group_commit: GroupCommit,
    poisoned: AtomicBool,
    closed: AtomicBool,
}

impl PartitionLog {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The first offset still readable.
    pub fn log_start_offset(&self) -> Offset {
        Offset(self.log_start.load(Ordering::Acquire))
    }

    /// The offset the next appended record will get.
    pub fn log_end_offset(&self) -> Offset {
        Offset(self.log_end.load(Ordering::Acquire))
    }

    /// The offset below which every record is committed (replicated to the in-sync replicas).
    pub fn high_watermark(&self) -> Offset {
        Offset(self.high_watermark.load(Ordering::Acquire))
    }

    /// The offset below which data and indexes are synced and recorded in the checkpoint.
    pub fn recovery_point(&self) -> Offset {
        Offset(self.recovery_point.load(Ordering::Acquire))
    }

    /// The offset below which appended data is known to be on disk.
    pub fn durable_offset(&self) -> Offset {
        self.group_commit.durable()
    }

    /// True after a failed fsync or write: appends fail until the log is reopened.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Moves the high watermark, clamped to `[log_start, log_end]`. It is persisted at the
    /// next checkpoint (flush, roll or close).
    pub fn set_high_watermark(&self, offset: Offset) {
        // Under the writer lock: truncation and log-start moves must not interleave.
        let _writer = self.writer.lock();
        let clamped = offset.clamp(self.log_start_offset(), self.log_end_offset());
        self.high_watermark.store(clamped.0, Ordering::Release);
        self.debug_check_watermarks();
    }

    /// Appends batches as the leader: assigns consecutive offsets from the log end and stamps
    /// `leader_epoch`, by rewriting the header fields outside the CRC in `records`. `records`
    /// holds one or more whole batches, each validated (bounds, CRC) before anything is
    /// written; on any error nothing is appended.
    pub fn append_as_leader(
        &self,
        records: &mut [u8],
        leader_epoch: LeaderEpoch,
    ) -> Result<AppendInfo> {
        let headers = self.validate_append(records, true)?;
        let mut writer = self.writer.lock();
        self.check_writable()?;
        let first = self.log_end_offset();
        let mut next = first;
        let mut at = 0;
        for header in &headers {
            let batch = &mut records[at..at + header.batch_size()];
            batch::set_base_offset(batch, next);
            batch::set_leader_epoch(batch, leader_epoch);
            next = next.plus(header.last_offset_delta as u64 + 1);
            at += header.batch_size();
        }
        self.assign_epochs(&mut writer, &[(leader_epoch, first)])?;
        let info = self.append_locked(&mut writer, records, &headers, first, next)?;
        drop(writer);
        self.after_append(info.last_offset.plus(1))?;
        Ok(info)
    }

    /// Appends batches as a follower: keeps the offsets and epochs the leader assigned. The
    /// first batch must start at the log end and each next batch where the previous ended;
    /// gaps and overlaps are rejected.
    pub fn append_as_follower(&self, records: &[u8]) -> Result<AppendInfo> {
        let headers = self.validate_append(records, false)?;
        let mut writer = self.writer.lock();
        self.check_writable()?;
        let first = self.log_end_offset();
        let mut next = first;
        for header in &headers {
            if header.base_offset() != next {
                return Err(Error::NonContiguousAppend {
                    expected: next,
                    found: header.base_offset(),
                });
            }
            next = header.next_offset();
        }
        let epochs: Vec<_> = headers
            .iter()
            .map(|h| (h.leader_epoch(), h.base_offset()))
            .collect();
        self.assign_epochs(&mut writer, &epochs)?;
        let info = self.append_locked(&mut writer, records, &headers, first, next)?;
        drop(writer);
        self.after_append(info.last_offset.plus(1))?;
        Ok(info)
    }

    /// Records epochs that start with this append, persisting the cache before the data is
    /// written. The in-memory cache changes only once the file is written, so a failed write
    /// (a full disk) is retried by the next append.
    fn assign_epochs(
        &self,
        writer: &mut WriterState,
        starts: &[(LeaderEpoch, Offset)],
    ) -> Result<()> {
        if !starts.iter().any(|(epoch, _)| writer.epochs.is_new(*epoch)) {
            return Ok(());
        }
        let mut epochs = writer.epochs.clone();
        let mut changed = false;
        for (epoch, start) in starts {
            changed |= epochs.assign(*epoch, *start);
        }
        if changed {
            epochs
                .persist()
                .inspect_err(|e| self.poison_unless_retriable(e))?;
            writer.epochs = epochs;
        }
        Ok(())
    }

    /// Checks every batch of an append without holding any lock, so concurrent appenders
    /// validate in parallel.
    ///
    /// A leader also requires each batch's record count to match its offset span, as a
    /// producer writes it: otherwise one small batch could claim 2^31 offsets. And it decodes
    /// every record (decompressing first, within `DECOMPRESSED_BYTES_MAX` for the whole
    /// append), as Kafka's broker
    /// does: a CRC only proves the bytes are what the producer sent, so records that cannot
    /// be read, or fewer than the header declares, would otherwise be stored and fail every
    /// reader of the partition (unless `LogConfig::check_records` is off). A follower copies
    /// what its leader checked.
    fn validate_append(&self, records: &[u8], as_leader: bool) -> Result<Vec<BatchHeader>> {
        if records.is_empty() {
            return Err(Error::InvalidArgument("append of zero bytes".into()));
        }
        if records.len() > APPEND_BYTES_MAX {
            return Err(Error::BatchTooLarge {
                size: records.len(),
                max: APPEND_BYTES_MAX,
            });
        }
        let mut headers = Vec::with_capacity(1);
        // What the record check may decompress for this whole append: one send of many small
        // compressed batches must not cost more than one batch at the reader's limit.
        let mut decompress_left = batch::DECOMPRESSED_BYTES_MAX;
        for item in batch::batches(records) {
            let (_, header, bytes) = item.map_err(Error::InvalidBatch)?;
            if as_leader
                && i64::from(header.records_count) != i64::from(header.last_offset_delta) + 1
            {
                return Err(Error::InvalidBatch(BatchError::BadRecordsCount {
                    count: header.records_count,
                    last_offset_delta: header.last_offset_delta,
                }));
            }
            if header.batch_size() > self.config.max_batch_bytes {
                return Err(Error::BatchTooLarge {
                    size: header.batch_size(),
                    max: self.config.max_batch_bytes,
                });
            }
            if as_leader && self.config.check_records {
                let inflated = batch::check_records(bytes, &header, decompress_left)
                    .map_err(Error::InvalidBatch)?;
                decompress_left = decompress_left.saturating_sub(inflated);
            }
            headers.push(header);
        }
        Ok(headers)
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::InvalidArgument(format!(
                "log {} is open read-only",
                self.dir.display()
            )));
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                dir: self.dir.clone(),
            });
        }
        if self.is_poisoned() {
            return Err(self.poisoned_error());
        }
        Ok(())
    }

    fn append_locked(
        &self,
        writer: &mut WriterState,
        records: &[u8],
        headers: &[BatchHeader],
        first: Offset,
        next: Offset,
    ) -> Result<AppendInfo> {
        let max_timestamp = headers
            .iter()
            .map(|h| h.max_timestamp)
            .max()
            .unwrap_or(NO_TIMESTAMP);
        let active = self.maybe_roll(writer, records.len(), first, next, max_timestamp)?;
        active
            .append(records, headers.len())
            .inspect_err(|e| self.poison_unless_retriable(e))?;
        self.log_end.store(next.0, Ordering::Release);
        self.debug_check_watermarks();
        Ok(AppendInfo {
            first_offset: first,
            last_offset: Offset(next.0 - 1),
            max_timestamp,
            batches: headers.len(),
            bytes: records.len(),
        })
    }

    fn after_append(&self, end: Offset) -> Result<()> {
        if self.config.flush == FlushPolicy::EveryWrite {
            self.group_commit
                .wait_durable(end, || self.sync_unsynced(), || self.poisoned_error())
                .inspect_err(|_| self.poison())?;
        }
        Ok(())
    }

    /// Syncs the data of every segment that may hold unsynced bytes; returns the log end it
    /// covers.
    fn sync_unsynced(&self) -> Result<Offset> {
        let end = self.log_end_offset();
        let durable = self.group_commit.durable();
        for segment in self.segments_overlapping(durable, end) {
            segment.sync_data()?;
        }
        Ok(end)
    }

    fn segments_overlapping(&self, from: Offset, to: Offset) -> Vec<Arc<Segment>> {
        let segments = self.segments.read();
        let start = segments
            .range(..=from)
            .next_back()
            .map_or(Offset::ZERO, |(base, _)| *base);
        segments
            .range(start..to.max(start.plus(1)))
            .map(|(_, s)| Arc::clone(s))
            .collect()
    }

    /// Rolls to a new segment if the incoming bytes should not go into the active one.
    fn maybe_roll(
        &self,
        writer: &mut WriterState,
        incoming_bytes: usize,
        first: Offset,
        next: Offset,
        max_timestamp: TimestampMs,
    ) -> Result<Arc<Segment>> {
        let active = self.active_segment();
        if active.is_empty() {
            return Ok(active);
        }
        let full = active.size() + incoming_bytes as u64 > self.config.segment_bytes;
        let old = self.config.segment_age.is_some_and(|age| {
            let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            let waited =
                if active.first_timestamp() != NO_TIMESTAMP && max_timestamp != NO_TIMESTAMP {
                    max_timestamp.saturating_sub(active.first_timestamp())
                } else {
                    self.clock.now_ms().saturating_sub(writer.active_created_ms)
                };
            waited > age_ms
        });
        let offsets_overflow =
            (next.0 - 1).saturating_sub(active.base_offset().0) > u64::from(RELATIVE_OFFSET_MAX);
        if !(full || old || offsets_overflow || active.indexes_full()) {
            return Ok(active);
        }
        self.roll(writer, first)
    }

    /// Seals the active segment and starts a new one at `base`.
    fn roll(&self, writer: &mut WriterState, base: Offset) -> Result<Arc<Segment>> {
        let previous = self.active_segment();
        previous.seal().inspect_err(|_| self.poison())?;
        let segment = Arc::new(Segment::create(
            &self.dir,
            base,
            self.config.segment_config(),
        )?);
        // The new file's directory entry must be durable before data in it is acknowledged.
        fsio::sync_dir(&self.dir).inspect_err(|_| self.poison())?;
        self.segments.write().insert(base, Arc::clone(&segment));
        writer.active_created_ms = self.clock.now_ms();
        tracing::debug!(dir = %self.dir.display(), base = base.0, "rolled segment");
        Ok(segment)
    }

    fn active_segment(&self) -> Arc<Segment> {
        let segments = self.segments.read();
        let (_, active) = segments
            .last_key_value()
            .expect("a log always has an active segment");
        Arc::clone(active)
    }

    /// Reads whole batches from the one holding `from`: up to `max_bytes` (but always one
    /// whole batch), only batches that end below `upper_bound` (pass the high watermark for
    /// committed data, or the log end). An offset below the log start or past the log end is
    /// `OffsetOutOfRange`; the log end itself reads as empty.
    pub fn read(&self, from: Offset, max_bytes: usize, upper_bound: Offset) -> Result<ReadResult> {
        let mut attempts = 0;
        loop {
            let generation = self.group_commit.generation();
            let error = match self.read_once(from, max_bytes, upper_bound) {
                Err(error @ Error::SegmentCorrupt { .. }) => error,
                other => return other,
            };
            // A segment cut or deleted under the reader looks damaged; tell that apart from
            // real damage by whether the log changed meanwhile.
            let log_start = self.log_start_offset();
            if from < log_start {
                return Err(Error::OffsetOutOfRange {
                    offset: from,
                    log_start,
                    log_end: self.log_end_offset(),
                });
            }
            attempts += 1;
            if self.group_commit.generation() == generation || attempts >= READ_ATTEMPTS_MAX {
                return Err(error);
            }
        }
    }

    fn read_once(&self, from: Offset, max_bytes: usize, upper_bound: Offset) -> Result<ReadResult> {
        let log_start = self.log_start_offset();
        let log_end = self.log_end_offset();
        let result = |records| ReadResult {
            records,
            log_start,
            log_end,
            high_watermark: self.high_watermark(),
        };
        if from < log_start || from > log_end {
            return Err(Error::OffsetOutOfRange {
                offset: from,
                log_start,
                log_end,
            });
        }
        let upper = upper_bound.min(log_end);
        if from >= upper {
            return Ok(result(Bytes::new()));
        }
        let candidates: Vec<Arc<Segment>> = {
            let segments = self.segments.read();
            let start = segments
                .range(..=from)
                .next_back()
                .map_or(Offset::ZERO, |(b, _)| *b);
            segments
                .range(start..)
                .take(2)
                .map(|(_, s)| Arc::clone(s))
                .collect()
        };
        let mut previous: Option<Arc<Segment>> = None;
        for segment in candidates {
            if from < segment.base_offset() {
                // Offsets between two segments are missing: only a damaged segment that a
                // read-only log could not read to its end leaves such a gap.
                let damaged = previous.as_ref().unwrap_or(&segment);
                return Err(Error::SegmentCorrupt {
                    path: damaged.path().to_path_buf(),
                    position: damaged.size(),
                    reason: crate::error::BatchError::OffsetOutOfOrder {
                        found: segment.base_offset().0 as i64,
                        expected: from.0,
                    },
                });
            }
            if let Some((position, _)) = segment.find(from)? {
                return Ok(result(segment.read(position, max_bytes, upper)?));
            }
            previous = Some(segment);
        }
        Ok(result(Bytes::new()))
    }

    /// The first record with a timestamp at or after `timestamp`: its offset and timestamp.
    pub fn offset_for_timestamp(
        &self,
        timestamp: TimestampMs,
    ) -> Result<Option<(Offset, TimestampMs)>> {
        let log_start = self.log_start_offset();
        let segments: Vec<Arc<Segment>> = self.segments.read().values().cloned().collect();
        for segment in segments {
            if segment.next_offset() <= log_start || segment.max_timestamp() < timestamp {
                continue;
            }
            if let Some(found) = segment.find_by_timestamp(timestamp, log_start)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// For replication: where `epoch` ends in this log (see the leader-epoch cache).
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let writer = self.writer.lock();
        writer.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The `(epoch, start offset)` entries of the leader-epoch cache.
    pub fn leader_epochs(&self) -> Vec<(LeaderEpoch, Offset)> {
        self.writer.lock().epochs.entries().to_vec()
    }

    /// Removes every record at or after `offset` (a follower cutting a divergent suffix).
    /// Whole batches are removed, so the new log end may be below `offset` when `offset`
    /// falls inside a batch. Offsets below the log start cannot be truncated to.
    pub fn truncate_to(&self, offset: Offset) -> Result<()> {
        let mut writer = self.writer.lock();
        self.check_writable()?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let log_start = self.log_start_offset();
        if offset < log_start {
            return Err(Error::InvalidArgument(format!(
                "cannot truncate to {offset}, below the log start {log_start}"
            )));
        }
        let result = self.truncate_locked(&mut writer, offset);
        if result.is_err() {
            self.poison();
        }
        result
    }

    fn truncate_locked(&self, writer: &mut WriterState, offset: Offset) -> Result<()> {
        let (keep, doomed) = {
            let segments = self.segments.read();
            let (_, keep) = segments
                .range(..=offset)
                .next_back()
                .expect("offset >= log start >= the first segment's base");
            let doomed: Vec<Arc<Segment>> = segments
                .range(offset.plus(1)..)
                .map(|(_, s)| Arc::clone(s))
                .collect();
            (Arc::clone(keep), doomed)
        };
        for segment in doomed.iter().rev() {
            self.segments.write().remove(&segment.base_offset());
            segment.delete()?;
        }
        // A sealed segment has read-only indexes: reopen it for writing to make it active.
        // Its index files are replaced, not reused: readers may still hold the old ones
        // mapped, and a mapping must never see its file shrink.
        let keep = if keep.is_writable() {
            keep
        } else {
            keep.delete_indexes()?;
            let reopened = Arc::new(Segment::open(
                &self.dir,
                keep.base_offset(),
                self.config.segment_config(),
                Access::Write,
            )?);
            reopened.rebuild_indexes()?;
            reopened.set_sealed_next_offset(keep.next_offset());
            self.segments
                .write()
                .insert(reopened.base_offset(), Arc::clone(&reopened));
            reopened
        };
        keep.truncate_to(offset)?;
        // The cut must be durable before the checkpoint and epoch cache say so: a divergent
        // suffix must not reappear after a power cut.
        keep.sync_data()?;
        let end = keep.next_offset();
        self.log_end.store(end.0, Ordering::Release);
        // Whole batches go, so the end can fall below a log start that lay inside the batch
        // holding `offset`; nothing is readable then, and the start comes down to the end.
        for watermark in [&self.log_start, &self.high_watermark] {
            watermark.fetch_min(end.0, Ordering::AcqRel);
        }
        self.group_commit.truncate(end, || {
            self.recovery_point.fetch_min(end.0, Ordering::AcqRel);
        });
        if writer.epochs.truncate_from_end(end) {
            writer.epochs.persist()?;
        }
        writer.active_created_ms = self.clock.now_ms();
        self.write_checkpoint()?;
        self.debug_check_watermarks();
        tracing::info!(dir = %self.dir.display(), offset = offset.0, log_end = end.0, "truncated log");
        Ok(())
    }

    /// Makes offsets below `offset` unreadable and deletes the segments wholly below it
    /// (never the active one). `offset` may not pass the log end.
    pub fn delete_records_before(&self, offset: Offset) -> Result<RetentionOutcome> {
        let mut writer = self.writer.lock();
        self.check_writable()?;
        let log_end = self.log_end_offset();
        if offset > log_end {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset(),
                log_end,
            });
        }
        if offset <= self.log_start_offset() {
            return Ok(RetentionOutcome::default());
        }
        self.log_start.store(offset.0, Ordering::Release);
        self.high_watermark.fetch_max(offset.0, Ordering::AcqRel);
        let (outcome, doomed) = self.delete_segments_below(&mut writer, offset)?;
        self.debug_check_watermarks();
        drop(writer);
        self.delete_files(doomed)?;
        Ok(outcome)
    }

    /// Deletes whole segments that end at or below `offset`, except the active one, then
    /// records the new log start durably.
    fn delete_segments_below(
        &self,
        writer: &mut WriterState,
        offset: Offset,
    ) -> Result<(RetentionOutcome, Vec<Arc<Segment>>)> {
        let doomed: Vec<Arc<Segment>> = {
            let segments = self.segments.read();
            let bases: Vec<Offset> = segments.keys().copied().collect();
            bases
                .windows(2)
                .take_while(|pair| pair[1] <= offset)
                .map(|pair| Arc::clone(&segments[&pair[0]]))
                .collect()
        };
        let mut outcome = RetentionOutcome::default();
        for segment in &doomed {
            self.segments.write().remove(&segment.base_offset());
            outcome.segments_deleted += 1;
            outcome.bytes_deleted += segment.size();
        }
        let first_base = self
            .segments
            .read()
            .keys()
            .next()
            .copied()
            .unwrap_or(offset);
        let start = self.log_start_offset().max(first_base);
        self.log_start.store(start.0, Ordering::Release);
        self.high_watermark.fetch_max(start.0, Ordering::AcqRel);
        if writer.epochs.truncate_from_start(start) {
            writer.epochs.persist()?;
        }
        self.write_checkpoint()?;
        Ok((outcome, doomed))
    }

    /// Deletes the files of segments already removed from the log, outside the writer lock:
    /// unlinking a large file takes milliseconds that appends need not wait for. A crash
    /// before it leaves segments below the checkpointed log start, which retention removes.
    fn delete_files(&self, doomed: Vec<Arc<Segment>>) -> Result<()> {
        for segment in doomed {
            segment.delete()?;
        }
        Ok(())
    }

    /// Deletes sealed segments past the retention limits: by age (the segment's largest
    /// timestamp older than `retention_age`) and by size (while the log is larger than
    /// `retention_bytes`). Whole segments only, oldest first, never the active segment.
    pub fn apply_retention(&self) -> Result<RetentionOutcome> {
        let mut writer = self.writer.lock();
        self.check_writable()?;
        let now = self.clock.now_ms();
        let sealed: Vec<Arc<Segment>> = {
            let segments = self.segments.read();
            let count = segments.len().saturating_sub(1);
            segments.values().take(count).cloned().collect()
        };
        let mut by_age = 0;
        if let Some(age) = self.config.retention_age {
            let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            by_age = sealed
                .iter()
                .take_while(|s| now.saturating_sub(s.retention_timestamp()) > age_ms)
                .count();
        }
        let mut by_size = 0;
        if let Some(limit) = self.config.retention_bytes {
            let mut total: u64 = self.segments.read().values().map(|s| s.size()).sum();
            for segment in &sealed {
                if total.saturating_sub(limit) < segment.size() {
                    break;
                }
                total -= segment.size();
                by_size += 1;
            }
        }
        let count = by_age.max(by_size);
        let Some(last) = count.checked_sub(1).map(|i| &sealed[i]) else {
            return Ok(RetentionOutcome::default());
        };
        let new_start = last.next_offset().max(self.log_start_offset());
        self.log_start.store(new_start.0, Ordering::Release);
        self.high_watermark.fetch_max(new_start.0, Ordering::AcqRel);
        self.recovery_point.fetch_max(new_start.0, Ordering::AcqRel);
        let (outcome, doomed) = self.delete_segments_below(&mut writer, new_start)?;
        self.debug_check_watermarks();
        drop(writer);
        self.delete_files(doomed)?;
        tracing::info!(
            dir = %self.dir.display(),
            segments = outcome.segments_deleted,
            bytes = outcome.bytes_deleted,
            log_start = new_start.0,
            "retention deleted segments"
        );
        Ok(outcome)
    }

    /// Syncs data and indexes up to the log end, then records the recovery point (and the
    /// high watermark and log start) in the checkpoint.
    pub fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        if self.is_poisoned() {
            return Err(self.poisoned_error());
        }
        self.flush_to(FlushTarget::LogEnd)
    }

    /// Syncs segments up to the target and checkpoints. A failed sync poisons the log; a
    /// failed checkpoint write does not (the data is safe, recovery just scans more). A
    /// truncation while syncing voids the result: the truncation checkpoints itself.
    fn flush_to(&self, target: FlushTarget) -> Result<()> {
        let generation = self.group_commit.generation();
        let end = match target {
            FlushTarget::LogEnd => self.log_end_offset(),
            FlushTarget::SealedSegments => self.active_segment().base_offset(),
        };
        for segment in self.segments_overlapping(self.recovery_point(), end) {
            segment.flush().inspect_err(|_| self.poison())?;
        }
        let published = self.group_commit.publish(generation, end, || {
            self.recovery_point.fetch_max(end.0, Ordering::AcqRel);
        });
        self.last_flush_ms
            .store(self.clock.now_ms().max(0) as u64, Ordering::Release);
        if published {
            self.write_checkpoint()?;
        }
        Ok(())
    }

    /// Syncs only the sealed segments (all but the active one): what the `Os` policy makes
    /// durable in the background so recovery scans little.
    pub fn flush_sealed(&self) -> Result<()> {
        let active_base = self.active_segment().base_offset();
        if self.recovery_point() >= active_base || self.read_only {
            return Ok(());
        }
        self.flush_to(FlushTarget::SealedSegments)
    }

    /// Runs whatever the flush policy asks for at time `now_ms`: called by the log manager's
    /// flusher.
    pub fn maybe_flush(&self, now_ms: TimestampMs) -> Result<()> {
        match self.config.flush {
            FlushPolicy::Interval(interval) => {
                let last = self.last_flush_ms.load(Ordering::Acquire) as i64;
                let due = now_ms.saturating_sub(last)
                    >= i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
                if due && self.recovery_point() < self.log_end_offset() {
                    return self.flush();
                }
                Ok(())
            }
            FlushPolicy::Os | FlushPolicy::EveryWrite => self.flush_sealed(),
        }
    }

    fn write_checkpoint(&self) -> Result<()> {
        let _serial = self.checkpoint_lock.lock();
        Checkpoint {
            log_start: self.log_start_offset(),
            recovery_point: self.recovery_point(),
            high_watermark: self.high_watermark(),
        }
        .write(&self.dir)
    }

    /// Flushes everything, seals the active segment's files and leaves the clean-shutdown
    /// marker, so the next open skips recovery. Further appends fail with `Closed`.
    pub fn close(&self) -> Result<()> {
        if self.read_only || self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.is_poisoned() {
            // Leave no marker: the next open must recover.
            return Err(self.poisoned_error());
        }
        // Hold the writer lock throughout, so no append lands after the final flush.
        let _writer = self.writer.lock();
        let end = self.log_end_offset();
        self.flush_to(FlushTarget::LogEnd)?;
        self.active_segment().seal()?;
        checkpoint::write_clean_shutdown_marker(&self.dir, end)?;
        // Another process may open the log from now on.
        self.lock.lock().take();
        Ok(())
    }

    /// Drops the log without a clean close, as a killed process would: no flush, no
    /// clean-shutdown marker, so the next open recovers. For crash tests and tools.
    pub fn abandon(self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Every segment's size, offsets and timestamps.
    pub fn stats(&self) -> LogStats {
        let segments: Vec<Arc<Segment>> = self.segments.read().values().cloned().collect();
        let timestamps = segments
            .iter()
            .map(|s| s.max_timestamp())
            .filter(|t| *t != NO_TIMESTAMP);
        LogStats {
            log_start: self.log_start_offset(),
            log_end: self.log_end_offset(),
            high_watermark: self.high_watermark(),
            recovery_point: self.recovery_point(),
            segments: segments.len(),
            size_bytes: segments.iter().map(|s| s.size()).sum(),
            oldest_timestamp: self.first_batch_timestamp(),
            newest_timestamp: timestamps.max().unwrap_or(NO_TIMESTAMP),
        }
    }

    /// The largest timestamp of the batch at the log start: the age of the oldest data.
    fn first_batch_timestamp(&self) -> TimestampMs {
        let start = self.log_start_offset();
        self.read(start, 1, self.log_end_offset())
            .ok()
            .and_then(|read| BatchHeader::parse_prefix(&read.records).ok())
            .map_or(NO_TIMESTAMP, |prefix| prefix.max_timestamp)
    }

    /// Base offset, size and next offset of each segment, oldest first.
    pub fn segments(&self) -> Vec<(Offset, u64, Offset)> {
        self.segments
            .read()
            .values()
            .map(|s| (s.base_offset(), s.size(), s.next_offset()))
            .collect()
    }

    /// Checks every batch's CRC and offsets, segment continuity and every index entry.
    pub fn verify(&self) -> VerifyReport {
        let segments: Vec<Arc<Segment>> = self.segments.read().values().cloned().collect();
        let mut report = VerifyReport {
            segments: segments.len(),
            ..VerifyReport::default()
        };
        let mut expected: Option<Offset> = None;
        let last = segments.len().saturating_sub(1);
        for (i, segment) in segments.into_iter().enumerate() {
            if let Some(expected) = expected {
                if segment.base_offset() != expected {
                    report.damage.push(Damage {
                        path: segment.path().to_path_buf(),
                        position: 0,
                        offset: expected,
                        reason: format!(
                            "segment starts at offset {}, the previous one ended at {expected}",
                            segment.base_offset()
                        ),
                    });
                }
            }
            // A live writer may be mid-append at the end of its active segment.
            let check = segment.verify(!(self.read_only && i == last));
            report.batches += check.batches;
            report.records += check.records;
            report.bytes += check.bytes;
            // After damage, the next segment's start cannot be judged against it.
            expected = check.damage.is_empty().then_some(check.next_offset);
            report.damage.extend(check.damage);
        }
        report
    }

    /// A full disk leaves the log consistent (the failed write was cut back); anything else
    /// leaves its state unknown.
    fn poison_unless_retriable(&self, error: &Error) {
        if !error.is_retriable() {
            self.poison();
        }
    }

    fn poison(&self) {
        if !self.poisoned.swap(true, Ordering::AcqRel) {
            tracing::error!(dir = %self.dir.display(), "log poisoned: no appends until it is reopened");
        }
        self.group_commit.fail();
    }

    fn poisoned_error(&self) -> Error {
        Error::Poisoned {
            dir: self.dir.clone(),
        }
    }

    fn debug_check_watermarks(&self) {
        if cfg!(debug_assertions) {
            let (start, hw, end) = (
                self.log_start_offset(),
                self.high_watermark(),
                self.log_end_offset(),
            );
            debug_assert!(
                start <= hw && hw <= end,
                "watermarks out of order: {start:?} {hw:?} {end:?}"
            );
            debug_assert!(
                self.recovery_point() <= end,
                "recovery point past the log end"
            );
        }
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::warn!(dir = %self.dir.display(), %error, "log dropped without a clean close");
        }
    }
}
