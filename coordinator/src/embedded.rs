//! `EmbeddedCoordinator`: the single-node coordinator a broker runs when no etcd is configured.
//!
//! Topics live in memory and in `<dir>/topics.json`. Groups live in memory only (members are
//! ephemeral, as etcd leases would be). Every queue is led by the one registered broker.
//!
//! Not yet complete: persistence of group generations, session expiry and queue hand-over
//! come next.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::assignment::assign;
use crate::error::{Error, Result};
use crate::types::*;
use crate::Coordinator;

/// How often members are asked to heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

const TOPICS_FILE: &str = "topics.json";

#[derive(Debug)]
pub struct EmbeddedCoordinator {
    dir: PathBuf,
    state: Mutex<State>,
    events: broadcast::Sender<CoordinatorEvent>,
}

#[derive(Debug, Default)]
struct State {
    broker: Option<BrokerInfo>,
    topics: BTreeMap<String, TopicMetadata>,
    groups: BTreeMap<String, Group>,
}

#[derive(Debug, Default)]
struct Group {
    generation: u64,
    members: BTreeMap<String, Member>,
}

#[derive(Debug)]
struct Member {
    spec: MemberSpec,
    target: Vec<QueueId>,
    confirmed: Option<u64>,
}

impl EmbeddedCoordinator {
    /// Opens (or creates) the coordinator's state in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<EmbeddedCoordinator> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|cause| Error::Io {
            path: dir.clone(),
            cause,
        })?;
        let path = dir.join(TOPICS_FILE);
        let topics = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Vec<TopicMetadata>>(&bytes)
                .map_err(|e| Error::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(cause) => return Err(Error::Io { path, cause }),
        };
        let (events, _) = broadcast::channel(1024);
        Ok(EmbeddedCoordinator {
            dir,
            state: Mutex::new(State {
                topics,
                ..State::default()
            }),
            events,
        })
    }

    fn persist_topics(&self, topics: &BTreeMap<String, TopicMetadata>) -> Result<()> {
        let path = self.dir.join(TOPICS_FILE);
        let list: Vec<&TopicMetadata> = topics.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).expect("topic metadata serialises");
        let tmp = self.dir.join(format!("{TOPICS_FILE}.tmp"));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|cause| Error::Io { path, cause })
    }

    fn rebalance(state: &mut State, name: &str) -> u64 {
        let topics = &state.topics;
        let Some(group) = state.groups.get_mut(name) else {
            return 0;
        };
        group.generation += 1;
        let ids: Vec<String> = group.members.keys().cloned().collect();
        let mut queues: Vec<QueueId> = group
            .members
            .values()
            .flat_map(|m| m.spec.subscriptions.keys())
            .filter_map(|topic| topics.get(topic))
            .flat_map(|t| {
                t.queues
                    .iter()
                    .map(|q| QueueId::new(t.name.clone(), q.queue))
            })
            .collect();
        queues.sort();
        queues.dedup();
        let split = assign(AssignmentStrategy::Averagely, &ids, &queues);
        for (id, target) in ids.iter().zip(split) {
            if let Some(member) = group.members.get_mut(id) {
                member.target = target;
            }
        }
        group.generation
    }
}

#[async_trait]
impl Coordinator for EmbeddedCoordinator {
    async fn register_broker(&self, broker: BrokerInfo) -> Result<()> {
        self.state.lock().broker = Some(broker);
        Ok(())
    }

    async fn brokers(&self) -> Result<Vec<BrokerInfo>> {
        Ok(self.state.lock().broker.iter().cloned().collect())
    }

    async fn create_topic(&self, spec: TopicSpec) -> Result<TopicMetadata> {
        if spec.queues == 0 {
            return Err(Error::InvalidArgument(
                "a topic needs at least one queue".into(),
            ));
        }
        let mut state = self.state.lock();
        if state.topics.contains_key(&spec.name) {
            return Err(Error::TopicExists(spec.name));
        }
        let leader = state.broker.as_ref().map_or(0, |b| b.id);
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
        self.persist_topics(&topics)?;
        state.topics = topics;
        let _ = self
            .events
            .send(CoordinatorEvent::TopicCreated { topic: spec.name });
        Ok(topic)
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        let mut state = self.state.lock();
        if !state.topics.contains_key(name) {
            return Err(Error::UnknownTopic(name.to_owned()));
        }
        let mut topics = state.topics.clone();
        topics.remove(name);
        self.persist_topics(&topics)?;
        state.topics = topics;
        let _ = self.events.send(CoordinatorEvent::TopicDeleted {
            topic: name.to_owned(),
        });
        Ok(())
    }

