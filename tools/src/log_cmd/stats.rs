//! `runnel log stats`: a log's offsets, watermarks, size, timestamps and segments.
//!
//! Opened read-only, so it describes a log another process is appending to, as of the
//! moment it was opened.
//!
//! ```text
//! log             /var/lib/spool
//! offsets         0..1200 (1200 records)
//! high watermark  1200
//! recovery point  1200
//! size            1.1 MiB in 3 segments
//! oldest          2026-11-21T10:00:00.000Z (1795255200000)
//! newest          2026-11-21T10:05:00.000Z (1795255500000)
//!
//! SEGMENT                    BASE  NEXT  SIZE
//! 00000000000000000000.log      0   500  480.0 KiB
//! ```

use std::process::ExitCode;

use clap::Args;
use log_core::segment::{self, LOG_SUFFIX};
use log_core::types::NO_TIMESTAMP;
use serde::Serialize;

use super::{human_bytes, open_read_only, DirArg};
use crate::time_spec::format_ms;

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The JSON form; field names are stable.
#[derive(Debug, Serialize)]
struct Stats {
    dir: String,
    log_start_offset: u64,
    log_end_offset: u64,
    high_watermark: u64,
    recovery_point: u64,
    /// Offsets between the log start and end (records, when none was removed by compaction).
    records: u64,
    segment_count: usize,
    size_bytes: u64,
    /// Milliseconds since the Unix epoch; null for an empty log or records without time.
    oldest_timestamp: Option<i64>,
    newest_timestamp: Option<i64>,
    segments: Vec<SegmentStats>,
}

#[derive(Debug, Serialize)]
struct SegmentStats {
    file: String,
    base_offset: u64,
    next_offset: u64,
    size_bytes: u64,
}

pub fn run(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let log = open_read_only(&args.dir.dir)?;
    let stats = log.stats();
    let timestamp = |t: i64| (t != NO_TIMESTAMP).then_some(t);
    let report = Stats {
        dir: log.dir().display().to_string(),
        log_start_offset: stats.log_start.0,
        log_end_offset: stats.log_end.0,
        high_watermark: stats.high_watermark.0,
        recovery_point: stats.recovery_point.0,
        records: stats.log_end.0 - stats.log_start.0,
        segment_count: stats.segments,
        size_bytes: stats.size_bytes,
        oldest_timestamp: timestamp(stats.oldest_timestamp),
        newest_timestamp: timestamp(stats.newest_timestamp),
        segments: log
            .segments()
            .into_iter()
            .map(|(base, size, next)| SegmentStats {
                file: segment::file_name(base, LOG_SUFFIX),
                base_offset: base.0,
                next_offset: next.0,
                size_bytes: size,
            })
            .collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(stats: &Stats) {
    let time =
        |t: Option<i64>| t.map_or_else(|| "-".to_owned(), |t| format!("{} ({t})", format_ms(t)));
    println!("log             {}", stats.dir);
    println!(
        "offsets         {}..{} ({} records)",
        stats.log_start_offset, stats.log_end_offset, stats.records
    );
    println!("high watermark  {}", stats.high_watermark);
    println!("recovery point  {}", stats.recovery_point);
    println!(
        "size            {} in {} segments",
        human_bytes(stats.size_bytes),
        stats.segment_count
    );
    println!("oldest          {}", time(stats.oldest_timestamp));
    println!("newest          {}", time(stats.newest_timestamp));
    println!();
    let rows: Vec<[String; 4]> = stats
        .segments
        .iter()
        .map(|s| {
            [
                s.file.clone(),
                s.base_offset.to_string(),
                s.next_offset.to_string(),
                human_bytes(s.size_bytes),
            ]
        })
        .collect();
    print_table(["SEGMENT", "BASE", "NEXT", "SIZE"], &rows);
}

/// Left-aligned first column, right-aligned numbers, two spaces between.
fn print_table(header: [&str; 4], rows: &[[String; 4]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: [&str; 4]| {
        format!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    println!("{}", line(header).trim_end());
    for row in rows {
        println!("{}", line([&row[0], &row[1], &row[2], &row[3]]));
    }
}
