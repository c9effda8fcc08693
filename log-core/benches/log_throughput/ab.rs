//! A/B scenarios: the log and a raw file written by one thread in alternating chunks, so both
//! see the same page-cache, memory and disk conditions. On this virtual machine the cost of a
//! page-cache write swings several-fold from minute to minute (see docs/BENCHMARKS.md), which
//! makes "log vs a fio run a minute earlier" noisy; interleaving cancels that out and leaves
//! what log-core itself adds over `pwrite` (validation, offsets, indexes, rolls, group commit).
//!
//! The raw side preallocates its whole file (as fio's `--fallocate=native`) and writes blocks
//! of the batch size with `pwrite`, followed by `fdatasync` for the `EveryWrite` pair. The log
//! side appends pre-built uncompressed batches of the same size. Only the write phases are
//! timed against each other; the final sync of each side is reported apart, since whichever
//! syncs first also pays for writing back the other's pages.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use log_core::{Compression, FlushPolicy, LeaderEpoch, LogConfig, LogManager, ManagerConfig};

use crate::append::{size_name, Budget};
use crate::report::{self, Latency, Measurement};
use crate::workload::{self, RecordPool};
use crate::BenchResult;

const TOPIC: &str = "ab";

#[derive(Debug, Clone, Copy)]
pub struct AbSpec {
    pub batch_bytes: usize,
    /// `Os` or `EveryWrite`: whether the raw side syncs each block.
    pub every_write: bool,
    /// Bytes each side writes before handing over to the other.
    pub chunk_bytes: u64,
}

impl AbSpec {
    pub fn name(&self) -> String {
        let policy = if self.every_write {
            "every-write"
        } else {
            "os"
        };
        format!("ab/{}/{policy}", size_name(self.batch_bytes))
    }
}

struct Side {
    written: u64,
    time: Duration,
    latency: hdrhistogram::Histogram<u64>,
}

impl Side {
    fn new() -> Side {
        Side {
            written: 0,
            time: Duration::ZERO,
            latency: report::new_histogram(),
        }
    }

    fn measurement(&self, name: String, final_sync: Duration, records: u64) -> Measurement {
        let mut m = Measurement::new(name, "ab");
        m.seconds = self.time.as_secs_f64();
        m.stored_bytes = self.written;
        m.logical_bytes = self.written;
        m.records = records;
        m.latency = Latency::from_histogram(&self.latency);
        m.detail(
            "final_sync_seconds",
            report::round(final_sync.as_secs_f64(), 4),
        );
        m
    }
}

/// Runs one A/B pair; `budget.logical_bytes` is what each side writes.
pub fn run(
    spec: &AbSpec,
    budget: Budget,
    pool_bytes: usize,
    records: &RecordPool,
    dir: &Path,
) -> BenchResult<Vec<Measurement>> {
    std::fs::create_dir_all(dir)?;
    let mut batches =
        workload::prebuilt(records, Compression::None, spec.batch_bytes, pool_bytes, 0);
    let block = batches[0].bytes.to_vec();
    let raw_path = dir.join("raw.dat");
    let raw = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&raw_path)?;
    // SAFETY: fallocate takes a descriptor we own and no memory.
    if unsafe {
        libc::fallocate(
            raw.as_raw_fd(),
            0,
            0,
            libc::off_t::try_from(budget.logical_bytes)?,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error().into());
    }
    let flush = if spec.every_write {
        FlushPolicy::EveryWrite
    } else {
        FlushPolicy::Os
    };
    let config = ManagerConfig {
        default_log: LogConfig {
            flush,
            ..LogConfig::default()
        },
        ..ManagerConfig::default()
    };
    let manager = LogManager::open(dir.join("log"), config)?;
    let log = manager.create(TOPIC, 0, None)?;
    let (mut raw_side, mut log_side) = (Side::new(), Side::new());
    let mut log_records = 0u64;
    let mut turn = 0usize;
    let started = Instant::now();
    let block_len = block.len() as u64;
    while raw_side.written + block_len <= budget.logical_bytes && started.elapsed() < budget.time {
        let chunk_end = raw_side.written + spec.chunk_bytes;
        while raw_side.written < chunk_end && raw_side.written + block_len <= budget.logical_bytes {
            let before = Instant::now();
            raw.write_all_at(&block, raw_side.written)?;
            if spec.every_write {
                raw.sync_data()?;
            }
            let elapsed = before.elapsed();
            report::record(&mut raw_side.latency, elapsed);
            raw_side.time += elapsed;
            raw_side.written += block_len;
        }
        while log_side.written < raw_side.written {
            let count = batches.len();
            let batch = &mut batches[turn % count];
            turn += 1;
            let before = Instant::now();
            log.append_as_leader(&mut batch.bytes, LeaderEpoch(1))?;
            let elapsed = before.elapsed();
            report::record(&mut log_side.latency, elapsed);
            log_side.time += elapsed;
            log_side.written += batch.bytes.len() as u64;
            log_records += batch.records;
        }
    }
    let before = Instant::now();
    raw.sync_all()?;
    let raw_sync = before.elapsed();
    let before = Instant::now();
    log.flush()?;
    let log_sync = before.elapsed();
    drop(log);
    manager.delete(TOPIC, 0)?;
    manager.close()?;
    drop(raw);
    std::fs::remove_file(&raw_path)?;

    let raw_name = format!("{}/raw", spec.name());
    let raw_m = raw_side.measurement(raw_name.clone(), raw_sync, 0);
    let mut log_m = log_side.measurement(format!("{}/log", spec.name()), log_sync, log_records);
    log_m.limit = Some(raw_name);
    log_m.detail("batch_bytes", spec.batch_bytes as u64);
    log_m.detail("chunk_bytes", spec.chunk_bytes);
    Ok(vec![raw_m, log_m])
}
