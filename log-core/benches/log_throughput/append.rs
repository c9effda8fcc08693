//! Append scenarios: one partition log under a [`LogManager`] (so the `Interval` policy's
//! flusher and the `Os` policy's background sync of rolled segments run as in a broker), fed
//! by one or more writer threads until a byte budget or a time budget runs out. The clock
//! stops after a final `flush`, so every scenario ends with its bytes on disk, as fio's
//! `--end_fsync=1` does.
//!
//! Batches are pre-built (a broker receives finished batches from producers), cycling through
//! a pool larger than the CPU caches; `build+append` scenarios build each batch inline instead,
//! and `build` scenarios only build, so the cost of making batches is measured apart.

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use log_core::{
    Compression, FlushPolicy, LeaderEpoch, LogConfig, LogManager, ManagerConfig, PartitionLog,
};

use crate::machine;
use crate::report::{self, Latency, Measurement};
use crate::workload::{self, Built, RecordPool};
use crate::BenchResult;

/// The `Interval` policy's period in these scenarios.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
const TOPIC: &str = "bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Os,
    Interval,
    EveryWrite,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::Os, Policy::Interval, Policy::EveryWrite];

    fn flush(self) -> FlushPolicy {
        match self {
            Policy::Os => FlushPolicy::Os,
            Policy::Interval => FlushPolicy::Interval(FLUSH_INTERVAL),
            Policy::EveryWrite => FlushPolicy::EveryWrite,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Policy::Os => "os",
            Policy::Interval => "interval-1s",
            Policy::EveryWrite => "every-write",
        }
    }

    /// The fio job whose bandwidth bounds this policy.
    fn limit(self) -> &'static str {
        match self {
            Policy::Os | Policy::Interval => "fio/write_prealloc",
            Policy::EveryWrite => "fio/write_fdatasync",
        }
    }
}

pub fn codec_name(codec: Compression) -> &'static str {
    match codec {
        Compression::None => "none",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

pub fn size_name(batch_bytes: usize) -> String {
    if batch_bytes >= 1 << 20 {
        format!("{}MiB", batch_bytes >> 20)
    } else {
        format!("{}KiB", batch_bytes >> 10)
    }
}

/// One append scenario.
#[derive(Debug, Clone, Copy)]
pub struct AppendSpec {
    pub batch_bytes: usize,
    pub policy: Policy,
    pub codec: Compression,
    pub writers: usize,
    /// Build each batch inline instead of cycling through pre-built ones.
    pub build_inline: bool,
}

impl AppendSpec {
    pub fn name(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}w",
            if self.build_inline {
                "build+append"
            } else {
                "append"
            },
            size_name(self.batch_bytes),
            self.policy.name(),
            codec_name(self.codec),
            self.writers
        )
    }
}

/// When a scenario stops: after this many logical (uncompressed) bytes or this much time.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub logical_bytes: u64,
    pub time: Duration,
}

/// What one writer thread did.
struct Tally {
    records: u64,
    logical_bytes: u64,
    stored_bytes: u64,
    latency: Histogram<u64>,
    /// The writer thread's CPU time (user and system) over its loop.
    cpu_seconds: f64,
}

/// Where a writer's batches come from.
enum Source<'a> {
    Prebuilt(Vec<Built>),
    Inline {
        pool: &'a RecordPool,
        next_record: usize,
    },
}

