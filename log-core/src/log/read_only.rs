//! Opening a log to read while another process may be appending to it (a `tail -f` reader,
//! `runnel log stats` and `verify` on a live log).
//!
//! A read-only log takes no lock, runs no recovery and writes nothing. It sees only whole,
//! valid batches: the active segment is walked from its last plausible index entry and the
//! committed end stops before a batch still being written (or a torn tail, which the writer's
//! next recovery will cut). [`PartitionLog::refresh`] picks up what was appended since.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::checkpoint::Checkpoint;
use super::epoch_cache::LeaderEpochCache;
use super::group_commit::GroupCommit;
use super::recovery::list_segments;
use super::{LogConfig, PartitionLog, WriterState};
use crate::clock::SystemClock;
use crate::error::{Error, Result};
use crate::segment::{Access, Segment};
use crate::types::Offset;

impl PartitionLog {
    /// Opens the log in `dir` for reading only. Fails if `dir` holds no segment.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<PartitionLog> {
        let dir = dir.as_ref().to_path_buf();
        let config = LogConfig::default();
        let bases = list_segments(&dir, false)?;
        if bases.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{} holds no log segments",
                dir.display()
            )));
        }
        let log = PartitionLog {
            writer: Mutex::new(WriterState {
                active_created_ms: 0,
                epochs: LeaderEpochCache::load(&dir).unwrap_or_else(|error| {
                    tracing::warn!(%error, "ignoring the damaged leader-epoch cache");
                    LeaderEpochCache::empty(&dir)
                }),
            }),
            dir,
            config,
            clock: Arc::new(SystemClock),
            lock: Mutex::new(None),
            read_only: true,
            segments: RwLock::new(BTreeMap::new()),
            log_start: AtomicU64::new(0),
            log_end: AtomicU64::new(0),
            high_watermark: AtomicU64::new(0),
            recovery_point: AtomicU64::new(0),
            last_flush_ms: AtomicU64::new(0),
            checkpoint_lock: Mutex::new(()),
            group_commit: GroupCommit::new(Offset::ZERO),
            poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        };
        log.refresh()?;
        Ok(log)
    }

    /// For a log opened with [`PartitionLog::open_read_only`]: picks up batches and segments
    /// appended since the last look, and segments deleted by retention. No-op otherwise.
    pub fn refresh(&self) -> Result<()> {
        if !self.read_only {
            return Ok(());
        }
        let bases = list_segments(&self.dir, false)?;
        let segment_config = self.config.segment_config();
        let mut segments = self.segments.write();
        segments.retain(|base, _| bases.binary_search(base).is_ok());
        // Only the segment that was last can have grown; earlier ones were sealed before.
        let last_known = segments.keys().next_back().copied();
        for (i, base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            match segments.get(base) {
                Some(segment) if Some(*base) == last_known => segment.catch_up()?,
                Some(_) => {}
                None => {
                    let segment =
                        match Segment::open(&self.dir, *base, segment_config, Access::Follow) {
                            Ok(segment) => segment,
                            // Deleted between listing and opening.
                            Err(Error::Io { cause, .. })
                                if cause.kind() == std::io::ErrorKind::NotFound =>
                            {
                                continue
                            }
                            Err(error) => return Err(error),
                        };
                    segment.reset_for_follow()?;
                    if next_base.is_some() && segment.check_indexes().is_err() {
                        segment.forget_index();
                    }
                    segments.insert(*base, Arc::new(segment));
                }
            }
        }
        let first_base = segments.keys().next().copied().unwrap_or_default();
        let log_end = segments
            .values()
            .last()
            .map_or(first_base, |s| s.next_offset());
        drop(segments);
        // The writer replaces the checkpoint atomically; a damaged one (which the writer's
        // next open reports) just means the log start comes from the segments.
        let checkpoint = Checkpoint::read(&self.dir)
            .ok()
            .flatten()
            .unwrap_or_default();
        let log_start = checkpoint.log_start.clamp(first_base, log_end);
        self.log_end.store(log_end.0, Ordering::Release);
        self.log_start.store(log_start.0, Ordering::Release);
        let high_watermark = checkpoint.high_watermark.clamp(log_start, log_end);
        self.high_watermark
            .store(high_watermark.0, Ordering::Release);
        self.recovery_point
            .store(checkpoint.recovery_point.min(log_end).0, Ordering::Release);
        Ok(())
    }
}
