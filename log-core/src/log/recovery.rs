//! Opening a partition log: list its segments, then either trust what a clean shutdown left
//! or recover after an unclean stop.
//!
//! After a clean shutdown (marker present) only cheap checks run: each index's entries are
//! checked for order and bounds (a damaged index is rebuilt) and the active segment's tail is
//! walked from its last index entry. After an unclean stop, every segment from the one holding
//! the checkpointed recovery point onward is scanned: each batch's bounds, CRC and offset
//! continuity are checked, the indexes are rebuilt, the first invalid batch and everything
//! after it are cut, and any later segment is deleted. Either way the marker is removed
//! durably before the log accepts appends, so a crash later is never mistaken for a clean stop.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::checkpoint::{self, Checkpoint};
use super::epoch_cache::{LeaderEpochCache, EPOCH_CACHE_FILE};
use super::group_commit::GroupCommit;
use super::{LogConfig, PartitionLog, WriterState};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::fsio::{self, DirLock};
use crate::segment::{self, Access, Segment, LOG_SUFFIX};
use crate::types::Offset;

/// Suffixes of files left behind by an interrupted write or delete.
const STRAY_SUFFIXES: [&str; 4] = [".tmp", ".deleted", ".cleaned", ".swap"];

impl PartitionLog {
    /// Opens the log in `dir`, creating it if needed and recovering it if it was not closed
    /// cleanly. Takes an exclusive lock on the directory.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<PartitionLog> {
        Self::open_with_clock(dir, config, Arc::new(SystemClock))
    }

    pub fn open_with_clock(
        dir: impl AsRef<Path>,
        config: LogConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<PartitionLog> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let created = !dir.exists();
        fs::create_dir_all(&dir).map_err(|e| Error::io("create log directory", &dir, e))?;
        if created {
            // The directory entry must be durable before anything in it is acknowledged.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsio::sync_dir(parent)?;
            }
        }
        let lock = DirLock::acquire(&dir)?;
        remove_stray_files(&dir)?;
        let clean = checkpoint::take_clean_shutdown_marker(&dir)?;
        let checkpoint = match Checkpoint::read(&dir) {
            Ok(checkpoint) => checkpoint,
            Err(error) => {
                tracing::warn!(%error, "ignoring damaged checkpoint: full recovery");
                None
            }
        };
        let clean = clean && checkpoint.is_some();
        let checkpoint = checkpoint.unwrap_or_default();
        let bases = list_segments(&dir, true)?;
        let segment_config = config.segment_config();
        let segments = if bases.is_empty() {
            let segment = Segment::create(&dir, checkpoint.log_start, segment_config)?;
            fsio::sync_dir(&dir)?;
            vec![segment]
        } else if clean {
            open_clean(&dir, &bases, &config)?
        } else {
            recover_unclean(&dir, &bases, &config, checkpoint.recovery_point)?
        };
        let first_base = segments[0].base_offset();
        let log_end = segments.last().expect("at least one segment").next_offset();
        let log_start = checkpoint.log_start.clamp(first_base, log_end);
        let high_watermark = checkpoint.high_watermark.clamp(log_start, log_end);
        let epochs = load_epochs(&dir, &segments, log_start, log_end)?;
        let now = clock.now_ms();
        let map: BTreeMap<Offset, Arc<Segment>> = segments
            .into_iter()
            .map(|s| (s.base_offset(), Arc::new(s)))
            .collect();
        let log = PartitionLog {
            dir,
            config,
            clock,
            lock: Mutex::new(Some(lock)),
            read_only: false,
            writer: Mutex::new(WriterState {
                active_created_ms: now,
                epochs,
            }),
            segments: RwLock::new(map),
            log_start: AtomicU64::new(log_start.0),
            log_end: AtomicU64::new(log_end.0),
            high_watermark: AtomicU64::new(high_watermark.0),
            recovery_point: AtomicU64::new(log_end.0),
            last_flush_ms: AtomicU64::new(now.max(0) as u64),
            checkpoint_lock: Mutex::new(()),
            group_commit: GroupCommit::new(log_end),
            poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        };
        // Everything recovered is now synced: record it so the next recovery starts here.
        log.write_checkpoint()?;
        tracing::debug!(
            dir = %log.dir.display(), clean, log_start = log_start.0, log_end = log_end.0,
            "opened log"
        );
        Ok(log)
    }
}

/// Opens segments after a clean shutdown. All but the last are sealed; a damaged index is
/// rebuilt.
fn open_clean(dir: &Path, bases: &[Offset], config: &LogConfig) -> Result<Vec<Segment>> {
    let segment_config = config.segment_config();
    let (active_base, sealed) = bases.split_last().expect("open_clean needs a segment");
    let mut segments = Vec::with_capacity(bases.len());
    for (i, base) in sealed.iter().enumerate() {
        segments.push(open_sealed(dir, *base, bases[i + 1], config)?);
    }
    let active = Segment::open(dir, *active_base, segment_config, Access::Write)?;
    if let Err(error) = active.load_tail() {
        tracing::warn!(%error, "active segment's tail is damaged: recovering it");
        return recover_unclean(dir, bases, config, *active_base);
    }
    if let Err(error) = active.check_indexes() {
        tracing::warn!(%error, "rebuilding the active segment's index");
        active.recover()?;
    }
    segments.push(active);
    Ok(segments)
}

