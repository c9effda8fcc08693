//! Consumer groups in cluster mode: membership by heartbeat, assignment, offsets, and admin.
//!
//! A member heartbeats every `heartbeat_interval_ms` with the generation it last saw. The
//! response carries the current generation and the queues this member may consume now. When a
//! rebalance moves a queue, the old owner sees it leave its assignment, finishes in-flight
//! messages, commits, and heartbeats with the new generation; only then is the queue handed to
//! its new owner (or when the old owner's session expires), so no queue has two consumers.
//!
//! Where a group's offsets live: committed offsets are records of the internal topic
//! `OFFSETS_TOPIC`, all of one group's in one queue, `offsets_queue_for(group, queues)`. The
//! broker leading that queue serves the group's `CommitOffsets`, `FetchOffsets`,
//! `ResetOffsets` and `DescribeGroup`; other brokers answer `NOT_LEADER`. Heartbeats and
//! leaves may go to any broker.

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The queue of `OFFSETS_TOPIC` (of `queue_count` queues) holding `group`'s offsets: 32-bit
/// FNV-1a of the group name's bytes, modulo the queue count. Stable across builds, platforms
/// and releases: changing it would strand every group's earlier commits.
pub fn offsets_queue_for(group: &str, queue_count: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in group.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % queue_count.max(1)
}

/// A topic and one of its queues.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueRef {
    pub topic: String,
    pub queue: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub topic: String,
    /// Tag expression: `*` or `TagA || TagB`. Filtering happens in the client today; the
    /// broker records it for group descriptions.
    pub expression: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub group: String,
    /// Unique per consumer instance, chosen by the client (stable across its reconnects).
    pub member_id: String,
    /// The generation of the assignment the member is consuming; `None` when it has none yet.
    pub generation: Option<u64>,
    pub subscriptions: Vec<Subscription>,
    /// The member is removed when no heartbeat arrives for this long.
    pub session_timeout_ms: u32,
    /// How the member would have the group's queues split; the group uses the one its
    /// lowest member id asks for, from the next rebalance.
    pub strategy: GroupStrategy,
}

/// How a group's queues are split among its members (byte on the wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GroupStrategy {
    /// RocketMQ's default: contiguous blocks of the sorted queues.
    #[default]
    Averagely = 0,
    /// Queue j to member j mod n.
    AveragelyByCircle = 1,
    /// A hash ring: a membership change moves only the queues next to that member.
    ConsistentHash = 2,
    /// As even as `Averagely`, moving the fewest queues.
    Sticky = 3,
}

impl GroupStrategy {
    pub const ALL: [GroupStrategy; 4] = [
        GroupStrategy::Averagely,
        GroupStrategy::AveragelyByCircle,
        GroupStrategy::ConsistentHash,
        GroupStrategy::Sticky,
    ];

    pub fn from_u8(value: u8) -> Option<GroupStrategy> {
        GroupStrategy::ALL.into_iter().find(|s| *s as u8 == value)
    }

    /// The name the command line and group descriptions use.
    pub fn name(self) -> &'static str {
        match self {
            GroupStrategy::Averagely => "averagely",
            GroupStrategy::AveragelyByCircle => "averagely-by-circle",
            GroupStrategy::ConsistentHash => "consistent-hash",
            GroupStrategy::Sticky => "sticky",
        }
    }
}

impl std::str::FromStr for GroupStrategy {
    type Err = String;
    fn from_str(text: &str) -> Result<GroupStrategy, String> {
        GroupStrategy::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = GroupStrategy::ALL.iter().map(|s| s.name()).collect();
                format!("unknown strategy {text:?}; one of {}", names.join(", "))
            })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub generation: u64,
    /// The queues this member owns in `generation` and may consume now.
    pub assignment: Vec<QueueRef>,
    /// How often the broker wants heartbeats.
    pub heartbeat_interval_ms: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveGroupRequest {
    pub group: String,
    pub member_id: String,
}

/// A committed position: the offset of the next message the group will consume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommit {
    pub topic: String,
    pub queue: u32,
    pub offset: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitOffsetsRequest {
    pub group: String,
    /// The committing member and the generation it consumes in; a stale generation is
    /// rejected with `IllegalGeneration`. A client outside group membership (manual
    /// assignment) sends an empty member id and no generation; that is accepted only while
    /// the group has no live members.
    pub member_id: String,
    pub generation: Option<u64>,
    pub offsets: Vec<OffsetCommit>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOffsetsRequest {
    pub group: String,
    pub topic: String,
    /// The queues wanted; empty means every queue of the topic.
    pub queues: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOffsetsResponse {
    pub offsets: Vec<QueueOffset>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueOffset {
    pub queue: u32,
    /// `None` when the group never committed for this queue.
    pub offset: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListGroupsRequest {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListGroupsResponse {
    pub groups: Vec<GroupSummary>,
}

/// A group's state, as in Kafka's tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum GroupState {
    /// No live members (committed offsets may exist).
    Empty = 0,
    /// Members are switching to a new generation: some queues wait for their old owner.
    Rebalancing = 1,
    /// Every member consumes its assignment of the current generation.
    Stable = 2,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSummary {
    pub group: String,
    pub state: GroupState,
    pub members: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribeGroupRequest {
    pub group: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    pub state: GroupState,
    pub generation: u64,
    pub members: Vec<MemberDescription>,
    /// Every queue of every topic the group subscribes to or has committed offsets for.
    pub offsets: Vec<GroupQueueOffset>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub client_id: String,
    /// The member's address as the broker sees its connection.
    pub host: String,
    pub subscriptions: Vec<Subscription>,
    pub assignment: Vec<QueueRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupQueueOffset {
    pub topic: String,
    pub queue: u32,
    pub committed: Option<u64>,
    pub log_end_offset: u64,
    /// `log_end_offset - committed`, or the whole queue (`log_end - log_start`) without a commit.
    pub lag: u64,
    /// The member consuming the queue now, if any.
    pub owner: Option<String>,
}

/// Where a reset moves a group's offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first offset at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetOffsetsRequest {
    pub group: String,
    /// The topic to reset; `None` resets every topic the group has offsets for.
    pub topic: Option<String>,
    pub to: OffsetSpec,
    /// False computes and returns the plan only (a dry run); true also applies it.
    pub execute: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetOffsetsResponse {
    pub plan: Vec<OffsetResetEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetResetEntry {
    pub topic: String,
    pub queue: u32,
    pub current: Option<u64>,
    pub new: u64,
}
