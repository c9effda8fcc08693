//! `EtcdCoordinator`: the coordinator of a broker cluster, keeping the cluster's metadata in
//! etcd (v3 API, etcd 3.4 or later).
//!
//! # Key layout
//!
//! Everything lives under `/runnel/<cluster>/` (the cluster name follows the topic-name
//! rules); values are JSON.
//!
//! | key | value | written by | lifetime |
//! |---|---|---|---|
//! | `brokers/<id>` | `BrokerInfo` `{id, address, started_at_ms}` | the broker itself | bound to the broker's lease |
//! | `controller` | `{"broker": <id>}` | the broker that wins the campaign | bound to the winner's broker lease |
//! | `topics/<topic>` | `{config, internal, queues, complete}` | `create_topic`: in a broker cluster the controller (the offsets topic: the broker that first needs it) | until `delete_topic` |
//! | `partitions/<topic>/<queue>` | `QueueState` `{queue, leader, leader_epoch, replicas, isr, version}` | created with the topic; changed only by the controller | deleted with the topic |
//! | `groups/<group>/members/<member>` | `{client_id, host, subscriptions, session_timeout_ms, confirmed}` | the broker the member heartbeats to | bound to a per-member lease, TTL session timeout + 2 s |
//! | `groups/<group>/assignment` | `{generation, strategy, revision, topics, members: {<id>: {…member, target, owned}}}` | the controller only | kept while the cluster lives (an empty group keeps its generation) |
//!
//! # Design
//!
//! **Reads come from a cache.** Each instance keeps every key of its cluster in memory
//! (`cache.rs`), loaded by a consistent range read at revision R and kept current by a watch
//! from R + 1 (`watcher.rs`); a broken watch (etcd down, compaction) re-lists and re-watches.
//! `topic`, `topics` and `brokers` answer from it, so they keep answering while etcd is
//! unreachable. A topic the cache does not hold is looked up in etcd before `topic` answers
//! that it does not exist (`topics::read_through`): a topic created through another broker
//! is known everywhere once its creation is acknowledged, however far a watch lags. The cache is also where events come from: every instance emits
//! `TopicCreated` / `TopicDeleted` / `ControllerChanged` for changes made anywhere.
//!
//! **Writes go to etcd, then wait for the cache.** Every write is a transaction with the
//! guard that makes it safe under concurrency (`create_revision == 0` to create, the
//! controller's election revision plus the key's `mod_revision` to change queue state). After
//! a write succeeds at revision W the call waits (up to `EtcdConfig::cache_wait`) until the
//! cache has reached W, so a read right after an instance's own write sees it.
//!
//! **Failures are bounded.** Every etcd request runs under `EtcdConfig::request_timeout`;
//! a request that fails or times out answers `Error::Unavailable` (retriable). Background
//! tasks (watch, lease) retry with capped back-off and log with `tracing`.
//!
//! **Brokers and the controller** (`registration.rs`): `register_broker` grants a lease of
//! `EtcdConfig::broker_lease_ttl` and puts `brokers/<id>` bound to it; a background task keeps
//! the lease alive and, if etcd reports it lost, registers again with a new lease. The same
//! task campaigns for `controller` (create-if-absent, bound to the broker lease). The
//! controller key's create revision is the election revision (`Election`); the controller's
//! writes (`update_queue`, and `create_topic` / `delete_topic` made by the instance holding
//! the election) are guarded by it, so a deposed controller's writes fail with
//! `Error::Fenced`. Any instance may create and delete topics (guarded by the topic key
//! alone when it is not the controller); brokers send those changes to the controller.
//!
//! **Placement** (`placement.rs`) is round-robin over the live brokers sorted by id, filling
//! the least-loaded first. Large topics are written in several transactions (`topics.rs`).
//!
//! **Consumer groups** split the work three ways. The broker a member heartbeats to
//! (`members.rs`) writes the member key when it changes (join, subscription, confirmed
//! generation), keeps its lease alive, and times its session on the injected clock, revoking
//! the lease of a silent member (the lease TTL is the backstop if that broker dies). The
//! controller (`controller.rs`) turns member keys and topics into the group's assignment with
//! the shared hand-over rule (`group.rs`, through `groups::reconcile`), writing it guarded by
//! its election and the assignment's `mod_revision`. Every broker then answers from its
//! cached assignment: a heartbeat waits until the assignment's `revision` has reached its
//! member-key write and answers `owned ∩ target`; `check_generation`, `group` and `groups`
//! read it; and a rising generation in it is a `GroupRebalanced` event on every instance.
//! A topic created or deleted under subscribers changes the assignment's `topics` and so
//! starts a new generation; `create_topic` / `delete_topic` wait (best effort) until the
//! subscribed groups' assignments reflect it.
//!
//! **Sizes.** The assignment of a group is one key: with etcd's default 1.5 MiB request
//! limit it holds some thousands of members with modest subscriptions, not the full
//! `GROUP_MEMBERS_MAX` × `MEMBER_SUBSCRIPTIONS_MAX`; a write beyond the limit fails and is
//! logged by the controller.

