//! `EmbeddedCoordinator`: the single-node coordinator a broker runs when no etcd is configured.
//!
//! Every queue is led by the one registered broker. Topics and each group's generation are
//! kept in files in the coordinator's directory (`store.rs` has the layout and the atomic
//! write); members are ephemeral, as etcd leases would be, so after a restart groups are
//! `Empty` until their members heartbeat again. Membership, targets and the queue hand-over
//! rule live in `group.rs` (shared with the etcd coordinator).
//!
//! All state sits behind one async mutex that is held across the durable write of a change:
//! a new generation is on disk before any member or event can see it, so generations never
//! repeat, even across a crash. Writes run on tokio's blocking pool; a caller that stops
//! waiting (a dropped future) leaves memory unchanged, and its write, if it still lands, is
//! ordered before any later one (`store::Files`), so a file never goes back in time.
//!
//! Sessions expire lazily at the start of every group call, and a background reaper (started
//! by `open` inside a tokio runtime) runs `expire_sessions` every `REAPER_PERIOD`, so a
//! silent member's queues move even when nobody asks about its group.

pub(crate) mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{broadcast, Mutex, MutexGuard};
use tokio::task::AbortHandle;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::limits::{check_group_name, check_member_spec, check_topic_spec, GROUP_MEMBERS_MAX};
use crate::types::*;
use crate::Coordinator;

/// How often members are asked to heartbeat (at most; see `heartbeat_interval`).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Heartbeats per session timeout a member is asked for at least, so one lost heartbeat
/// does not expire it.
pub const HEARTBEATS_PER_SESSION: u32 = 3;
/// How often the background reaper expires silent members.
pub const REAPER_PERIOD: Duration = Duration::from_millis(200);
/// Events buffered per subscriber before the slowest loses the oldest.
pub const EVENTS_CAPACITY: usize = 1024;

/// The single-node coordinator. See the module docs.
#[derive(Debug)]
pub struct EmbeddedCoordinator {
    inner: Arc<Inner>,
    reaper: Option<AbortHandle>,
}

#[derive(Debug)]
struct Inner {
    files: store::Files,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    events: broadcast::Sender<CoordinatorEvent>,
}

#[derive(Debug, Default)]
struct State {
    broker: Option<BrokerInfo>,
    topics: BTreeMap<String, TopicMetadata>,
    groups: BTreeMap<String, Group>,
}

impl EmbeddedCoordinator {
    /// Opens (or creates) the coordinator's state in `dir` with the system clock. Inside a
    /// tokio runtime it also starts the session reaper, which stops when the coordinator is
    /// dropped. Reads the state files synchronously: call it at start-up or from a blocking
    /// context.
    pub fn open(dir: impl AsRef<Path>) -> Result<EmbeddedCoordinator> {
        let mut coordinator = Self::open_with_clock(dir, Arc::new(SystemClock))?;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let inner = Arc::downgrade(&coordinator.inner);
            coordinator.reaper = Some(runtime.spawn(reap(inner)).abort_handle());
        }
        Ok(coordinator)
    }

    /// Opens the state in `dir` with `clock` and no background reaper: sessions expire when a
    /// group call or `expire_sessions` finds them past their timeout on `clock`.
    pub fn open_with_clock(
        dir: impl AsRef<Path>,
        clock: Arc<dyn Clock>,
    ) -> Result<EmbeddedCoordinator> {
        let files = store::Files::open(dir.as_ref())?;
        let topics = store::load_topics(files.dir())?;
        let now = clock.now();
        let groups = store::load_groups(files.dir())?
            .into_iter()
            .map(|(name, record)| (name, Group::restore(record, now)))
            .collect();
        let (events, _) = broadcast::channel(EVENTS_CAPACITY);
        Ok(EmbeddedCoordinator {
            inner: Arc::new(Inner {
                files,
                clock,
                state: Mutex::new(State {
                    broker: None,
                    topics,
                    groups,
                }),
                events,
            }),
            reaper: None,
        })
    }

    /// The directory holding the state files.
    pub fn dir(&self) -> &Path {
        self.inner.files.dir()
    }

    /// Removes every member silent for its session timeout, rebalancing its group, and hands
    /// over queues that became free. Answers how many members expired.
    pub async fn expire_sessions(&self) -> Result<usize> {
        self.inner.expire_sessions().await
    }
}

