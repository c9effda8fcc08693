//! One consumer group's membership, targets and queue hand-over, without IO or locks. Shared
//! by both implementations: the embedded coordinator drives it from heartbeats; the etcd
//! coordinator's controller drives it from member keys and restores it from the group's
//! assignment key (`from_metadata`), so both follow one rule.
//!
//! # Hand-over rule
//!
//! Each member has a **target** (the queues the current generation gives it) and an **owned**
//! set (the queues it holds and may be consuming). Targets change only when the generation
//! is bumped; owned sets change only as follows:
//!
//! 1. **Grant.** A queue in a member's target is added to its owned set when no live member
//!    owns it. Grants do not wait for the member to confirm anything: a queue nobody holds
//!    cannot be consumed twice. (Exception, the restart hold below.)
//! 2. **Release.** A member's owned queues outside its target are released when the member
//!    heartbeats with `generation == Some(current)`. Nothing else releases a queue of a live
//!    member: a rebalance leaves owned sets as they are, so a member keeps holding the queues
//!    it is losing until it confirms.
//! 3. **Departure.** A member that leaves, or whose session expires, releases everything.
//!
//! A heartbeat answers `owned ∩ target`. Within one generation that answer only grows
//! (targets are fixed; owned loses only queues outside the target), so every answer a member
//! received in generation `g` excludes the queues it is losing in `g`. A member confirms `g`
//! after it has applied an answer of `g` — stopped consuming what the answer lacks and
//! committed it — so releasing those queues then is safe. A member confirming an older
//! generation (or none) keeps every queue it owns and releases nothing; it still gains
//! queues by rule 1 and its answer shows only `owned ∩ target`.
//!
//! Invariants: no queue is in two live members' owned sets (grants take only unowned queues);
//! once every member has heartbeated with the current generation and no restart hold is
//! active, every queue of the subscribed topics is owned by exactly one member, the one it
//! targets (targets partition those queues, and nobody holds a queue outside its target).
//! The phase is `Empty` without members, `Stable` when every owned set equals its target,
//! `Rebalancing` otherwise.
//!
//! # Targets
//!
//! Per topic, as RocketMQ rebalances: the members subscribed to the topic (sorted by id) split
//! its queues (sorted) by the group's strategy. A member never targets a queue of a topic it
//! does not subscribe to, and a subscribed topic that does not exist contributes nothing.
//!
//! # Restart hold
//!
//! Members are not restored after a restart, but the members at the last durable write are
//! remembered as *previous members* (with their session timeouts). Until each of them has
//! either rejoined and confirmed a generation issued since the restart, left, or stayed
//! silent for its session timeout counted from the restart, nothing is granted in that
//! group: such a member may still be consuming the queues it held before, and the coordinator
//! no longer knows which.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::assignment::assign;
use crate::embedded::store::{GroupRecord, MemberRecord};
use crate::types::{
    AssignmentStrategy, GroupMetadata, GroupPhase, MemberMetadata, MemberSpec, QueueId,
    TopicMetadata,
};

#[derive(Clone, Debug, Default)]
pub(crate) struct Group {
    generation: u64,
    strategy: AssignmentStrategy,
    members: BTreeMap<String, Member>,
    /// Members from before the restart that have not yet come back and confirmed: their
    /// session timeout and the instant after which they are presumed stopped.
    previous: BTreeMap<String, (Duration, Instant)>,
    /// Something changed that needs a new generation (membership, subscriptions, topics).
    rebalance_due: bool,
    /// Members granted queues (rule 1) since `take_granted` last ran: unless told, they
    /// learn of it only at their next heartbeat.
    granted: BTreeSet<String>,
}

#[derive(Clone, Debug)]
struct Member {
    spec: MemberSpec,
    target: Vec<QueueId>,
    owned: BTreeSet<QueueId>,
    confirmed: Option<u64>,
    last_seen: Instant,
}