pub fn run(
    spec: &AppendSpec,
    budget: Budget,
    pool_bytes: usize,
    records: &RecordPool,
    dir: &Path,
) -> BenchResult<Measurement> {
    let mut sources: Vec<Source> = (0..spec.writers)
        .map(|writer| {
            if spec.build_inline {
                Source::Inline {
                    pool: records,
                    next_record: writer * 1_000_000,
                }
            } else {
                let per_writer = pool_bytes / spec.writers;
                Source::Prebuilt(workload::prebuilt(
                    records,
                    spec.codec,
                    spec.batch_bytes,
                    per_writer,
                    writer,
                ))
            }
        })
        .collect();
    let config = ManagerConfig {
        default_log: LogConfig {
            flush: spec.policy.flush(),
            ..LogConfig::default()
        },
        ..ManagerConfig::default()
    };
    let manager = LogManager::open(dir, config)?;
    let log = manager.create(TOPIC, 0, None)?;
    let claimed = AtomicU64::new(0);
    let started = Instant::now();
    let tallies: Vec<BenchResult<Tally>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter_mut()
            .map(|source| {
                let (log, claimed) = (&log, &claimed);
                scope.spawn(move || write(log, spec, source, claimed, budget, started))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread panicked"))
            .collect()
    });
    let appended = started.elapsed();
    log.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    let segments = log.stats().segments;
    drop(log);
    manager.delete(TOPIC, 0)?;
    manager.close()?;

    let mut m = Measurement::new(
        spec.name(),
        if spec.build_inline {
            "build+append"
        } else {
            "append"
        },
    );
    let mut latency = report::new_histogram();
    let mut writer_cpu_seconds = 0.0;
    for tally in tallies {
        let tally = tally?;
        writer_cpu_seconds += tally.cpu_seconds;
        m.records += tally.records;
        m.logical_bytes += tally.logical_bytes;
        m.stored_bytes += tally.stored_bytes;
        latency
            .add(&tally.latency)
            .expect("histograms share bounds");
    }
    m.seconds = seconds;
    m.latency = Latency::from_histogram(&latency);
    m.limit = Some(spec.policy.limit().into());
    m.detail("append_seconds", report::round(appended.as_secs_f64(), 4));
    m.detail(
        "final_flush_seconds",
        report::round(seconds - appended.as_secs_f64(), 4),
    );
    m.detail("writer_cpu_seconds", report::round(writer_cpu_seconds, 4));
    m.detail("batch_bytes", spec.batch_bytes as u64);
    m.detail("policy", spec.policy.name());
    m.detail("codec", codec_name(spec.codec));
    m.detail("writers", spec.writers as u64);
    m.detail("segments", segments as u64);
    if spec.codec != Compression::None {
        m.detail(
            "compression_ratio",
            report::round(m.logical_bytes as f64 / m.stored_bytes.max(1) as f64, 2),
        );
    }
    Ok(m)
}

fn write(
    log: &PartitionLog,
    spec: &AppendSpec,
    source: &mut Source,
    claimed: &AtomicU64,
    budget: Budget,
    started: Instant,
) -> BenchResult<Tally> {
    let mut tally = Tally {
        records: 0,
        logical_bytes: 0,
        stored_bytes: 0,
        latency: report::new_histogram(),
        cpu_seconds: 0.0,
    };
    let cpu_before = machine::thread_cpu_seconds();
    let mut turn = 0usize;
    while started.elapsed() < budget.time {
        let mut inline;
        let batch = match &mut *source {
            Source::Prebuilt(batches) => {
                let count = batches.len();
                &mut batches[turn % count]
            }
            Source::Inline { pool, next_record } => {
                inline = workload::build_batch(pool, spec.codec, spec.batch_bytes, *next_record);
                *next_record += inline.records as usize;
                &mut inline
            }
        };
        if claimed.fetch_add(batch.logical_bytes, Ordering::Relaxed) >= budget.logical_bytes {
            break;
        }
        let before = Instant::now();
        log.append_as_leader(&mut batch.bytes, LeaderEpoch(1))?;
        report::record(&mut tally.latency, before.elapsed());
        tally.records += batch.records;
        tally.logical_bytes += batch.logical_bytes;
        tally.stored_bytes += batch.bytes.len() as u64;
        turn += 1;
    }
    tally.cpu_seconds = machine::thread_cpu_seconds() - cpu_before;
    Ok(tally)
}

/// Builds batches only, in memory: the producer-side cost of a record, with compression.
pub fn build_only(
    batch_bytes: usize,
    codec: Compression,
    budget: Budget,
    records: &RecordPool,
) -> Measurement {
    let started = Instant::now();
    let mut m = Measurement::new(
        format!("build/{}/{}", size_name(batch_bytes), codec_name(codec)),
        "build",
    );
    let mut next_record = 0;
    while m.logical_bytes < budget.logical_bytes && started.elapsed() < budget.time {
        let built = black_box(workload::build_batch(
            records,
            codec,
            batch_bytes,
            next_record,
        ));
        next_record += built.records as usize;
        m.records += built.records;
        m.logical_bytes += built.logical_bytes;
        m.stored_bytes += built.bytes.len() as u64;
    }
    m.seconds = started.elapsed().as_secs_f64();
    m.detail("batch_bytes", batch_bytes as u64);
    m.detail("codec", codec_name(codec));
    if codec != Compression::None {
        m.detail(
            "compression_ratio",
            report::round(m.logical_bytes as f64 / m.stored_bytes.max(1) as f64, 2),
        );
    }
    m
}
