//! Topic administration: create, delete, list, describe.

/// Topic settings by name, as strings (`retention.ms`, `segment.bytes`, …): the broker
/// validates them and answers `InvalidArgument` naming the first it rejects.
pub type TopicConfig = Vec<(String, String)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateTopicRequest {
    pub name: String,
    pub queues: u32,
    pub config: TopicConfig,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteTopicRequest {
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListTopicsRequest {
    /// Include internal topics (consumer offsets, and later retry / schedule topics).
    pub include_internal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListTopicsResponse {
    pub topics: Vec<TopicSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSummary {
    pub name: String,
    pub queues: u32,
    pub internal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribeTopicRequest {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub internal: bool,
    pub config: TopicConfig,
    pub queues: Vec<QueueDescription>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDescription {
    pub queue: u32,
    /// The broker that leads the queue.
    pub leader: u32,
    pub leader_epoch: u32,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    pub high_watermark: u64,
    /// Bytes stored on the leader's disk for this queue.
    pub size_bytes: u64,
}
