//! The in-memory copy of the cluster's keys that reads are served from, kept current by the
//! watcher (`watcher.rs`), and the events it derives from what changes.
//!
//! The cache holds every key under the cluster prefix, decoded, at one etcd revision. It
//! changes only in two ways: `replace` (a consistent range read at revision R, after start-up
//! or a broken watch) and `apply` (the events of one watch response). Both compare what was
//! visible before and after and emit `TopicCreated` / `TopicDeleted` / `ControllerChanged` /
//! `GroupRebalanced` / `QueuesGranted`,
//! so every instance announces changes made anywhere in the cluster, and a re-list after an
//! outage announces what changed meanwhile. Events are sent before the revision is published,
//! so a caller that waited for its write's revision finds the event already queued.
//!
//! A record that does not decode is kept as "corrupt" under its key (and its old value
//! dropped): reads that need it answer `Error::Corrupt` naming the key; the rest still work.

use std::collections::BTreeMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

use super::groups::{self, AssignmentRecord, MemberRecord};
use super::keys::{self, ControllerRecord, Key, Keys, TopicRecord};
use crate::error::{Error, Result};
use crate::types::{
    BrokerId, BrokerInfo, CoordinatorEvent, GroupMetadata, QueueId, QueueState, TopicMetadata,
};

/// One stored record with the etcd metadata the coordinator compares against.
#[derive(Clone, Debug)]
pub struct Stored<T> {
    pub value: T,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

impl<T> Stored<T> {
    /// `meta`: create revision, mod revision, lease.
    fn new(value: T, meta: (i64, i64, i64)) -> Stored<T> {
        Stored {
            value,
            create_revision: meta.0,
            mod_revision: meta.1,
            lease: meta.2,
        }
    }
}

/// One change of one key, as the watch reports it.
#[derive(Clone, Debug)]
pub enum Change {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        create_revision: i64,
        mod_revision: i64,
        lease: i64,
    },
    Delete {
        key: Vec<u8>,
        revision: i64,
    },
}

impl Change {
    /// The put of `kv`, as a range read or a watch event reports it.
    pub fn put(kv: &etcd_client::KeyValue) -> Change {
        Change::Put {
            key: kv.key().to_vec(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            lease: kv.lease(),
        }
    }

    fn revision(&self) -> i64 {
        match self {
            Change::Put { mod_revision, .. } => *mod_revision,
            Change::Delete { revision, .. } => *revision,
        }
    }
}

/// The cluster's keys at one revision.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub revision: i64,
    pub brokers: BTreeMap<BrokerId, Stored<BrokerInfo>>,
    pub topics: BTreeMap<String, Stored<TopicRecord>>,
    pub partitions: BTreeMap<String, BTreeMap<u32, Stored<QueueState>>>,
    pub controller: Option<Stored<ControllerRecord>>,
    /// Member keys by group, then member id.
    pub members: BTreeMap<String, BTreeMap<String, Stored<MemberRecord>>>,
    pub assignments: BTreeMap<String, Stored<AssignmentRecord>>,
    /// The latest revision at which a member key of each group was put or deleted.
    pub member_changes: BTreeMap<String, i64>,
    /// Keys whose record did not decode, with the reason.
    pub corrupt: BTreeMap<String, String>,
}

