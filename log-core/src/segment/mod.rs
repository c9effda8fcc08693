//! One segment: a `{base_offset:020}.log` file of record batches back to back, with its sparse
//! `.index` (offset → position) and `.timeindex` (timestamp → offset).
//!
//! A segment knows nothing above it: no topic, no partition counters, no flush policy. The
//! partition log owns one writer per partition and calls [`Segment::append`] under its writer
//! lock; readers call [`Segment::read`] concurrently. The committed size is published with
//! release ordering after the bytes are written, so a reader never sees a half-written batch.
//!
//! Space is preallocated ahead of the write position in chunks (`fallocate` with
//! `KEEP_SIZE`), so the file's length is always the committed data length and the blocks are
//! allocated before writeback. Sealing a segment (on roll or clean close) releases the unused
//! preallocation and trims the indexes to their entries.

mod index_file;
mod offset_index;
pub(crate) mod scan;
mod time_index;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use self::offset_index::{OffsetIndex, OFFSET_ENTRY_BYTES};
use self::scan::{ScanStop, Scanner};
use self::time_index::{TimeIndex, TIME_ENTRY_BYTES};
use crate::batch::{BatchHeader, BatchPrefix, RecordBatch};
use crate::error::{BatchError, Error, Result};
use crate::fsio;
use crate::types::{FilePosition, LeaderEpoch, Offset, TimestampMs, NO_TIMESTAMP};

pub const LOG_SUFFIX: &str = "log";
pub const INDEX_SUFFIX: &str = "index";
pub const TIME_INDEX_SUFFIX: &str = "timeindex";

/// The largest segment file: positions are stored as u32 in the offset index, and Kafka caps
/// segments at `i32::MAX` bytes.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

/// The largest batch a segment holds: what one append may carry. Scans treat a larger length
/// field as damage.
pub const BATCH_BYTES_STORED_MAX: usize = 256 << 20;

/// The most a preallocation can reach past the data: one chunk plus the largest append.
const APPEND_SLACK_BYTES: u64 = BATCH_BYTES_STORED_MAX as u64;

/// How a segment is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The active segment (or one being recovered): appends and index rebuilds.
    Write,
    /// A sealed segment of a log this process owns: indexes mapped read-only.
    Read,
    /// A segment of a log another process writes: nothing mapped, nothing written.
    Follow,
}

/// Settings a segment needs from its log.
#[derive(Debug, Clone, Copy)]
pub struct SegmentConfig {
    /// Bytes of batches between two index entries.
    pub index_interval_bytes: u64,
    /// Preallocated size of each index file while the segment is active.
    pub index_max_bytes: usize,
    /// Bytes preallocated ahead of the write position; 0 turns preallocation off.
    pub preallocate_bytes: u64,
}

/// Name of a segment file: the base offset, zero-padded to 20 digits.
pub fn file_name(base_offset: Offset, suffix: &str) -> String {
    format!("{:020}.{suffix}", base_offset.0)
}

/// The base offset a segment file's name encodes, for names of the form `{020}.{suffix}`.
pub fn parse_file_name(name: &str, suffix: &str) -> Option<Offset> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Offsets are i64 in the batch format: a larger base is not a segment this log wrote.
    stem.parse::<u64>()
        .ok()
        .filter(|base| *base <= i64::MAX as u64)
        .map(Offset)
}

/// What recovery found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryOutcome {
    /// Bytes of whole, valid batches kept.
    pub valid_bytes: u64,
    /// Bytes cut from the end.
    pub truncated_bytes: u64,
    /// The offset after the last valid batch.
    pub next_offset: Offset,
    /// Why the scan stopped early, if it did.
    pub stopped_at: Option<(u64, BatchError)>,
}

/// What [`Segment::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentCheck {
    /// Whole, valid batches before any damage.
    pub batches: u64,
    /// Records in those batches.
    pub records: u64,
    /// Bytes of those batches.
    pub bytes: u64,
    /// The offset after the last valid batch.
    pub next_offset: Offset,
    pub damage: Vec<Damage>,
}

/// A problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub path: PathBuf,
    pub position: u64,
    /// The offset where the damage starts: the offset after the last good batch.
    pub offset: Offset,
    pub reason: String,
}

#[derive(Debug)]
struct Indexes {
    offset: OffsetIndex,
    time: TimeIndex,
    bytes_since_entry: u64,
    offset_of_max_timestamp: Offset,
    preallocated_to: u64,
}

