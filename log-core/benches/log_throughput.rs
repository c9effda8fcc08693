//! Throughput benchmarks of the partition log: appends, batch building, sequential reads and
//! recovery, each printed as a table row and a JSON line beside the machine's own limits.
//! docs/BENCHMARKS.md records a run and what it means.
//!
//! ```text
//! scripts/machine-limits                 # fio: disk write/read limits -> target/machine-limits.json
//! cargo bench -p log-core                # every scenario, about 3.5 minutes
//! cargo bench -p log-core --bench log_throughput -- --quick   # smaller budgets, under a minute
//! cargo bench -p log-core -- append/1MiB recovery/  # scenarios whose name contains a filter
//! cargo bench -p log-core -- --exact append/1MiB/os/none/1w  # only the scenario so named
//! ```
//!
//! Flags must go to this target alone (`--bench log_throughput`): the library's own bench
//! harness rejects `--quick`. `RUNNEL_BENCH_QUICK=1` does the same from any command line.
//!
//! Without `--bench` (which `cargo bench` passes, and `cargo test --all-targets` does not) the
//! binary runs [`SMOKE_SCENARIOS`] on a few MiB in a temporary directory: a smoke test of the
//! bench code that ends in about a second even unoptimised, and measures nothing.
//!
//! Environment: `RUNNEL_BENCH_DIR` (default `/var/tmp/runnel-bench`; fio's files go there too,
//! and it must not be tmpfs), `RUNNEL_LIMITS` (default `target/machine-limits.json`),
//! `RUNNEL_BENCH_JSON` (default `target/log-throughput.jsonl`). Figures are in decimal units
//! (1 MB = 10^6 bytes) like fio's; batch sizes in binary ones (16 KiB, 1 MiB).
//!
//! Every scenario works in its own directory, deleted (and `sync` called) before the next one
//! starts, so no scenario inherits another's dirty pages: the kernel throttles writers above
//! about 4.5 GiB of dirty pages on this machine, and no budget reaches that. Before each
//! scenario the memory it will write into is warmed ([`machine::warm_memory`]), because on this
//! project's virtual machines a write into memory the host has taken back costs several times
//! the copy itself.

#[path = "log_throughput/ab.rs"]
mod ab;
#[path = "log_throughput/append.rs"]
mod append;
#[path = "log_throughput/machine.rs"]
mod machine;
#[path = "log_throughput/raw.rs"]
mod raw;
#[path = "log_throughput/read.rs"]
mod read;
#[path = "log_throughput/report.rs"]
mod report;
#[path = "log_throughput/workload.rs"]
mod workload;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log_core::Compression;
use serde_json::json;

use ab::AbSpec;
use append::{AppendSpec, Budget, Policy};
use raw::RawSync;
use read::{CacheState, ReadPlan};
use report::{Limits, Measurement};
use workload::RecordPool;

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const GIB: u64 = 1 << 30;
const BATCH_SIZES: [usize; 2] = [16 * KIB, MIB];
const CODECS: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::Zstd];
/// Concurrent writers in the multi-writer `EveryWrite` scenarios.
const WRITERS_CONCURRENT: usize = 4;
const BENCH_DIR_DEFAULT: &str = "/var/tmp/runnel-bench";
/// Most memory warmed before one scenario: its largest write plus a margin, well below the
/// machine's 24 GiB; the scratch file is deleted before most of it is written back.
const WARM_BYTES_MAX: u64 = 5 * GIB;
const WARM_BYTES_MARGIN: u64 = GIB / 4;
/// What the smoke run (`cargo test`) exercises: one scenario of each kind and code path, so it
/// stays around a second in an unoptimised build.
const SMOKE_SCENARIOS: &[&str] = &[
    "limit/",
    "component/",
    "raw/16KiB",
    "ab/16KiB/os",
    "build/16KiB/lz4",
    "append/16KiB/os/none/1w",
    "append/16KiB/interval-1s/zstd/1w",
    "append/1MiB/every-write/none/4w",
    "build+append/16KiB",
    "read/1MiB",
    "recovery/1MiB/synced-cold",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `cargo test`: tiny budgets, a temporary directory.
    Smoke,
    Quick,
    Full,
}