impl Snapshot {
    /// Applies one change (keys outside the layout are ignored).
    pub fn apply(&mut self, keys: &Keys, change: Change) {
        let revision = change.revision();
        let (raw, put) = match change {
            Change::Put {
                key,
                value,
                create_revision,
                mod_revision,
                lease,
            } => (key, Some((value, create_revision, mod_revision, lease))),
            Change::Delete { key, .. } => (key, None),
        };
        let Some(parsed) = keys.parse(&raw) else {
            return;
        };
        let name = String::from_utf8_lossy(&raw).into_owned();
        if let Key::Member { group, .. } = &parsed {
            let latest = self.member_changes.entry(group.clone()).or_default();
            *latest = (*latest).max(revision);
        }
        self.corrupt.remove(&name);
        self.remove(&parsed);
        let Some((value, create_revision, mod_revision, lease)) = put else {
            return;
        };
        let meta = (create_revision, mod_revision, lease);
        let decoded = match parsed {
            Key::Broker(id) => keys::decode_broker(&name, id, &value)
                .map(|info| drop(self.brokers.insert(id, Stored::new(info, meta)))),
            Key::Topic(topic) => keys::decode_topic(&name, &value)
                .map(|record| drop(self.topics.insert(topic, Stored::new(record, meta)))),
            Key::Partition(topic, queue) => {
                keys::decode_partition(&name, queue, &value).map(|state| {
                    self.partitions
                        .entry(topic)
                        .or_default()
                        .insert(queue, Stored::new(state, meta));
                })
            }
            Key::Controller => keys::decode::<ControllerRecord>(&name, &value)
                .map(|record| self.controller = Some(Stored::new(record, meta))),
            Key::Member { group, member } => {
                groups::decode_member(&name, &member, &value).map(|record| {
                    self.members
                        .entry(group)
                        .or_default()
                        .insert(member, Stored::new(record, meta));
                })
            }
            Key::Assignment(group) => groups::decode_assignment(&name, &value)
                .map(|record| drop(self.assignments.insert(group, Stored::new(record, meta)))),
        };
        if let Err(error) = decoded {
            tracing::warn!(key = %name, %error, "a coordinator record does not decode");
            self.corrupt.insert(name, error.to_string());
        }
    }

    fn remove(&mut self, key: &Key) {
        match key {
            Key::Broker(id) => drop(self.brokers.remove(id)),
            Key::Topic(topic) => drop(self.topics.remove(topic)),
            Key::Partition(topic, queue) => {
                if let Some(queues) = self.partitions.get_mut(topic) {
                    queues.remove(queue);
                    if queues.is_empty() {
                        self.partitions.remove(topic);
                    }
                }
            }
            Key::Controller => self.controller = None,
            Key::Member { group, member } => {
                if let Some(members) = self.members.get_mut(group) {
                    members.remove(member);
                    if members.is_empty() {
                        self.members.remove(group);
                    }
                }
            }
            Key::Assignment(group) => drop(self.assignments.remove(group)),
        }
    }

    /// Complete topics, by name, with the revision that created each.
    fn visible_topics(&self) -> BTreeMap<&str, i64> {
        self.topics
            .iter()
            .filter(|(_, t)| t.value.complete)
            .map(|(name, t)| (name.as_str(), t.create_revision))
            .collect()
    }

    /// Each group's generation and what each member may consume in it.
    fn answers(&self) -> BTreeMap<String, (u64, BTreeMap<String, Vec<QueueId>>)> {
        self.assignments
            .iter()
            .map(|(group, a)| {
                let answers = a
                    .value
                    .members
                    .keys()
                    .filter_map(|id| Some((id.clone(), groups::answer(&a.value, id)?)))
                    .collect();
                (group.clone(), (a.value.generation, answers))
            })
            .collect()
    }

    fn controller_identity(&self) -> Option<(BrokerId, i64)> {
        self.controller
            .as_ref()
            .map(|c| (c.value.broker, c.create_revision))
    }