#[derive(Debug)]
pub struct Segment {
    base_offset: Offset,
    log_path: PathBuf,
    index_path: PathBuf,
    time_index_path: PathBuf,
    file: File,
    config: SegmentConfig,
    /// Committed bytes: every byte below is a whole, written batch.
    size: AtomicU64,
    /// The offset after the last batch (the base offset when empty).
    next_offset: AtomicU64,
    max_timestamp: AtomicI64,
    /// Timestamp of the first batch (`NO_TIMESTAMP` when unknown): the segment's age for
    /// roll-by-time.
    first_timestamp: AtomicI64,
    indexes: Mutex<Indexes>,
    /// Set by [`Segment::open`] when an index file was missing or held a partial entry:
    /// [`Segment::check_indexes`] then fails, so the caller rebuilds the indexes.
    index_file_damage: Option<(PathBuf, &'static str)>,
}

impl Segment {
    /// Creates an empty segment, replacing leftover files of the same base offset.
    pub fn create(dir: &Path, base_offset: Offset, config: SegmentConfig) -> Result<Segment> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            remove_if_exists(&dir.join(file_name(base_offset, suffix)))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(|e| Error::io("create segment", &log_path, e))?;
        Self::with_file(dir, base_offset, file, log_path, config, Access::Write)
    }

