//! `Cluster`: a broker cluster for multi-process tests — one real etcd (`EtcdServer`) and N
//! real `runnel broker` processes joined to it, each with its own temporary data directory
//! and free loopback ports.
//!
//! Broker `i` runs with `--etcd <endpoint> --cluster <name> --broker-id i`; the cluster name is
//! unique per `Cluster` (each also has an etcd of its own, so names only matter in logs).
//!
//! Readiness is awaited, not slept for: `start` returns once every broker printed its
//! listening line and answers `DescribeCluster` naming all N brokers live — placement of a
//! topic created next uses that view.
//!
//! The controller is read from etcd's `controller` key itself (`controller`), the ground
//! truth that `DescribeCluster` reports from each broker's cache.
//!
//! Faults: `kill(i)` (SIGKILL), `terminate(i)` (SIGTERM), `restart(i)` (same address, same
//! data directory, same id), and etcd's `stop_etcd` (SIGTERM) / `kill_etcd` / `restart_etcd`
//! (same ports and data). Everything is killed on drop.
//!
//! The blocking parts of `BrokerProcess` (waiting for the listening line, reaping) run through
//! `block_in_place`, so a `Cluster` needs the multi-thread tokio runtime.

use std::collections::BTreeSet;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coordinator::testing::EtcdServer;
use tempfile::TempDir;
use wire::client::{Admin, Client};
use wire::protocol::DescribeClusterResponse;

use crate::broker::BrokerProcess;
use crate::wait::{client_config, until};

/// How long one etcd request of the harness may take.
const ETCD_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A running cluster; see the module docs.
#[derive(Debug)]
pub struct Cluster {
    /// Index `i` is broker id `i`. Declared before `etcd`, so brokers die first on drop.
    brokers: Vec<BrokerProcess>,
    etcd: EtcdServer,
    name: String,
    /// Kept so the data directories outlive the brokers.
    _dirs: Vec<TempDir>,
}

impl Cluster {
    /// Starts etcd and `brokers` brokers with default settings; see `start_with`.
    pub async fn start(brokers: usize) -> Cluster {
        Cluster::start_with(brokers, &[]).await
    }