    /// A complete topic with its queues; `None` if absent or still being written.
    pub fn topic(&self, keys: &Keys, name: &str) -> Result<Option<TopicMetadata>> {
        let key = keys.topic(name);
        if let Some(reason) = self.corrupt.get(&key) {
            return Err(keys::corrupt(&key, reason.clone()));
        }
        let Some(topic) = self.topics.get(name).filter(|t| t.value.complete) else {
            return Ok(None);
        };
        let prefix = keys.partitions(name);
        if let Some((key, reason)) = self
            .corrupt
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .next()
        {
            return Err(keys::corrupt(key, reason.clone()));
        }
        let stored = self.partitions.get(name);
        let queues = (0..topic.value.queues)
            .map(|queue| {
                stored
                    .and_then(|s| s.get(&queue))
                    .map(|s| s.value.clone())
                    .ok_or_else(|| {
                        keys::corrupt(&key, format!("queue {queue} has no partition key"))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(TopicMetadata {
            name: name.to_owned(),
            config: topic.value.config.clone(),
            internal: topic.value.internal,
            queues,
        }))
    }

    pub fn all_topics(&self, keys: &Keys) -> Result<Vec<TopicMetadata>> {
        let mut out = Vec::new();
        for name in self.topics.keys() {
            out.extend(self.topic(keys, name)?);
        }
        Ok(out)
    }

    pub fn brokers(&self, keys: &Keys) -> Result<Vec<BrokerInfo>> {
        let prefix = keys.brokers();
        if let Some((key, reason)) = self.corrupt.iter().find(|(k, _)| k.starts_with(&prefix)) {
            return Err(keys::corrupt(key, reason.clone()));
        }
        Ok(self.brokers.values().map(|b| b.value.clone()).collect())
    }

    /// Every complete topic that decodes, with the revision that created it.
    pub fn topic_map(&self, keys: &Keys) -> BTreeMap<String, (TopicMetadata, i64)> {
        self.topics
            .iter()
            .filter_map(|(name, stored)| {
                let topic = self.topic(keys, name).ok().flatten()?;
                Some((name.clone(), (topic, stored.create_revision)))
            })
            .collect()
    }

    /// A group's assignment, or the error naming its corrupt key.
    pub fn assignment(&self, keys: &Keys, group: &str) -> Result<Option<&AssignmentRecord>> {
        let key = keys.assignment(group);
        if let Some(reason) = self.corrupt.get(&key) {
            return Err(keys::corrupt(&key, reason.clone()));
        }
        Ok(self.assignments.get(group).map(|a| &a.value))
    }

    /// A group as `Coordinator::group` describes it; `None` if it never had a member.
    pub fn group(&self, keys: &Keys, group: &str) -> Result<Option<GroupMetadata>> {
        Ok(self
            .assignment(keys, group)?
            .filter(|a| a.generation > 0 || !a.members.is_empty())
            .map(|a| groups::describe(group, a)))
    }

    /// How many queues each broker leads.
    pub fn leader_load(&self) -> BTreeMap<BrokerId, usize> {
        let mut load = BTreeMap::new();
        for state in self.partitions.values().flat_map(|p| p.values()) {
            *load.entry(state.value.leader).or_insert(0) += 1;
        }
        load
    }
}

/// What a change of one group's assignment announces: a higher generation is
/// `GroupRebalanced` (every member hears of it); within one generation, members whose answer
/// grew (a queue another member released was granted to them) are `QueuesGranted`.
fn group_events(
    group: String,
    generation: u64,
    answers: &BTreeMap<String, Vec<QueueId>>,
    before: Option<&(u64, BTreeMap<String, Vec<QueueId>>)>,
) -> Option<CoordinatorEvent> {
    let Some((before_generation, before_answers)) = before else {
        return Some(CoordinatorEvent::GroupRebalanced { group, generation });
    };
    if *before_generation < generation {
        return Some(CoordinatorEvent::GroupRebalanced { group, generation });
    }
    let members: Vec<String> = answers
        .iter()
        .filter(|(id, queues)| {
            let before = before_answers.get(*id);
            queues.iter().any(|q| before.is_none_or(|b| !b.contains(q)))
        })
        .map(|(id, _)| id.clone())
        .collect();
    (!members.is_empty()).then_some(CoordinatorEvent::QueuesGranted {
        group,
        generation,
        members,
    })
}

/// The cache: a snapshot behind a lock, the revision it has reached, and the event stream.
#[derive(Debug)]
pub struct Cache {
    keys: Keys,
    snapshot: Mutex<Snapshot>,
    revision: watch::Sender<i64>,
    events: broadcast::Sender<CoordinatorEvent>,
    /// Whether the watch that keeps this cache current is established.
    connected: std::sync::atomic::AtomicBool,
    /// Wakes a watcher pausing between attempts: etcd just answered another request.
    etcd_answered: tokio::sync::Notify,
}

impl Cache {
    /// Records whether the watch is established; answers whether that changed.
    pub fn set_connected(&self, connected: bool) -> bool {
        self.connected
            .swap(connected, std::sync::atomic::Ordering::AcqRel)
            != connected
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Tells a watcher pausing after a failure that etcd answers again, so it re-lists now
    /// rather than at the end of its back-off.
    pub fn note_etcd_answered(&self) {
        if !self.is_connected() {
            self.etcd_answered.notify_waiters();
        }
    }

    /// Completes when `note_etcd_answered` is next called while the watch is down.
    pub async fn etcd_answered(&self) {
        self.etcd_answered.notified().await;
    }

    pub fn new(keys: Keys, events_capacity: usize) -> Cache {
        let (events, _) = broadcast::channel(events_capacity);
        Cache {
            keys,
            snapshot: Mutex::new(Snapshot::default()),
            revision: watch::channel(0).0,
            events,
            connected: std::sync::atomic::AtomicBool::new(false),
            etcd_answered: tokio::sync::Notify::new(),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Runs `read` on the current snapshot.
    pub fn read<T>(&self, read: impl FnOnce(&Snapshot) -> T) -> T {
        read(&self.snapshot.lock())
    }

    pub fn events(&self) -> broadcast::Receiver<CoordinatorEvent> {
        self.events.subscribe()
    }

    /// The revision the cache has reached; changes whenever the snapshot does.
    pub fn revision(&self) -> watch::Receiver<i64> {
        self.revision.subscribe()
    }

    /// Replaces everything with a consistent read at `revision`.
    pub fn replace(&self, revision: i64, changes: Vec<Change>) {
        let mut fresh = Snapshot::default();
        for change in changes {
            fresh.apply(&self.keys, change);
        }
        fresh.revision = revision;
        self.update(|snapshot| *snapshot = fresh);
    }

    /// Applies the changes of one watch response.
    pub fn apply(&self, changes: Vec<Change>) {
        self.update(|snapshot| {
            for change in changes {
                snapshot.revision = snapshot.revision.max(change.revision());
                snapshot.apply(&self.keys, change);
            }
        });
    }

    fn update(&self, change: impl FnOnce(&mut Snapshot)) {
        let (events, revision) = {
            let mut snapshot = self.snapshot.lock();
            let topics_before: BTreeMap<String, i64> = snapshot
                .visible_topics()
                .into_iter()
                .map(|(name, revision)| (name.to_owned(), revision))
                .collect();
            let controller_before = snapshot.controller_identity();
            let answers_before = snapshot.answers();
            change(&mut snapshot);
            let topics_after = snapshot.visible_topics();
            let mut events = Vec::new();
            for (name, created) in &topics_before {
                if topics_after.get(name.as_str()) != Some(created) {
                    events.push(CoordinatorEvent::TopicDeleted {
                        topic: name.clone(),
                    });
                }
            }
            for (name, created) in &topics_after {
                if topics_before.get(*name) != Some(created) {
                    events.push(CoordinatorEvent::TopicCreated {
                        topic: (*name).to_owned(),
                    });
                }
            }
            let controller_after = snapshot.controller_identity();
            if controller_after != controller_before {
                events.push(CoordinatorEvent::ControllerChanged {
                    broker: controller_after.map(|(broker, _)| broker),
                });
            }
            for (group, (generation, answers)) in snapshot.answers() {
                let before = answers_before.get(&group);
                events.extend(group_events(group, generation, &answers, before));
            }
            (events, snapshot.revision)
        };
        for event in events {
            let _ = self.events.send(event);
        }
        self.revision.send_replace(revision);
    }

    /// Waits until `done` holds of the snapshot, failing with `Unavailable` (naming `what`)
    /// after `deadline`.
    pub async fn wait_until(
        &self,
        deadline: Duration,
        what: &str,
        done: impl Fn(&Snapshot) -> bool,
    ) -> Result<()> {
        let mut revisions = self.revision.subscribe();
        let wait = async {
            loop {
                if self.read(&done) {
                    return;
                }
                if revisions.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(deadline, wait)
            .await
            .map_err(|_| Error::Unavailable(format!("{what} did not happen within {deadline:?}")))
    }

    /// Waits until the cache has reached `revision` (a write of this instance), failing with
    /// `Unavailable` after `deadline`.
    pub async fn caught_up(&self, revision: i64, deadline: Duration) -> Result<()> {
        let mut current = self.revision.subscribe();
        let reached = tokio::time::timeout(deadline, current.wait_for(|r| *r >= revision)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Error::Unavailable(format!(
                "the metadata cache did not reach revision {revision} within {deadline:?}"
            ))),
        }
    }
}