impl Drop for EmbeddedCoordinator {
    fn drop(&mut self) {
        if let Some(reaper) = &self.reaper {
            reaper.abort();
        }
    }
}

/// The background reaper: holds only a weak reference, so it ends with the coordinator.
async fn reap(inner: Weak<Inner>) {
    let mut interval = tokio::time::interval(REAPER_PERIOD);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(error) = inner.expire_sessions().await {
            tracing::warn!(%error, "expiring consumer group sessions failed; retrying");
        }
    }
}

/// The heartbeat interval a member with `session_timeout` is asked for.
pub(crate) fn heartbeat_interval(session_timeout: Duration) -> Duration {
    HEARTBEAT_INTERVAL.min(session_timeout / HEARTBEATS_PER_SESSION)
}

impl Inner {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    async fn expire_sessions(&self) -> Result<usize> {
        let mut state = self.state.lock().await;
        let now = self.now();
        let mut expired = 0;
        let mut changed = Vec::new();
        let State { topics, groups, .. } = &*state;
        for (name, group) in groups {
            if group.expiry_due(now) || group.rebalance_due() {
                let mut next = group.clone();
                expired += next.expire(now);
                next.rebalance_if_due(topics);
                next.settle(now);
                changed.push((name.clone(), next));
            }
        }
        self.commit_groups(&mut state, changed).await?;
        Ok(expired)
    }

    /// Expires sessions of one group (the lazy expiry at the start of a group call).
    async fn expire_group(&self, state: &mut MutexGuard<'_, State>, name: &str) -> Result<()> {
        let now = self.now();
        let Some(group) = state.groups.get(name) else {
            return Ok(());
        };
        if !group.expiry_due(now) && !group.rebalance_due() {
            return Ok(());
        }
        let mut next = group.clone();
        next.expire(now);
        next.rebalance_if_due(&state.topics);
        next.settle(now);
        self.commit_groups(state, vec![(name.to_owned(), next)])
            .await
    }

    /// Writes `changed` groups' records if they differ from the current ones, then publishes
    /// them and announces new generations. On a failed write nothing changes.
    async fn commit_groups(
        &self,
        state: &mut MutexGuard<'_, State>,
        changed: Vec<(String, Group)>,
    ) -> Result<()> {
        let durable = changed.iter().any(|(name, next)| {
            state
                .groups
                .get(name)
                .is_none_or(|current| current.record() != next.record())
        });
        if durable {
            let mut records: BTreeMap<String, store::GroupRecord> = state
                .groups
                .iter()
                .filter(|(_, g)| g.is_known())
                .map(|(name, g)| (name.clone(), g.record()))
                .collect();
            for (name, next) in &changed {
                records.insert(name.clone(), next.record());
            }
            let bytes = store::encode_groups(records);
            self.files.replace(store::GROUPS_FILE, bytes).await?;
        }
        for (name, mut next) in changed {
            let before = state.groups.get(&name).map_or(0, Group::generation);
            let generation = next.generation();
            if generation != before {
                // Every member hears of the new generation; grants need no word of their own.
                next.take_granted();
                let _ = self.events.send(CoordinatorEvent::GroupRebalanced {
                    group: name.clone(),
                    generation,
                });
            } else {
                self.announce_grants(&name, &mut next);
            }
            state.groups.insert(name, next);
        }
        Ok(())
    }

    /// Tells the members `group` granted queues within its generation (a previous owner
    /// released them) that their assignment grew, so they take the queues up at once.
    fn announce_grants(&self, name: &str, group: &mut Group) {
        let members: Vec<String> = group.take_granted().into_iter().collect();
        if !members.is_empty() {
            let _ = self.events.send(CoordinatorEvent::QueuesGranted {
                group: name.to_owned(),
                generation: group.generation(),
                members,
            });
        }
    }

