//! Consumer offsets: the latest committed offset of every (group, topic, queue), kept in
//! memory and made durable as records of the internal topic `__consumer_offsets`.
//!
//! A group's records all go to one queue of that topic (FNV-1a of the group name modulo the
//! topic's queue count, which never changes once the topic exists), so one writer task per
//! queue orders all of a group's commits. The writer appends a commit, waits for the broker's
//! flush policy to cover it, and only then updates the map and acknowledges. On open, every
//! queue is replayed from its log start to rebuild the map (last record wins; a tombstone
//! removes the key).
//!
//! Ordering: `submit` runs synchronously inside `Service::call`, so one connection's commits
//! reach the writer in the order they arrived. A commit may carry a fence (the generation
//! check, which asks the coordinator): it is started at once, and the writer awaits it before
//! appending that commit, so checks run concurrently but commits land in order.
//!
//! In a cluster each broker serves the groups whose offsets queue it leads: it replays and
//! writes only those queues (`attach`), and the broker answers other groups' offset requests
//! `NotLeader`, naming the broker that leads their queue.
//!
//! Growth: the topic is not compacted the way Kafka compacts. Instead each writer keeps a
//! count of records written since its last snapshot; once it passes
//! `BrokerConfig::offsets_compact_records` and twice the live keys of its queue, the writer appends a
//! snapshot of its queue's live offsets, syncs it, and moves the log start to the snapshot,
//! which deletes the sealed segments before it (see `writer.rs`). Replay counts records too,
//! so a large log left by an earlier run is compacted right after open. The internal topics
//! are never touched by time or size retention, so a group idle for months keeps its offsets.

mod record;
mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;

use log_core::batch::split_batches;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wire::ServiceError;

use crate::error::{self, Error};
use crate::queue::QueueHandle;

/// The internal topic holding committed offsets (the protocol names it: clients route a
/// group's offset requests by it).
pub use wire::protocol::OFFSETS_TOPIC;

/// Commits that may wait for one offsets writer.
const OFFSETS_QUEUE_JOBS_MAX: usize = 4096;
/// Bytes read per step when replaying an offsets queue at open.
const REPLAY_READ_BYTES: usize = 4 << 20;

/// A check that must pass before a commit is written (the coordinator's generation check).
pub(crate) type Fence = JoinHandle<Result<(), ServiceError>>;

/// One offset to write: `None` deletes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub topic: String,
    pub queue: u32,
    pub offset: Option<u64>,
}

pub(crate) type Acknowledgement = oneshot::Receiver<Result<(), ServiceError>>;

struct WriteJob {
    group: String,
    entries: Vec<OffsetEntry>,
    fence: Option<Fence>,
    reply: oneshot::Sender<Result<(), ServiceError>>,
}

/// The offsets of one group: `(topic, queue) → offset`.
pub(crate) type GroupOffsets = BTreeMap<(String, u32), u64>;

/// The in-memory map, shared by the writers (who change it after each durable append) and
/// readers.
#[derive(Debug, Default)]
pub(crate) struct Committed {
    groups: RwLock<BTreeMap<String, GroupOffsets>>,
}

impl Committed {
    fn apply(&self, group: &str, entry: &OffsetEntry) {
        let mut groups = self.groups.write();
        let key = (entry.topic.clone(), entry.queue);
        match entry.offset {
            Some(offset) => {
                groups
                    .entry(group.to_owned())
                    .or_default()
                    .insert(key, offset);
            }
            None => {
                if let Some(offsets) = groups.get_mut(group) {
                    offsets.remove(&key);
                    if offsets.is_empty() {
                        groups.remove(group);
                    }
                }
            }
        }
    }

    pub fn get(&self, group: &str, topic: &str, queue: u32) -> Option<u64> {
        self.groups
            .read()
            .get(group)
            .and_then(|offsets| offsets.get(&(topic.to_owned(), queue)).copied())
    }

    pub fn group(&self, group: &str) -> GroupOffsets {
        self.groups.read().get(group).cloned().unwrap_or_default()
    }

    pub fn groups(&self) -> Vec<String> {
        self.groups.read().keys().cloned().collect()
    }

    /// Every live offset of the groups `owns` accepts.
    fn entries_of(&self, owns: impl Fn(&str) -> bool) -> Vec<(String, OffsetEntry)> {
        let groups = self.groups.read();
        let mut entries = Vec::new();
        for (group, offsets) in groups.iter().filter(|(g, _)| owns(g)) {
            for ((topic, queue), offset) in offsets {
                entries.push((
                    group.clone(),
                    OffsetEntry {
                        topic: topic.clone(),
                        queue: *queue,
                        offset: Some(*offset),
                    },
                ));
            }
        }
        entries
    }