mod cache;
mod controller;
mod groups;
mod keys;
mod members;
mod registration;
mod rpc;
mod topics;
mod watcher;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, ConnectOptions, Txn, TxnResponse};
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::types::*;
use crate::Coordinator;

pub use controller::RECONCILE_PERIOD;
pub use keys::ROOT;
pub use members::{MEMBER_KEEPALIVE_PERIOD, MEMBER_LEASE_GRACE, REAPER_PERIOD};
pub use rpc::{RETRY_PAUSE_MAX, RETRY_PAUSE_MIN};
pub use topics::TXN_OPS_MAX;

/// How long a broker's key outlives its last keep-alive, by default.
pub const BROKER_LEASE_TTL_DEFAULT: Duration = Duration::from_secs(10);
/// How long one etcd request may take, by default, before it fails as `Unavailable`.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// How long a write waits for the cache to reach it, by default.
pub const CACHE_WAIT_DEFAULT: Duration = Duration::from_secs(5);
/// How long connecting to an etcd endpoint may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 keep-alive ping interval on the etcd connection, and how long a ping may go
/// unanswered before the connection counts as dead (so a silent peer breaks the watch).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Events buffered per subscriber before the slowest loses the oldest.
pub const EVENTS_CAPACITY: usize = 1024;

/// Where the cluster's etcd is and how this instance behaves towards it.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// `http://host:port` of one or more etcd members.
    pub endpoints: Vec<String>,
    /// The cluster's name: its keys live under `/runnel/<cluster>/`.
    pub cluster: String,
    /// How long the broker key outlives the broker's last keep-alive; whole seconds (rounded
    /// up), at least one.
    pub broker_lease_ttl: Duration,
    /// How long one etcd request may take.
    pub request_timeout: Duration,
    /// How long a write waits for the cache to reach it (and a heartbeat for the
    /// controller's answer).
    pub cache_wait: Duration,
    /// Whether a background reaper expires silent members every `REAPER_PERIOD`. Without
    /// it, sessions expire only when `expire_sessions` is called (tests on a manual clock).
    pub reap_sessions: bool,
}

impl EtcdConfig {
    /// The defaults for a cluster named `cluster` on `endpoints`.
    pub fn new(endpoints: Vec<String>, cluster: impl Into<String>) -> EtcdConfig {
        EtcdConfig {
            endpoints,
            cluster: cluster.into(),
            broker_lease_ttl: BROKER_LEASE_TTL_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            cache_wait: CACHE_WAIT_DEFAULT,
            reap_sessions: true,
        }
    }
}

/// A term of the controller: the broker elected and the revision that created its key.
/// Controller writes carry it as their guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Election {
    pub broker: BrokerId,
    pub revision: i64,
}

/// The coordinator of a cluster in etcd. See the module docs.
#[derive(Debug)]
pub struct EtcdCoordinator {
    shared: Arc<Shared>,
    /// The watcher, the controller's loop, and the members' reaper and lease keeper.
    tasks: Vec<AbortHandle>,
    keeper: Mutex<Option<AbortHandle>>,
}

/// What the coordinator and its background tasks share.
struct Shared {
    client: Client,
    config: EtcdConfig,
    keys: keys::Keys,
    cache: cache::Cache,
    /// Times consumer-group sessions.
    clock: Arc<dyn Clock>,
    registration: Mutex<Option<Registration>>,
    members: members::Members,
}

#[derive(Clone, Debug)]
struct Registration {
    info: BrokerInfo,
    /// `None` while a lost lease is being replaced.
    lease: Option<i64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("registration", &self.registration)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn registration(&self) -> Option<(BrokerInfo, Option<i64>)> {
        self.registration
            .lock()
            .as_ref()
            .map(|r| (r.info.clone(), r.lease))
    }