    /// Starts etcd, then `brokers` brokers (in parallel), each with `extra_args` after the
    /// cluster flags, and waits until every broker sees all of them.
    pub async fn start_with(brokers: usize, extra_args: &[&str]) -> Cluster {
        assert!(brokers > 0, "a cluster needs a broker");
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "test-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let etcd = EtcdServer::start().await.expect("start etcd");
        let endpoint = etcd.endpoint();
        let dirs: Vec<TempDir> = (0..brokers)
            .map(|_| tempfile::tempdir().expect("a broker's data directory"))
            .collect();
        let started = tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                let starting: Vec<_> = dirs
                    .iter()
                    .enumerate()
                    .map(|(id, dir)| {
                        let args = broker_args(&endpoint, &name, id, extra_args);
                        scope.spawn(move || {
                            let args: Vec<&str> = args.iter().map(String::as_str).collect();
                            BrokerProcess::start_named(&format!("broker {id}"), dir.path(), &args)
                        })
                    })
                    .collect();
                starting
                    .into_iter()
                    .map(|handle| handle.join().expect("a broker failed to start"))
                    .collect::<Vec<_>>()
            })
        });
        let cluster = Cluster {
            brokers: started,
            etcd,
            name,
            _dirs: dirs,
        };
        let all: Vec<u32> = (0..brokers as u32).collect();
        cluster.await_brokers(&all).await;
        cluster
    }

    /// The cluster's name (`--cluster`): its etcd keys live under `/runnel/<name>/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many brokers the cluster was started with (running or not).
    pub fn len(&self) -> usize {
        self.brokers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.brokers.is_empty()
    }

    /// Where broker `id` listens for clients (`host:port`, kept across restarts).
    pub fn address(&self, id: u32) -> &str {
        &self.brokers[id as usize].address
    }

    /// Every broker's address, by id.
    pub fn addresses(&self) -> Vec<String> {
        self.brokers.iter().map(|b| b.address.clone()).collect()
    }

    /// Broker `id`'s process, for its metrics or liveness.
    pub fn broker(&mut self, id: u32) -> &mut BrokerProcess {
        &mut self.brokers[id as usize]
    }

    /// The etcd client URL.
    pub fn etcd_endpoint(&self) -> String {
        self.etcd.endpoint()
    }

    /// A client that knows only broker `id` (everything else it learns from routes).
    pub async fn client(&self, id: u32, client_id: &str) -> Client {
        Client::connect(client_config(self.address(id), client_id))
            .await
            .unwrap_or_else(|e| panic!("connect {client_id} to broker {id}: {e}"))
    }

    /// A client that knows the brokers `ids` (tried in order for group and admin requests).
    pub async fn client_of(&self, ids: &[u32], client_id: &str) -> Client {
        let mut config = client_config(self.address(ids[0]), client_id);
        config.bootstrap = ids.iter().map(|&id| self.address(id).to_owned()).collect();
        Client::connect(config)
            .await
            .unwrap_or_else(|e| panic!("connect {client_id} to brokers {ids:?}: {e}"))
    }

    /// SIGKILL broker `id` (no clean shutdown) and reap it. Its etcd registration stays until
    /// its lease expires.
    pub fn kill(&mut self, id: u32) {
        tokio::task::block_in_place(|| self.brokers[id as usize].kill());
    }

    /// SIGTERM broker `id` and wait for it to exit.
    pub fn terminate(&mut self, id: u32) -> ExitStatus {
        tokio::task::block_in_place(|| self.brokers[id as usize].terminate())
    }

    /// Starts a stopped broker `id` again (same id, address and data) and waits until it
    /// listens; `await_brokers` waits for the others to see it.
    pub fn restart(&mut self, id: u32) {
        tokio::task::block_in_place(|| self.brokers[id as usize].restart());
    }

    /// Stops etcd with SIGTERM and waits for it to exit.
    pub async fn stop_etcd(&mut self) {
        self.etcd.stop().await;
    }

    /// Kills etcd with SIGKILL.
    pub fn kill_etcd(&mut self) {
        self.etcd.kill();
    }

    /// Starts etcd again on the same ports and data, and waits until it answers.
    pub async fn restart_etcd(&mut self) {
        self.etcd.restart().await.expect("restart etcd");
    }

    /// Waits until every broker of `ids` answers `DescribeCluster` naming exactly the brokers
    /// `ids` as live (so a killed broker's lease has expired, a restarted one is back, and a
    /// topic created now is placed over all of them); returns each one's answer.
    pub async fn await_brokers(&self, ids: &[u32]) -> Vec<DescribeClusterResponse> {
        let expected: BTreeSet<u32> = ids.iter().copied().collect();
        let clients: Vec<(u32, Client)> = ids
            .iter()
            .map(|&id| {
                let config = client_config(self.address(id), &format!("harness-{id}"));
                (id, Client::new(config).expect("a harness client"))
            })
            .collect();
        let what = format!("brokers {ids:?} each to see exactly those brokers live");
        let views = until(&what, || async {
            let mut views = Vec::new();
            let mut wrong = Vec::new();
            for (id, client) in &clients {
                match Admin::new(client).describe_cluster().await {
                    Ok(view) => {
                        let live: BTreeSet<u32> =
                            view.brokers.iter().map(|b| b.broker_id).collect();
                        if live != expected {
                            wrong.push(format!("broker {id} sees {live:?}"));
                        }
                        views.push(view);
                    }
                    Err(e) => wrong.push(format!("broker {id}: {e}")),
                }
            }
            if wrong.is_empty() {
                Ok(views)
            } else {
                Err(wrong.join("; "))
            }
        })
        .await;
        for (_, client) in clients {
            client.close();
        }
        views
    }

    /// The broker id in etcd's `controller` key (`/runnel/<cluster>/controller`, JSON
    /// `{"broker": id}`); `Ok(None)` while nobody holds it; `Err` if etcd did not answer.
    pub async fn controller(&self) -> Result<Option<u32>, String> {
        let key = format!("/runnel/{}/controller", self.name);
        let Some(value) = self.etcd_get(&key).await? else {
            return Ok(None);
        };
        let record: serde_json::Value =
            serde_json::from_slice(&value).map_err(|e| format!("{key}: {e}"))?;
        let broker = record["broker"]
            .as_u64()
            .ok_or_else(|| format!("{key} holds {record}"))?;
        Ok(Some(u32::try_from(broker).map_err(|e| e.to_string())?))
    }

    /// The brokers registered in etcd (`/runnel/<cluster>/brokers/<id>`).
    pub async fn registered_brokers(&self) -> Result<BTreeSet<u32>, String> {
        let prefix = format!("/runnel/{}/brokers/", self.name);
        let options = etcd_client::GetOptions::new()
            .with_prefix()
            .with_keys_only();
        let response = self.etcd_request(|mut c| {
            let (prefix, options) = (prefix.clone(), options.clone());
            async move { c.get(prefix, Some(options)).await }
        });
        let response = response.await?;
        response
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                key[prefix.len()..]
                    .parse::<u32>()
                    .map_err(|e| format!("{key}: {e}"))
            })
            .collect()
    }

    async fn etcd_get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let response = self
            .etcd_request(|mut c| {
                let key = key.to_owned();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
    }

    async fn etcd_request<T, F, Fut>(&self, request: F) -> Result<T, String>
    where
        F: FnOnce(etcd_client::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(ETCD_REQUEST_TIMEOUT)
            .with_timeout(ETCD_REQUEST_TIMEOUT);
        let attempt = async {
            let client = etcd_client::Client::connect([self.etcd.endpoint()], Some(options))
                .await
                .map_err(|e| format!("connect to etcd: {e}"))?;
            request(client).await.map_err(|e| format!("etcd: {e}"))
        };
        tokio::time::timeout(ETCD_REQUEST_TIMEOUT * 2, attempt)
            .await
            .map_err(|_| "etcd did not answer".to_owned())?
    }
}

fn broker_args(endpoint: &str, cluster: &str, id: usize, extra_args: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--etcd".into(),
        endpoint.into(),
        "--cluster".into(),
        cluster.into(),
        "--broker-id".into(),
        id.to_string(),
    ];
    args.extend(extra_args.iter().map(|s| s.to_string()));
    args
}
