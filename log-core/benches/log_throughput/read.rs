//! Sequential reads and recovery.
//!
//! Reads: a log of pre-built batches is written and flushed, then read from its start to its
//! end with `PartitionLog::read`, [`READ_BYTES_MAX`] at a time (Kafka's per-partition fetch
//! default), first with the data in the page cache (warm: as written), then after evicting
//! the files from the page cache (cold: from the disk). Every read checks each batch's CRC, as
//! the log always does.
//!
//! Recovery: a log is written with the default (`Os`) policy and abandoned without a clean
//! close, as a killed process leaves it; `PartitionLog::open` is timed. Three states of the
//! page cache at the moment of the restart:
//! - `dirty`: right after a process crash, the data still dirty in the page cache; recovery
//!   scans it and its final fdatasync writes all of it back.
//! - `synced-warm`: the data already on disk and still cached: the scan alone (CRC + copy).
//! - `synced-cold`: the data on disk and evicted, as after a power cut: the scan reads the disk.

use std::path::Path;
use std::time::Instant;

use log_core::batch::BatchHeader;
use log_core::{Compression, LeaderEpoch, LogConfig, Offset, PartitionLog};

use crate::append::size_name;
use crate::machine;
use crate::report::Measurement;
use crate::workload::{self, RecordPool};
use crate::BenchResult;

/// Bytes asked for per read: Kafka's `max.partition.fetch.bytes` default.
pub const READ_BYTES_MAX: usize = 1 << 20;

/// Appends pre-built uncompressed batches of `batch_bytes` until the log holds `log_bytes`.
fn fill(
    log: &PartitionLog,
    batch_bytes: usize,
    log_bytes: u64,
    pool_bytes: usize,
    records: &RecordPool,
) -> BenchResult<u64> {
    let mut batches = workload::prebuilt(records, Compression::None, batch_bytes, pool_bytes, 0);
    let mut written = 0u64;
    let mut turn = 0;
    while written < log_bytes {
        let count = batches.len();
        let batch = &mut batches[turn % count];
        log.append_as_leader(&mut batch.bytes, LeaderEpoch(1))?;
        written += batch.bytes.len() as u64;
        turn += 1;
    }
    Ok(written)
}

/// Reads the whole log once; returns the bytes and records read.
fn read_pass(log: &PartitionLog) -> BenchResult<(u64, u64)> {
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    let mut next = start;
    let mut bytes = 0u64;
    while next < end {
        let records = log.read(next, READ_BYTES_MAX, end)?.records;
        if records.is_empty() {
            return Err(format!("read at {next} returned nothing before the log end {end}").into());
        }
        let mut at = 0;
        while at < records.len() {
            let prefix = BatchHeader::parse_prefix(&records[at..])?;
            next = prefix.last_offset().plus(1);
            at += prefix.batch_size;
        }
        bytes += records.len() as u64;
    }
    Ok((bytes, next.0 - start.0))
}

/// Which read scenarios to run for one log.
#[derive(Debug, Clone, Copy)]
pub struct ReadPlan {
    pub batch_bytes: usize,
    pub log_bytes: u64,
    pub warm_passes: u32,
    pub cold: bool,
}

pub fn reads(
    plan: ReadPlan,
    pool_bytes: usize,
    records: &RecordPool,
    dir: &Path,
) -> BenchResult<Vec<Measurement>> {
    let log = PartitionLog::open(dir, LogConfig::default())?;
    fill(&log, plan.batch_bytes, plan.log_bytes, pool_bytes, records)?;
    log.flush()?;
    let size = size_name(plan.batch_bytes);
    let mut results = Vec::new();
    let mut passes = vec![("warm", plan.warm_passes)];
    if plan.cold {
        passes.push(("cold", 1));
    }
    for (state, count) in passes {
        if state == "cold" {
            machine::evict_files(dir)?;
        }
        let mut m = Measurement::new(format!("read/{size}/{state}"), "read");
        let started = Instant::now();
        for _ in 0..count {
            let (bytes, offsets) = read_pass(&log)?;
            m.stored_bytes += bytes;
            m.logical_bytes += bytes;
            m.records += offsets;
        }
        m.seconds = started.elapsed().as_secs_f64();
        let limit = if state == "cold" {
            "fio/read_cold"
        } else {
            "limit/memcpy"
        };
        m.limit = Some(limit.into());
        m.detail("passes", count);
        m.detail("read_bytes_max", READ_BYTES_MAX as u64);
        m.detail("batch_bytes", plan.batch_bytes as u64);
        results.push(m);
    }
    log.close()?;
    Ok(results)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheState {
    Dirty,
    SyncedWarm,
    SyncedCold,
}

impl CacheState {
    pub const ALL: [CacheState; 3] = [
        CacheState::Dirty,
        CacheState::SyncedWarm,
        CacheState::SyncedCold,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CacheState::Dirty => "dirty",
            CacheState::SyncedWarm => "synced-warm",
            CacheState::SyncedCold => "synced-cold",
        }
    }

    fn limit(self) -> Option<&'static str> {
        match self {
            CacheState::Dirty => None,
            CacheState::SyncedWarm => Some("limit/memcpy"),
            CacheState::SyncedCold => Some("fio/read_cold"),
        }
    }
}

pub fn recovery_name(batch_bytes: usize, state: CacheState) -> String {
    format!("recovery/{}/{}", size_name(batch_bytes), state.name())
}

/// Writes `log_bytes`, abandons the log, prepares the page cache, and times the reopen.
pub fn recovery(
    batch_bytes: usize,
    state: CacheState,
    log_bytes: u64,
    pool_bytes: usize,
    records: &RecordPool,
    dir: &Path,
) -> BenchResult<Measurement> {
    let log = PartitionLog::open(dir, LogConfig::default())?;
    fill(&log, batch_bytes, log_bytes, pool_bytes, records)?;
    let end = log.log_end_offset();
    log.abandon();
    if state != CacheState::Dirty {
        machine::sync_files(dir)?;
    }
    if state == CacheState::SyncedCold {
        machine::evict_files(dir)?;
    }
    let segment_bytes = machine::bytes_of(dir, ".log")?;
    let started = Instant::now();
    let log = PartitionLog::open(dir, LogConfig::default())?;
    let seconds = started.elapsed().as_secs_f64();
    if log.log_end_offset() != end {
        return Err(format!(
            "recovery ended the log at {}, expected {end}",
            log.log_end_offset()
        )
        .into());
    }
    let stats = log.stats();
    log.close()?;
    let mut m = Measurement::new(recovery_name(batch_bytes, state), "recovery");
    m.seconds = seconds;
    m.stored_bytes = segment_bytes;
    m.logical_bytes = segment_bytes;
    m.records = end.0 - Offset::ZERO.0;
    m.limit = state.limit().map(String::from);
    m.detail("segments", stats.segments as u64);
    m.detail("batch_bytes", batch_bytes as u64);
    Ok(m)
}