impl Group {
    /// A group as it was last written, with its members as previous members held until
    /// `now` plus their session timeout.
    pub(crate) fn restore(record: GroupRecord, now: Instant) -> Group {
        let previous = record
            .members
            .into_iter()
            .map(|m| {
                let timeout = Duration::from_millis(m.session_timeout_ms);
                (m.id, (timeout, now + timeout))
            })
            .collect();
        Group {
            generation: record.generation,
            strategy: record.strategy,
            members: BTreeMap::new(),
            previous,
            rebalance_due: false,
            granted: BTreeSet::new(),
        }
    }

    /// A group as `describe` showed it: its generation, strategy and members with their
    /// targets, owned queues and confirmed generations, all live as of `now`. The phase is
    /// derived, so it is ignored.
    pub(crate) fn from_metadata(metadata: &GroupMetadata, now: Instant) -> Group {
        let members = metadata
            .members
            .iter()
            .map(|m| {
                let member = Member {
                    spec: m.spec.clone(),
                    target: m.target.clone(),
                    owned: m.owned.iter().cloned().collect(),
                    confirmed: m.confirmed_generation,
                    last_seen: now,
                };
                (m.spec.member_id.clone(), member)
            })
            .collect();
        Group {
            generation: metadata.generation,
            strategy: metadata.strategy,
            members,
            previous: BTreeMap::new(),
            rebalance_due: false,
            granted: BTreeSet::new(),
        }
    }

