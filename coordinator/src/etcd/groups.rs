//! Consumer groups in etcd: the records of `groups/<g>/members/<m>` and
//! `groups/<g>/assignment`, how a group is described from its assignment, and `reconcile`,
//! the controller's pure step from (assignment, live member keys, topics) to the next
//! assignment.
//!
//! The assignment is the group's durable state: generation, strategy, and per member its
//! spec, target, owned queues and confirmed generation, plus `revision` (the cache revision
//! whose member keys and topics it reflects: a broker that wrote a member key at revision W
//! waits until the assignment's `revision` ≥ W) and `topics` (the subscribed topics that
//! existed at the last rebalance, with the revision that created each, so a topic created or
//! deleted under subscribers is noticed). The hand-over rule is `group.rs`'s, unchanged:
//! `reconcile` restores a `Group` from the assignment and feeds it the member keys as
//! heartbeats — leaves for vanished keys, joins or refreshes for present ones, then the
//! confirmations they carry.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::keys;
use crate::error::Result;
use crate::group::Group;
use crate::limits::check_member_spec;
use crate::types::{
    AssignmentStrategy, GroupMetadata, GroupPhase, MemberMetadata, MemberSpec, QueueId,
    TopicMetadata,
};

/// What `groups/<g>/members/<m>` holds: the member's last heartbeat as its broker wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub client_id: String,
    pub host: String,
    pub subscriptions: BTreeMap<String, String>,
    pub session_timeout_ms: u64,
    /// The generation the member last said it consumes in.
    pub confirmed: Option<u64>,
    /// The strategy the member asks for (absent in records of earlier releases).
    #[serde(default)]
    pub strategy: AssignmentStrategy,
}

impl MemberRecord {
    pub fn new(spec: &MemberSpec, confirmed: Option<u64>) -> MemberRecord {
        MemberRecord {
            client_id: spec.client_id.clone(),
            host: spec.host.clone(),
            subscriptions: spec.subscriptions.clone(),
            session_timeout_ms: u64::try_from(spec.session_timeout.as_millis()).unwrap_or(u64::MAX),
            confirmed,
            strategy: spec.strategy,
        }
    }

    pub fn spec(&self, member_id: &str) -> MemberSpec {
        MemberSpec {
            member_id: member_id.to_owned(),
            client_id: self.client_id.clone(),
            host: self.host.clone(),
            subscriptions: self.subscriptions.clone(),
            session_timeout: Duration::from_millis(self.session_timeout_ms),
            strategy: self.strategy,
        }
    }
}

/// One member in `groups/<g>/assignment`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedMember {
    #[serde(flatten)]
    pub member: MemberRecord,
    pub target: Vec<QueueId>,
    pub owned: Vec<QueueId>,
}

/// What `groups/<g>/assignment` holds; written only by the controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRecord {
    pub generation: u64,
    pub strategy: AssignmentStrategy,
    pub revision: i64,
    pub topics: BTreeMap<String, i64>,
    pub members: BTreeMap<String, AssignedMember>,
}

/// Decodes a member record and checks it against the limits.
pub fn decode_member(key: &str, member_id: &str, bytes: &[u8]) -> Result<MemberRecord> {
    let record: MemberRecord = keys::decode(key, bytes)?;
    check_member_spec(&record.spec(member_id)).map_err(|e| keys::corrupt(key, e.to_string()))?;
    Ok(record)
}

/// Decodes an assignment record and checks its members against the limits.
pub fn decode_assignment(key: &str, bytes: &[u8]) -> Result<AssignmentRecord> {
    let record: AssignmentRecord = keys::decode(key, bytes)?;
    for (id, member) in &record.members {
        check_member_spec(&member.member.spec(id))
            .map_err(|e| keys::corrupt(key, e.to_string()))?;
    }
    Ok(record)
}

/// The group as `Coordinator::group` describes it.
pub fn describe(name: &str, record: &AssignmentRecord) -> GroupMetadata {
    let metadata = GroupMetadata {
        name: name.to_owned(),
        generation: record.generation,
        phase: GroupPhase::Empty,
        strategy: record.strategy,
        members: record
            .members
            .iter()
            .map(|(id, m)| MemberMetadata {
                spec: m.member.spec(id),
                owned: m.owned.clone(),
                target: m.target.clone(),
                confirmed_generation: m.member.confirmed,
            })
            .collect(),
    };
    // The phase is derived from owned and target sets, by the shared rule.
    Group::from_metadata(&metadata, Instant::now()).describe(name)
}

/// What a member may consume now: `owned ∩ target`, sorted.
pub fn answer(record: &AssignmentRecord, member_id: &str) -> Option<Vec<QueueId>> {
    let member = record.members.get(member_id)?;
    Some(
        member
            .target
            .iter()
            .filter(|q| member.owned.contains(q))
            .cloned()
            .collect(),
    )
}

/// The inputs of one reconcile of one group, as the controller's cache holds them.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub name: &'a str,
    pub current: Option<&'a AssignmentRecord>,
    /// Live member keys.
    pub members: &'a BTreeMap<String, MemberRecord>,
    /// Every complete topic, with the revision that created it.
    pub topics: &'a BTreeMap<String, (TopicMetadata, i64)>,
    /// The latest revision at which a member key of the group changed.
    pub member_change: i64,
    /// The cache revision the inputs are taken at.
    pub revision: i64,
}

