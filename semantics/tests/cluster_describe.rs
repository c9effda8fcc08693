//! `DescribeCluster` on a broker of a cluster on etcd: the coordinator kind, the cluster's
//! name, and every live broker with its address, whichever broker is asked.

mod common;

use common::cluster::*;
use common::*;
use wire::protocol::DescribeClusterRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broker_describes_the_whole_cluster() {
    let etcd = etcd().await;
    let dir = tempfile::tempdir().unwrap();
    let a = join(member_config(dir.path(), &etcd, 1)).await;
    let b = join(member_config(dir.path(), &etcd, 2)).await;
    within(a.etcd.sync()).await.unwrap();
    for member in [&a, &b] {
        let cluster = call(&member.broker, DescribeClusterRequest {})
            .await
            .unwrap();
        assert_eq!(cluster.coordinator, "etcd");
        assert_eq!(cluster.cluster, CLUSTER);
        let brokers: Vec<(u32, &str)> = cluster
            .brokers
            .iter()
            .map(|b| (b.broker_id, b.address.as_str()))
            .collect();
        assert_eq!(brokers, [(1, "127.0.0.1:20001"), (2, "127.0.0.1:20002")]);
        if let Some(controller) = cluster.controller {
            assert!([1, 2].contains(&controller), "{controller}");
        }
    }
    a.close().await;
    b.close().await;
}