    /// After a topic appeared or vanished: rebalances every group subscribed to it. A failed
    /// write leaves the groups asking for a rebalance, which the reaper and the next group
    /// call retry; the topic change itself stands.
    async fn rebalance_subscribers(&self, state: &mut MutexGuard<'_, State>, topic: &str) {
        let now = self.now();
        let mut changed = Vec::new();
        for (name, group) in &state.groups {
            if group.subscribes_to(topic) {
                let mut next = group.clone();
                next.request_rebalance();
                next.expire(now);
                next.rebalance_if_due(&state.topics);
                next.settle(now);
                changed.push((name.clone(), next));
            }
        }
        let names: Vec<String> = changed.iter().map(|(name, _)| name.clone()).collect();
        if let Err(error) = self.commit_groups(state, changed).await {
            tracing::warn!(%error, topic, "rebalancing the groups subscribed to a changed topic failed; retrying");
            for name in names {
                if let Some(group) = state.groups.get_mut(&name) {
                    group.request_rebalance();
                }
            }
        }
    }

    async fn write_topics(&self, topics: &BTreeMap<String, TopicMetadata>) -> Result<()> {
        self.files
            .replace(store::TOPICS_FILE, store::encode_topics(topics))
            .await
    }
}

fn unknown_member(group: &str, member_id: &str) -> Error {
    Error::UnknownMember {
        group: group.to_owned(),
        member_id: member_id.to_owned(),
    }
}

