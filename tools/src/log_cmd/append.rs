//! `runnel log append`: lines from files or stdin become records, batched.
//!
//! Reader threads (one for all inputs read to their end, or one per followed file) cut their
//! input into lines and send them over a bounded channel; the main thread gathers lines into
//! batches and appends them as the leader (epoch 0), stamping each record with the time it
//! was gathered. A batch is appended when it reaches [`BATCH_RECORDS_MAX`] records or
//! [`BATCH_BYTES_TARGET`] bytes, or when its first line has waited [`LINGER`]: a slow pipe or a
//! followed file shows up in the log within that time, not only when a batch fills.
//!
//! The log has no followers here, so everything appended is committed: the high watermark
//! is moved to the log end after each append. At the end (inputs exhausted, or SIGINT /
//! SIGTERM) the pending batch is appended and the log closed cleanly, so the next open runs
//! no recovery. A restarted `--follow` starts each file over (no read position is kept):
//! use `--from-end` to skip what a file already holds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use log_core::log::SEGMENT_BYTES_DEFAULT;
use log_core::{
    BatchBuilder, Compression, FlushPolicy, LeaderEpoch, LogConfig, Offset, PartitionLog,
};
use serde::Serialize;

use super::tail::{self, FileTail, StartAt};
use super::{human_bytes, DirArg};
use crate::shutdown::Shutdown;
use crate::time_spec::system_time_ms;

/// Records per batch at most.
const BATCH_RECORDS_MAX: usize = 1000;
/// A batch is appended once it holds about this many bytes (before compression).
const BATCH_BYTES_TARGET: usize = 1 << 20;
/// How long the first line of a batch waits for more before the batch is appended anyway.
const LINGER: Duration = Duration::from_millis(50);
/// How long the main thread waits for a line before it checks for shutdown and flushing.
const IDLE_TICK: Duration = Duration::from_millis(200);
/// How often a followed file is checked for new data when it had none.
const FOLLOW_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Lines in flight between the readers and the appender; with [`tail::LINE_BYTES_MAX`] this
/// bounds the memory a fast reader can fill ahead of the log.
const CHANNEL_LINES_MAX: usize = 1024;

#[derive(Debug, Args)]
#[command(after_help = "\
Each line (without its \\n; a \\r is kept) becomes one record with no key, timestamped with \
the current time. Reading the log back with `runnel log read` and adding \\n reproduces the \
input byte for byte. The directory is created if needed.

--follow reads each FILE from its beginning (or its end with --from-end), then follows the \
name like `tail -F`: growth, rotation by rename (the old file is read to its end first), \
truncation, a file that does not exist yet. It stops on SIGINT or SIGTERM, closing the log \
cleanly, and exits 0.")]
pub struct AppendArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Files to read in order; `-` or none reads stdin.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Batch compression: none, lz4 or zstd.
    #[arg(long, short = 'c', default_value = "none", value_name = "CODEC")]
    compression: Compression,
    /// When appended bytes reach the disk: os (the kernel decides; a clean close syncs),
    /// every-write (each batch is synced before the next), interval=MS (or e.g. interval=1s).
    #[arg(long, default_value = "os", value_parser = parse_flush, value_name = "POLICY")]
    flush: FlushPolicy,
    /// Keep following the FILEs for new lines (like `tail -F`) until SIGINT or SIGTERM.
    #[arg(long, short = 'f')]
    follow: bool,
    /// With --follow: start at the end of each FILE that already exists.
    #[arg(long, requires = "follow")]
    from_end: bool,
    /// Roll to a new segment when the active one would grow past this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = SEGMENT_BYTES_DEFAULT)]
    segment_bytes: u64,
    /// Print the summary as JSON on stdout instead of text on stderr.
    #[arg(long)]
    json: bool,
}

/// What one reader thread sends.
enum Input {
    Line(Vec<u8>),
    Failed(anyhow::Error),
}

pub fn run(args: AppendArgs) -> anyhow::Result<ExitCode> {
    let inputs = inputs(&args)?;
    let shutdown = Shutdown::install()?;
    let dir = &args.dir.dir;
    let config = LogConfig {
        flush: args.flush,
        segment_bytes: args.segment_bytes,
        // The batches are built here, from the input lines: nothing to check.
        check_records: false,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir, config)
        .with_context(|| format!("opening log {}", dir.display()))?;
    let (sender, receiver) = mpsc::sync_channel(CHANNEL_LINES_MAX);
    let start = if args.from_end {
        StartAt::End
    } else {
        StartAt::Beginning
    };
    spawn_readers(inputs, args.follow, start, sender, &shutdown)?;
    let mut appender = Appender::new(&log, args.compression);
    let pumped = appender.pump(&receiver, &shutdown);
    drop(receiver);
    let closed = log
        .close()
        .with_context(|| format!("closing log {}", dir.display()));
    let summary = appender.summary(dir, &log, shutdown.requested());
    summary.print(args.json)?;
    pumped?;
    closed?;
    Ok(match shutdown.requested() {
        // Stopping is how a follower ends: a success.
        Some(signal) if !args.follow => ExitCode::from(128 + signal as u8),
        _ => ExitCode::SUCCESS,
    })
}

