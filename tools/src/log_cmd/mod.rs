//! `runnel log …`: append to, read, describe and verify one partition log directory with
//! log-core alone, no broker.
//!
//! Each subcommand lives in its own file and does little beyond turning arguments into
//! log-core calls and results into output: humans get text, `--json` gets one JSON document
//! (or one per record, for `read`). Data goes to stdout; summaries, progress and diagnostics
//! go to stderr, so `runnel log read … | other-tool` carries only records.
//!
//! Readers (`read`, `stats`, `verify`) open the log read-only: they take no lock and run no
//! recovery, so they work while an `append` (or a broker) writes to the same directory, and
//! they never change what they inspect.

mod append;
mod json;
mod read;
mod stats;
mod tail;
mod verify;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use log_core::segment::{self, LOG_SUFFIX};
use log_core::PartitionLog;

#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(subcommand)]
    command: LogCommand,
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Append lines as records: one record per line, from FILEs or stdin.
    Append(append::AppendArgs),
    /// Print records: values one per line, or one JSON object per record.
    Read(read::ReadArgs),
    /// Offsets, watermarks, size, timestamps and segments of a log.
    Stats(stats::StatsArgs),
    /// Check every batch's CRC and offsets and every index entry.
    Verify(verify::VerifyArgs),
}

/// The log directory argument every subcommand takes.
#[derive(Debug, Args)]
struct DirArg {
    /// The partition log directory (holds `<base offset>.log`, `.index`, `.timeindex`).
    #[arg(long, short = 'd', value_name = "DIR", env = "RUNNEL_LOG_DIR")]
    dir: PathBuf,
}

pub fn run(args: LogArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LogCommand::Append(args) => append::run(args),
        LogCommand::Read(args) => read::run(args),
        LogCommand::Stats(args) => stats::run(args),
        LogCommand::Verify(args) => verify::run(args),
    }
}

/// Opens an existing log for reading, without a lock and without recovery. Refuses a
/// directory that is missing or holds no segment, instead of creating an empty log there.
fn open_read_only(dir: &Path) -> anyhow::Result<PartitionLog> {
    check_is_log(dir)?;
    PartitionLog::open_read_only(dir).with_context(|| format!("opening log {}", dir.display()))
}

/// Picks up batches and segments appended since the log was opened or last refreshed.
fn refresh(log: &PartitionLog) -> anyhow::Result<()> {
    log.refresh()
        .with_context(|| format!("refreshing log {}", log.dir().display()))
}

fn check_is_log(dir: &Path) -> anyhow::Result<()> {
    let metadata = match fs::metadata(dir) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!("no log at {}: the directory does not exist", dir.display())
        }
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", dir.display()));
        }
    };
    if !metadata.is_dir() {
        bail!(
            "{} is not a log directory: it is not a directory",
            dir.display()
        );
    }
    let entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        if segment::parse_file_name(&name.to_string_lossy(), LOG_SUFFIX).is_some() {
            return Ok(());
        }
    }
    bail!(
        "{} is not a log directory: it holds no segment file (<20-digit base offset>.{LOG_SUFFIX})",
        dir.display()
    )
}

/// `1.2 MiB`-style sizes for humans.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_a_unit() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn a_missing_or_empty_directory_is_not_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let error = check_is_log(&missing).unwrap_err().to_string();
        assert!(error.contains("does not exist"), "{error}");
        let error = check_is_log(dir.path()).unwrap_err().to_string();
        assert!(error.contains("not a log directory"), "{error}");
        fs::write(dir.path().join("00000000000000000000.log"), b"").unwrap();
        check_is_log(dir.path()).unwrap();
    }
}
