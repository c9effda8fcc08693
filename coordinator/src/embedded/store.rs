//! The embedded coordinator's files and how they are written.
//!
//! `<dir>/topics.json` holds every topic's metadata, a JSON array of `TopicMetadata`.
//! `<dir>/groups.json` holds every group's durable record:
//!
//! ```json
//! {"version": 1, "groups": {"<group>": {"generation": 7, "strategy": "Averagely",
//!   "members": [{"id": "<member>", "session_timeout_ms": 10000}]}}}
//! ```
//!
//! `generation` makes generations increase across restarts (offset commits are fenced by
//! it). `members` are the group's members at the last write: not restored as live members,
//! only used after a restart to hold queues back until those members come back or their
//! session timeouts pass (see `group.rs`). `<dir>/.lock` is held (`flock`) while a
//! coordinator has the directory open, so two processes never write the same files.
//!
//! Every write replaces a whole file atomically: write `<file>.tmp`, fsync it, rename it over
//! `<file>`, fsync the directory. A reader therefore sees the old or the new file, never a
//! mix. A file that cannot be read or parsed at open is an error naming its path.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits::{
    check_group_name, check_topic_name, MEMBER_FIELD_BYTES_MAX, SESSION_TIMEOUT_MAX,
    TOPIC_QUEUES_MAX,
};
use crate::types::{AssignmentStrategy, TopicMetadata};

pub(crate) const TOPICS_FILE: &str = "topics.json";
pub(crate) const GROUPS_FILE: &str = "groups.json";
const LOCK_FILE: &str = ".lock";
/// Largest state file read at open, in bytes; anything larger is treated as corrupt rather
/// than read into memory.
pub(crate) const STATE_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;
const GROUPS_FORMAT_VERSION: u32 = 1;

/// What `groups.json` keeps of one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupRecord {
    pub generation: u64,
    #[serde(default)]
    pub strategy: AssignmentStrategy,
    #[serde(default)]
    pub members: Vec<MemberRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberRecord {
    pub id: String,
    pub session_timeout_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct GroupsFile {
    version: u32,
    groups: BTreeMap<String, GroupRecord>,
}

fn lock_dir(dir: &Path) -> Result<File> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|cause| io(dir, cause))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|cause| io(&path, cause))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "another coordinator has this directory open",
            ),
        )),
        Err(std::fs::TryLockError::Error(cause)) => Err(io(&path, cause)),
    }
}

pub(crate) fn load_topics(dir: &Path) -> Result<BTreeMap<String, TopicMetadata>> {
    let path = dir.join(TOPICS_FILE);
    let Some(bytes) = read_capped(&path)? else {
        return Ok(BTreeMap::new());
    };
    let list: Vec<TopicMetadata> =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, e.to_string()))?;
    let mut topics = BTreeMap::new();
    for topic in list {
        check_topic(&topic).map_err(|reason| corrupt(&path, reason))?;
        let name = topic.name.clone();
        if topics.insert(name.clone(), topic).is_some() {
            return Err(corrupt(&path, format!("topic {name} appears twice")));
        }
    }
    Ok(topics)
}

fn check_topic(topic: &TopicMetadata) -> Result<(), String> {
    check_topic_name(&topic.name).map_err(|e| e.to_string())?;
    let count = topic.queues.len();
    if count == 0 || count > TOPIC_QUEUES_MAX as usize {
        return Err(format!("topic {} has {count} queues", topic.name));
    }
    for (index, queue) in topic.queues.iter().enumerate() {
        if queue.queue as usize != index {
            return Err(format!(
                "topic {} lists queue {} at position {index}",
                topic.name, queue.queue
            ));
        }
    }
    Ok(())
}

pub(crate) fn load_groups(dir: &Path) -> Result<BTreeMap<String, GroupRecord>> {
    let path = dir.join(GROUPS_FILE);
    let Some(bytes) = read_capped(&path)? else {
        return Ok(BTreeMap::new());
    };
    let file: GroupsFile =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, e.to_string()))?;
    if file.version != GROUPS_FORMAT_VERSION {
        return Err(corrupt(
            &path,
            format!(
                "format version {} is not the supported {GROUPS_FORMAT_VERSION}",
                file.version
            ),
        ));
    }
    for (name, record) in &file.groups {
        check_group(name, record).map_err(|reason| corrupt(&path, reason))?;
    }
    Ok(file.groups)
}

fn check_group(name: &str, record: &GroupRecord) -> Result<(), String> {
    check_group_name(name).map_err(|e| e.to_string())?;
    for member in &record.members {
        if member.id.is_empty() || member.id.len() > MEMBER_FIELD_BYTES_MAX {
            return Err(format!(
                "group {name} has a member id of {} bytes",
                member.id.len()
            ));
        }
        if u128::from(member.session_timeout_ms) > SESSION_TIMEOUT_MAX.as_millis() {
            return Err(format!(
                "member {} of group {name} has a session timeout of {} ms",
                member.id, member.session_timeout_ms
            ));
        }
    }
    Ok(())
}

