//! The client commands: `topic`, `produce`, `consume`, `group`, `cluster`. Each connects to a broker
//! with the native client (`wire::client`), does one thing, prints a table (or JSON lines
//! with `--json`) on stdout and diagnostics on stderr.

pub mod cluster;
pub mod consume;
pub mod group;
pub mod produce;
pub mod topic;

use anyhow::Context;
use clap::Args;
use wire::client::{Client, ClientConfig};

/// The broker a client command talks to.
#[derive(Clone, Debug, Args)]
pub struct ConnectArgs {
    /// Broker address (host:port); any broker of a cluster will do.
    #[arg(
        long,
        short = 'b',
        env = "RUNNEL_BROKER",
        default_value = "127.0.0.1:10911",
        global = true
    )]
    pub broker: String,
}

impl ConnectArgs {
    pub async fn client(&self, client_id: &str) -> anyhow::Result<Client> {
        let mut config = ClientConfig::with_bootstrap([self.broker.clone()]);
        config.client_id = client_id.to_owned();
        Client::connect(config)
            .await
            .with_context(|| format!("connecting to the broker at {}", self.broker))
    }
}

/// A current-thread runtime is enough for one command's requests and keeps start-up cheap.
pub fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(future))
}

/// Prints one JSON value per line.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