/// How much each kind of scenario does.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// `Os` and `Interval` appends of 1 MiB batches (fio's limit writes 4 GiB too).
    append_large: Budget,
    /// `Os` and `Interval` appends of 16 KiB batches.
    append_small: Budget,
    every_write: Budget,
    build: Budget,
    /// Pre-built batches per scenario, shared among its writers: more than the caches hold.
    pool_bytes: usize,
    read_log_bytes: u64,
    recovery_log_bytes: u64,
    memcpy_buffer_bytes: usize,
    limit_time: Duration,
}

impl Sizes {
    fn of(mode: Mode) -> Sizes {
        let budget = |logical_bytes: u64, secs: f64| Budget {
            logical_bytes,
            time: Duration::from_secs_f64(secs),
        };
        match mode {
            Mode::Full => Sizes {
                append_large: budget(4 * GIB, 8.0),
                append_small: budget(2 * GIB, 6.0),
                every_write: budget(2 * GIB, 4.0),
                build: budget(2 * GIB, 3.0),
                pool_bytes: 32 * MIB,
                read_log_bytes: 2 * GIB,
                recovery_log_bytes: GIB,
                memcpy_buffer_bytes: 256 * MIB,
                limit_time: Duration::from_millis(1500),
            },
            Mode::Quick => Sizes {
                append_large: budget(GIB / 2, 1.5),
                append_small: budget(GIB / 4, 1.5),
                every_write: budget(GIB / 4, 1.0),
                build: budget(GIB / 4, 0.5),
                pool_bytes: 16 * MIB,
                read_log_bytes: GIB / 4,
                recovery_log_bytes: GIB / 4,
                memcpy_buffer_bytes: 64 * MIB,
                limit_time: Duration::from_millis(300),
            },
            Mode::Smoke => Sizes {
                append_large: budget(2 * MIB as u64, 0.1),
                append_small: budget(256 * KIB as u64, 0.1),
                every_write: budget(64 * KIB as u64, 0.1),
                build: budget(64 * KIB as u64, 0.1),
                pool_bytes: MIB,
                read_log_bytes: 2 * MIB as u64,
                recovery_log_bytes: 2 * MIB as u64,
                memcpy_buffer_bytes: MIB,
                limit_time: Duration::from_millis(1),
            },
        }
    }
}

#[derive(Debug)]
struct Args {
    mode: Mode,
    filters: Vec<String>,
    /// A filter must equal a scenario's whole name (libtest's `--exact`), not be part of it.
    exact: bool,
}

fn parse_args() -> Args {
    let mut bench = false;
    let mut quick = false;
    let mut exact = false;
    let mut filters = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--bench" => bench = true,
            "--quick" => quick = true,
            "--exact" => exact = true,
            // libtest's flags, which `cargo test` may pass on: not ours.
            flag if flag.starts_with('-') => eprintln!("ignoring unknown flag {flag}"),
            filter => filters.push(filter.to_string()),
        }
    }
    quick |= std::env::var_os("RUNNEL_BENCH_QUICK").is_some_and(|v| v == "1");
    let mode = match (bench, quick) {
        (false, _) => Mode::Smoke,
        (true, true) => Mode::Quick,
        (true, false) => Mode::Full,
    };
    if mode == Mode::Smoke && filters.is_empty() {
        // Prefixes of scenario names, whatever `--exact` says.
        filters = SMOKE_SCENARIOS.iter().map(|s| s.to_string()).collect();
        exact = false;
    }
    Args {
        mode,
        filters,
        exact,
    }
}

struct Run {
    args: Args,
    sizes: Sizes,
    dir: PathBuf,
    limits: Limits,
    records: RecordPool,
    results: Vec<Measurement>,
    scenario: usize,
}