/// The assignment the group should have now, or `None` if the current one stands (nothing
/// changed and it already reflects every member-key change).
pub fn reconcile(inputs: &Inputs<'_>, now: Instant) -> Option<AssignmentRecord> {
    let empty = AssignmentRecord {
        generation: 0,
        strategy: AssignmentStrategy::default(),
        revision: 0,
        topics: BTreeMap::new(),
        members: BTreeMap::new(),
    };
    let current = inputs.current.unwrap_or(&empty);
    let mut group = Group::from_metadata(&describe(inputs.name, current), now);
    for id in current.members.keys() {
        if !inputs.members.contains_key(id) {
            group.leave(id);
        }
    }
    for (id, member) in inputs.members {
        group.join_or_refresh(member.spec(id), now);
    }
    let subscribed: BTreeMap<String, i64> = inputs
        .members
        .values()
        .flat_map(|m| m.subscriptions.keys())
        .filter_map(|t| {
            inputs
                .topics
                .get(t)
                .map(|(_, created)| (t.clone(), *created))
        })
        .collect();
    if subscribed != current.topics {
        group.request_rebalance();
    }
    let metadata: BTreeMap<String, TopicMetadata> = inputs
        .topics
        .iter()
        .map(|(name, (topic, _))| (name.clone(), topic.clone()))
        .collect();
    group.rebalance_if_due(&metadata);
    for (id, member) in inputs.members {
        group.confirm(id, member.confirmed);
    }
    group.settle(now);
    let described = group.describe(inputs.name);
    let next = AssignmentRecord {
        generation: described.generation,
        strategy: described.strategy,
        revision: inputs.revision,
        topics: subscribed,
        members: described
            .members
            .into_iter()
            .map(|m| {
                let id = m.spec.member_id.clone();
                let member = AssignedMember {
                    member: MemberRecord::new(&m.spec, m.confirmed_generation),
                    target: m.target,
                    owned: m.owned,
                };
                (id, member)
            })
            .collect(),
    };
    let unchanged = inputs.current.is_some_and(|c| {
        c.revision >= inputs.member_change
            && AssignmentRecord {
                revision: c.revision,
                ..next.clone()
            } == *c
    });
    (!unchanged).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::QueueState;

    fn topics(queues: u32) -> BTreeMap<String, (TopicMetadata, i64)> {
        let topic = TopicMetadata {
            name: "t".into(),
            config: BTreeMap::new(),
            internal: false,
            queues: (0..queues)
                .map(|queue| QueueState {
                    queue,
                    leader: 1,
                    leader_epoch: 0,
                    replicas: vec![1],
                    isr: vec![1],
                    version: 0,
                })
                .collect(),
        };
        BTreeMap::from([("t".to_owned(), (topic, 5))])
    }

    fn member(confirmed: Option<u64>) -> MemberRecord {
        MemberRecord {
            client_id: "c".into(),
            host: "h".into(),
            subscriptions: BTreeMap::from([("t".to_owned(), "*".to_owned())]),
            session_timeout_ms: 10_000,
            confirmed,
            strategy: AssignmentStrategy::Sticky,
        }
    }

    fn step(
        current: Option<&AssignmentRecord>,
        members: &BTreeMap<String, MemberRecord>,
        revision: i64,
    ) -> Option<AssignmentRecord> {
        let topics = topics(4);
        let inputs = Inputs {
            name: "g",
            current,
            members,
            topics: &topics,
            member_change: revision,
            revision,
        };
        reconcile(&inputs, Instant::now())
    }

    #[test]
    fn a_join_then_a_second_member_waits_for_the_first_to_confirm() {
        let mut members = BTreeMap::from([("a".to_owned(), member(None))]);
        let first = step(None, &members, 10).expect("first assignment");
        assert_eq!(first.generation, 1);
        assert_eq!(answer(&first, "a").map(|q| q.len()), Some(4));
        assert_eq!(first.topics, BTreeMap::from([("t".to_owned(), 5)]));
        // Nothing changed: nothing to write.
        assert!(step(Some(&first), &members, 10).is_none());

        members.insert("b".into(), member(None));
        let second = step(Some(&first), &members, 11).expect("b joins");
        assert_eq!(second.generation, 2);
        assert_eq!(answer(&second, "b"), Some(Vec::new()));
        assert_eq!(answer(&second, "a").map(|q| q.len()), Some(2));

        members.insert("a".into(), member(Some(2)));
        let third = step(Some(&second), &members, 12).expect("a confirms");
        assert_eq!(third.generation, 2);
        assert_eq!(answer(&third, "b").map(|q| q.len()), Some(2));
        assert_eq!(describe("g", &third).phase, GroupPhase::Stable);
    }

    #[test]
    fn a_member_key_change_that_changes_nothing_still_advances_the_revision() {
        let mut members = BTreeMap::from([("a".to_owned(), member(None))]);
        let first = step(None, &members, 10).expect("first");
        let mut retagged = member(None);
        retagged.subscriptions.insert("t".into(), "TagA".into());
        members.insert("a".into(), retagged);
        let next = step(Some(&first), &members, 12).expect("the revision moves");
        assert_eq!((next.generation, next.revision), (1, 12));
    }

    #[test]
    fn a_vanished_key_is_a_leave_and_an_empty_group_keeps_its_generation() {
        let members = BTreeMap::from([("a".to_owned(), member(None))]);
        let first = step(None, &members, 10).expect("first");
        let gone = step(Some(&first), &BTreeMap::new(), 11).expect("a left");
        assert_eq!(gone.generation, 2);
        assert!(gone.members.is_empty());
        assert_eq!(describe("g", &gone).phase, GroupPhase::Empty);
    }

    #[test]
    fn records_that_break_the_limits_are_corrupt() {
        let mut bad = member(None);
        bad.session_timeout_ms = 0;
        let bytes = keys::encode(&bad);
        assert!(decode_member("k", "a", &bytes).is_err());
        assert!(decode_member("k", "", &keys::encode(&member(None))).is_err());
        assert!(decode_member("k", "a", &keys::encode(&member(None))).is_ok());
    }
}
