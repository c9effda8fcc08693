//! The etcd keys of one cluster and the JSON records stored under them (the layout is in the
//! module docs of `etcd/mod.rs`). Building and parsing keys lives here alone, as does
//! decoding, which never panics: a record that does not parse, or disagrees with its key, is
//! an `Error::Corrupt` whose `path` is the key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits::{check_topic_name, NAME_BYTES_MAX, TOPIC_QUEUES_MAX};
use crate::types::{BrokerId, BrokerInfo, QueueState};

/// The root of every Runnel key.
pub const ROOT: &str = "/runnel/";

/// What `topics/<topic>` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub config: BTreeMap<String, String>,
    pub internal: bool,
    pub queues: u32,
    /// False while a topic too large for one transaction is still being written; readers
    /// ignore the topic until it is true.
    pub complete: bool,
}

/// What the `controller` key holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerRecord {
    pub broker: BrokerId,
}

/// A key of the cluster, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Broker(BrokerId),
    Topic(String),
    Partition(String, u32),
    Controller,
    Member { group: String, member: String },
    Assignment(String),
}

/// The keys of one cluster: everything lives under `/runnel/<cluster>/`.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys of `cluster`, whose name follows the topic-name rules (see `limits`).
    pub fn new(cluster: &str) -> Result<Keys> {
        check_topic_name(cluster).map_err(|_| {
            Error::InvalidArgument(format!(
                "cluster name {cluster:?} must be 1 to {NAME_BYTES_MAX} of A-Z a-z 0-9 . _ % -"
            ))
        })?;
        Ok(Keys {
            prefix: format!("{ROOT}{cluster}/"),
        })
    }

    /// `/runnel/<cluster>/`: the prefix every key of the cluster starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn broker(&self, id: BrokerId) -> String {
        format!("{}brokers/{id}", self.prefix)
    }

    /// The prefix of every broker key.
    pub fn brokers(&self) -> String {
        format!("{}brokers/", self.prefix)
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}topics/{name}", self.prefix)
    }

    pub fn partition(&self, topic: &str, queue: u32) -> String {
        format!("{}partitions/{topic}/{queue}", self.prefix)
    }

    /// The prefix of every partition key of `topic`.
    pub fn partitions(&self, topic: &str) -> String {
        format!("{}partitions/{topic}/", self.prefix)
    }

    pub fn controller(&self) -> String {
        format!("{}controller", self.prefix)
    }

    pub fn member(&self, group: &str, member: &str) -> String {
        format!("{}groups/{group}/members/{member}", self.prefix)
    }

    pub fn assignment(&self, group: &str) -> String {
        format!("{}groups/{group}/assignment", self.prefix)
    }

    /// Parses a key of this cluster; `None` for anything else (keys of future versions are
    /// ignored, not fatal).
    pub fn parse(&self, key: &[u8]) -> Option<Key> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(self.prefix.as_str())?;
        if rest == "controller" {
            return Some(Key::Controller);
        }
        if let Some(id) = rest.strip_prefix("brokers/") {
            return id.parse().ok().map(Key::Broker);
        }
        if let Some(name) = rest.strip_prefix("topics/") {
            return Some(Key::Topic(name.to_owned()));
        }
        if let Some(path) = rest.strip_prefix("partitions/") {
            let (topic, queue) = path.rsplit_once('/')?;
            return Some(Key::Partition(topic.to_owned(), queue.parse().ok()?));
        }
        let path = rest.strip_prefix("groups/")?;
        let (group, tail) = path.split_once('/')?;
        if tail == "assignment" {
            return Some(Key::Assignment(group.to_owned()));
        }
        let member = tail.strip_prefix("members/")?;
        Some(Key::Member {
            group: group.to_owned(),
            member: member.to_owned(),
        })
    }
}

/// Encodes a record. These types hold only strings, numbers and string-keyed maps, which
/// JSON always represents; a failure is a programming error.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("coordinator records serialise to JSON")
}

/// Decodes the record stored under `key`.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(key, e.to_string()))
}

pub fn corrupt(key: &str, reason: String) -> Error {
    Error::Corrupt {
        path: PathBuf::from(key),
        reason,
    }
}

/// Decodes a broker record and checks it against its key.
pub fn decode_broker(key: &str, id: BrokerId, bytes: &[u8]) -> Result<BrokerInfo> {
    let info: BrokerInfo = decode(key, bytes)?;
    if info.id != id {
        return Err(corrupt(key, format!("holds broker {}", info.id)));
    }
    Ok(info)
}

/// Decodes a topic record and checks its queue count.
pub fn decode_topic(key: &str, bytes: &[u8]) -> Result<TopicRecord> {
    let record: TopicRecord = decode(key, bytes)?;
    if !(1..=TOPIC_QUEUES_MAX).contains(&record.queues) {
        return Err(corrupt(key, format!("has {} queues", record.queues)));
    }
    Ok(record)
}

/// Decodes a partition record and checks it against its key.
pub fn decode_partition(key: &str, queue: u32, bytes: &[u8]) -> Result<QueueState> {
    let state: QueueState = decode(key, bytes)?;
    if state.queue != queue {
        return Err(corrupt(key, format!("holds queue {}", state.queue)));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        let keys = Keys::new("c1").expect("name");
        for (key, parsed) in [
            (keys.broker(7), Key::Broker(7)),
            (keys.topic("%RETRY%g"), Key::Topic("%RETRY%g".into())),
            (keys.partition("t.x", 12), Key::Partition("t.x".into(), 12)),
            (keys.controller(), Key::Controller),
            (
                keys.member("g", "a/b:c"),
                Key::Member {
                    group: "g".into(),
                    member: "a/b:c".into(),
                },
            ),
            (keys.assignment("g"), Key::Assignment("g".into())),
        ] {
            assert_eq!(keys.parse(key.as_bytes()), Some(parsed), "{key}");
        }
        for other in [
            "/runnel/c2/topics/t",
            "/runnel/c1/brokers/x",
            "/runnel/c1/partitions/t/x",
            "/runnel/c1/unknown",
            "/runnel/c1/groups/g",
        ] {
            assert_eq!(keys.parse(other.as_bytes()), None, "{other}");
        }
        assert_eq!(keys.parse(b"/runnel/c1/\xff"), None);
    }

    #[test]
    fn cluster_names_are_checked() {
        assert!(Keys::new("").is_err());
        assert!(Keys::new("a/b").is_err());
        assert_eq!(
            Keys::new("prod-1").expect("name").prefix(),
            "/runnel/prod-1/"
        );
    }

    #[test]
    fn corrupt_records_name_their_key() {
        let key = "/runnel/c/topics/t";
        for bytes in [
            &b"{"[..],
            b"[]",
            b"{\"config\":{},\"internal\":false,\"queues\":0,\"complete\":true}",
        ] {
            match decode_topic(key, bytes) {
                Err(Error::Corrupt { path, .. }) => assert_eq!(path, PathBuf::from(key)),
                other => panic!("{bytes:?} decoded as {other:?}"),
            }
        }
        let state = QueueState {
            queue: 3,
            leader: 1,
            leader_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
            version: 0,
        };
        assert!(decode_partition("k", 2, &encode(&state)).is_err());
        assert!(decode_partition("k", 3, &encode(&state)).is_ok());
    }
}