    fn set_lease(&self, lease: i64) {
        if let Some(registration) = self.registration.lock().as_mut() {
            registration.lease = Some(lease);
        }
    }

    /// Forgets `lease` if it is still the current one.
    fn clear_lease(&self, lease: i64) {
        if let Some(registration) = self.registration.lock().as_mut() {
            if registration.lease == Some(lease) {
                registration.lease = None;
            }
        }
    }

    /// This broker's term as controller, if it holds the election (by its current lease).
    fn election(&self) -> Option<Election> {
        let (info, lease) = self.registration()?;
        let lease = lease?;
        self.cache.read(|s| {
            s.controller
                .as_ref()
                .filter(|c| c.value.broker == info.id && c.lease == lease)
                .map(|c| Election {
                    broker: c.value.broker,
                    revision: c.create_revision,
                })
        })
    }

    async fn txn(&self, what: &str, txn: Txn) -> Result<TxnResponse> {
        let mut kv = self.client.kv_client();
        let answer = rpc::within(self.config.request_timeout, what, kv.txn(txn)).await?;
        self.cache.note_etcd_answered();
        Ok(answer)
    }

    async fn caught_up(&self, revision: i64) -> Result<()> {
        self.cache.caught_up(revision, self.config.cache_wait).await
    }
}