/// The inputs in order; `None` stands for stdin.
fn inputs(args: &AppendArgs) -> anyhow::Result<Vec<Option<PathBuf>>> {
    let inputs: Vec<Option<PathBuf>> = if args.files.is_empty() {
        vec![None]
    } else {
        args.files
            .iter()
            .map(|f| (f.as_os_str() != "-").then(|| f.clone()))
            .collect()
    };
    if args.follow && inputs.iter().any(Option::is_none) {
        bail!("--follow needs FILE names to follow; stdin is always read to its end without it");
    }
    Ok(inputs)
}

fn parse_flush(spec: &str) -> Result<FlushPolicy, String> {
    match spec {
        "os" => Ok(FlushPolicy::Os),
        "every-write" => Ok(FlushPolicy::EveryWrite),
        _ => {
            let interval = spec.strip_prefix("interval=").ok_or_else(|| {
                format!("unknown flush policy {spec:?}: expected os, every-write or interval=MS")
            })?;
            let duration = match interval.parse::<u64>() {
                Ok(ms) => Duration::from_millis(ms),
                Err(_) => humantime::parse_duration(interval)
                    .map_err(|e| format!("flush interval {interval:?}: {e}"))?,
            };
            if duration.is_zero() {
                return Err(
                    "flush interval must be positive; use every-write to sync every batch".into(),
                );
            }
            Ok(FlushPolicy::Interval(duration))
        }
    }
}

fn spawn_readers(
    inputs: Vec<Option<PathBuf>>,
    follow: bool,
    start: StartAt,
    sender: SyncSender<Input>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    if !follow {
        let spawned = thread::Builder::new()
            .name("append-reader".into())
            .spawn(move || report_failure(&sender, read_to_end(&inputs, &sender)));
        spawned.context("starting the reader thread")?;
        return Ok(());
    }
    for path in inputs.into_iter().flatten() {
        let sender = sender.clone();
        let shutdown = shutdown.clone();
        let spawned = thread::Builder::new()
            .name(format!("follow {}", path.display()))
            .spawn(move || report_failure(&sender, follow_file(&path, start, &sender, &shutdown)));
        spawned.context("starting a follower thread")?;
    }
    Ok(())
}

/// Sends a reader's error to the appender, unless the appender is gone (it stopped first).
fn report_failure(sender: &SyncSender<Input>, result: anyhow::Result<()>) {
    if let Err(error) = result {
        let _ = sender.send(Input::Failed(error));
    }
}

fn sender_emit(sender: &SyncSender<Input>) -> impl FnMut(Vec<u8>) -> anyhow::Result<()> + '_ {
    |line| {
        sender
            .send(Input::Line(line))
            .map_err(|_| anyhow!("the appender stopped"))
    }
}

fn read_to_end(inputs: &[Option<PathBuf>], sender: &SyncSender<Input>) -> anyhow::Result<()> {
    let mut emit = sender_emit(sender);
    for input in inputs {
        match input {
            None => tail::read_lines(&mut std::io::stdin().lock(), "stdin", &mut emit)?,
            Some(path) => {
                let mut file =
                    File::open(path).with_context(|| format!("opening {}", path.display()))?;
                tail::read_lines(&mut file, &path.display().to_string(), &mut emit)?;
            }
        }
    }
    Ok(())
}

fn follow_file(
    path: &Path,
    start: StartAt,
    sender: &SyncSender<Input>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut emit = sender_emit(sender);
    let mut tail = FileTail::new(path, start);
    while !shutdown.is_requested() {
        if !tail.poll(&mut emit)? {
            thread::sleep(FOLLOW_POLL_INTERVAL);
        }
    }
    Ok(())
}

/// Gathers lines into batches and appends them; counts what it appended.
struct Appender<'a> {
    log: &'a PartitionLog,
    compression: Compression,
    batch: BatchBuilder,
    /// When the first line of the pending batch arrived.
    pending_since: Option<Instant>,
    records: u64,
    line_bytes: u64,
    batches: u64,
    stored_bytes: u64,
    first_offset: Option<Offset>,
    last_offset: Option<Offset>,
}