    fn count_of(&self, owns: impl Fn(&str) -> bool) -> u64 {
        let groups = self.groups.read();
        groups
            .iter()
            .filter(|(g, _)| owns(g))
            .map(|(_, offsets)| offsets.len() as u64)
            .sum()
    }
}

/// The offsets store: the map, and one writer per queue of the offsets topic this broker
/// leads. Empty until `attach` (the offsets topic may not exist yet: in a cluster it is
/// created on first use).
#[derive(Debug)]
pub(crate) struct OffsetStore {
    committed: Arc<Committed>,
    compact_records: u64,
    writers: Mutex<Writers>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Writers {
    /// The offsets topic's queue count once attached; groups hash onto its queues.
    queue_count: Option<usize>,
    /// Offsets queue → its writer, for the queues this broker leads.
    by_queue: BTreeMap<usize, mpsc::Sender<WriteJob>>,
    stopped: bool,
}

impl std::fmt::Debug for WriteJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteJob")
            .field("group", &self.group)
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// The offsets queue that holds `group`'s records, as the protocol defines it
/// (`wire::protocol::offsets_queue_for`: FNV-1a modulo the queue count), so clients find the
/// broker serving a group the same way.
pub(crate) fn queue_of(group: &str, queues: usize) -> usize {
    // Queue numbers are u32, so a topic's queue count always fits.
    let queues = u32::try_from(queues).unwrap_or(u32::MAX);
    wire::protocol::offsets_queue_for(group, queues) as usize
}

impl OffsetStore {
    /// A store serving no offsets queue yet.
    pub fn new(compact_records: u64) -> OffsetStore {
        OffsetStore {
            committed: Arc::new(Committed::default()),
            compact_records,
            writers: Mutex::new(Writers::default()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Starts serving the offsets queues `led` of a topic of `queue_count` queues: replays
    /// each (blocking: call it off the async workers), then starts its writer on `runtime`.
    /// Queues already served are skipped; nothing starts once the store stopped.
    pub fn attach(
        &self,
        queue_count: usize,
        led: Vec<Arc<QueueHandle>>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(), Error> {
        let served: Vec<usize> = {
            let writers = self.writers.lock();
            if writers.stopped {
                return Ok(());
            }
            if let Some(known) = writers.queue_count.filter(|&known| known != queue_count) {
                return Err(Error::Open {
                    op: "opening consumer offsets",
                    reason: format!("{OFFSETS_TOPIC} had {known} queues and now has {queue_count}"),
                });
            }
            writers.by_queue.keys().copied().collect()
        };
        let mut started = 0;
        for queue in led {
            let index = queue.queue as usize;
            if served.contains(&index) {
                continue;
            }
            let records = replay(&queue, &self.committed)?;
            let (sender, receiver) = mpsc::channel(OFFSETS_QUEUE_JOBS_MAX);
            let writer = writer::Writer::new(
                index,
                queue_count,
                queue,
                Arc::clone(&self.committed),
                self.compact_records,
                records,
            );
            let mut writers = self.writers.lock();
            if writers.stopped {
                return Ok(());
            }
            if writers.by_queue.contains_key(&index) {
                continue; // attached meanwhile (replaying again changed nothing)
            }
            self.tasks.lock().push(runtime.spawn(writer.run(receiver)));
            writers.by_queue.insert(index, sender);
            started += 1;
        }
        self.writers.lock().queue_count = Some(queue_count);
        tracing::info!(
            groups = self.committed.groups.read().len(),
            queues = started,
            of = queue_count,
            "loaded consumer offsets"
        );
        Ok(())
    }

    pub fn committed(&self) -> &Committed {
        &self.committed
    }

    /// Queues a write of `entries` for `group`, in the caller's order; the receiver answers
    /// once it is durable (or why it was refused). `fence` must pass first. The caller has
    /// checked that this broker leads the group's offsets queue.
    pub fn submit(
        &self,
        group: &str,
        entries: Vec<OffsetEntry>,
        fence: Option<Fence>,
    ) -> Result<Acknowledgement, ServiceError> {
        let writers = self.writers.lock();
        if writers.stopped {
            return Err(error::shutting_down());
        }
        let queue = writers.queue_count.map(|count| queue_of(group, count));
        let writer = queue
            .and_then(|queue| writers.by_queue.get(&queue))
            .ok_or_else(|| {
                ServiceError::new(
                    wire::ErrorCode::NotLeader,
                    format!("this broker does not serve the offsets of group {group}"),
                )
            })?;
        let (reply, acknowledgement) = oneshot::channel();
        let job = WriteJob {
            group: group.to_owned(),
            entries,
            fence,
            reply,
        };
        writer.try_send(job).map_err(|refused| match refused {
            mpsc::error::TrySendError::Full(_) => ServiceError::new(
                wire::ErrorCode::Busy,
                format!("too many offset commits are waiting for group {group}; retry later"),
            ),
            mpsc::error::TrySendError::Closed(_) => error::shutting_down(),
        })?;
        Ok(acknowledgement)
    }

    /// Writes tombstones for every offset committed on `topic` (it was deleted), so a topic
    /// created later under the same name starts without stale positions.
    pub fn forget_topic(&self, topic: &str) -> Vec<Acknowledgement> {
        let mut by_group: BTreeMap<String, Vec<OffsetEntry>> = BTreeMap::new();
        for (group, offsets) in self.committed.groups.read().iter() {
            for (t, queue) in offsets.keys().filter(|(t, _)| t == topic) {
                by_group
                    .entry(group.clone())
                    .or_default()
                    .push(OffsetEntry {
                        topic: t.clone(),
                        queue: *queue,
                        offset: None,
                    });
            }
        }
        by_group
            .into_iter()
            .filter_map(|(group, entries)| match self.submit(&group, entries, None) {
                Ok(acknowledgement) => Some(acknowledgement),
                Err(refused) => {
                    tracing::warn!(%group, topic, %refused, "could not delete the offsets of a deleted topic");
                    None
                }
            })
            .collect()
    }

    /// Refuses further writes; the writers finish what is queued. Returns the tasks to await.
    pub fn stop(&self) -> Vec<JoinHandle<()>> {
        {
            let mut writers = self.writers.lock();
            writers.stopped = true;
            writers.by_queue.clear();
        }
        std::mem::take(&mut *self.tasks.lock())
    }
}

/// Rebuilds the map from one offsets queue; returns the records read.
fn replay(queue: &QueueHandle, committed: &Committed) -> Result<u64, Error> {
    let failed = |reason: String| Error::Open {
        op: "replaying consumer offsets",
        reason: format!("{}-{}: {reason}", queue.topic, queue.queue),
    };
    let end = queue.readable_end();
    let mut at = queue.log_start();
    let mut records = 0u64;
    let mut skipped = 0u64;
    while at < end {
        let read = queue
            .log
            .read(at, REPLAY_READ_BYTES, end)
            .map_err(|e| failed(e.to_string()))?;
        let mut next = at;
        for batch in split_batches(read.records) {
            let batch = batch.map_err(|e| failed(e.to_string()))?;
            let decoded = batch.records().map_err(|e| failed(e.to_string()))?;
            for item in decoded {
                let item = item.map_err(|e| failed(e.to_string()))?;
                if item.offset < at {
                    continue;
                }
                records += 1;
                let value = item.value.as_deref();
                match record::decode(item.key.as_deref().unwrap_or_default(), value) {
                    Some(r) => committed.apply(
                        &r.group,
                        &OffsetEntry {
                            topic: r.topic,
                            queue: r.queue,
                            offset: r.offset,
                        },
                    ),
                    None => skipped += 1,
                }
            }
            next = batch.header().next_offset();
        }
        if next <= at {
            break;
        }
        at = next;
    }
    if skipped > 0 {
        tracing::warn!(
            topic = %queue.topic,
            queue = queue.queue,
            skipped,
            "skipped consumer-offset records this broker does not understand"
        );
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_hash_onto_stable_queues() {
        // FNV-1a of "" is the offset basis; fixed values guard against a changed hash, which
        // would strand every group's earlier commits on another queue.
        assert_eq!(queue_of("", 1 << 31), 0x811c_9dc5 % (1 << 31));
        assert_eq!(queue_of("a", u32::MAX as usize), 0xe40c_292c);
        for queues in 1..10 {
            assert!(queue_of("billing", queues) < queues);
        }
    }

    #[test]
    fn tombstones_remove_offsets() {
        let committed = Committed::default();
        let entry = |offset| OffsetEntry {
            topic: "t".into(),
            queue: 1,
            offset,
        };
        committed.apply("g", &entry(Some(5)));
        assert_eq!(committed.get("g", "t", 1), Some(5));
        committed.apply("g", &entry(Some(7)));
        assert_eq!(committed.get("g", "t", 1), Some(7));
        committed.apply("g", &entry(None));
        assert_eq!(committed.get("g", "t", 1), None);
        assert!(committed.groups().is_empty());
    }
}