impl EtcdCoordinator {
    /// Connects to etcd, loads the cluster's keys and starts watching them. Fails with
    /// `Unavailable` if etcd cannot be reached within the request timeout, and with
    /// `InvalidArgument` for a bad cluster name or no endpoint. Must run inside a tokio
    /// runtime; background tasks stop when the coordinator is dropped.
    pub async fn connect(config: EtcdConfig, clock: Arc<dyn Clock>) -> Result<EtcdCoordinator> {
        let keys = keys::Keys::new(&config.cluster)?;
        if config.endpoints.is_empty() {
            return Err(Error::InvalidArgument("no etcd endpoint given".into()));
        }
        for (name, value) in [
            ("request timeout", config.request_timeout),
            ("cache wait", config.cache_wait),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidArgument(format!(
                    "the {name} must be positive"
                )));
            }
        }
        let mut config = config;
        config.broker_lease_ttl = registration::lease_ttl(config.broker_lease_ttl);
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            .with_keep_alive_while_idle(true);
        let client = rpc::within(
            config.request_timeout,
            "connect to etcd",
            Client::connect(config.endpoints.clone(), Some(options)),
        )
        .await?;
        let shared = Arc::new(Shared {
            client,
            cache: cache::Cache::new(keys.clone(), EVENTS_CAPACITY),
            keys,
            config,
            clock,
            registration: Mutex::new(None),
            members: members::Members::default(),
        });
        let mut tasks = vec![
            tokio::spawn(watcher::run(shared.clone())).abort_handle(),
            tokio::spawn(controller::run(shared.clone())).abort_handle(),
        ];
        let reap = shared.config.reap_sessions;
        tasks.push(tokio::spawn(members::run(shared.clone(), reap)).abort_handle());
        let coordinator = EtcdCoordinator {
            shared,
            tasks,
            keeper: Mutex::new(None),
        };
        // The first list: reads answer from a loaded cache from the start.
        let revision = coordinator.current_revision().await?;
        coordinator.shared.caught_up(revision).await?;
        Ok(coordinator)
    }

    /// etcd's current revision (a cheap read of the controller key).
    async fn current_revision(&self) -> Result<i64> {
        let mut kv = self.shared.client.kv_client();
        let answer = rpc::within(
            self.shared.config.request_timeout,
            "read the current revision",
            kv.get(self.shared.keys.controller(), None),
        )
        .await?;
        Ok(answer.header().map_or(0, |h| h.revision()))
    }

    /// Waits until this instance's cache has caught up with everything etcd committed before
    /// the call: after it, reads here see every write made anywhere before it.
    pub async fn sync(&self) -> Result<()> {
        let revision = self.current_revision().await?;
        self.shared.caught_up(revision).await
    }

    /// Stops every background task without revoking the lease, as a crashed process leaves
    /// things: the broker key (and the controller key, if held) stay until the lease's TTL
    /// runs out, and this instance's cache stops following etcd. For fault tests.
    #[cfg(feature = "testing")]
    pub fn crash(&self) {
        self.pause();
        self.shared.registration.lock().take();
    }

    /// Stops every background task but keeps the registration, as a process that stalls (a
    /// long pause, a network partition) finds itself when it runs again: its lease has run
    /// out, its cache is stale, and it still believes what the cache says, including that it
    /// is the controller. For fault tests of fencing.
    #[cfg(feature = "testing")]
    pub fn pause(&self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(keeper) = self.keeper.lock().take() {
            keeper.abort();
        }
    }

    /// Stops keeping the lease alive, and nothing else: as a broker whose keep-alive stream
    /// is broken finds itself. `resume_keeping` starts again from the lease it had.
    #[cfg(feature = "testing")]
    pub fn stop_keeping(&self) {
        if let Some(keeper) = self.keeper.lock().take() {
            keeper.abort();
        }
    }

    /// Starts keeping the lease alive again after `stop_keeping`, as a broker does when its
    /// keep-alive stream reconnects.
    #[cfg(feature = "testing")]
    pub fn resume_keeping(&self) {
        self.stop_keeping();
        self.spawn_keeper();
    }

    /// The configuration in force (the lease TTL rounded to whole seconds).
    pub fn config(&self) -> &EtcdConfig {
        &self.shared.config
    }

    /// The lease the broker key is bound to now, if registered (and not being replaced).
    pub fn broker_lease(&self) -> Option<i64> {
        self.shared.registration().and_then(|(_, lease)| lease)
    }

    /// The current controller, as this instance's cache knows it.
    pub fn controller(&self) -> Option<BrokerId> {
        self.shared
            .cache
            .read(|s| s.controller.as_ref().map(|c| c.value.broker))
    }

    /// This broker's term as controller, if it holds the election (by its current lease).
    pub fn election(&self) -> Option<Election> {
        self.shared.election()
    }

    /// Expires the members of this broker silent for their session timeout on the clock
    /// (revoking their leases) and waits until the controller has processed it; answers how
    /// many expired. The background reaper does the same every `REAPER_PERIOD`.
    pub async fn expire_sessions(&self) -> Result<usize> {
        members::expire(&self.shared).await
    }

    /// Whether this broker is the controller.
    pub fn is_controller(&self) -> bool {
        self.election().is_some()
    }

    /// Changes one queue's replication state (leader, epoch, replicas, ISR) as the controller
    /// of `election`: `state.version` must be the stored version, and the stored state is
    /// replaced by `state` with the version bumped. Fails with `Fenced` if the election is
    /// no longer current (this broker was deposed) or the queue changed meanwhile, and with
    /// `UnknownTopic` if the queue does not exist.
    pub async fn update_queue(
        &self,
        election: Election,
        topic: &str,
        state: QueueState,
    ) -> Result<QueueState> {
        topics::update_queue(&self.shared, election.revision, topic, state).await
    }

    fn spawn_keeper(&self) {
        let keeper = tokio::spawn(registration::keep(self.shared.clone())).abort_handle();
        *self.keeper.lock() = Some(keeper);
    }

    /// Leaves the cluster cleanly: stops keeping the lease and revokes it, so the broker key
    /// (and the controller key, if held) disappear at once rather than after the TTL.
    pub async fn shutdown(&self) -> Result<()> {
        if let Some(keeper) = self.keeper.lock().take() {
            keeper.abort();
        }
        let registration = self.shared.registration.lock().take();
        match registration.and_then(|r| r.lease) {
            Some(lease) => registration::revoke(&self.shared, lease).await,
            None => Ok(()),
        }
    }
}

impl Drop for EtcdCoordinator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(keeper) = self.keeper.lock().take() {
            keeper.abort();
        }
        // A dropped instance leaves as `shutdown` would, if a runtime is there to do it;
        // otherwise its keys go when the lease expires.
        let lease = self.broker_lease();
        if let (Some(lease), Ok(runtime)) = (lease, tokio::runtime::Handle::try_current()) {
            let shared = self.shared.clone();
            runtime.spawn(async move {
                if let Err(error) = registration::revoke(&shared, lease).await {
                    tracing::debug!(%error, "revoking the lease of a dropped coordinator failed");
                }
            });
        }
    }
}

