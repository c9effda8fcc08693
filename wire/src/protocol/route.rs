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
