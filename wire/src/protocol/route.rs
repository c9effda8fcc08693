//! `QueryRoute`: which broker leads each queue of a topic, and where brokers listen. Any
//! broker answers for any topic; clients cache the answer and refresh it on `NotLeader` or
//! `UnknownQueue`.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryRouteRequest {
    pub topic: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryRouteResponse {
    pub brokers: Vec<BrokerAddress>,
    pub queues: Vec<QueueRoute>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerAddress {
    pub broker_id: u32,
    /// `host:port` clients connect to.
    pub address: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRoute {
    pub queue: u32,
    pub leader: u32,
    pub leader_epoch: u32,
}

/// `DescribeCluster`: the live brokers, the controller, and what kind of coordinator keeps the
/// metadata. Any broker answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribeClusterRequest {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribeClusterResponse {
    /// `embedded` (one broker) or `etcd`.
    pub coordinator: String,
    /// The cluster's name; empty for the embedded coordinator.
    pub cluster: String,
    /// The broker acting as controller, if one is elected.
    pub controller: Option<u32>,
    /// The live brokers, by id.
    pub brokers: Vec<BrokerDescription>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerDescription {
    pub broker_id: u32,
    /// `host:port` clients connect to.
    pub address: String,
    /// When the broker registered, ms since the Unix epoch.
    pub started_at_ms: i64,
}