    /// What `groups.json` keeps: generation, strategy, and who may still hold queues.
    pub(crate) fn record(&self) -> GroupRecord {
        let mut members: BTreeMap<&str, Duration> = self
            .previous
            .iter()
            .map(|(id, (timeout, _))| (id.as_str(), *timeout))
            .collect();
        for (id, member) in &self.members {
            let timeout = members.entry(id).or_default();
            *timeout = (*timeout).max(member.spec.session_timeout);
        }
        GroupRecord {
            generation: self.generation,
            strategy: self.strategy,
            members: members
                .into_iter()
                .map(|(id, timeout)| MemberRecord {
                    id: id.to_owned(),
                    session_timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                })
                .collect(),
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn has_member(&self, id: &str) -> bool {
        self.members.contains_key(id)
    }

    pub(crate) fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Whether a heartbeat of `spec` at `now` would change the durable record (so the caller
    /// must work on a copy and write it before publishing).
    pub(crate) fn heartbeat_is_durable(&self, spec: &MemberSpec, now: Instant) -> bool {
        self.rebalance_due
            || self.expiry_due(now)
            || self.members.get(&spec.member_id).is_none_or(|m| {
                !same_topics(&m.spec, spec) || m.spec.session_timeout != spec.session_timeout
            })
    }

    /// Whether `tick` at `now` has anything to do besides granting.
    pub(crate) fn expiry_due(&self, now: Instant) -> bool {
        self.members.values().any(|m| expired(m, now))
            || self.previous.values().any(|(_, deadline)| *deadline <= now)
    }

    pub(crate) fn rebalance_due(&self) -> bool {
        self.rebalance_due
    }

    /// Asks for a new generation at the next rebalance.
    pub(crate) fn request_rebalance(&mut self) {
        self.rebalance_due = true;
    }

    /// Whether a member subscribes to `topic`.
    pub(crate) fn subscribes_to(&self, topic: &str) -> bool {
        self.members
            .values()
            .any(|m| m.spec.subscriptions.contains_key(topic))
    }

    /// Removes members silent for their session timeout and forgets previous members whose
    /// timeout has passed; answers how many members expired.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let before = self.members.len();
        self.members.retain(|_, m| !expired(m, now));
        self.previous.retain(|_, (_, deadline)| *deadline > now);
        let gone = before - self.members.len();
        if gone > 0 {
            self.rebalance_due = true;
        }
        gone
    }

    /// Adds a member or refreshes a live one.
    pub(crate) fn join_or_refresh(&mut self, spec: MemberSpec, now: Instant) {
        match self.members.get_mut(&spec.member_id) {
            Some(member) => {
                // Targets depend on the subscribed topics only, not on tag expressions.
                if !same_topics(&member.spec, &spec) {
                    self.rebalance_due = true;
                }
                member.spec = spec;
                member.last_seen = now;
            }
            None => {
                self.rebalance_due = true;
                let member = Member {
                    spec,
                    target: Vec::new(),
                    owned: BTreeSet::new(),
                    confirmed: None,
                    last_seen: now,
                };
                self.members.insert(member.spec.member_id.clone(), member);
            }
        }
    }

    /// Removes a member at its request; answers whether it was there.
    pub(crate) fn leave(&mut self, id: &str) -> bool {
        self.previous.remove(id);
        let left = self.members.remove(id).is_some();
        if left {
            self.rebalance_due = true;
        }
        left
    }

    /// Bumps the generation and recomputes every target, if something asked for it.
    pub(crate) fn rebalance_if_due(&mut self, topics: &BTreeMap<String, TopicMetadata>) {
        if !self.rebalance_due {
            return;
        }
        self.rebalance_due = false;
        self.generation += 1;
        if let Some(first) = self.members.values().next() {
            self.strategy = first.spec.strategy;
        }
        for member in self.members.values_mut() {
            member.target.clear();
        }
        // What members hold now, for strategies that keep queues where they are.
        let holding: BTreeMap<String, Vec<QueueId>> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.owned.iter().cloned().collect()))
            .collect();
        let subscribed: BTreeSet<String> = self
            .members
            .values()
            .flat_map(|m| m.spec.subscriptions.keys().cloned())
            .collect();
        for topic in subscribed.iter().filter_map(|t| topics.get(t)) {
            let ids: Vec<String> = self
                .members
                .values()
                .filter(|m| m.spec.subscriptions.contains_key(&topic.name))
                .map(|m| m.spec.member_id.clone())
                .collect();
            let queues: Vec<QueueId> = topic
                .queues
                .iter()
                .map(|q| QueueId::new(topic.name.clone(), q.queue))
                .collect();
            let held: Vec<Vec<QueueId>> = ids
                .iter()
                .map(|id| {
                    holding
                        .get(id)
                        .map(|qs| {
                            qs.iter()
                                .filter(|q| q.topic == topic.name)
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect();
            for (id, split) in ids.iter().zip(assign(self.strategy, &ids, &queues, &held)) {
                if let Some(member) = self.members.get_mut(id) {
                    member.target.extend(split);
                }
            }
        }
        for member in self.members.values_mut() {
            member.target.sort();
        }
    }

    /// Records the generation a member says it consumes in; confirming the current one
    /// releases the queues it no longer targets (rule 2).
    pub(crate) fn confirm(&mut self, id: &str, generation: Option<u64>) {
        let current = self.generation;
        let Some(member) = self.members.get_mut(id) else {
            return;
        };
        member.confirmed = generation;
        if generation == Some(current) {
            let target: BTreeSet<&QueueId> = member.target.iter().collect();
            member.owned.retain(|q| target.contains(q));
            self.previous.remove(id);
        }
    }

    /// Grants every targeted queue nobody owns (rule 1), unless the restart hold is on.
    pub(crate) fn settle(&mut self, now: Instant) {
        self.previous.retain(|_, (_, deadline)| *deadline > now);
        if !self.previous.is_empty() {
            return;
        }
        let mut taken: BTreeSet<QueueId> = self
            .members
            .values()
            .flat_map(|m| m.owned.iter().cloned())
            .collect();
        for (id, member) in &mut self.members {
            for queue in &member.target {
                if !taken.contains(queue) {
                    taken.insert(queue.clone());
                    member.owned.insert(queue.clone());
                    self.granted.insert(id.clone());
                }
            }
        }
    }

    /// The members granted queues since the last call (see `granted`), forgetting them.
    pub(crate) fn take_granted(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.granted)
    }

    /// Forgets that `id` was granted queues: it is being answered now.
    pub(crate) fn forget_granted(&mut self, id: &str) {
        self.granted.remove(id);
    }

    /// The queues a member may consume now: `owned ∩ target`, sorted.
    pub(crate) fn answer(&self, id: &str) -> Vec<QueueId> {
        self.members.get(id).map_or_else(Vec::new, |m| {
            m.target
                .iter()
                .filter(|q| m.owned.contains(*q))
                .cloned()
                .collect()
        })
    }

    /// The group as `Coordinator::group` describes it.
    pub(crate) fn describe(&self, name: &str) -> GroupMetadata {
        GroupMetadata {
            name: name.to_owned(),
            generation: self.generation,
            phase: self.phase(),
            strategy: self.strategy,
            members: self
                .members
                .values()
                .map(|m| MemberMetadata {
                    spec: m.spec.clone(),
                    owned: m.owned.iter().cloned().collect(),
                    target: m.target.clone(),
                    confirmed_generation: m.confirmed,
                })
                .collect(),
        }
    }

    fn phase(&self) -> GroupPhase {
        if self.members.is_empty() {
            GroupPhase::Empty
        } else if self.members.values().all(|m| {
            m.owned.len() == m.target.len() && m.target.iter().all(|q| m.owned.contains(q))
        }) {
            GroupPhase::Stable
        } else {
            GroupPhase::Rebalancing
        }
    }

    /// Whether the group is worth listing: it has members, or a generation (so offsets may
    /// have been committed under it).
    pub(crate) fn is_known(&self) -> bool {
        self.generation > 0 || !self.members.is_empty()
    }
}

fn same_topics(a: &MemberSpec, b: &MemberSpec) -> bool {
    a.subscriptions.keys().eq(b.subscriptions.keys())
}

fn expired(member: &Member, now: Instant) -> bool {
    now.saturating_duration_since(member.last_seen) >= member.spec.session_timeout
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::types::QueueState;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn topics(name: &str, queues: u32) -> BTreeMap<String, TopicMetadata> {
        let queues = (0..queues)
            .map(|queue| QueueState {
                queue,
                leader: 1,
                leader_epoch: 0,
                replicas: vec![1],
                isr: vec![1],
                version: 0,
            })
            .collect();
        BTreeMap::from([(
            name.to_owned(),
            TopicMetadata {
                name: name.to_owned(),
                config: BTreeMap::new(),
                internal: false,
                queues,
            },
        )])
    }

    fn spec(id: &str) -> MemberSpec {
        MemberSpec {
            member_id: id.into(),
            client_id: id.into(),
            host: "h".into(),
            subscriptions: BTreeMap::from([("t".to_owned(), "*".to_owned())]),
            session_timeout: TIMEOUT,
            strategy: Default::default(),
        }
    }

    /// A heartbeat as the coordinator applies it.
    fn beat(g: &mut Group, id: &str, generation: Option<u64>, now: Instant) -> Vec<QueueId> {
        let topics = topics("t", 4);
        g.expire(now);
        g.join_or_refresh(spec(id), now);
        g.rebalance_if_due(&topics);
        g.confirm(id, generation);
        g.settle(now);
        g.answer(id)
    }

    #[test]
    fn a_group_restored_from_its_description_describes_the_same() {
        let t0 = Instant::now();
        let mut g = Group::default();
        beat(&mut g, "a", None, t0);
        beat(&mut g, "b", None, t0);
        let described = g.describe("g");
        assert_eq!(described.phase, GroupPhase::Rebalancing);
        let restored = Group::from_metadata(&described, t0);
        assert_eq!(restored.describe("g"), described);
        assert_eq!(restored.answer("a"), g.answer("a"));
    }

    #[test]
    fn a_session_expires_at_its_timeout_not_before() {
        let t0 = Instant::now();
        let mut g = Group::default();
        beat(&mut g, "a", None, t0);
        assert_eq!(g.expire(t0 + TIMEOUT - Duration::from_millis(1)), 0);
        assert_eq!(g.expire(t0 + TIMEOUT), 1);
        assert!(g.rebalance_due());
    }

    #[test]
    fn the_record_keeps_live_and_previous_members_with_their_timeouts() {
        let t0 = Instant::now();
        let record = GroupRecord {
            generation: 5,
            strategy: AssignmentStrategy::AveragelyByCircle,
            members: vec![MemberRecord {
                id: "gone".into(),
                session_timeout_ms: 30_000,
            }],
        };
        let mut g = Group::restore(record, t0);
        assert_eq!(g.generation(), 5);
        assert_eq!(g.record().strategy, AssignmentStrategy::AveragelyByCircle);
        beat(&mut g, "a", None, t0);
        let record = g.record();
        assert_eq!(record.generation, 6);
        // The rebalance takes the strategy its lowest member asks for (the default here).
        assert_eq!(record.strategy, AssignmentStrategy::Averagely);
        let members: Vec<(&str, u64)> = record
            .members
            .iter()
            .map(|m| (m.id.as_str(), m.session_timeout_ms))
            .collect();
        assert_eq!(members, vec![("a", 10_000), ("gone", 30_000)]);
    }

    #[test]
    fn a_restored_group_grants_nothing_until_previous_members_are_accounted_for() {
        let t0 = Instant::now();
        let record = GroupRecord {
            generation: 2,
            strategy: AssignmentStrategy::Averagely,
            members: vec![
                MemberRecord {
                    id: "a".into(),
                    session_timeout_ms: 10_000,
                },
                MemberRecord {
                    id: "b".into(),
                    session_timeout_ms: 20_000,
                },
            ],
        };
        let mut g = Group::restore(record, t0);
        assert!(beat(&mut g, "a", Some(2), t0).is_empty());
        assert!(
            beat(&mut g, "a", Some(3), t0).is_empty(),
            "b is unaccounted for"
        );
        // b leaves without having rejoined: it promises it stopped.
        g.leave("b");
        assert_eq!(beat(&mut g, "a", Some(3), t0).len(), 4);
    }

    #[test]
    fn a_previous_member_is_presumed_stopped_after_its_timeout() {
        let t0 = Instant::now();
        let record = GroupRecord {
            generation: 2,
            strategy: AssignmentStrategy::Averagely,
            members: vec![MemberRecord {
                id: "b".into(),
                session_timeout_ms: 10_000,
            }],
        };
        let mut g = Group::restore(record, t0);
        let t1 = t0 + Duration::from_secs(6);
        assert!(beat(&mut g, "a", None, t1).is_empty());
        assert!(g.expiry_due(t0 + TIMEOUT));
        assert_eq!(beat(&mut g, "a", Some(3), t0 + TIMEOUT).len(), 4);
    }

    #[test]
    fn an_unconfirmed_member_keeps_what_it_loses_and_answers_only_its_target() {
        let t0 = Instant::now();
        let mut g = Group::default();
        assert_eq!(beat(&mut g, "a", None, t0).len(), 4);
        assert!(beat(&mut g, "b", None, t0).is_empty());
        let generation = g.generation();
        // a reports an older generation: told to keep 0-1, still holding 2-3.
        assert_eq!(beat(&mut g, "a", Some(generation - 1), t0).len(), 2);
        let described = g.describe("g");
        assert_eq!(described.phase, GroupPhase::Rebalancing);
        assert_eq!(described.members[0].owned.len(), 4);
        assert_eq!(described.members[0].target.len(), 2);
        assert!(beat(&mut g, "b", Some(generation), t0).is_empty());
        // a confirms: 2-3 go to b at once.
        beat(&mut g, "a", Some(generation), t0);
        assert_eq!(g.describe("g").members[1].owned.len(), 2);
        assert_eq!(g.describe("g").phase, GroupPhase::Stable);
    }
}