impl Run {
    fn selected(&self, name: &str) -> bool {
        self.args.filters.is_empty()
            || self.args.filters.iter().any(|f| {
                if self.args.exact {
                    name == f
                } else {
                    name.contains(f.as_str())
                }
            })
    }

    /// A fresh, empty directory for the next scenario, which will write about `warm_bytes`
    /// into the page cache: outside the smoke run, that much memory is warmed first.
    fn scenario_dir(&mut self, warm_bytes: u64) -> BenchResult<PathBuf> {
        self.scenario += 1;
        let dir = self.dir.join(format!("scenario-{:03}", self.scenario));
        machine::remove_dir(&dir)?;
        if self.args.mode != Mode::Smoke {
            machine::warm_memory(
                &self.dir,
                warm_bytes.min(WARM_BYTES_MAX) + WARM_BYTES_MARGIN,
            )?;
        }
        Ok(dir)
    }

    /// Deletes a finished scenario's files; outside the smoke run, waits for the disk too.
    fn clean(&self, dir: &Path) -> BenchResult<()> {
        machine::remove_dir(dir)?;
        if self.args.mode != Mode::Smoke {
            machine::settle();
        }
        Ok(())
    }

    fn push(&mut self, m: Measurement) {
        // Measurements that later ones are compared with.
        if m.group == "limit" || (m.group == "ab" && m.name.ends_with("/raw")) {
            let rate = m.stored_bytes_per_s();
            self.limits.bytes_per_s.insert(m.name.clone(), rate);
        }
        println!("{}", report::table_row(&m, &self.limits));
        self.results.push(m);
    }
}

fn main() -> BenchResult<()> {
    let args = parse_args();
    let sizes = Sizes::of(args.mode);
    let temporary = (args.mode == Mode::Smoke)
        .then(tempfile::tempdir)
        .transpose()?;
    let dir = match &temporary {
        Some(temporary) => temporary.path().to_path_buf(),
        None => PathBuf::from(
            std::env::var("RUNNEL_BENCH_DIR").unwrap_or_else(|_| BENCH_DIR_DEFAULT.into()),
        )
        .join("log-throughput"),
    };
    fs::create_dir_all(&dir)?;
    machine::check_on_disk(&dir)?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let limits = if args.mode == Mode::Smoke {
        Limits::default()
    } else {
        let path = std::env::var("RUNNEL_LIMITS").map_or_else(
            |_| workspace.join("target/machine-limits.json"),
            PathBuf::from,
        );
        Limits::load(&path)
    };
    let load_start = machine::load_average();
    let started = Instant::now();
    eprintln!(
        "log_throughput: {:?} mode in {}, limits from {}, load {load_start}",
        args.mode,
        dir.display(),
        limits
            .source
            .as_deref()
            .unwrap_or("nowhere (run scripts/machine-limits)"),
    );
    let mut run = Run {
        args,
        sizes,
        dir,
        limits,
        records: RecordPool::new(),
        results: Vec::new(),
        scenario: 0,
    };
    println!("{}", report::TABLE_HEADER);
    run_limits(&mut run);
    run_builds(&mut run);
    run_raw(&mut run)?;
    run_ab(&mut run)?;
    run_appends(&mut run)?;
    run_reads(&mut run)?;
    run_recoveries(&mut run)?;
    run.clean(&run.dir)?;
    let total = started.elapsed();
    finish(&run, total, &load_start, &workspace)
}

fn run_limits(run: &mut Run) {
    // Always measured: the read and recovery ratios need it.
    let m = machine::memcpy(run.sizes.memcpy_buffer_bytes, run.sizes.limit_time);
    run.push(m);
    if run.selected("limit/first-touch") {
        let m = machine::first_touch(run.sizes.memcpy_buffer_bytes * 4);
        run.push(m);
    }
    if run.selected("component/batch-crc") {
        let m = machine::batch_crc(run.sizes.memcpy_buffer_bytes, run.sizes.limit_time);
        run.push(m);
    }
    if run.selected("component/crc32c-crate") {
        let m = machine::crc32c_crate(run.sizes.memcpy_buffer_bytes, run.sizes.limit_time);
        run.push(m);
    }
}

