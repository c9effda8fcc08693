//! `runnel broker`: run a broker, alone on the embedded coordinator or as one member of a
//! cluster on etcd (`--etcd http://host:2379[,…] --cluster NAME --broker-id N`).
//!
//! Configuration comes from defaults, then `--config broker.toml` (the same keys as
//! `semantics::BrokerConfig`, e.g. `listen = "0.0.0.0:10911"`), then flags, each overriding
//! the one before. The first line on stdout says where the broker listens (scripts and the
//! test harness wait for it):
//!
//! ```text
//! runnel broker 0 listening on 127.0.0.1:10911, metrics on http://127.0.0.1:10912/metrics, data in ./data
//! ```
//!
//! With etcd endpoints the broker connects an `EtcdCoordinator` instead of opening the
//! embedded one; at shutdown, after the broker closed, it revokes its lease so the other
//! brokers see it gone at once rather than after the lease's TTL.
//!
//! SIGINT or SIGTERM stops it cleanly: no new connections, in-flight requests answered, logs
//! flushed and closed with their clean-shutdown markers. A second signal exits at once.

mod metrics_http;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use coordinator::{Coordinator, EmbeddedCoordinator, EtcdConfig, EtcdCoordinator, SystemClock};
use semantics::{Broker, BrokerConfig};
use wire::server::{Server, ServerConfig};

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// TOML file with broker settings; flags override it.
    #[arg(long, env = "RUNNEL_CONFIG")]
    config: Option<PathBuf>,
    /// Address to accept clients on [default: 127.0.0.1:10911].
    #[arg(long)]
    listen: Option<String>,
    /// Address clients are told to connect to, when it differs from --listen.
    #[arg(long)]
    advertised_address: Option<String>,
    /// Where logs and metadata live [default: ./data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// This broker's id in the cluster [default: 0].
    #[arg(long)]
    broker_id: Option<u32>,
    /// Address of the metrics endpoint (GET /metrics) [default: 127.0.0.1:10912].
    #[arg(long)]
    admin_listen: Option<String>,
    /// When appends reach the disk: os (the kernel decides; survives a broker crash),
    /// every-write (fsync before acknowledging; survives power loss), interval:DURATION.
    #[arg(long)]
    flush: Option<String>,
    /// etcd endpoints of the cluster (comma-separated http://host:port); without them the
    /// broker runs alone on the embedded coordinator.
    #[arg(long, value_delimiter = ',', env = "RUNNEL_ETCD")]
    etcd: Vec<String>,
    /// The cluster's name in etcd [default: runnel].
    #[arg(long)]
    cluster: Option<String>,
    /// How long a silent broker stays registered in etcd, e.g. 5s; a crashed controller is
    /// replaced after this [default: 10s].
    #[arg(long)]
    lease_ttl: Option<humantime::Duration>,
    /// How often the runnel_group_lag gauge is refreshed, e.g. 10s [default: 10s].
    #[arg(long)]
    group_lag_interval: Option<humantime::Duration>,
}

/// The admin endpoint when neither the config file nor a flag names one.
const ADMIN_LISTEN_DEFAULT: &str = "127.0.0.1:10912";

pub fn run(args: BrokerArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("runnel-broker")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

fn load_config(args: &BrokerArgs) -> anyhow::Result<BrokerConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str::<BrokerConfig>(&text)
                .with_context(|| format!("reading {}", path.display()))?
        }
        None => BrokerConfig::default(),
    };
    if let Some(listen) = &args.listen {
        config.listen = listen.clone();
    }
    if let Some(address) = &args.advertised_address {
        config.advertised_address = Some(address.clone());
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(id) = args.broker_id {
        config.broker_id = id;
    }
    if let Some(admin) = &args.admin_listen {
        config.admin_listen = Some(admin.clone());
    }
    if !args.etcd.is_empty() {
        config.etcd = args.etcd.clone();
    }
    if let Some(cluster) = &args.cluster {
        config.cluster = cluster.clone();
    }
    if let Some(ttl) = args.lease_ttl {
        config.lease_ttl = ttl.into();
    }
    if let Some(interval) = args.group_lag_interval {
        config.group_lag_interval = interval.into();
    }
    if let Some(flush) = &args.flush {
        config.flush = flush
            .parse()
            .map_err(|e| anyhow::anyhow!("--flush {flush}: {e}"))?;
    }
    Ok(config)
}

