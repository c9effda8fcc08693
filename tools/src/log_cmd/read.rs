//! `runnel log read`: records from an offset or a time onward, as lines or JSON.
//!
//! The log is opened read-only, so this works while another process appends. Reads return
//! whole batches; the first may start below the offset asked for, and its earlier records are
//! skipped. With `--follow`, once caught up with the log end it refreshes the log (picking up
//! what the writer appended since) every [`FOLLOW_POLL_INTERVAL`] until SIGINT or SIGTERM.
//!
//! A closed stdout (`runnel log read … | head`) ends the command quietly with success.

use std::io::{self, BufWriter, ErrorKind, Write};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::Args;
use log_core::batch::split_batches;
use log_core::{Offset, PartitionLog, Record};

use super::json::JsonRecord;
use super::{open_read_only, refresh, DirArg};
use crate::shutdown::Shutdown;
use crate::time_spec::parse_since;

/// Bytes asked of the log per read (always at least one whole batch).
const READ_BYTES_MAX: usize = 1 << 20;
/// How often a caught-up follower looks for new data.
const FOLLOW_POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
#[command(after_help = "\
Output: each record's value followed by \\n (no value: an empty line), so reading back what \
`runnel log append` stored reproduces its input. With --json, one object per line:
  {\"offset\":0,\"timestamp\":1795255200000,\"key\":null,\"value\":\"hello\",\"headers\":[]}
key, value and header values are UTF-8 text (invalid bytes replaced by U+FFFD) or null; when \
a replacement happened, key_base64 / value_base64 holds the exact bytes (standard base64). \
timestamp is milliseconds since the Unix epoch.")]
pub struct ReadArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Start at this offset (default: the log start).
    #[arg(long, value_name = "N", conflicts_with = "since")]
    from_offset: Option<u64>,
    /// Start at the first record with a timestamp at or after TIME: RFC 3339
    /// (2026-11-21T10:00:00Z), a duration before now (10m, 2h) or epoch milliseconds.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Stop after N records.
    #[arg(long, short = 'n', value_name = "N")]
    count: Option<u64>,
    /// At the log end, wait for new records until SIGINT or SIGTERM.
    #[arg(long, short = 'f')]
    follow: bool,
    /// One JSON object per record (see below).
    #[arg(long)]
    json: bool,
}

pub fn run(args: ReadArgs) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::install()?;
    let log = open_read_only(&args.dir.dir)?;
    let from = start_offset(&log, &args)?;
    let mut out = BufWriter::new(io::stdout().lock());
    match copy_records(&log, from, &args, &mut out, &shutdown) {
        Err(error) if is_broken_pipe(&error) => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

fn start_offset(log: &PartitionLog, args: &ReadArgs) -> anyhow::Result<Offset> {
    let (log_start, log_end) = (log.log_start_offset(), log.log_end_offset());
    if let Some(spec) = &args.since {
        let since = parse_since(spec, SystemTime::now())?;
        let found = log
            .offset_for_timestamp(since)
            .with_context(|| format!("looking up time {spec:?} in log {}", log.dir().display()))?;
        // Nothing at or after that time yet: start at the end (and wait, with --follow).
        return Ok(found.map_or(log_end, |(offset, _)| offset));
    }
    let Some(from) = args.from_offset.map(Offset) else {
        return Ok(log_start);
    };
    if from < log_start {
        bail!("offset {from} is below the log start {log_start}: records before it were deleted");
    }
    if from > log_end && !args.follow {
        bail!("offset {from} is past the log end {log_end} (use --follow to wait for it)");
    }
    Ok(from)
}

fn copy_records(
    log: &PartitionLog,
    from: Offset,
    args: &ReadArgs,
    out: &mut impl Write,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut next = from;
    let mut remaining = args.count.unwrap_or(u64::MAX);
    while remaining > 0 && !shutdown.is_requested() {
        let end = log.log_end_offset();
        if next >= end {
            out.flush()?;
            if !args.follow {
                break;
            }
            thread::sleep(FOLLOW_POLL_INTERVAL);
            refresh(log)?;
            continue;
        }
        let read = log
            .read(next, READ_BYTES_MAX, end)
            .with_context(|| format!("reading log {} at offset {next}", log.dir().display()))?;
        if read.records.is_empty() {
            bail!(
                "log {} has no batch holding offset {next} (below its end {end})",
                log.dir().display()
            );
        }
        for batch in split_batches(read.records) {
            let batch = batch.with_context(|| damaged(log, next))?;
            let records = batch.records().with_context(|| damaged(log, next))?;
            for record in records {
                let record = record.with_context(|| damaged(log, next))?;
                if record.offset < next {
                    continue;
                }
                write_record(out, &record, args.json)?;
                remaining -= 1;
                if remaining == 0 {
                    break;
                }
            }
            next = batch.header().next_offset();
            if remaining == 0 {
                break;
            }
        }
        out.flush()?;
    }
    out.flush()?;
    Ok(())
}

fn damaged(log: &PartitionLog, offset: Offset) -> String {
    format!(
        "log {} is damaged at the batch holding offset {offset} (run `runnel log verify`)",
        log.dir().display()
    )
}

fn write_record(out: &mut impl Write, record: &Record, json: bool) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, &JsonRecord::new(record))?;
    } else if let Some(value) = &record.value {
        out.write_all(value)?;
    }
    out.write_all(b"\n")?;
    Ok(())
}

/// A closed pipe is how a downstream `head` says it has read enough.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(ErrorKind::BrokenPipe)
    })
}