fn run_builds(run: &mut Run) {
    for batch_bytes in BATCH_SIZES {
        for codec in CODECS {
            let name = format!(
                "build/{}/{}",
                append::size_name(batch_bytes),
                append::codec_name(codec)
            );
            if run.selected(&name) {
                let m = append::build_only(batch_bytes, codec, run.sizes.build, &run.records);
                run.push(m);
            }
        }
    }
}

fn append_specs() -> Vec<AppendSpec> {
    let mut specs = Vec::new();
    for batch_bytes in BATCH_SIZES {
        for policy in Policy::ALL {
            let writer_counts: &[usize] = if policy == Policy::EveryWrite {
                &[1, WRITERS_CONCURRENT]
            } else {
                &[1]
            };
            for &writers in writer_counts {
                for codec in CODECS {
                    specs.push(AppendSpec {
                        batch_bytes,
                        policy,
                        codec,
                        writers,
                        build_inline: false,
                    });
                }
            }
        }
        specs.push(AppendSpec {
            batch_bytes,
            policy: Policy::Os,
            codec: Compression::None,
            writers: 1,
            build_inline: true,
        });
    }
    specs
}

fn run_raw(run: &mut Run) -> BenchResult<()> {
    let plans = [
        (RawSync::PreallocateEndFsync, MIB, run.sizes.append_large),
        (RawSync::FdatasyncEach, MIB, run.sizes.every_write),
        (RawSync::FdatasyncEach, 16 * KIB, run.sizes.every_write),
    ];
    for (sync, block_bytes, budget) in plans {
        if !run.selected(&sync.name(block_bytes)) {
            continue;
        }
        let dir = run.scenario_dir(budget.logical_bytes)?;
        let m = raw::write(sync, block_bytes, budget, &dir)?;
        run.clean(&dir)?;
        run.push(m);
    }
    Ok(())
}

fn run_ab(run: &mut Run) -> BenchResult<()> {
    let half = |b: Budget| Budget {
        logical_bytes: b.logical_bytes / 2,
        time: b.time,
    };
    let plans = [
        (MIB, false, 64 * MIB as u64, half(run.sizes.append_large)),
        (
            16 * KIB,
            false,
            16 * MIB as u64,
            half(run.sizes.append_small),
        ),
        (MIB, true, 16 * MIB as u64, half(run.sizes.every_write)),
    ];
    for (batch_bytes, every_write, chunk_bytes, budget) in plans {
        let spec = AbSpec {
            batch_bytes,
            every_write,
            chunk_bytes,
        };
        if !run.selected(&spec.name()) {
            continue;
        }
        let dir = run.scenario_dir(budget.logical_bytes * 2)?;
        let results = ab::run(&spec, budget, run.sizes.pool_bytes, &run.records, &dir)?;
        run.clean(&dir)?;
        for m in results {
            run.push(m);
        }
    }
    Ok(())
}

fn run_appends(run: &mut Run) -> BenchResult<()> {
    for spec in append_specs() {
        if !run.selected(&spec.name()) {
            continue;
        }
        let budget = match (spec.policy, spec.batch_bytes >= MIB) {
            (Policy::EveryWrite, _) => run.sizes.every_write,
            (_, true) => run.sizes.append_large,
            (_, false) => run.sizes.append_small,
        };
        let warm_bytes = match (spec.policy, spec.batch_bytes >= MIB) {
            // Bound by fdatasync latency: a few hundred MB at most.
            (Policy::EveryWrite, false) => GIB / 2,
            _ => budget.logical_bytes,
        };
        let dir = run.scenario_dir(warm_bytes)?;
        let m = append::run(&spec, budget, run.sizes.pool_bytes, &run.records, &dir)?;
        run.clean(&dir)?;
        run.push(m);
    }
    Ok(())
}