impl<'a> Appender<'a> {
    fn new(log: &'a PartitionLog, compression: Compression) -> Appender<'a> {
        Appender {
            log,
            compression,
            batch: BatchBuilder::new(compression),
            pending_since: None,
            records: 0,
            line_bytes: 0,
            batches: 0,
            stored_bytes: 0,
            first_offset: None,
            last_offset: None,
        }
    }

    /// Appends lines until every reader is done, one fails, or shutdown is requested.
    fn pump(&mut self, receiver: &Receiver<Input>, shutdown: &Shutdown) -> anyhow::Result<()> {
        while !shutdown.is_requested() {
            let wait = self
                .pending_since
                .map_or(IDLE_TICK, |since| LINGER.saturating_sub(since.elapsed()));
            match receiver.recv_timeout(wait) {
                Ok(Input::Line(line)) => self.add(&line)?,
                Ok(Input::Failed(error)) => {
                    self.append_pending()?;
                    return Err(error);
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.log
                        .maybe_flush(now_ms()?)
                        .context("flushing the log")?;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self
                .pending_since
                .is_some_and(|since| since.elapsed() >= LINGER)
            {
                self.append_pending()?;
            }
        }
        self.append_pending()
    }

    fn add(&mut self, line: &[u8]) -> anyhow::Result<()> {
        if !self.batch.is_empty() && self.batch.size_bytes() + line.len() > BATCH_BYTES_TARGET {
            self.append_pending()?;
        }
        self.batch.append(now_ms()?, None, Some(line), &[]);
        self.pending_since.get_or_insert_with(Instant::now);
        self.line_bytes += line.len() as u64;
        if self.batch.len() >= BATCH_RECORDS_MAX {
            self.append_pending()?;
        }
        Ok(())
    }

    fn append_pending(&mut self) -> anyhow::Result<()> {
        self.pending_since = None;
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, BatchBuilder::new(self.compression));
        let mut bytes = batch.build().context("building a batch")?;
        let dir = self.log.dir().display();
        let info = self
            .log
            .append_as_leader(&mut bytes, LeaderEpoch(0))
            .with_context(|| format!("appending to log {dir}"))?;
        self.log.set_high_watermark(self.log.log_end_offset());
        self.records += info.last_offset.0 - info.first_offset.0 + 1;
        self.batches += info.batches as u64;
        self.stored_bytes += info.bytes as u64;
        self.first_offset.get_or_insert(info.first_offset);
        self.last_offset = Some(info.last_offset);
        self.log
            .maybe_flush(now_ms()?)
            .context("flushing the log")?;
        Ok(())
    }

    fn summary(&self, dir: &Path, log: &PartitionLog, signal: Option<i32>) -> Summary {
        Summary {
            dir: dir.display().to_string(),
            records: self.records,
            line_bytes: self.line_bytes,
            batches: self.batches,
            stored_bytes: self.stored_bytes,
            first_offset: self.first_offset.map(|o| o.0),
            last_offset: self.last_offset.map(|o| o.0),
            log_end_offset: log.log_end_offset().0,
            stopped_by_signal: signal,
        }
    }
}

/// What `append` reports at the end.
#[derive(Debug, Serialize)]
struct Summary {
    dir: String,
    records: u64,
    /// Bytes of the lines, without their newlines.
    line_bytes: u64,
    batches: u64,
    /// Bytes of the batches as stored (headers included, after compression).
    stored_bytes: u64,
    first_offset: Option<u64>,
    last_offset: Option<u64>,
    log_end_offset: u64,
    stopped_by_signal: Option<i32>,
}

impl Summary {
    fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string(self)?);
            return Ok(());
        }
        let offsets = match (self.first_offset, self.last_offset) {
            (Some(first), Some(last)) => format!(" at offsets {first}..={last}"),
            _ => String::new(),
        };
        eprintln!(
            "appended {} records ({} of lines, {} stored in {} batches){offsets} to {}; log end {}",
            self.records,
            human_bytes(self.line_bytes),
            human_bytes(self.stored_bytes),
            self.batches,
            self.dir,
            self.log_end_offset,
        );
        Ok(())
    }
}

fn now_ms() -> anyhow::Result<i64> {
    system_time_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_policies_parse() {
        assert_eq!(parse_flush("os"), Ok(FlushPolicy::Os));
        assert_eq!(parse_flush("every-write"), Ok(FlushPolicy::EveryWrite));
        assert_eq!(
            parse_flush("interval=250"),
            Ok(FlushPolicy::Interval(Duration::from_millis(250)))
        );
        assert_eq!(
            parse_flush("interval=2s"),
            Ok(FlushPolicy::Interval(Duration::from_secs(2)))
        );
        assert!(parse_flush("interval=0").is_err());
        assert!(parse_flush("sometimes").is_err());
    }
}
