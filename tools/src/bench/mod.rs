//! `runnel bench`: produce, consume and end-to-end benchmarks against a running broker, and
//! the loopback TCP bandwidth they are bounded by.
//!
//! ```text
//! runnel bench produce   producers send --count messages (or for --duration) to a topic
//! runnel bench consume   consumers read --count messages from the start of the topic
//! runnel bench e2e       both at once; latency is born (send time in the body) → received
//! runnel bench loopback  one TCP stream over 127.0.0.1, no broker: the wire's ceiling
//! ```
//!
//! Every worker has its own `Client`, so its own TCP connection. A progress line goes to
//! stderr every second; the summary goes to stdout, as text or (with `--json`) one JSON
//! object, and optionally to `--output-file` as JSON. The summary includes the CPU time the
//! benchmark used and, with `--broker-pid`, the broker's: on a small machine both share the
//! cores, and a benchmark that saturates a core measures itself.
//!
//! Modules: `args` (flags), `payload` (timestamped bodies, batch sizing), `produce` (the
//! client's `Producer`), `consume` (the client's `PullConsumer` or raw `Pull` requests), `raw`
//! (the `--raw` paths: leader connections, pre-built batches as raw `Send` requests),
//! `workload` (topic setup and the three phases), `stats` (counters, histograms, summaries),
//! `cpu`, `loopback`.

mod args;
mod consume;
mod cpu;
mod loopback;
mod payload;
mod produce;
mod raw;
pub mod stats;
mod workload;

use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use args::{LoopbackArgs, WorkloadArgs};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Send messages as fast as possible (or at --rate) and report throughput and
    /// send → receipt latency.
    Produce(WorkloadArgs),
    /// Read --count messages from the start of the topic (run `bench produce` first) and
    /// report throughput.
    Consume(WorkloadArgs),
    /// Produce and consume at once; report both throughputs, send → receipt latency and
    /// born → received latency (from a send time carried in each body, µs resolution).
    E2e(WorkloadArgs),
    /// Measure one TCP stream's bandwidth over loopback, without a broker.
    Loopback(LoopbackArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BenchCommand::Produce(args) => workload::run(workload::Phase::Produce, args),
        BenchCommand::Consume(args) => workload::run(workload::Phase::Consume, args),
        BenchCommand::E2e(args) => workload::run(workload::Phase::EndToEnd, args),
        BenchCommand::Loopback(args) => loopback::run(args),
    }
}