#[async_trait]
impl Coordinator for EmbeddedCoordinator {
    /// Registers the one broker. Queues led by another broker id (the broker's id changed
    /// since they were placed) move to it with their leader epoch bumped.
    async fn register_broker(&self, broker: BrokerInfo) -> Result<()> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        let id = broker.id;
        if state
            .topics
            .values()
            .flat_map(|t| &t.queues)
            .any(|q| q.leader != id)
        {
            let mut topics = state.topics.clone();
            for queue in topics.values_mut().flat_map(|t| &mut t.queues) {
                if queue.leader != id {
                    queue.leader = id;
                    queue.leader_epoch += 1;
                    queue.replicas = vec![id];
                    queue.isr = vec![id];
                    queue.version += 1;
                }
            }
            inner.write_topics(&topics).await?;
            state.topics = topics;
        }
        state.broker = Some(broker);
        Ok(())
    }

    async fn brokers(&self) -> Result<Vec<BrokerInfo>> {
        Ok(self
            .inner
            .state
            .lock()
            .await
            .broker
            .iter()
            .cloned()
            .collect())
    }

    async fn create_topic(&self, spec: TopicSpec) -> Result<TopicMetadata> {
        check_topic_spec(&spec)?;
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        if state.topics.contains_key(&spec.name) {
            return Err(Error::TopicExists(spec.name));
        }
        let Some(leader) = state.broker.as_ref().map(|b| b.id) else {
            return Err(Error::Unavailable(
                "no broker is registered to place queues on".into(),
            ));
        };
        let topic = TopicMetadata {
            name: spec.name.clone(),
            config: spec.config,
            internal: spec.internal,
            queues: (0..spec.queues)
                .map(|queue| QueueState {
                    queue,
                    leader,
                    leader_epoch: 0,
                    replicas: vec![leader],
                    isr: vec![leader],
                    version: 0,
                })
                .collect(),
        };
        let mut topics = state.topics.clone();
        topics.insert(spec.name.clone(), topic.clone());
        inner.write_topics(&topics).await?;
        state.topics = topics;
        let _ = inner.events.send(CoordinatorEvent::TopicCreated {
            topic: spec.name.clone(),
        });
        inner.rebalance_subscribers(&mut state, &spec.name).await;
        Ok(topic)
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        if !state.topics.contains_key(name) {
            return Err(Error::UnknownTopic(name.to_owned()));
        }
        let mut topics = state.topics.clone();
        topics.remove(name);
        inner.write_topics(&topics).await?;
        state.topics = topics;
        let _ = inner.events.send(CoordinatorEvent::TopicDeleted {
            topic: name.to_owned(),
        });
        inner.rebalance_subscribers(&mut state, name).await;
        Ok(())
    }

    async fn topic(&self, name: &str) -> Result<Option<TopicMetadata>> {
        Ok(self.inner.state.lock().await.topics.get(name).cloned())
    }

    async fn topics(&self) -> Result<Vec<TopicMetadata>> {
        Ok(self
            .inner
            .state
            .lock()
            .await
            .topics
            .values()
            .cloned()
            .collect())
    }

    async fn heartbeat(
        &self,
        group: &str,
        member: MemberSpec,
        generation: Option<u64>,
    ) -> Result<MemberAssignment> {
        check_group_name(group)?;
        check_member_spec(&member)?;
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        let now = inner.now();
        let id = member.member_id.clone();
        let interval = heartbeat_interval(member.session_timeout);
        let current = state.groups.get(group);
        if current.is_none_or(|g| g.heartbeat_is_durable(&member, now)) {
            // Membership or the record changes: work on a copy and publish it once written.
            let mut next = current.cloned().unwrap_or_default();
            next.expire(now);
            if !next.has_member(&id) && next.member_count() >= GROUP_MEMBERS_MAX {
                return Err(Error::InvalidArgument(format!(
                    "group {group} already has {GROUP_MEMBERS_MAX} members"
                )));
            }
            next.join_or_refresh(member, now);
            next.rebalance_if_due(&state.topics);
            next.confirm(&id, generation);
            next.settle(now);
            next.forget_granted(&id);
            inner
                .commit_groups(&mut state, vec![(group.to_owned(), next)])
                .await?;
        } else if let Some(current) = state.groups.get_mut(group) {
            current.join_or_refresh(member, now);
            current.confirm(&id, generation);
            current.settle(now);
            current.forget_granted(&id);
            inner.announce_grants(group, current);
        }
        let current = state
            .groups
            .get(group)
            .ok_or_else(|| unknown_member(group, &id))?;
        Ok(MemberAssignment {
            generation: current.generation(),
            queues: current.answer(&id),
            heartbeat_interval: interval,
        })
    }

    async fn leave_group(&self, group: &str, member_id: &str) -> Result<()> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        inner.expire_group(&mut state, group).await?;
        let Some(current) = state.groups.get(group) else {
            return Err(unknown_member(group, member_id));
        };
        let mut next = current.clone();
        if !next.leave(member_id) {
            return Err(unknown_member(group, member_id));
        }
        let now = inner.now();
        next.rebalance_if_due(&state.topics);
        next.settle(now);
        inner
            .commit_groups(&mut state, vec![(group.to_owned(), next)])
            .await
    }

    async fn group(&self, group: &str) -> Result<Option<GroupMetadata>> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        inner.expire_group(&mut state, group).await?;
        Ok(state
            .groups
            .get(group)
            .filter(|g| g.is_known())
            .map(|g| g.describe(group)))
    }

    async fn groups(&self) -> Result<Vec<GroupMetadata>> {
        self.inner.expire_sessions().await?;
        let state = self.inner.state.lock().await;
        Ok(state
            .groups
            .iter()
            .filter(|(_, g)| g.is_known())
            .map(|(name, g)| g.describe(name))
            .collect())
    }

    async fn check_generation(&self, group: &str, member_id: &str, generation: u64) -> Result<()> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        inner.expire_group(&mut state, group).await?;
        let current = state
            .groups
            .get(group)
            .filter(|g| g.has_member(member_id))
            .ok_or_else(|| unknown_member(group, member_id))?;
        if current.generation() != generation {
            return Err(Error::IllegalGeneration {
                group: group.to_owned(),
                given: generation,
                current: current.generation(),
            });
        }
        Ok(())
    }

    async fn cluster_info(&self) -> Result<ClusterInfo> {
        let broker = self.inner.state.lock().await.broker.as_ref().map(|b| b.id);
        Ok(ClusterInfo {
            kind: CoordinatorKind::Embedded,
            name: String::new(),
            controller: broker,
        })
    }

    fn events(&self) -> broadcast::Receiver<CoordinatorEvent> {
        self.inner.events.subscribe()
    }
}
