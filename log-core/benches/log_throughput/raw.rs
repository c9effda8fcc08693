//! Raw-file baselines: fio's write jobs done in this process, with `pwrite` and the same
//! block size, right before the log scenarios they bound. fio's figures (from
//! `scripts/machine-limits`) are the yardstick; these say what a plain file gets in
//! the same minute, from the same memory state, so "the log costs X % over a file" does not
//! depend on how the machine drifted between fio and the bench (see docs/BENCHMARKS.md on why
//! this virtual machine drifts).

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use crate::append::{size_name, Budget};
use crate::report::{self, Measurement};
use crate::BenchResult;

/// How a raw baseline makes its bytes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawSync {
    /// Preallocate the whole file (fio `--fallocate=native`), write, fsync once at the end
    /// (`--end_fsync=1`).
    PreallocateEndFsync,
    /// Preallocate, `fdatasync` after every block (`--fdatasync=1`).
    FdatasyncEach,
}

impl RawSync {
    pub fn name(self, block_bytes: usize) -> String {
        match self {
            RawSync::PreallocateEndFsync => {
                format!("raw/{}/prealloc-end-fsync", size_name(block_bytes))
            }
            RawSync::FdatasyncEach => format!("raw/{}/fdatasync-each", size_name(block_bytes)),
        }
    }

    fn limit(self) -> &'static str {
        match self {
            RawSync::PreallocateEndFsync => "fio/write_prealloc",
            RawSync::FdatasyncEach => "fio/write_fdatasync",
        }
    }
}

pub fn write(
    sync: RawSync,
    block_bytes: usize,
    budget: Budget,
    dir: &Path,
) -> BenchResult<Measurement> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("raw.dat");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let block: Vec<u8> = (0..block_bytes).map(|i| (i * 13) as u8).collect();
    let mut latency = report::new_histogram();
    let started = Instant::now();
    let length = libc::off_t::try_from(budget.logical_bytes)?;
    // SAFETY: fallocate takes a descriptor we own and no memory. Mode 0 extends the file, as
    // fio's `--fallocate=native` does.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let mut written = 0u64;
    while written + block_bytes as u64 <= budget.logical_bytes && started.elapsed() < budget.time {
        let before = Instant::now();
        file.write_all_at(&block, written)?;
        if sync == RawSync::FdatasyncEach {
            file.sync_data()?;
        }
        report::record(&mut latency, before.elapsed());
        written += block_bytes as u64;
    }
    let appended = started.elapsed();
    file.sync_all()?;
    let mut m = Measurement::new(sync.name(block_bytes), "raw");
    m.seconds = started.elapsed().as_secs_f64();
    m.stored_bytes = written;
    m.latency = report::Latency::from_histogram(&latency);
    m.limit = Some(sync.limit().into());
    m.detail("append_seconds", report::round(appended.as_secs_f64(), 4));
    m.detail(
        "final_flush_seconds",
        report::round(m.seconds - appended.as_secs_f64(), 4),
    );
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(m)
}
