//! Cluster metadata for Runnel: the `Coordinator` interface and its implementations.
//!
//! The coordinator keeps the broker registry, topic and queue placement, queue replication
//! state (leader, leader epoch, ISR, version), and consumer-group membership and assignment.
//! `EmbeddedCoordinator` is the single-node, file-backed default; `EtcdCoordinator`, with the
//! same interface, serves clusters (`etcd/mod.rs` has its key layout and design). It knows
//! nothing of record bytes or sockets.
//!
//! # The consumer protocol
//!
//! A member heartbeats with the generation of the last answer it has *applied*: it consumes
//! only the queues of that answer, and has committed and stopped every queue it had before
//! that the answer lacks. An answer lists the queues the member owns and targets in the
//! current generation; it can grow within a generation as other members release queues, and
//! it never holds a queue another live member holds. A queue moves only after its previous
//! owner confirms the new generation (or leaves, or its session expires), so two members never
//! consume one queue at once — provided a member that cannot heartbeat for its session timeout
//! stops consuming, as it would on losing a lease. `group.rs` states the rule in
//! full; `tests/conformance` holds every implementation to it.
//!
//! `limits` holds the bounds every implementation enforces on names, queue counts, members
//! and sessions; `clock` the time source, injectable for tests; `placement` where a new
//! topic's queues go; `testing` (feature `testing`) a real etcd server for tests.

pub mod assignment;
pub mod clock;
pub mod embedded;
pub mod error;
pub mod etcd;
mod group;
pub mod limits;
pub mod placement;
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;

use async_trait::async_trait;

pub use clock::{Clock, ManualClock, SystemClock};
pub use embedded::EmbeddedCoordinator;
pub use error::{Error, Result};
pub use etcd::{Election, EtcdConfig, EtcdCoordinator, BROKER_LEASE_TTL_DEFAULT};
pub use types::*;

/// What a broker asks of the cluster's metadata store. Every method may be called
/// concurrently; implementations are shared behind an `Arc`.
#[async_trait]
pub trait Coordinator: Send + Sync + std::fmt::Debug + 'static {
    /// Adds (or refreshes) a live broker. In a cluster the registration lasts while the broker
    /// keeps its lease alive.
    async fn register_broker(&self, broker: BrokerInfo) -> Result<()>;

    async fn brokers(&self) -> Result<Vec<BrokerInfo>>;

    /// Creates a topic and places its queues on live brokers, atomically: a concurrent create
    /// of the same name fails with `TopicExists`. The name and queue count are checked against
    /// `limits` (`InvalidArgument`); with no live broker it fails with `Unavailable`.
    async fn create_topic(&self, spec: TopicSpec) -> Result<TopicMetadata>;

    async fn delete_topic(&self, name: &str) -> Result<()>;

    async fn topic(&self, name: &str) -> Result<Option<TopicMetadata>>;

    async fn topics(&self) -> Result<Vec<TopicMetadata>>;

    /// Joins `group` (first heartbeat) or keeps the member alive, and answers the queues it
    /// may consume now. `generation` is the one the member last consumed in: when it equals
    /// the group's current generation, the member has released every queue it no longer owns,
    /// and those queues can move to their new owners.
    ///
    /// A join, a change of subscribed topics (not of tag expressions), a leave, an expiry, and
    /// the creation or deletion of a subscribed topic each start a new generation and emit
    /// `GroupRebalanced`. Names, member fields and the session timeout are checked against
    /// `limits` (`InvalidArgument`).
    async fn heartbeat(
        &self,
        group: &str,
        member: MemberSpec,
        generation: Option<u64>,
    ) -> Result<MemberAssignment>;

    /// Removes a member at once (clean shutdown); its queues move without waiting for the
    /// session timeout.
    async fn leave_group(&self, group: &str, member_id: &str) -> Result<()>;

    /// A group with its phase, generation and members (owned, target, confirmed generation);
    /// `None` if it never had a member.
    async fn group(&self, group: &str) -> Result<Option<GroupMetadata>>;

    /// Every group that ever had a member, including `Empty` ones: they keep their generation
    /// (and the broker their committed offsets).
    async fn groups(&self) -> Result<Vec<GroupMetadata>>;

    /// Checks that `member_id` is a live member of `group` in `generation` (offset-commit
    /// fencing): `UnknownMember` or `IllegalGeneration` otherwise. An implementation whose
    /// view can lag (etcd's cache) first waits, bounded, for a generation newer than it knows:
    /// a member that joined through another broker may commit here before this view has
    /// seen its generation. A stale generation is refused at once.
    async fn check_generation(&self, group: &str, member_id: &str, generation: u64) -> Result<()>;

    /// The coordinator's kind, the cluster's name and its controller.
    async fn cluster_info(&self) -> Result<ClusterInfo>;

    /// Whether the metadata store is reachable now (for a cluster: the watch on etcd is
    /// established). While it is not, reads answer from what was last seen.
    fn is_connected(&self) -> bool {
        true
    }

    /// Changes as they happen. A receiver that lags loses the oldest events (and learns so).
    fn events(&self) -> tokio::sync::broadcast::Receiver<CoordinatorEvent>;
}
