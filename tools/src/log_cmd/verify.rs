//! `runnel log verify`: checks every batch (bounds, CRC-32C, offsets in order) and every
//! index entry of every segment, without repairing anything.
//!
//! Opened read-only: no recovery runs first, so damage is reported as found rather than cut
//! away. Exit code 0 when nothing is wrong, 1 when damage was found (one line per problem,
//! naming the segment file, byte position and offset), 2 when the log could not be checked.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use super::{human_bytes, open_read_only, DirArg};

/// Exit code when damage was found.
const EXIT_DAMAGED: u8 = 1;

#[derive(Debug, Args)]
#[command(after_help = "Exit codes: 0 no damage, 1 damage found, 2 the log could not be checked.")]
pub struct VerifyArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The JSON form; field names are stable.
#[derive(Debug, Serialize)]
struct Report {
    dir: String,
    ok: bool,
    segments: usize,
    /// Whole, valid batches checked, and the records in them.
    batches: u64,
    records: u64,
    size_bytes: u64,
    log_start_offset: u64,
    log_end_offset: u64,
    damage: Vec<DamageReport>,
}

#[derive(Debug, Serialize)]
struct DamageReport {
    /// The segment (or index) file.
    file: String,
    /// Byte position in that file.
    position: u64,
    /// Where the damage starts: the offset after the last good batch.
    offset: u64,
    reason: String,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let log = open_read_only(&args.dir.dir)?;
    let stats = log.stats();
    let checked = log.verify();
    let report = Report {
        dir: log.dir().display().to_string(),
        ok: checked.is_ok(),
        segments: checked.segments,
        batches: checked.batches,
        records: checked.records,
        size_bytes: stats.size_bytes,
        log_start_offset: stats.log_start.0,
        log_end_offset: stats.log_end.0,
        damage: checked
            .damage
            .into_iter()
            .map(|d| DamageReport {
                file: d.path.display().to_string(),
                position: d.position,
                offset: d.offset.0,
                reason: d.reason,
            })
            .collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DAMAGED)
    })
}

fn print_text(report: &Report) {
    for damage in &report.damage {
        println!(
            "damaged: {} at position {} (offset {}): {}",
            damage.file, damage.position, damage.offset, damage.reason
        );
    }
    let summary = format!(
        "{} segments, {} batches, {} records (offsets {}..{}), {}",
        report.segments,
        report.batches,
        report.records,
        report.log_start_offset,
        report.log_end_offset,
        human_bytes(report.size_bytes),
    );
    if report.ok {
        println!("ok: {summary} checked in {}", report.dir);
    } else {
        println!(
            "DAMAGED: {} problems in {summary} in {}",
            report.damage.len(),
            report.dir
        );
    }
}