fn run_reads(run: &mut Run) -> BenchResult<()> {
    for (batch_bytes, cold) in [(MIB, true), (16 * KIB, false)] {
        let size = append::size_name(batch_bytes);
        let warm = run.selected(&format!("read/{size}/warm"));
        let cold = cold && run.selected(&format!("read/{size}/cold"));
        if !warm && !cold {
            continue;
        }
        let plan = ReadPlan {
            batch_bytes,
            log_bytes: run.sizes.read_log_bytes,
            warm_passes: 2,
            cold,
        };
        let dir = run.scenario_dir(run.sizes.read_log_bytes)?;
        let results = read::reads(plan, run.sizes.pool_bytes, &run.records, &dir)?;
        run.clean(&dir)?;
        for m in results {
            run.push(m);
        }
    }
    Ok(())
}

fn run_recoveries(run: &mut Run) -> BenchResult<()> {
    let mut plans: Vec<(usize, CacheState)> = CacheState::ALL.iter().map(|s| (MIB, *s)).collect();
    plans.push((16 * KIB, CacheState::SyncedWarm));
    for (batch_bytes, state) in plans {
        if !run.selected(&read::recovery_name(batch_bytes, state)) {
            continue;
        }
        let dir = run.scenario_dir(run.sizes.recovery_log_bytes)?;
        let m = read::recovery(
            batch_bytes,
            state,
            run.sizes.recovery_log_bytes,
            run.sizes.pool_bytes,
            &run.records,
            &dir,
        )?;
        run.clean(&dir)?;
        run.push(m);
    }
    Ok(())
}

fn finish(run: &Run, total: Duration, load_start: &str, workspace: &Path) -> BenchResult<()> {
    let load_end = machine::load_average();
    let checks = report::check_targets(&run.results, &run.limits);
    let mut lines = vec![json!({
        "bench": "log-core/log_throughput",
        "environment": {
            "mode": format!("{:?}", run.args.mode),
            "dir": run.dir.display().to_string(),
            "filters": run.args.filters,
            "limits_source": run.limits.source,
            "machine": run.limits.machine,
            "load_average_start": load_start,
            "load_average_end": load_end,
            "total_seconds": report::round(total.as_secs_f64(), 1),
        },
    })];
    lines.extend(run.results.iter().map(|m| m.to_json(&run.limits)));
    lines.extend(checks.iter().map(|c| {
        json!({"bench": "log-core/log_throughput", "target": c.target, "measured": c.measured, "met": c.met})
    }));
    if run.args.mode == Mode::Smoke {
        println!(
            "smoke run ({} scenarios, {:.1} s); `cargo bench -p log-core` measures",
            run.results.len(),
            total.as_secs_f64()
        );
        return Ok(());
    }
    println!();
    println!("targets (issue):");
    for check in &checks {
        let verdict = match check.met {
            Some(true) => "MET",
            Some(false) => "MISSED",
            None => "UNKNOWN",
        };
        println!("  {verdict:<7} {}: {}", check.target, check.measured);
    }
    println!();
    println!("limits:");
    for (name, rate) in &run.limits.bytes_per_s {
        println!("  {name:<22} {:>8.0} MB/s", rate / 1e6);
    }
    println!(
        "total bench time {:.1} s, load average {load_start} at start, {load_end} at end",
        total.as_secs_f64()
    );
    println!();
    for line in &lines {
        println!("{line}");
    }
    let path = std::env::var("RUNNEL_BENCH_JSON").map_or_else(
        |_| workspace.join("target/log-throughput.jsonl"),
        PathBuf::from,
    );
    let mut file = fs::File::create(&path)?;
    for line in &lines {
        writeln!(file, "{line}")?;
    }
    eprintln!("json lines: {}", path.display());
    Ok(())
}
