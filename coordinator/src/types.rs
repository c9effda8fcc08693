//! The metadata the coordinator keeps: brokers, topics and their queues' placement, consumer
//! groups. Plain data, serialisable, shared by both implementations.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub type BrokerId = u32;

/// A live broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: BrokerId,
    /// `host:port` clients connect to.
    pub address: String,
    pub started_at_ms: i64,
}

/// Which implementation serves the metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordinatorKind {
    /// One broker, metadata in its data directory.
    Embedded,
    /// A cluster of brokers on etcd.
    Etcd,
}

impl CoordinatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CoordinatorKind::Embedded => "embedded",
            CoordinatorKind::Etcd => "etcd",
        }
    }
}

/// The cluster as one coordinator instance sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    pub kind: CoordinatorKind,
    /// The cluster's name (the etcd key prefix); empty for the embedded coordinator.
    pub name: String,
    /// The broker acting as controller, if one is elected (the one broker, when embedded).
    pub controller: Option<BrokerId>,
}

/// What `create_topic` is asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    pub queues: u32,
    /// Settings by name (`retention.ms`, …), validated by the broker before it asks.
    pub config: BTreeMap<String, String>,
    /// Internal topics (consumer offsets, retry, schedule) are hidden from default listings.
    pub internal: bool,
}

/// A topic as placed on the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub config: BTreeMap<String, String>,
    pub internal: bool,
    pub queues: Vec<QueueState>,
}

/// One queue's replication state. Changed only with compare-and-swap on `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    pub queue: u32,
    pub leader: BrokerId,
    pub leader_epoch: u32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub version: u64,
}

/// A topic and one of its queues.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueId {
    pub topic: String,
    pub queue: u32,
}

impl QueueId {
    pub fn new(topic: impl Into<String>, queue: u32) -> QueueId {
        QueueId {
            topic: topic.into(),
            queue,
        }
    }
}

/// A consumer group member as it describes itself in a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSpec {
    pub member_id: String,
    pub client_id: String,
    /// The member's address as the broker sees it.
    pub host: String,
    /// Subscribed topic → tag expression.
    pub subscriptions: BTreeMap<String, String>,
    pub session_timeout: Duration,
    /// The assignment strategy this member asks for. A group uses the one its lowest member
    /// id asks for, chosen at every rebalance, so all brokers agree without a vote.
    pub strategy: AssignmentStrategy,
}

/// What a heartbeat answers: the queues this member may consume now, in `generation`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAssignment {
    pub generation: u64,
    pub queues: Vec<QueueId>,
    pub heartbeat_interval: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupPhase {
    /// No live members.
    Empty,
    /// A new generation is being taken up: some queues wait for their previous owner to
    /// release them.
    Rebalancing,
    /// Every member holds its whole target assignment.
    Stable,
}

/// How a group's queues are split among its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum AssignmentStrategy {
    /// RocketMQ's default: each member takes a contiguous block of the sorted queues.
    #[default]
    Averagely,
    /// RocketMQ's `AllocateMessageQueueAveragelyByCircle`: queue j goes to member j % n, so
    /// neighbouring queues land on different members.
    AveragelyByCircle,
    /// RocketMQ's `AllocateMessageQueueConsistentHash`: members and queues on a hash ring;
    /// a membership change moves only the queues next to the member that came or went.
    ConsistentHash,
    /// Kafka's sticky assignor: as even as `Averagely`, moving the fewest queues from the
    /// members holding them.
    Sticky,
}

/// A group as the coordinator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMetadata {
    pub name: String,
    pub generation: u64,
    pub phase: GroupPhase,
    pub strategy: AssignmentStrategy,
    pub members: Vec<MemberMetadata>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberMetadata {
    pub spec: MemberSpec,
    /// The queues the member holds now (handed over).
    pub owned: Vec<QueueId>,
    /// The queues the current generation gives it (some may still wait for release).
    pub target: Vec<QueueId>,
    /// The generation the member last confirmed in a heartbeat.
    pub confirmed_generation: Option<u64>,
}

/// Something changed that brokers may want to react to (notify clients, open logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinatorEvent {
    TopicCreated {
        topic: String,
    },
    TopicDeleted {
        topic: String,
    },
    /// A group moved to a new generation (a member joined, left or expired, or subscribed
    /// topics changed).
    GroupRebalanced {
        group: String,
        generation: u64,
    },
    /// Within `generation`, `members` were granted queues another member released: they may
    /// consume more than their last heartbeat said.
    QueuesGranted {
        group: String,
        generation: u64,
        members: Vec<String>,
    },
    /// The cluster's controller changed: `broker` holds the election now, or (`None`) nobody
    /// does until the next campaign wins. Only a clustered coordinator elects a controller.
    ControllerChanged {
        broker: Option<BrokerId>,
    },
}