pub(crate) fn encode_topics(topics: &BTreeMap<String, TopicMetadata>) -> Vec<u8> {
    let list: Vec<&TopicMetadata> = topics.values().collect();
    encode(&list)
}

pub(crate) fn encode_groups(groups: BTreeMap<String, GroupRecord>) -> Vec<u8> {
    encode(&GroupsFile {
        version: GROUPS_FORMAT_VERSION,
        groups,
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // These types hold only strings, numbers and string-keyed maps, which JSON always
    // represents; a failure here is a programming error.
    serde_json::to_vec_pretty(value).expect("coordinator state serialises to JSON")
}

/// The open state directory: its lock, and the writer of its files.
///
/// Writes run on tokio's blocking pool and outlive a caller that stops waiting for them (a
/// dropped future), so two may overlap. Each write carries a sequence number taken in the
/// order the coordinator decided the states (under its state lock); a write older than the
/// last one written is skipped, so a file never goes back to an older state. Every write holds
/// the directory lock, so a new coordinator cannot open the directory before the writes of
/// a dropped one have finished.
#[derive(Debug)]
pub(crate) struct Files {
    dir: PathBuf,
    lock: Arc<File>,
    sequence: AtomicU64,
    /// The sequence number of the last write of each file.
    written: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Files {
    /// Creates `dir` if needed (durably) and takes its lock.
    pub(crate) fn open(dir: &Path) -> Result<Files> {
        Ok(Files {
            dir: dir.to_path_buf(),
            lock: Arc::new(lock_dir(dir)?),
            sequence: AtomicU64::new(0),
            written: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replaces `<dir>/<name>` with `bytes` atomically and durably, off the async worker
    /// threads when a tokio runtime is running (fsync blocks).
    pub(crate) async fn replace(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let write = self.prepare(name, bytes);
        let path = self.dir.join(name);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return write.run();
        };
        runtime
            .spawn_blocking(move || write.run())
            .await
            .unwrap_or_else(|join| {
                let cause = std::io::Error::other(format!("the write task failed: {join}"));
                Err(io(&path, cause))
            })
    }

    /// A write of `bytes` to `<dir>/<name>`, ordered after every write prepared before it.
    fn prepare(&self, name: &str, bytes: Vec<u8>) -> PendingWrite {
        PendingWrite {
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            dir: self.dir.clone(),
            name: name.to_owned(),
            bytes,
            _lock: self.lock.clone(),
            written: self.written.clone(),
        }
    }
}

/// One prepared file replacement; see `Files`.
struct PendingWrite {
    sequence: u64,
    dir: PathBuf,
    name: String,
    bytes: Vec<u8>,
    /// Keeps the directory locked until the write is done.
    _lock: Arc<File>,
    written: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl PendingWrite {
    fn run(self) -> Result<()> {
        let mut written = self.written.lock();
        let last = written.entry(self.name.clone()).or_default();
        if *last > self.sequence {
            return Ok(());
        }
        write_atomically_blocking(&self.dir, &self.name, &self.bytes)?;
        *last = self.sequence;
        Ok(())
    }
}

fn write_atomically_blocking(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp).map_err(|cause| io(&tmp, cause))?;
    file.write_all(bytes).map_err(|cause| io(&tmp, cause))?;
    file.sync_all().map_err(|cause| io(&tmp, cause))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|cause| io(&path, cause))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|cause| io(dir, cause))
}

/// Reads a whole state file, `None` when it does not exist.
fn read_capped(path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => return Err(io(path, cause)),
    };
    let mut bytes = Vec::new();
    file.take(STATE_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|cause| io(path, cause))?;
    if bytes.len() as u64 > STATE_FILE_BYTES_MAX {
        return Err(corrupt(
            path,
            format!("larger than {STATE_FILE_BYTES_MAX} bytes"),
        ));
    }
    Ok(Some(bytes))
}

fn io(path: &Path, cause: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        cause,
    }
}

fn corrupt(path: &Path, reason: String) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_overtaken_by_a_later_one_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::open(dir.path()).expect("open");
        let older = files.prepare(GROUPS_FILE, b"older".to_vec());
        let newer = files.prepare(GROUPS_FILE, b"newer".to_vec());
        let other = files.prepare(TOPICS_FILE, b"topics".to_vec());
        newer.run().expect("newer");
        older.run().expect("older");
        other.run().expect("other file");
        let read = |name| std::fs::read(dir.path().join(name)).expect("read");
        assert_eq!(read(GROUPS_FILE), b"newer");
        assert_eq!(read(TOPICS_FILE), b"topics");
        assert!(!dir.path().join("groups.json.tmp").exists());
    }

    #[test]
    fn pending_writes_keep_the_directory_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::open(dir.path()).expect("open");
        let pending = files.prepare(GROUPS_FILE, b"{}".to_vec());
        drop(files);
        assert!(
            Files::open(dir.path()).is_err(),
            "opened under a pending write"
        );
        pending.run().expect("write");
        Files::open(dir.path()).expect("open after the write");
    }
}