    /// Opens an existing segment. Its indexes are loaded but not trusted: the caller either
    /// checks them ([`Segment::check_indexes`]) or rebuilds them ([`Segment::recover`]).
    pub fn open(
        dir: &Path,
        base_offset: Offset,
        config: SegmentConfig,
        access: Access,
    ) -> Result<Segment> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new()
            .read(true)
            .write(access == Access::Write)
            .open(&log_path)
            .map_err(|e| Error::io("open segment", &log_path, e))?;
        // Look before opening the indexes: opening for writing creates and resizes them.
        let index_file_damage = index_file_damage(dir, base_offset);
        let mut segment = Self::with_file(dir, base_offset, file, log_path, config, access)?;
        segment.index_file_damage = index_file_damage;
        Ok(segment)
    }

    fn with_file(
        dir: &Path,
        base_offset: Offset,
        file: File,
        log_path: PathBuf,
        config: SegmentConfig,
        access: Access,
    ) -> Result<Segment> {
        let size = file
            .metadata()
            .map_err(|e| Error::io("stat segment", &log_path, e))?
            .len();
        let index_path = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let time_index_path = dir.join(file_name(base_offset, TIME_INDEX_SUFFIX));
        let offset = OffsetIndex::open(&index_path, config.index_max_bytes, access)?;
        let time = TimeIndex::open(&time_index_path, config.index_max_bytes, access)?;
        let max_timestamp = time.last().map_or(NO_TIMESTAMP, |(t, _)| t);
        Ok(Segment {
            base_offset,
            log_path,
            index_path,
            time_index_path,
            file,
            config,
            size: AtomicU64::new(size),
            next_offset: AtomicU64::new(base_offset.0),
            max_timestamp: AtomicI64::new(max_timestamp),
            first_timestamp: AtomicI64::new(NO_TIMESTAMP),
            indexes: Mutex::new(Indexes {
                offset,
                time,
                bytes_since_entry: 0,
                offset_of_max_timestamp: base_offset,
                preallocated_to: size,
            }),
            index_file_damage: None,
        })
    }

    pub fn base_offset(&self) -> Offset {
        self.base_offset
    }

    pub fn path(&self) -> &Path {
        &self.log_path
    }

    /// Committed bytes.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// The offset after the last batch; the base offset when empty.
    pub fn next_offset(&self) -> Offset {
        Offset(self.next_offset.load(Ordering::Acquire))
    }

    /// The largest record timestamp in the segment, or -1.
    pub fn max_timestamp(&self) -> TimestampMs {
        self.max_timestamp.load(Ordering::Acquire)
    }

    /// The time retention judges the segment by: its largest record timestamp, or, when its
    /// batches carry none, when its file was last written (as Kafka does for old formats).
    pub fn retention_timestamp(&self) -> TimestampMs {
        let max = self.max_timestamp();
        if max != NO_TIMESTAMP {
            return max;
        }
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(TimestampMs::MAX, |d| {
                i64::try_from(d.as_millis()).unwrap_or(TimestampMs::MAX)
            })
    }

    /// When the segment started: its first batch's timestamp, else `NO_TIMESTAMP`.
    pub fn first_timestamp(&self) -> TimestampMs {
        self.first_timestamp.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }

    /// True if the segment can take appends (its indexes are mapped for writing).
    pub fn is_writable(&self) -> bool {
        self.indexes.lock().offset.is_writable()
    }

    /// Sets the next offset of a segment that is followed by another: it ends where the next
    /// one starts, so opening it needs no scan.
    pub fn set_sealed_next_offset(&self, next: Offset) {
        self.next_offset.store(next.0, Ordering::Release);
    }

    /// True if the indexes cannot take another entry: the segment must roll.
    pub fn indexes_full(&self) -> bool {
        let indexes = self.indexes.lock();
        indexes.offset.is_full() || indexes.time.is_full()
    }

    /// Checks the loaded indexes against the log's size; on damage the caller recovers.
    pub fn check_indexes(&self) -> Result<()> {
        if let Some((path, reason)) = &self.index_file_damage {
            return Err(Error::IndexCorrupt {
                path: path.clone(),
                reason: (*reason).to_string(),
            });
        }
        let indexes = self.indexes.lock();
        indexes.offset.check(self.size())?;
        let next = self.next_offset().relative_to(self.base_offset);
        indexes.time.check(next)
    }

    /// For a segment another process may be appending to (opened read-only): restarts from
    /// the last index entry that is plausible for the file's current length, then catches up.
    pub fn reset_for_follow(&self) -> Result<()> {
        let file_len = self.file_len()?;
        let (offset, position) = {
            let mut indexes = self.indexes.lock();
            indexes.offset.keep_valid_prefix(file_len);
            indexes.time.keep_valid_prefix();
            match indexes.offset.last() {
                Some((relative, position)) => (relative.absolute(self.base_offset), position.0),
                None => (self.base_offset, 0),
            }
        };
        self.size.store(position, Ordering::Release);
        self.next_offset.store(offset.0, Ordering::Release);
        self.first_timestamp.store(NO_TIMESTAMP, Ordering::Release);
        self.catch_up()?;
        if position > 0 {
            self.load_first_timestamp()?;
        }
        Ok(())
    }

    fn load_first_timestamp(&self) -> Result<()> {
        if let Some(prefix) = self.prefix_at(0)? {
            self.first_timestamp
                .store(prefix.max_timestamp, Ordering::Release);
        }
        Ok(())
    }

    /// For a read-only segment: extends the committed size over whole, valid batches written
    /// since the last look. Stops quietly at a batch still being written.
    pub fn catch_up(&self) -> Result<()> {
        let file_len = self.file_len()?;
        let start = self.size();
        if file_len < start {
            // The writer cut the file (truncation): start over.
            return self.reset_for_follow();
        }
        let mut next = self.next_offset();
        let mut max_timestamp = self.max_timestamp();
        let mut end = start;
        for scanned in Scanner::new(&self.file, &self.log_path, start, file_len, true) {
            let scanned = match scanned {
                Ok(scanned) => scanned,
                // A batch still being written (or a torn tail): stop quietly.
                Err(ScanStop::Invalid { .. }) => break,
                Err(ScanStop::Io(error)) => return Err(error),
            };
            let prefix = scanned.prefix;
            if prefix.base_offset() != next {
                break;
            }
            if scanned.position == 0 {
                self.first_timestamp
                    .store(prefix.max_timestamp, Ordering::Release);
            }
            max_timestamp = max_timestamp.max(prefix.max_timestamp);
            next = prefix.last_offset().plus(1);
            end = scanned.position + prefix.batch_size as u64;
        }
        self.max_timestamp.store(max_timestamp, Ordering::Release);
        self.next_offset.store(next.0, Ordering::Release);
        self.size.store(end, Ordering::Release);
        Ok(())
    }

    /// Forgets the in-memory index entries (of a read-only segment whose index is damaged):
    /// lookups then scan from the start of the segment.
    pub fn forget_index(&self) {
        let mut indexes = self.indexes.lock();
        indexes.offset.clear();
        indexes.time.clear();
    }

    fn file_len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| Error::io("stat segment", &self.log_path, e))?
            .len())
    }

    /// Loads the state a clean shutdown left behind without a full scan: walks the batch
    /// headers after the last index entry to find the next offset, the largest timestamp and
    /// the bytes since the last index entry. Fails on any invalid batch (the caller then
    /// recovers the segment).
    pub fn load_tail(&self) -> Result<()> {
        let mut indexes = self.indexes.lock();
        let (start_offset, start_position) = match indexes.offset.last() {
            Some((relative, position)) => (relative.absolute(self.base_offset), position.0),
            None => (self.base_offset, 0),
        };
        let size = self.size();
        // The index is not checked yet (its check needs the next offset found here).
        if start_position > size {
            return Err(Error::IndexCorrupt {
                path: self.index_path.clone(),
                reason: format!(
                    "last entry points to {start_position}, past the log's {size} bytes"
                ),
            });
        }
        let mut next = start_offset;
        let mut max_timestamp = self.max_timestamp();
        let mut offset_of_max = indexes.offset_of_max_timestamp;
        for scanned in Scanner::new(&self.file, &self.log_path, start_position, size, false) {
            let scanned = scanned.map_err(|stop| self.stop_error(stop))?;
            let prefix = scanned.prefix;
            if prefix.base_offset() != next {
                return Err(self.out_of_order(scanned.position, prefix.base_offset(), next));
            }
            if scanned.position == 0 {
                self.first_timestamp
                    .store(prefix.max_timestamp, Ordering::Release);
            }
            if prefix.max_timestamp > max_timestamp {
                max_timestamp = prefix.max_timestamp;
                offset_of_max = prefix.last_offset();
            }
            next = prefix.last_offset().plus(1);
        }
        if start_position > 0 && self.first_timestamp() == NO_TIMESTAMP {
            self.load_first_timestamp()?;
        }
        indexes.bytes_since_entry = size - start_position;
        indexes.offset_of_max_timestamp = offset_of_max;
        self.max_timestamp.store(max_timestamp, Ordering::Release);
        self.next_offset.store(next.0, Ordering::Release);
        Ok(())
    }

    /// Scans every batch, validating bounds, CRC and offset order, rebuilds both indexes, and
    /// cuts the file after the last valid batch. Never fails on bad data, only on I/O.
    pub fn recover(&self) -> Result<RecoveryOutcome> {
        self.scan_and_index(true)
    }

    /// Rebuilds the indexes of a sealed segment without cutting anything: later segments
    /// depend on its data, so damage is left for reads and `verify` to report, never cut.
    pub fn rebuild_indexes(&self) -> Result<RecoveryOutcome> {
        self.scan_and_index(false)
    }

    fn scan_and_index(&self, cut_invalid_tail: bool) -> Result<RecoveryOutcome> {
        let mut indexes = self.indexes.lock();
        indexes.offset.clear();
        indexes.time.clear();
        indexes.bytes_since_entry = 0;
        let size = self.size();
        let mut next = self.base_offset;
        let mut max_timestamp = NO_TIMESTAMP;
        let mut offset_of_max = self.base_offset;
        let mut stopped_at = None;
        let mut valid_bytes = 0;
        let mut scanner = Scanner::new(&self.file, &self.log_path, 0, size, true);
        for scanned in scanner.by_ref() {
            let scanned = match scanned {
                Ok(scanned) => scanned,
                Err(ScanStop::Invalid { position, reason }) => {
                    stopped_at = Some((position, reason));
                    break;
                }
                Err(ScanStop::Io(error)) => return Err(error),
            };
            let prefix = scanned.prefix;
            if prefix.base_offset() != next {
                stopped_at = Some((
                    scanned.position,
                    BatchError::OffsetOutOfOrder {
                        found: prefix.base_offset,
                        expected: next.0,
                    },
                ));
                break;
            }
            if scanned.position == 0 {
                self.first_timestamp
                    .store(prefix.max_timestamp, Ordering::Release);
            }
            if prefix.max_timestamp > max_timestamp {
                max_timestamp = prefix.max_timestamp;
                offset_of_max = prefix.last_offset();
            }
            indexes.offset_of_max_timestamp = offset_of_max;
            self.max_timestamp.store(max_timestamp, Ordering::Release);
            indexes.offset.reserve(1)?;
            indexes.time.reserve(1)?;
            self.index_batch(&mut indexes, scanned.position, &prefix);
            next = prefix.last_offset().plus(1);
            valid_bytes = scanned.position + prefix.batch_size as u64;
        }
        let truncated_bytes = size - valid_bytes;
        if !cut_invalid_tail {
            self.max_timestamp.store(max_timestamp, Ordering::Release);
            return Ok(RecoveryOutcome {
                valid_bytes,
                truncated_bytes: 0,
                next_offset: next,
                stopped_at,
            });
        }
        if truncated_bytes > 0 {
            self.file
                .set_len(valid_bytes)
                .map_err(|e| Error::io("truncate segment", &self.log_path, e))?;
            self.size.store(valid_bytes, Ordering::Release);
        }
        self.max_timestamp.store(max_timestamp, Ordering::Release);
        self.next_offset.store(next.0, Ordering::Release);
        // Give back space preallocated past the data before the crash.
        indexes.preallocated_to = valid_bytes + self.config.preallocate_bytes + APPEND_SLACK_BYTES;
        self.release_preallocation(&mut indexes)?;
        Ok(RecoveryOutcome {
            valid_bytes,
            truncated_bytes,
            next_offset: next,
            stopped_at,
        })
    }

    /// Adds index entries for a batch written at `position`, when an index interval has
    /// passed. The indexes are sparse and derived: an entry that cannot be added (index full,
    /// offset or position out of the entry's range) is skipped, never an error; lookups then
    /// scan a little further and the log rolls at the next append.
    fn index_batch(&self, indexes: &mut Indexes, position: u64, prefix: &BatchPrefix) {
        if indexes.bytes_since_entry > self.config.index_interval_bytes {
            let relative = prefix.base_offset().relative_to(self.base_offset);
            let added = relative.is_some_and(|r| indexes.offset.append(r, FilePosition(position)));
            if added {
                let max_ts = self.max_timestamp();
                if let Some(relative_max) = indexes
                    .offset_of_max_timestamp
                    .relative_to(self.base_offset)
                {
                    indexes.time.maybe_append(max_ts, relative_max);
                }
                indexes.bytes_since_entry = 0;
            }
        }
        indexes.bytes_since_entry += prefix.batch_size as u64;
    }

    /// Appends validated batches whose offsets continue this segment. Called by the log's
    /// single writer. On failure nothing becomes visible and the file is cut back. The index
    /// lock is not held during the write, so readers' lookups never wait for it.
    pub fn append(&self, bytes: &[u8], batches: usize) -> Result<()> {
        let position = self.size();
        let end = position + bytes.len() as u64;
        assert!(
            end <= SEGMENT_BYTES_MAX,
            "the log rolls before a segment outgrows its positions"
        );
        let preallocate_from = {
            let mut indexes = self.indexes.lock();
            // Each batch may add one entry to each index: claim their disk space first, so a
            // full disk fails the append here rather than as a SIGBUS when the entry is written.
            indexes.offset.reserve(batches)?;
            indexes.time.reserve(batches)?;
            (self.config.preallocate_bytes > 0 && end > indexes.preallocated_to)
                .then_some(indexes.preallocated_to)
        };
        if let Some(from) = preallocate_from {
            // Outside the index lock: fallocate can wait tens of milliseconds on the journal
            // while another thread syncs, and readers' lookups must not wait with it. Only
            // this segment's single writer moves `preallocated_to`.
            let len = self.config.preallocate_bytes.max(end - from);
            // A failure (typically a full disk) is not fatal here: the write below reports
            // whether the bytes really fit.
            if fsio::preallocate(&self.file, from, len).is_ok() {
                self.indexes.lock().preallocated_to = from + len;
            }
        }
        if let Err(error) = self.file.write_all_at(bytes, position) {
            let error = Error::io("write segment", &self.log_path, error);
            // Cut back whatever part of the write landed; shrinking needs no space.
            self.file
                .set_len(position)
                .map_err(|e| Error::io("truncate segment after failed write", &self.log_path, e))?;
            self.indexes.lock().preallocated_to = position;
            return Err(error);
        }
        let mut indexes = self.indexes.lock();
        let mut at = 0usize;
        let mut next = self.next_offset();
        let mut max_timestamp = self.max_timestamp();
        while at < bytes.len() {
            let prefix =
                BatchHeader::parse_prefix(&bytes[at..]).expect("appended batches were validated");
            if position + at as u64 == 0 {
                self.first_timestamp
                    .store(prefix.max_timestamp, Ordering::Release);
            }
            if prefix.max_timestamp > max_timestamp {
                max_timestamp = prefix.max_timestamp;
                indexes.offset_of_max_timestamp = prefix.last_offset();
                self.max_timestamp.store(max_timestamp, Ordering::Release);
            }
            self.index_batch(&mut indexes, position + at as u64, &prefix);
            next = prefix.last_offset().plus(1);
            at += prefix.batch_size;
        }
        self.next_offset.store(next.0, Ordering::Release);
        self.size.store(end, Ordering::Release);
        Ok(())
    }

    /// The first batch whose last offset is `>= offset`, with its position; `None` if every
    /// batch ends before `offset`.
    pub fn find(&self, offset: Offset) -> Result<Option<(u64, BatchPrefix)>> {
        let (expected, start) = match offset.relative_to(self.base_offset) {
            Some(relative) => self
                .indexes
                .lock()
                .offset
                .lookup(relative)
                .map_or((self.base_offset, 0), |(r, p)| {
                    (r.absolute(self.base_offset), p.0)
                }),
            None if offset < self.base_offset => (self.base_offset, 0),
            None => return Ok(None),
        };
        match self.find_from(offset, expected, start) {
            // An index entry that points nowhere sensible (a damaged index that still looked
            // ordered) must not make intact data unreadable: scan from the start instead.
            Err(_) if start > 0 => {
                tracing::warn!(segment = %self.log_path.display(), "offset index entry is wrong; scanning");
                self.find_from(offset, self.base_offset, 0)
            }
            result => result,
        }
    }

    fn find_from(
        &self,
        offset: Offset,
        mut expected: Offset,
        start: u64,
    ) -> Result<Option<(u64, BatchPrefix)>> {
        let size = self.size();
        for scanned in Scanner::new(&self.file, &self.log_path, start, size, false) {
            let scanned = scanned.map_err(|stop| self.stop_error(stop))?;
            // The base offset lies outside the CRC: a flipped one must not pass for another
            // batch (or make this one seem to hold every offset).
            if scanned.prefix.base_offset() != expected {
                return Err(self.out_of_order(
                    scanned.position,
                    scanned.prefix.base_offset(),
                    expected,
                ));
            }
            if scanned.prefix.last_offset() >= offset {
                return Ok(Some((scanned.position, scanned.prefix)));
            }
            expected = scanned.prefix.last_offset().plus(1);
        }
        Ok(None)
    }

    fn prefix_at(&self, position: u64) -> Result<Option<BatchPrefix>> {
        let size = self.size();
        Scanner::new(&self.file, &self.log_path, position, size, false)
            .next()
            .transpose()
            .map(|s| s.map(|s| s.prefix))
            .map_err(|stop| self.stop_error(stop))
    }

    /// Reads whole batches starting at `position`: up to `max_bytes`, but always the first
    /// batch whole, and only batches whose last offset is below `upper_bound`. Every batch
    /// returned passed its CRC check; a damaged first batch is an error naming the place.
    pub fn read(&self, position: u64, max_bytes: usize, upper_bound: Offset) -> Result<Bytes> {
        let size = self.size();
        if position >= size {
            return Ok(Bytes::new());
        }
        let available = size - position;
        let mut len = (max_bytes as u64).min(available) as usize;
        let mut buf = self.read_exact_at(
            position,
            len.max(crate::batch::BATCH_HEADER_BYTES.min(available as usize)),
        )?;
        let first =
            BatchHeader::parse_prefix(&buf).map_err(|reason| self.corrupt(position, reason))?;
        if first.batch_size > buf.len() {
            if first.batch_size as u64 > available || first.batch_size > BATCH_BYTES_STORED_MAX {
                return Err(self.corrupt(
                    position,
                    BatchError::Truncated {
                        needed: first.batch_size,
                        available: available as usize,
                    },
                ));
            }
            len = first.batch_size;
            buf = self.read_exact_at(position, len)?;
        }
        let mut kept = 0;
        let mut expected = None;
        for item in crate::batch::batches(&buf) {
            match item {
                // A batch that does not start where the previous one ended is damaged (its
                // base offset is outside the CRC); the next read, from it, reports it.
                Ok((_, header, _)) if expected.is_some_and(|e| header.base_offset() != e) => break,
                Ok((at, header, _)) if header.last_offset() < upper_bound => {
                    kept = at + header.batch_size();
                    expected = Some(header.next_offset());
                }
                Ok(_) => break,
                // A batch cut by `max_bytes` is expected; damage shows on the next read.
                Err(BatchError::Truncated { .. }) if kept > 0 => break,
                Err(reason) if kept == 0 => return Err(self.corrupt(position, reason)),
                Err(_) => break,
            }
        }
        buf.truncate(kept);
        Ok(buf.freeze())
    }

    fn read_exact_at(&self, position: u64, len: usize) -> Result<BytesMut> {
        let mut buf = BytesMut::with_capacity(len);
        fsio::read_at_into_spare(&self.file, &mut buf, len, position)
            .map_err(|e| Error::io("read segment", &self.log_path, e))?;
        Ok(buf)
    }

    /// The first record with a timestamp `>= target`: its offset and timestamp.
    pub fn find_by_timestamp(
        &self,
        target: TimestampMs,
        from: Offset,
    ) -> Result<Option<(Offset, TimestampMs)>> {
        if self.max_timestamp() < target {
            return Ok(None);
        }
        let start_offset = {
            let indexes = self.indexes.lock();
            indexes
                .time
                .lookup_before(target)
                .map_or(self.base_offset, |(_, r)| r.absolute(self.base_offset))
                .max(from)
        };
        let Some((start, _)) = self.find(start_offset)? else {
            return Ok(None);
        };
        let size = self.size();
        let mut scanner = Scanner::new(&self.file, &self.log_path, start, size, true);
        while let Some(scanned) = scanner.next() {
            let scanned = scanned.map_err(|stop| self.stop_error(stop))?;
            if scanned.prefix.max_timestamp < target {
                continue;
            }
            let bytes = Bytes::copy_from_slice(
                scanner.batch_bytes(scanned.position, scanned.prefix.batch_size),
            );
            let batch = RecordBatch::new(bytes).map_err(|r| self.corrupt(scanned.position, r))?;
            for record in batch
                .records()
                .map_err(|r| self.corrupt(scanned.position, r))?
            {
                let record = record.map_err(|r| self.corrupt(scanned.position, r))?;
                if record.timestamp >= target && record.offset >= from {
                    return Ok(Some((record.offset, record.timestamp)));
                }
            }
        }
        Ok(None)
    }

    /// Removes every batch that holds an offset `>= offset`. Returns the bytes removed. The
    /// segment's next offset becomes the base offset of the first batch removed.
    pub fn truncate_to(&self, offset: Offset) -> Result<u64> {
        let Some((position, prefix)) = self.find(offset)? else {
            return Ok(0);
        };
        let size = self.size();
        let mut indexes = self.indexes.lock();
        self.file
            .set_len(position)
            .map_err(|e| Error::io("truncate segment", &self.log_path, e))?;
        indexes.offset.truncate_to_position(FilePosition(position));
        if let Some(relative) = prefix.base_offset().relative_to(self.base_offset) {
            indexes.time.truncate_to(relative);
        }
        self.size.store(position, Ordering::Release);
        self.next_offset
            .store(prefix.base_offset().0, Ordering::Release);
        indexes.preallocated_to = position;
        drop(indexes);
        // The largest timestamp and the index tally must describe what is left.
        self.max_timestamp.store(NO_TIMESTAMP, Ordering::Release);
        if position == 0 {
            self.first_timestamp.store(NO_TIMESTAMP, Ordering::Release);
        }
        self.reload_after_truncate()?;
        Ok(size - position)
    }

    fn reload_after_truncate(&self) -> Result<()> {
        {
            let mut indexes = self.indexes.lock();
            let max = indexes.time.last();
            self.max_timestamp
                .store(max.map_or(NO_TIMESTAMP, |(t, _)| t), Ordering::Release);
            indexes.offset_of_max_timestamp =
                max.map_or(self.base_offset, |(_, r)| r.absolute(self.base_offset));
        }
        self.load_tail()
    }

    /// Where leader epochs start in this segment: `(epoch, base offset)` of each batch whose
    /// epoch is greater than every earlier one's. Reads and validates every batch, and stops
    /// at the first invalid one (reads report that damage): for rebuilding a lost
    /// leader-epoch cache, not for the common path.
    pub fn leader_epoch_starts(&self) -> Result<Vec<(LeaderEpoch, Offset)>> {
        let mut starts: Vec<(LeaderEpoch, Offset)> = Vec::new();
        let mut scanner = Scanner::new(&self.file, &self.log_path, 0, self.size(), true);
        while let Some(scanned) = scanner.next() {
            let scanned = match scanned {
                Ok(scanned) => scanned,
                Err(ScanStop::Invalid { .. }) => break,
                Err(ScanStop::Io(error)) => return Err(error),
            };
            let bytes = scanner.batch_bytes(scanned.position, scanned.prefix.batch_size);
            let Ok(header) = BatchHeader::parse(bytes) else {
                break;
            };
            if starts
                .last()
                .is_none_or(|(e, _)| header.leader_epoch() > *e)
            {
                starts.push((header.leader_epoch(), header.base_offset()));
            }
        }
        Ok(starts)
    }

    /// Writes the segment's data and indexes to disk.
    pub fn flush(&self) -> Result<()> {
        fsio::sync_data(&self.file, &self.log_path)?;
        let indexes = self.indexes.lock();
        indexes.offset.flush()?;
        indexes.time.flush()
    }

    /// Makes the log data durable (indexes are derived and rebuilt after a crash).
    pub fn sync_data(&self) -> Result<()> {
        fsio::sync_data(&self.file, &self.log_path)
    }

    /// Closes the segment for writing: records its largest timestamp in the time index,
    /// releases unused preallocated space, and trims the indexes (synced) to read-only
    /// mappings. The data is not synced here: the flusher or group commit does that.
    pub fn seal(&self) -> Result<()> {
        let mut indexes = self.indexes.lock();
        let max_ts = self.max_timestamp();
        if max_ts != NO_TIMESTAMP {
            if let Some(relative) = indexes
                .offset_of_max_timestamp
                .relative_to(self.base_offset)
            {
                indexes.time.reserve(0)?;
                indexes.time.maybe_append(max_ts, relative);
            }
        }
        self.release_preallocation(&mut indexes)?;
        indexes.offset.trim()?;
        indexes.time.trim()
        // The data is synced by the flusher (or the group commit), not here: a roll must not
        // stall appends for the time it takes to write back a whole segment.
    }

    fn release_preallocation(&self, indexes: &mut Indexes) -> Result<()> {
        let size = self.size();
        if indexes.preallocated_to > size {
            fsio::release_after(&self.file, size, indexes.preallocated_to - size)
                .map_err(|e| Error::io("release preallocated space", &self.log_path, e))?;
            indexes.preallocated_to = size;
        }
        Ok(())
    }

    /// Deletes the index files (readers that mapped them keep their copy until they let go).
    pub fn delete_indexes(&self) -> Result<()> {
        remove_if_exists(&self.index_path)?;
        remove_if_exists(&self.time_index_path)
    }

    /// Deletes the segment's files.
    pub fn delete(&self) -> Result<()> {
        for path in [&self.log_path, &self.index_path, &self.time_index_path] {
            remove_if_exists(path)?;
        }
        Ok(())
    }

    /// Checks every batch in the file, up to its length (not just the committed size): CRC,
    /// offsets in order; then the indexes against the batches found. Index entries past the
    /// first damaged batch are not judged (the damage explains them).
    ///
    /// `to_file_end: false` stops at the committed size instead: for the active segment of a
    /// log another process is appending to, where bytes past it may be a batch in flight.
    pub fn verify(&self, to_file_end: bool) -> SegmentCheck {
        let mut check = SegmentCheck::default();
        let file_len = if to_file_end {
            self.file_len()
        } else {
            Ok(self.size())
        };
        let end = match file_len {
            Ok(len) => len,
            Err(error) => {
                check
                    .damage
                    .push(self.damage(0, self.base_offset, error.to_string()));
                return check;
            }
        };
        let mut next = self.base_offset;
        let mut good_end = 0;
        let mut positions = Vec::new();
        let mut scanner = Scanner::new(&self.file, &self.log_path, 0, end, true);
        for scanned in scanner.by_ref() {
            let reason = match scanned {
                Ok(scanned) if scanned.prefix.base_offset() == next => {
                    positions.push((scanned.prefix.base_offset(), scanned.position));
                    next = scanned.prefix.last_offset().plus(1);
                    good_end = scanned.position + scanned.prefix.batch_size as u64;
                    check.batches += 1;
                    check.records += scanned.prefix.records_count.max(0) as u64;
                    continue;
                }
                Ok(scanned) => format!(
                    "batch has base offset {}, expected {next}",
                    scanned.prefix.base_offset
                ),
                Err(ScanStop::Invalid { reason, .. }) => reason.to_string(),
                Err(ScanStop::Io(error)) => error.to_string(),
            };
            check.damage.push(self.damage(good_end, next, reason));
            break;
        }
        check.bytes = good_end;
        check.next_offset = next;
        let indexes = self.indexes.lock();
        for i in 0..indexes.offset.len() {
            let (relative, position) = indexes.offset.entry(i);
            if position.0 >= good_end && !check.damage.is_empty() {
                break;
            }
            let offset = relative.absolute(self.base_offset);
            if positions.binary_search(&(offset, position.0)).is_err() {
                check.damage.push(Damage {
                    path: self.index_path.clone(),
                    position: position.0,
                    offset,
                    reason: format!("entry {i} points to no batch starting at offset {offset}"),
                });
                break;
            }
        }
        let limit = if check.damage.is_empty() {
            Some(next)
        } else {
            None
        };
        if let Err(error) = indexes
            .time
            .check(limit.and_then(|n| n.relative_to(self.base_offset)))
        {
            check.damage.push(Damage {
                path: self.time_index_path.clone(),
                position: 0,
                offset: self.base_offset,
                reason: error.to_string(),
            });
        }
        check
    }

    fn damage(&self, position: u64, offset: Offset, reason: String) -> Damage {
        Damage {
            path: self.log_path.clone(),
            position,
            offset,
            reason,
        }
    }

    fn out_of_order(&self, position: u64, found: Offset, expected: Offset) -> Error {
        self.corrupt(
            position,
            BatchError::OffsetOutOfOrder {
                found: found.0 as i64,
                expected: expected.0,
            },
        )
    }

    fn corrupt(&self, position: u64, reason: BatchError) -> Error {
        Error::SegmentCorrupt {
            path: self.log_path.clone(),
            position,
            reason,
        }
    }

    fn stop_error(&self, stop: ScanStop) -> Error {
        match stop {
            ScanStop::Invalid { position, reason } => self.corrupt(position, reason),
            ScanStop::Io(error) => error,
        }
    }
}

/// Why a segment's index files cannot be trusted as they are, judged by their lengths: a
/// seal and a crash both leave whole entries, so a missing file or a partial entry means
/// the file was damaged or deleted. Its entries may be gone, and with them the largest
/// timestamp that timestamp lookups and retention rely on, so the indexes are rebuilt.
fn index_file_damage(dir: &Path, base_offset: Offset) -> Option<(PathBuf, &'static str)> {
    for (suffix, entry_bytes) in [
        (INDEX_SUFFIX, OFFSET_ENTRY_BYTES),
        (TIME_INDEX_SUFFIX, TIME_ENTRY_BYTES),
    ] {
        let path = dir.join(file_name(base_offset, suffix));
        match fs::metadata(&path) {
            Ok(metadata) if metadata.len() % entry_bytes as u64 == 0 => {}
            Ok(_) => return Some((path, "the file holds a partial entry")),
            Err(_) => return Some((path, "the file is missing")),
        }
    }
    None
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}
