//! The `runnel` binary. Thin: it parses arguments and calls the libraries.
//!
//! One binary, one clap subcommand per area ([`Command`]). Every subcommand returns the exit
//! code it wants; an error becomes `error: …` on stderr and [`EXIT_ERROR`].
//!
//! The binary allocates with mimalloc. The broker and the client take and free a buffer of
//! up to a batch per request; glibc's malloc hands such buffers back to the kernel and
//! faults them in again, and copies them as they grow. Measured with `runnel bench produce`
//! (docs/BENCHMARKS.md), mimalloc gave about 13 % more throughput on the same cores. The
//! libraries leave the allocator to the program that embeds them.
//!
//! Exit codes, the same for every subcommand:
//!
//! ```text
//! 0  success
//! 1  the command ran and found a problem (`log verify`: damage)
//! 2  the command could not run: bad arguments, missing or unreadable log, I/O failure
//! ```

mod bench;
mod broker_cmd;
mod client_cmd;
mod dev_cmd;
mod log_cmd;
mod output;
mod shutdown;
mod time_spec;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code when a command could not do its work (clap uses 2 for usage errors too).
const EXIT_ERROR: u8 = 2;

/// Runnel: a Kafka-style message broker.
#[derive(Debug, Parser)]
#[command(name = "runnel", version, propagate_version = true)]
#[command(
    after_help = "Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to see more.\n\
Exit codes: 0 success, 1 a problem was found (e.g. `log verify` found damage), 2 error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker (embedded coordinator, or a cluster member with --etcd; data in ./data;
    /// clients on 127.0.0.1:10911).
    Broker(broker_cmd::BrokerArgs),
    /// The cluster: brokers, controller, queue placement.
    Cluster(client_cmd::cluster::ClusterArgs),
    /// Development helpers: a local cluster (etcd and N brokers) until Ctrl-C.
    Dev(dev_cmd::DevArgs),
    /// Create, list, describe and delete topics.
    Topic(client_cmd::topic::TopicArgs),
    /// Send messages: stdin lines, or generated with --count/--size.
    Produce(client_cmd::produce::ProduceArgs),
    /// Print messages of a topic, optionally as a consumer group member.
    Consume(client_cmd::consume::ConsumeArgs),
    /// Consumer groups: list, describe (lag), reset offsets.
    Group(client_cmd::group::GroupArgs),
    /// Benchmark a broker: produce, consume, end-to-end; and loopback TCP bandwidth.
    Bench(bench::BenchArgs),
    /// Work with a partition log directory directly, without a broker (uses only log-core).
    Log(log_cmd::LogArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Broker(args) => broker_cmd::run(args),
        Command::Cluster(args) => client_cmd::cluster::run(args),
        Command::Dev(args) => dev_cmd::run(args),
        Command::Topic(args) => client_cmd::topic::run(args),
        Command::Produce(args) => client_cmd::produce::run(args),
        Command::Consume(args) => client_cmd::consume::run(args),
        Command::Group(args) => client_cmd::group::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Log(args) => log_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Diagnostics to stderr, filtered by `RUST_LOG` (default: warnings and errors), so stdout
/// carries only data.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