/// Opens a sealed segment that ends where the next one (at `next`) starts. Indexes that fail
/// their checks are rebuilt from the data, which is never cut: later segments follow it.
fn open_sealed(dir: &Path, base: Offset, next: Offset, config: &LogConfig) -> Result<Segment> {
    let segment_config = config.segment_config();
    let segment = Segment::open(dir, base, segment_config, Access::Read)?;
    segment.set_sealed_next_offset(next);
    let Err(error) = segment.check_indexes() else {
        return Ok(segment);
    };
    tracing::warn!(%error, "rebuilding a sealed segment's index");
    drop(segment);
    let repaired = Segment::open(dir, base, segment_config, Access::Write)?;
    repaired.rebuild_indexes()?;
    repaired.seal()?;
    repaired.set_sealed_next_offset(next);
    Ok(repaired)
}

/// Recovers after an unclean stop: segments below the one holding `recovery_point` are
/// trusted (their indexes checked), the rest are scanned and repaired.
fn recover_unclean(
    dir: &Path,
    bases: &[Offset],
    config: &LogConfig,
    recovery_point: Offset,
) -> Result<Vec<Segment>> {
    let segment_config = config.segment_config();
    let first_unflushed = bases
        .iter()
        .rposition(|base| *base <= recovery_point)
        .unwrap_or(0);
    let mut segments = Vec::with_capacity(bases.len());
    for (i, base) in bases[..first_unflushed].iter().enumerate() {
        segments.push(open_sealed(dir, *base, bases[i + 1], config)?);
    }
    let unflushed = &bases[first_unflushed..];
    let mut expected = (first_unflushed > 0).then(|| unflushed[0]);
    let mut dropping = false;
    for (i, base) in unflushed.iter().enumerate() {
        if dropping || expected.is_some_and(|e| e != *base) {
            tracing::warn!(base = base.0, expected = ?expected, "deleting segment after the log's recovered end");
            Segment::open(dir, *base, segment_config, Access::Write)?.delete()?;
            dropping = true;
            continue;
        }
        let segment = Segment::open(dir, *base, segment_config, Access::Write)?;
        let outcome = segment.recover()?;
        if outcome.truncated_bytes > 0 {
            let reason = outcome
                .stopped_at
                .as_ref()
                .map(|(p, r)| format!("at position {p}: {r}"));
            tracing::warn!(
                segment = %segment.path().display(),
                truncated_bytes = outcome.truncated_bytes,
                next_offset = outcome.next_offset.0,
                reason = reason.as_deref().unwrap_or(""),
                "recovery cut an invalid tail"
            );
            dropping = true;
        }
        segment.sync_data()?;
        let next = segment.next_offset();
        expected = Some(next);
        if !(dropping || i + 1 == unflushed.len()) {
            // Followed by another segment: sealing leaves its indexes mapped read-only.
            segment.seal()?;
        }
        segments.push(segment);
    }
    if segments.is_empty() {
        let base = bases[0];
        segments.push(Segment::create(dir, base, segment_config)?);
    }
    let last = segments.len() - 1;
    if !segments[last].is_writable() {
        let base = segments[last].base_offset();
        let segment = Segment::open(dir, base, segment_config, Access::Write)?;
        segment.load_tail()?;
        segments[last] = segment;
    }
    fsio::sync_dir(dir)?;
    Ok(segments)
}

pub(super) fn load_epochs(
    dir: &Path,
    segments: &[Segment],
    log_start: Offset,
    log_end: Offset,
) -> Result<LeaderEpochCache> {
    // Replication truncates by this cache, so a lost one is rebuilt from the epochs the
    // batches carry rather than started empty. A missing file counts as lost (a new log has
    // nothing to scan); the rebuilt cache is written, so the scan runs once.
    let missing = !dir.join(EPOCH_CACHE_FILE).exists();
    let loaded = match LeaderEpochCache::load(dir) {
        Ok(epochs) if !missing => Some(epochs),
        Ok(_) => None,
        Err(error) => {
            tracing::warn!(%error, "leader-epoch cache is damaged: rebuilding it from the batches");
            None
        }
    };
    let rebuilt = loaded.is_none();
    let mut epochs = match loaded {
        Some(epochs) => epochs,
        None => {
            let mut epochs = LeaderEpochCache::empty(dir);
            for segment in segments {
                for (epoch, start) in segment.leader_epoch_starts()? {
                    epochs.assign(epoch, start);
                }
            }
            epochs
        }
    };
    let changed = epochs.truncate_from_end(log_end) | epochs.truncate_from_start(log_start);
    if changed || rebuilt {
        epochs.persist()?;
    }
    Ok(epochs)
}

/// Segment base offsets in order, from the `.log` files in `dir`. Index files without a log
/// are removed when `remove_orphans` (never for a log another process writes).
pub(super) fn list_segments(dir: &Path, remove_orphans: bool) -> Result<Vec<Offset>> {
    let mut bases = Vec::new();
    let mut orphans: Vec<PathBuf> = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list log directory", dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list log directory", dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    for name in &names {
        if let Some(base) = segment::parse_file_name(name, LOG_SUFFIX) {
            bases.push(base);
        }
    }
    for name in &names {
        for suffix in [segment::INDEX_SUFFIX, segment::TIME_INDEX_SUFFIX] {
            if let Some(base) = segment::parse_file_name(name, suffix) {
                if !bases.contains(&base) {
                    orphans.push(dir.join(name));
                }
            }
        }
    }
    for orphan in orphans.iter().filter(|_| remove_orphans) {
        fs::remove_file(orphan).map_err(|e| Error::io("remove orphan index", orphan, e))?;
    }
    bases.sort();
    Ok(bases)
}

fn remove_stray_files(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list log directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list log directory", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if STRAY_SUFFIXES.iter().any(|suffix| name.ends_with(suffix)) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| Error::io("remove stray file", &path, e))?;
        }
    }
    Ok(())
}
