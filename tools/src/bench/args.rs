//! The flags of `runnel bench produce|consume|e2e` (one set, each used where it makes sense)
//! and of `runnel bench loopback`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use log_core::Compression;
use wire::client::Acks;
use wire::message::MESSAGE_BODY_BYTES_MAX;

use super::payload::TIMESTAMP_BYTES;
use crate::client_cmd::ConnectArgs;

/// The most producers or consumers one benchmark runs.
pub const WORKERS_MAX: usize = 256;
/// The most messages in one producer batch.
pub const BATCH_SIZE_MAX: usize = 1_000_000;

#[derive(Clone, Debug, Args)]
#[command(after_help = "\
Examples:
  runnel bench produce --message-size 1000 --batch-size 1000 --count 2000000
  runnel bench consume --count 2000000
  runnel bench produce --sync --rate 10000 --producers 2 --duration 10s
  runnel bench e2e --rate 50000 --duration 10s

Throughput counts message bodies: MB/s = messages × --message-size / seconds / 10^6.")]
pub struct WorkloadArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Topic to use; created with --queues queues if it does not exist (an existing topic
    /// keeps its own queue count).
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Queues (partitions) of the topic when the benchmark creates it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub queues: u32,
    /// Body size of each message in bytes. The first 8 bytes carry the send time
    /// (µs since the Unix epoch) for the e2e latency; the rest is filler.
    #[arg(long, default_value_t = 1000, value_parser = message_size)]
    pub message_size: usize,
    /// Messages per producer batch: sets the producer's batch bytes to the encoded size of
    /// this many messages, so a batch is cut after exactly N (or when --linger passes).
    #[arg(long, default_value_t = 1000, value_parser = batch_size)]
    pub batch_size: usize,
    /// How long a batch waits for more messages before it is sent anyway. Unlimited-rate
    /// runs fill batches long before; at a --rate it bounds the latency batching adds.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    pub linger: Duration,
    /// Messages in all (produce: sent by all producers together; consume: read by all
    /// consumers together, from the start of the topic). Ignored with --duration.
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    pub count: u64,
    /// Run for this long instead of --count messages (e.g. 10s, 1m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Each producer's buffer in MiB: message bytes queued or in flight before a send waits
    /// (the client's `buffer_bytes`). Default: the client's 32 MiB, or 8 batches if larger.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4095))]
    pub buffer_mib: Option<u32>,
    /// Concurrent producers, each with its own connection; --count and --rate are split
    /// evenly between them.
    #[arg(long, default_value_t = 1, value_parser = workers)]
    pub producers: usize,
    /// Concurrent consumers, each with its own connection and a disjoint share of the
    /// queues (manual assignment, no consumer group).
    #[arg(long, default_value_t = 1, value_parser = workers)]
    pub consumers: usize,
    /// Batch compression: none, lz4 or zstd (batches under 4 KiB stay uncompressed).
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    /// When the broker answers a send: leader (appended) or all (replicated; the same on
    /// one broker).
    #[arg(long, value_enum, default_value_t = AcksArg::Leader)]
    pub acks: AcksArg,
    /// Latency mode: each producer waits for every send's receipt before the next send, so
    /// each batch holds one message.
    #[arg(long)]
    pub sync: bool,
    /// Messages per second across all producers, paced evenly (0 = as fast as possible).
    /// A producer that falls behind sends at once to catch up; the summary shows the rate
    /// achieved.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Bytes asked for per pull (consume, e2e).
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1..=i64::from(wire::protocol::PULL_BYTES_MAX)))]
    pub fetch_bytes: u32,
    /// Bypass the client, to show what it adds. produce: pre-built batches (built as the
    /// Producer builds them) sent as Send requests, --in-flight per queue, as log-core's
    /// append benchmark appends pre-built batches; not with --sync or --rate. consume (and
    /// e2e's consumers): Pull requests, one in flight per queue, records decoded but not
    /// turned into messages, instead of the PullConsumer.
    #[arg(long)]
    pub raw: bool,
    /// Send requests in flight per queue (the Producer's `max_in_flight_per_queue`, or the
    /// raw producer's window).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub in_flight: u32,
    /// The broker's process id: report its CPU time over the run too (from /proc).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Print the final summary as one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON summary to this file.
    #[arg(long)]
    pub output_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    Leader,
    All,
}

impl From<AcksArg> for Acks {
    fn from(acks: AcksArg) -> Acks {
        match acks {
            AcksArg::Leader => Acks::Leader,
            AcksArg::All => Acks::All,
        }
    }
}

#[derive(Clone, Debug, Args)]
pub struct LoopbackArgs {
    /// How long the stream runs.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Bytes per write (and per read) call.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    pub buffer_bytes: u32,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn message_size(text: &str) -> Result<usize, String> {
    let size: usize = text.parse().map_err(|e| format!("{e}"))?;
    if !(TIMESTAMP_BYTES..=MESSAGE_BODY_BYTES_MAX).contains(&size) {
        return Err(format!(
            "must be {TIMESTAMP_BYTES} to {MESSAGE_BODY_BYTES_MAX} bytes"
        ));
    }
    Ok(size)
}

fn batch_size(text: &str) -> Result<usize, String> {
    let size: usize = text.parse().map_err(|e| format!("{e}"))?;
    if !(1..=BATCH_SIZE_MAX).contains(&size) {
        return Err(format!("must be 1 to {BATCH_SIZE_MAX}"));
    }
    Ok(size)
}

fn workers(text: &str) -> Result<usize, String> {
    let count: usize = text.parse().map_err(|e| format!("{e}"))?;
    if !(1..=WORKERS_MAX).contains(&count) {
        return Err(format!("must be 1 to {WORKERS_MAX}"));
    }
    Ok(count)
}
