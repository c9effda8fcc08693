//! Brokers of one cluster in one process: a real etcd (`coordinator::testing::EtcdServer`)
//! and one `EtcdCoordinator` per broker, each broker with its own data directory.

use std::path::Path;
use std::sync::Arc;

use coordinator::testing::EtcdServer;
use coordinator::{EtcdConfig, EtcdCoordinator, SystemClock};
use semantics::{Broker, BrokerConfig, Error};
use wire::protocol::ApiRequest;
use wire::{ErrorCode, ServiceError};

use super::{call, within};

pub const CLUSTER: &str = "semantics-test";

/// One broker of a test cluster and the coordinator it runs on.
pub struct Member {
    pub broker: Arc<Broker>,
    pub etcd: Arc<EtcdCoordinator>,
}

impl Member {
    pub async fn close(self) {
        within(self.broker.close()).await.expect("close the broker");
        within(self.etcd.shutdown())
            .await
            .expect("leave the cluster");
    }
}

pub async fn etcd() -> EtcdServer {
    EtcdServer::start().await.expect("start etcd")
}

/// A broker config for member `id` of the cluster on `etcd`; its (unused) listen address
/// names it.
pub fn member_config(dir: &Path, etcd: &EtcdServer, id: u32) -> BrokerConfig {
    BrokerConfig {
        broker_id: id,
        listen: format!("127.0.0.1:{}", 20000 + id),
        data_dir: dir.join(format!("broker-{id}")),
        offsets_queues: 4,
        etcd: vec![etcd.endpoint()],
        cluster: CLUSTER.to_owned(),
        ..BrokerConfig::default()
    }
}

pub async fn connect(config: &BrokerConfig) -> Arc<EtcdCoordinator> {
    let etcd = EtcdConfig::new(config.etcd.clone(), config.cluster.clone());
    Arc::new(
        within(EtcdCoordinator::connect(etcd, Arc::new(SystemClock)))
            .await
            .expect("connect to etcd"),
    )
}

pub async fn try_join(config: BrokerConfig) -> (Result<Arc<Broker>, Error>, Arc<EtcdCoordinator>) {
    let etcd = connect(&config).await;
    let opened = within(Broker::open(config, etcd.clone())).await;
    (opened, etcd)
}

pub async fn join(config: BrokerConfig) -> Member {
    let (opened, etcd) = try_join(config).await;
    Member {
        broker: opened.expect("open the broker"),
        etcd,
    }
}

/// Waits until `broker` serves `topic` (it learns of topics created elsewhere by event).
pub async fn await_topic(broker: &Broker, topic: &str) {
    within(broker.await_topic(topic, true)).await;
}

/// The error `request` gets from `broker`.
pub async fn refused<R: ApiRequest>(broker: &Broker, request: R) -> ServiceError
where
    R::Response: std::fmt::Debug,
{
    call(broker, request)
        .await
        .expect_err("the broker should refuse")
}

/// A group name whose offsets queue is led by broker `leader`, given each offsets queue's
/// leader in queue order.
pub fn group_led_by(offsets_leaders: &[u32], leader: u32) -> String {
    let queues = offsets_leaders.len() as u32;
    (0..1000)
        .map(|n| format!("group-{n}"))
        .find(|g| offsets_leaders[wire::protocol::offsets_queue_for(g, queues) as usize] == leader)
        .unwrap_or_else(|| panic!("no group's offsets are on broker {leader}: {offsets_leaders:?}"))
}

pub fn assert_not_leader(failure: &ServiceError, naming: &str) {
    assert_eq!(failure.code, ErrorCode::NotLeader, "{failure}");
    assert!(
        failure.message.contains(naming),
        "{:?} should name {naming:?}",
        failure.message
    );
}

/// A broker of the cluster that also serves clients (and other brokers) on a loopback port,
/// as `runnel broker` does; `stop` ends the server.
pub struct Served {
    pub member: Member,
    pub address: String,
    server: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    )>,
}

impl Served {
    /// Stops serving on the address; the broker stays open (and in the cluster).
    pub async fn stop_serving(&mut self) {
        if let Some((stop, server)) = self.server.take() {
            let _ = stop.send(());
            within(server)
                .await
                .expect("the server task")
                .expect("serve");
        }
    }

    pub async fn close(mut self) {
        self.stop_serving().await;
        self.member.close().await;
    }
}

pub async fn join_served(mut config: BrokerConfig) -> Served {
    let server = wire::server::Server::bind("127.0.0.1:0", Default::default())
        .await
        .expect("bind");
    let address = server.local_addr().to_string();
    config.listen = address.clone();
    let member = join(config).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let broker = Arc::clone(&member.broker);
    let server = tokio::spawn(server.serve(broker, async move {
        let _ = stopped.await;
    }));
    Served {
        member,
        address,
        server: Some((stop, server)),
    }
}