    async fn topic(&self, name: &str) -> Result<Option<TopicMetadata>> {
        Ok(self.state.lock().topics.get(name).cloned())
    }

    async fn topics(&self) -> Result<Vec<TopicMetadata>> {
        Ok(self.state.lock().topics.values().cloned().collect())
    }

    async fn heartbeat(
        &self,
        group: &str,
        member: MemberSpec,
        generation: Option<u64>,
    ) -> Result<MemberAssignment> {
        let mut state = self.state.lock();
        let entry = state.groups.entry(group.to_owned()).or_default();
        let id = member.member_id.clone();
        let changed = match entry.members.get_mut(&id) {
            Some(existing) => {
                let changed = existing.spec.subscriptions != member.subscriptions;
                existing.spec = member;
                existing.confirmed = generation;
                changed
            }
            None => {
                entry.members.insert(
                    id.clone(),
                    Member {
                        spec: member,
                        target: Vec::new(),
                        confirmed: generation,
                    },
                );
                true
            }
        };
        if changed {
            let generation = Self::rebalance(&mut state, group);
            let _ = self.events.send(CoordinatorEvent::GroupRebalanced {
                group: group.to_owned(),
                generation,
            });
        }
        let entry = &state.groups[group];
        Ok(MemberAssignment {
            generation: entry.generation,
            queues: entry.members[&id].target.clone(),
            heartbeat_interval: HEARTBEAT_INTERVAL,
        })
    }

    async fn leave_group(&self, group: &str, member_id: &str) -> Result<()> {
        let mut state = self.state.lock();
        let removed = state
            .groups
            .get_mut(group)
            .and_then(|g| g.members.remove(member_id));
        if removed.is_none() {
            return Err(Error::UnknownMember {
                group: group.to_owned(),
                member_id: member_id.to_owned(),
            });
        }
        let generation = Self::rebalance(&mut state, group);
        let _ = self.events.send(CoordinatorEvent::GroupRebalanced {
            group: group.to_owned(),
            generation,
        });
        Ok(())
    }

    async fn group(&self, group: &str) -> Result<Option<GroupMetadata>> {
        Ok(self
            .state
            .lock()
            .groups
            .get(group)
            .map(|g| describe(group, g)))
    }

    async fn groups(&self) -> Result<Vec<GroupMetadata>> {
        Ok(self
            .state
            .lock()
            .groups
            .iter()
            .map(|(name, g)| describe(name, g))
            .collect())
    }

    async fn check_generation(&self, group: &str, member_id: &str, generation: u64) -> Result<()> {
        let state = self.state.lock();
        let unknown = || Error::UnknownMember {
            group: group.to_owned(),
            member_id: member_id.to_owned(),
        };
        let g = state.groups.get(group).ok_or_else(unknown)?;
        if !g.members.contains_key(member_id) {
            return Err(unknown());
        }
        if g.generation != generation {
            return Err(Error::IllegalGeneration {
                group: group.to_owned(),
                given: generation,
                current: g.generation,
            });
        }
        Ok(())
    }

    fn events(&self) -> broadcast::Receiver<CoordinatorEvent> {
        self.events.subscribe()
    }
}

fn describe(name: &str, group: &Group) -> GroupMetadata {
    GroupMetadata {
        name: name.to_owned(),
        generation: group.generation,
        phase: if group.members.is_empty() {
            GroupPhase::Empty
        } else {
            GroupPhase::Stable
        },
        strategy: AssignmentStrategy::Averagely,
        members: group
            .members
            .values()
            .map(|m| MemberMetadata {
                spec: m.spec.clone(),
                owned: m.target.clone(),
                target: m.target.clone(),
                confirmed_generation: m.confirmed,
            })
            .collect(),
    }
}