#[async_trait]
impl Coordinator for EtcdCoordinator {
    /// Registers this broker under a new lease (revoking the lease of an earlier
    /// registration of this instance) and keeps it registered.
    async fn register_broker(&self, broker: BrokerInfo) -> Result<()> {
        // The old keeper stops first, so it cannot put the old record back meanwhile; if the
        // new registration fails, the old one is kept up again.
        if let Some(keeper) = self.keeper.lock().take() {
            keeper.abort();
        }
        let previous = self.shared.registration.lock().clone();
        let (lease, revision) = match registration::register(&self.shared, &broker).await {
            Ok(registered) => registered,
            Err(error) => {
                if previous.is_some() {
                    self.spawn_keeper();
                }
                return Err(error);
            }
        };
        *self.shared.registration.lock() = Some(Registration {
            info: broker,
            lease: Some(lease),
        });
        self.spawn_keeper();
        if let Some(old) = previous.and_then(|r| r.lease) {
            if let Err(error) = registration::revoke(&self.shared, old).await {
                tracing::warn!(%error, lease = old, "could not revoke the previous broker lease");
            }
        }
        self.shared.caught_up(revision).await
    }

    async fn brokers(&self) -> Result<Vec<BrokerInfo>> {
        self.shared.cache.read(|s| s.brokers(&self.shared.keys))
    }

    async fn create_topic(&self, spec: TopicSpec) -> Result<TopicMetadata> {
        topics::create(&self.shared, spec).await
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        topics::delete(&self.shared, name).await
    }

    async fn topic(&self, name: &str) -> Result<Option<TopicMetadata>> {
        let cached = self
            .shared
            .cache
            .read(|s| s.topic(&self.shared.keys, name))?;
        match cached {
            Some(topic) => Ok(Some(topic)),
            None => topics::read_through(&self.shared, name).await,
        }
    }

    async fn topics(&self) -> Result<Vec<TopicMetadata>> {
        self.shared.cache.read(|s| s.all_topics(&self.shared.keys))
    }

    async fn heartbeat(
        &self,
        group: &str,
        member: MemberSpec,
        generation: Option<u64>,
    ) -> Result<MemberAssignment> {
        members::heartbeat(&self.shared, group, member, generation).await
    }

    async fn leave_group(&self, group: &str, member_id: &str) -> Result<()> {
        members::leave(&self.shared, group, member_id).await
    }

    async fn group(&self, group: &str) -> Result<Option<GroupMetadata>> {
        self.shared
            .cache
            .read(|s| s.group(&self.shared.keys, group))
    }

    async fn groups(&self) -> Result<Vec<GroupMetadata>> {
        let keys = &self.shared.keys;
        self.shared.cache.read(|s| {
            let mut out = Vec::new();
            for name in s.assignments.keys() {
                out.extend(s.group(keys, name)?);
            }
            Ok(out)
        })
    }

    async fn check_generation(&self, group: &str, member_id: &str, generation: u64) -> Result<()> {
        let keys = &self.shared.keys;
        let cached = |s: &cache::Snapshot| {
            s.assignment(keys, group)
                .ok()
                .flatten()
                .map_or(0, |a| a.generation)
        };
        // A member may have its generation from a broker whose view is ahead of this one's:
        // wait (bounded) for this cache to reach it before judging.
        if self.shared.cache.read(cached) < generation {
            let _ = self
                .shared
                .cache
                .wait_until(
                    self.shared.config.cache_wait,
                    &format!("generation {generation} of group {group}"),
                    |s| cached(s) >= generation,
                )
                .await;
        }
        self.shared.cache.read(|s| {
            let assignment = s
                .assignment(keys, group)?
                .filter(|a| a.members.contains_key(member_id))
                .ok_or_else(|| Error::UnknownMember {
                    group: group.to_owned(),
                    member_id: member_id.to_owned(),
                })?;
            if assignment.generation != generation {
                return Err(Error::IllegalGeneration {
                    group: group.to_owned(),
                    given: generation,
                    current: assignment.generation,
                });
            }
            Ok(())
        })
    }

    async fn cluster_info(&self) -> Result<ClusterInfo> {
        Ok(ClusterInfo {
            kind: CoordinatorKind::Etcd,
            name: self.config().cluster.clone(),
            controller: self.controller(),
        })
    }

    fn is_connected(&self) -> bool {
        self.shared.cache.is_connected()
    }

    fn events(&self) -> broadcast::Receiver<CoordinatorEvent> {
        self.shared.cache.events()
    }
}