async fn serve(mut config: BrokerConfig) -> anyhow::Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let admin = config
        .admin_listen
        .clone()
        .unwrap_or_else(|| ADMIN_LISTEN_DEFAULT.to_owned());
    let (admin_listener, admin_address) = metrics_http::bind(&admin).await?;
    let metrics_task = tokio::spawn(metrics_http::serve(admin_listener, metrics));

    let server = Server::bind(&config.listen, ServerConfig::default())
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = server.local_addr();
    if config.advertised_address.is_none() {
        config.advertised_address = Some(address.to_string());
    }
    let coordinator = connect_coordinator(&config).await?;
    let broker = match Broker::open(config.clone(), coordinator.shared()).await {
        Ok(broker) => broker,
        Err(error) => {
            coordinator.shutdown().await;
            return Err(anyhow::Error::new(error).context("opening the broker"));
        }
    };

    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "runnel broker {} listening on {address}, metrics on http://{admin_address}/metrics, data in {}",
        config.broker_id,
        config.data_dir.display()
    )?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%address, "broker started");

    // On the signal, parked long polls answer at once, so the server's drain does not wait
    // out their max_wait; sends and commits in flight still complete before close.
    let draining = Arc::clone(&broker);
    let stop = async move {
        shutdown_signal().await;
        draining.end_long_polls();
    };
    let served = server.serve(Arc::clone(&broker), stop).await;
    tracing::info!("stopping: closing logs");
    let closed = broker.close().await;
    coordinator.shutdown().await;
    metrics_task.abort();
    served.context("serving clients")?;
    closed.context("closing the broker")?;
    Ok(())
}

/// The coordinator the broker runs on, kept concrete so shutdown can leave the cluster.
enum Running {
    Embedded(Arc<EmbeddedCoordinator>),
    Etcd(Arc<EtcdCoordinator>),
}

impl Running {
    fn shared(&self) -> Arc<dyn Coordinator> {
        match self {
            Running::Embedded(c) => Arc::clone(c) as Arc<dyn Coordinator>,
            Running::Etcd(c) => Arc::clone(c) as Arc<dyn Coordinator>,
        }
    }

    /// Leaves the cluster: revokes the broker's etcd lease. Nothing to do when embedded.
    async fn shutdown(&self) {
        if let Running::Etcd(etcd) = self {
            if let Err(error) = etcd.shutdown().await {
                tracing::warn!(%error, "could not revoke the broker's etcd lease; it expires by itself");
            }
        }
    }
}

async fn connect_coordinator(config: &BrokerConfig) -> anyhow::Result<Running> {
    if !config.clustered() {
        let meta = config.meta_dir();
        let coordinator =
            EmbeddedCoordinator::open(&meta).context("opening the embedded coordinator")?;
        tracing::info!(meta = %meta.display(), "coordinator: embedded (single broker)");
        return Ok(Running::Embedded(Arc::new(coordinator)));
    }
    let endpoints = config.etcd.join(",");
    let mut etcd = EtcdConfig::new(config.etcd.clone(), config.cluster.clone());
    etcd.broker_lease_ttl = config.lease_ttl;
    let coordinator = EtcdCoordinator::connect(etcd, Arc::new(SystemClock))
        .await
        .with_context(|| {
            format!(
                "connecting to etcd at {endpoints} (cluster {})",
                config.cluster
            )
        })?;
    tracing::info!(%endpoints, cluster = %config.cluster, "coordinator: etcd");
    Ok(Running::Etcd(Arc::new(coordinator)))
}

/// Completes on the first SIGINT or SIGTERM; a second one exits the process at once.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the broker with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("signal received: shutting down (send another to exit at once)");
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("second signal: exiting without a clean shutdown");
        std::process::exit(1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        broker: BrokerArgs,
    }

    fn config(args: &[&str]) -> BrokerConfig {
        let cli = Cli::try_parse_from(std::iter::once("runnel").chain(args.iter().copied()))
            .expect("valid flags");
        load_config(&cli.broker).expect("a config")
    }

    #[test]
    fn etcd_flags_make_a_cluster_member() {
        let alone = config(&[]);
        assert!(!alone.clustered());
        assert_eq!(alone.cluster, "runnel");

        let member = config(&[
            "--etcd",
            "http://10.0.0.1:2379,http://10.0.0.2:2379",
            "--cluster",
            "east",
            "--broker-id",
            "3",
            "--listen",
            "127.0.0.1:10915",
            "--lease-ttl",
            "4s",
        ]);
        assert!(member.clustered());
        assert_eq!(
            member.etcd,
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(member.cluster, "east");
        assert_eq!(member.broker_id, 3);
        assert_eq!(member.listen, "127.0.0.1:10915");
        assert_eq!(member.lease_ttl, std::time::Duration::from_secs(4));
        assert_eq!(alone.lease_ttl, std::time::Duration::from_secs(10));
    }
}
