//! Consumer groups: membership (`Heartbeat`, `LeaveGroup`) passed to the coordinator, the
//! connections of members (to push `NotifyAssignment`), offsets (`CommitOffsets`,
//! `FetchOffsets`, `ResetOffsets`) and administration (`ListGroups`, `DescribeGroup`).
//!
//! Commit fencing: a member commits with its member id and the generation it consumes in;
//! the coordinator's `check_generation` answers `UnknownMember` or `IllegalGeneration` for a
//! stale one. A client outside group membership (manual assignment) commits with an empty
//! member id and no generation; that is accepted only while the group has no live members,
//! and refused with `GroupNotEmpty` otherwise — the code that says what the commit needs (the
//! same one `ResetOffsets` answers), where `IllegalGeneration` would suggest that a newer
//! generation could succeed. A member id without a generation, or a generation without a
//! member id, is `InvalidArgument`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use coordinator::{AssignmentStrategy, GroupMetadata, GroupPhase, MemberSpec, QueueId};
use parking_lot::Mutex;
use wire::protocol::Response;
use wire::protocol::{
    CommitOffsetsRequest, FetchOffsetsRequest, FetchOffsetsResponse, GroupDescription,
    GroupQueueOffset, GroupState, GroupStrategy, GroupSummary, HeartbeatRequest, HeartbeatResponse,
    LeaveGroupRequest, ListGroupsResponse, MemberDescription, NotifyAssignmentRequest,
    OffsetResetEntry, OffsetSpec, QueueOffset, QueueRef, ResetOffsetsRequest, ResetOffsetsResponse,
    Subscription, NAME_BYTES_MAX,
};
use wire::{ErrorCode, Peer, RequestContext, ServiceError};

use crate::broker::{Broker, LocalTopic};
use crate::error;
use crate::offsets::{Acknowledgement, OffsetEntry, OFFSETS_TOPIC};
use crate::service::{ready, Answer};

/// Shortest session timeout a member may ask for.
pub const SESSION_TIMEOUT_MS_MIN: u32 = 100;
/// Longest session timeout a member may ask for: 30 minutes (Kafka's group maximum).
pub const SESSION_TIMEOUT_MS_MAX: u32 = 30 * 60 * 1000;

/// The connection each group member last heartbeated on, to notify it of rebalances.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    inner: Mutex<PeersInner>,
}

#[derive(Debug, Default)]
struct PeersInner {
    /// group → member id → (connection id, peer).
    groups: HashMap<String, HashMap<String, (u64, Peer)>>,
    /// connection id → the (group, member) pairs that heartbeated on it.
    connections: HashMap<u64, HashSet<(String, String)>>,
}

impl Peers {
    fn remember(&self, group: &str, member: &str, connection: u64, peer: Peer) {
        let mut inner = self.inner.lock();
        let previous = inner
            .groups
            .entry(group.to_owned())
            .or_default()
            .insert(member.to_owned(), (connection, peer));
        let key = (group.to_owned(), member.to_owned());
        if let Some((old, _)) = previous.filter(|(old, _)| *old != connection) {
            if let Some(pairs) = inner.connections.get_mut(&old) {
                pairs.remove(&key);
            }
        }
        inner.connections.entry(connection).or_default().insert(key);
    }

    fn forget_member(&self, group: &str, member: &str) {
        let mut inner = self.inner.lock();
        let removed = inner
            .groups
            .get_mut(group)
            .and_then(|members| members.remove(member));
        if inner.groups.get(group).is_some_and(HashMap::is_empty) {
            inner.groups.remove(group);
        }
        if let Some((connection, _)) = removed {
            if let Some(pairs) = inner.connections.get_mut(&connection) {
                pairs.remove(&(group.to_owned(), member.to_owned()));
            }
        }
    }

    pub fn forget_connection(&self, connection: u64) {
        let mut inner = self.inner.lock();
        let Some(pairs) = inner.connections.remove(&connection) else {
            return;
        };
        for (group, member) in pairs {
            if let Some(members) = inner.groups.get_mut(&group) {
                members.retain(|id, (c, _)| !(id == &member && *c == connection));
                if members.is_empty() {
                    inner.groups.remove(&group);
                }
            }
        }
    }

    /// Groups with at least one remembered member.
    pub fn groups(&self) -> Vec<String> {
        self.inner.lock().groups.keys().cloned().collect()
    }

    /// Sends `NotifyAssignment` to every remembered member of `group`; returns how many
    /// were sent. A member whose connection is gone is forgotten.
    pub fn notify(&self, group: &str, generation: u64) -> usize {
        self.notify_some(group, generation, |_| true)
    }

    /// Sends `NotifyAssignment` to the remembered members of `group` among `members`.
    pub fn notify_members(&self, group: &str, generation: u64, members: &[String]) -> usize {
        self.notify_some(group, generation, |id| members.iter().any(|m| m == id))
    }

    fn notify_some(&self, group: &str, generation: u64, wanted: impl Fn(&str) -> bool) -> usize {
        let peers: Vec<(String, Peer)> = self
            .inner
            .lock()
            .groups
            .get(group)
            .map(|members| {
                members
                    .iter()
                    .filter(|(id, _)| wanted(id))
                    .map(|(id, (_, peer))| (id.clone(), peer.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut sent = 0;
        for (member, peer) in peers {
            let notification = NotifyAssignmentRequest {
                group: group.to_owned(),
                generation,
            };
            match peer.notify(notification) {
                Ok(()) => sent += 1,
                Err(wire::Error::Closed) => self.forget_member(group, &member),
                Err(failure) => {
                    tracing::debug!(%group, %member, %failure, "could not notify a group member")
                }
            }
        }
        sent
    }
}

impl Broker {
    pub(crate) async fn heartbeat(
        &self,
        context: RequestContext,
        request: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ServiceError> {
        validate_group(&request.group)?;
        validate_member(&request.member_id)?;
        if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&request.session_timeout_ms)
        {
            return Err(error::invalid(format!(
                "group {}: session_timeout_ms must be in {SESSION_TIMEOUT_MS_MIN}..={SESSION_TIMEOUT_MS_MAX}, got {}",
                request.group, request.session_timeout_ms
            )));
        }
        let subscriptions: BTreeMap<String, String> = request
            .subscriptions
            .into_iter()
            .map(|s| (s.topic, s.expression))
            .collect();
        let spec = MemberSpec {
            member_id: request.member_id.clone(),
            client_id: context.client_id.clone(),
            host: context.peer_addr.to_string(),
            subscriptions,
            session_timeout: Duration::from_millis(u64::from(request.session_timeout_ms)),
            strategy: match request.strategy {
                GroupStrategy::Averagely => AssignmentStrategy::Averagely,
                GroupStrategy::AveragelyByCircle => AssignmentStrategy::AveragelyByCircle,
                GroupStrategy::ConsistentHash => AssignmentStrategy::ConsistentHash,
                GroupStrategy::Sticky => AssignmentStrategy::Sticky,
            },
        };
        // A group's first heartbeat creates the offsets topic in a cluster (see `cluster.rs`);
        // membership does not depend on it, so a failure here only delays the creation.
        if let Err(failure) = self.offsets_topic().await {
            tracing::warn!(group = %request.group, %failure, "could not open the consumer-offsets topic");
        }
        let assignment = self
            .coordinator
            .heartbeat(&request.group, spec, request.generation)
            .await
            .map_err(error::metadata)?;
        self.peers.remember(
            &request.group,
            &request.member_id,
            context.connection_id,
            context.peer,
        );
        Ok(HeartbeatResponse {
            generation: assignment.generation,
            assignment: assignment.queues.into_iter().map(queue_ref).collect(),
            heartbeat_interval_ms: u32::try_from(assignment.heartbeat_interval.as_millis())
                .unwrap_or(u32::MAX),
        })
    }

    pub(crate) async fn leave_group(&self, request: LeaveGroupRequest) -> Result<(), ServiceError> {
        validate_group(&request.group)?;
        self.peers.forget_member(&request.group, &request.member_id);
        self.coordinator
            .leave_group(&request.group, &request.member_id)
            .await
            .map_err(error::metadata)
    }

    /// Checks and queues the commit synchronously (arrival order); see the module docs.
    ///
    /// Only a commit that arrives before the offsets topic is open on this broker (in a
    /// cluster, before any group used it), or that names a topic this broker has not opened
    /// yet (created elsewhere moments ago), waits for those first, and so is not ordered with
    /// later commits of its connection; clients fetch offsets or heartbeat before they
    /// commit, which opens the offsets topic.
    pub(crate) fn commit_offsets(self: &Arc<Self>, request: CommitOffsetsRequest) -> Answer {
        let local = self.local_topic(OFFSETS_TOPIC).filter(|_| {
            request
                .offsets
                .iter()
                .all(|commit| self.local_topic(&commit.topic).is_some())
        });
        let Some(local) = local else {
            let broker = Arc::clone(self);
            return Box::pin(async move {
                validate_group(&request.group)?;
                let local = broker.offsets_topic().await?;
                for commit in &request.offsets {
                    broker.served_topic(&commit.topic).await?;
                }
                let acknowledgement = broker.submit_commit(&local, request)?;
                acknowledged(acknowledgement)
                    .await
                    .map(|()| Response::Empty)
            });
        };
        let group = request.group.clone();
        match self.submit_commit(&local, request) {
            Ok(acknowledgement) => Box::pin(async move {
                acknowledged(acknowledgement)
                    .await
                    .map(|()| Response::Empty)
            }),
            Err(refused) if refused.code == ErrorCode::NotLeader => {
                let broker = Arc::clone(self);
                Box::pin(async move {
                    let again = |b: &Broker| b.group_offsets_here(&local, &group).err();
                    Err(broker.refreshed_refusal(refused, again).await)
                })
            }
            Err(refused) => ready(Err(refused)),
        }
    }

    fn submit_commit(
        self: &Arc<Self>,
        offsets_topic: &LocalTopic,
        request: CommitOffsetsRequest,
    ) -> Result<Acknowledgement, ServiceError> {
        let CommitOffsetsRequest {
            group,
            member_id,
            generation,
            offsets,
        } = request;
        validate_group(&group)?;
        self.group_offsets_here(offsets_topic, &group)?;
        let mut entries = Vec::with_capacity(offsets.len());
        for commit in offsets {
            self.check_commit(&group, &commit.topic, commit.queue, commit.offset)?;
            entries.push(OffsetEntry {
                topic: commit.topic,
                queue: commit.queue,
                offset: Some(commit.offset),
            });
        }
        let coordinator = Arc::clone(&self.coordinator);
        let fenced_group = group.clone();
        let fence = match (member_id.is_empty(), generation) {
            (false, Some(generation)) => self.runtime.spawn(async move {
                coordinator
                    .check_generation(&fenced_group, &member_id, generation)
                    .await
                    .map_err(error::metadata)
            }),
            (true, None) => self.runtime.spawn(async move {
                let meta = coordinator
                    .group(&fenced_group)
                    .await
                    .map_err(error::metadata)?;
                require_empty(&fenced_group, meta.as_ref(), "a commit without a member id")
            }),
            (false, None) => {
                return Err(error::invalid(format!(
                    "group {group}: member {member_id} must commit with its generation"
                )))
            }
            (true, Some(_)) => {
                return Err(error::invalid(format!(
                    "group {group}: a commit with a generation needs a member id"
                )))
            }
        };
        self.offsets.submit(&group, entries, Some(fence))
    }

    /// A committed offset must name a queue of a known topic, and be at most the log end of a
    /// queue this broker leads (the end of a queue led elsewhere is not known here).
    fn check_commit(
        &self,
        group: &str,
        topic: &str,
        queue: u32,
        offset: u64,
    ) -> Result<(), ServiceError> {
        let local = self
            .local_topic(topic)
            .ok_or_else(|| error::unknown_topic(topic))?;
        match local.queues.get(queue as usize) {
            None => Err(error::unknown_queue(topic, queue, local.queues.len())),
            Some(None) => Ok(()),
            Some(Some(led)) => {
                let end = led.handle.log.log_end_offset().0;
                if offset > end {
                    return Err(error::invalid(format!(
                        "group {group}: offset {offset} for {topic}-{queue} is past the log end {end}"
                    )));
                }
                Ok(())
            }
        }
    }

    pub(crate) async fn fetch_offsets(
        &self,
        request: FetchOffsetsRequest,
    ) -> Result<FetchOffsetsResponse, ServiceError> {
        validate_group(&request.group)?;
        self.serve_group_offsets(&request.group).await?;
        let count = self.queue_count(&request.topic).await?;
        let queues: Vec<u32> = if request.queues.is_empty() {
            (0..count).collect()
        } else {
            request.queues
        };
        let committed = self.offsets.committed();
        let mut offsets = Vec::with_capacity(queues.len());
        for queue in queues {
            if queue >= count {
                return Err(error::unknown_queue(&request.topic, queue, count as usize));
            }
            offsets.push(QueueOffset {
                queue,
                offset: committed.get(&request.group, &request.topic, queue),
            });
        }
        Ok(FetchOffsetsResponse { offsets })
    }

    pub(crate) async fn list_groups(&self) -> Result<ListGroupsResponse, ServiceError> {
        let mut groups: BTreeMap<String, GroupSummary> = BTreeMap::new();
        for group in self.offsets.committed().groups() {
            groups.insert(
                group.clone(),
                GroupSummary {
                    group,
                    state: GroupState::Empty,
                    members: 0,
                },
            );
        }
        for meta in self.coordinator.groups().await.map_err(error::metadata)? {
            groups.insert(
                meta.name.clone(),
                GroupSummary {
                    state: group_state(&meta),
                    members: meta.members.len() as u32,
                    group: meta.name,
                },
            );
        }
        Ok(ListGroupsResponse {
            groups: groups.into_values().collect(),
        })
    }

    pub(crate) async fn describe_group(
        &self,
        group: &str,
    ) -> Result<GroupDescription, ServiceError> {
        validate_group(group)?;
        self.serve_group_offsets(group).await?;
        let meta = self
            .coordinator
            .group(group)
            .await
            .map_err(error::metadata)?;
        let committed = self.offsets.committed().group(group);
        if meta.is_none() && committed.is_empty() {
            return Err(ServiceError::new(
                ErrorCode::UnknownGroup,
                format!("group {group} has no members and no committed offsets"),
            ));
        }
        let mut topics: BTreeSet<String> = committed.keys().map(|(t, _)| t.clone()).collect();
        let mut owners: BTreeMap<QueueId, String> = BTreeMap::new();
        let mut members = Vec::new();
        if let Some(meta) = &meta {
            for member in &meta.members {
                topics.extend(member.spec.subscriptions.keys().cloned());
                for queue in &member.owned {
                    owners.insert(queue.clone(), member.spec.member_id.clone());
                }
                members.push(MemberDescription {
                    member_id: member.spec.member_id.clone(),
                    client_id: member.spec.client_id.clone(),
                    host: member.spec.host.clone(),
                    subscriptions: member
                        .spec
                        .subscriptions
                        .iter()
                        .map(|(topic, expression)| Subscription {
                            topic: topic.clone(),
                            expression: expression.clone(),
                        })
                        .collect(),
                    assignment: member.owned.iter().cloned().map(queue_ref).collect(),
                });
            }
        }
        let offsets = self.group_offsets(group, &topics, &owners);
        Ok(GroupDescription {
            group: group.to_owned(),
            state: meta.as_ref().map_or(GroupState::Empty, group_state),
            generation: meta.as_ref().map_or(0, |m| m.generation),
            members,
            offsets,
        })
    }

    /// Every queue of `topics`, with the group's committed offset; for the queues this broker
    /// leads, their end offset and the lag. A queue led by another broker answers
    /// `log_end_offset` 0 and `lag` 0: its end is known to its leader, and the client fills
    /// both from the leader's `DescribeTopic`.
    fn group_offsets(
        &self,
        group: &str,
        topics: &BTreeSet<String>,
        owners: &BTreeMap<QueueId, String>,
    ) -> Vec<GroupQueueOffset> {
        let committed = self.offsets.committed();
        let mut offsets = Vec::new();
        for topic in topics {
            let Some(local) = self.local_topic(topic) else {
                continue;
            };
            for (number, queue) in local.queues.iter().enumerate() {
                let number = number as u32;
                let offset = committed.get(group, topic, number);
                let (end, lag) = match queue {
                    Some(queue) => {
                        let end = queue.handle.readable_end().0;
                        let start = queue.handle.log_start().0;
                        let lag =
                            offset.map_or(end.saturating_sub(start), |c| end.saturating_sub(c));
                        (end, lag)
                    }
                    None => (0, 0),
                };
                offsets.push(GroupQueueOffset {
                    topic: topic.clone(),
                    queue: number,
                    committed: offset,
                    log_end_offset: end,
                    lag,
                    owner: owners.get(&QueueId::new(topic.clone(), number)).cloned(),
                });
            }
        }
        offsets
    }

    pub(crate) async fn reset_offsets(
        &self,
        request: ResetOffsetsRequest,
    ) -> Result<ResetOffsetsResponse, ServiceError> {
        let group = request.group;
        validate_group(&group)?;
        self.serve_group_offsets(&group).await?;
        let meta = self
            .coordinator
            .group(&group)
            .await
            .map_err(error::metadata)?;
        require_empty(&group, meta.as_ref(), "an offset reset")?;
        let committed = self.offsets.committed();
        let topics: Vec<String> = match request.topic {
            Some(topic) => {
                if self.local_topic(&topic).is_none() {
                    return Err(error::unknown_topic(&topic));
                }
                vec![topic]
            }
            None => {
                let topics: BTreeSet<String> = committed
                    .group(&group)
                    .into_keys()
                    .map(|(topic, _)| topic)
                    .collect();
                topics.into_iter().collect()
            }
        };
        let mut plan = Vec::new();
        for topic in topics {
            let Some(local) = self.local_topic(&topic) else {
                continue;
            };
            for (number, queue) in local.queues.iter().enumerate() {
                let number = number as u32;
                let new = match queue {
                    Some(queue) => {
                        let handle = &queue.handle;
                        match request.to {
                            OffsetSpec::Earliest => handle.log_start().0,
                            OffsetSpec::Latest => handle.readable_end().0,
                            OffsetSpec::Timestamp(at) => self.time_lookup(handle, at).await?.0,
                        }
                    }
                    // Led by another broker (in a cluster): its leader knows its offsets.
                    None => self.remote_offset(&topic, number, request.to).await?,
                };
                plan.push(OffsetResetEntry {
                    topic: topic.clone(),
                    queue: number,
                    current: committed.get(&group, &topic, number),
                    new,
                });
            }
        }
        if request.execute && !plan.is_empty() {
            let entries = plan
                .iter()
                .map(|entry| OffsetEntry {
                    topic: entry.topic.clone(),
                    queue: entry.queue,
                    offset: Some(entry.new),
                })
                .collect();
            let acknowledgement = self.offsets.submit(&group, entries, None)?;
            acknowledged(acknowledgement).await?;
            tracing::info!(%group, queues = plan.len(), "reset group offsets");
        }
        Ok(ResetOffsetsResponse { plan })
    }

    /// The queue count of a topic, from this broker's view or the coordinator's.
    async fn queue_count(&self, topic: &str) -> Result<u32, ServiceError> {
        if let Some(local) = self.local_topic(topic) {
            return Ok(local.queues.len() as u32);
        }
        let meta = self
            .coordinator
            .topic(topic)
            .await
            .map_err(error::metadata)?
            .ok_or_else(|| error::unknown_topic(topic))?;
        Ok(meta.queues.len() as u32)
    }

    /// Refreshes the `runnel_group_lag` gauge of every known group.
    async fn refresh_lag(&self) {
        let mut groups: BTreeSet<String> = self.offsets.committed().groups().into_iter().collect();
        if let Ok(metas) = self.coordinator.groups().await {
            groups.extend(metas.into_iter().map(|m| m.name));
        }
        if let Err(failure) = self.refresh_addresses().await {
            tracing::debug!(%failure, "lag refresh: broker addresses not refreshed");
        }
        for group in groups {
            if !self.serves_group_offsets(&group) {
                continue; // its offsets broker publishes its lag
            }
            // In a cluster this broker knows the ends of the queues it leads only: the rest
            // come from their leaders, as a client's description does.
            let described = if self.config.clustered() {
                self.remote_group_description(&group).await
            } else {
                self.describe_group(&group).await
            };
            match described {
                Ok(description) => publish_lag(&group, &description.offsets),
                Err(failure) => tracing::debug!(%group, %failure, "could not refresh group lag"),
            }
        }
    }
}

/// Refreshes the group-lag gauge every `period` while the broker lives.
pub(crate) async fn refresh_lag_periodically(broker: Weak<Broker>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(broker) = broker.upgrade() else {
            return;
        };
        if broker.is_closing() {
            return;
        }
        broker.refresh_lag().await;
    }
}

fn publish_lag(group: &str, offsets: &[GroupQueueOffset]) {
    let mut by_topic: BTreeMap<&str, u64> = BTreeMap::new();
    for offset in offsets {
        *by_topic.entry(offset.topic.as_str()).or_default() += offset.lag;
    }
    for (topic, lag) in by_topic {
        crate::metrics::group_lag(group, topic, lag);
    }
}

async fn acknowledged(acknowledgement: Acknowledgement) -> Result<(), ServiceError> {
    acknowledgement.await.map_err(|_| error::shutting_down())?
}

fn require_empty(
    group: &str,
    meta: Option<&GroupMetadata>,
    what: &str,
) -> Result<(), ServiceError> {
    match meta {
        Some(meta) if !meta.members.is_empty() => Err(ServiceError::new(
            ErrorCode::GroupNotEmpty,
            format!(
                "group {group} has {} live members; {what} needs a group with none",
                meta.members.len()
            ),
        )),
        _ => Ok(()),
    }
}

fn group_state(meta: &GroupMetadata) -> GroupState {
    match meta.phase {
        GroupPhase::Empty => GroupState::Empty,
        GroupPhase::Rebalancing => GroupState::Rebalancing,
        GroupPhase::Stable => GroupState::Stable,
    }
}

fn queue_ref(queue: QueueId) -> QueueRef {
    QueueRef {
        topic: queue.topic,
        queue: queue.queue,
    }
}

/// Group names: 1 to `NAME_BYTES_MAX` bytes, no control characters (the offsets record key
/// separates fields with NUL).
fn validate_group(group: &str) -> Result<(), ServiceError> {
    if group.is_empty() || group.len() > NAME_BYTES_MAX || group.chars().any(char::is_control) {
        return Err(ServiceError::new(
            ErrorCode::InvalidName,
            format!(
                "group name {:?} must be 1 to {NAME_BYTES_MAX} bytes without control characters",
                group.chars().take(NAME_BYTES_MAX).collect::<String>()
            ),
        ));
    }
    Ok(())
}

fn validate_member(member: &str) -> Result<(), ServiceError> {
    if member.is_empty() || member.len() > NAME_BYTES_MAX {
        return Err(error::invalid(format!(
            "member id must be 1 to {NAME_BYTES_MAX} bytes, got {}",
            member.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_forgotten_with_their_connection_or_when_closed() {
        let peers = Peers::default();
        peers.remember("g", "a", 1, Peer::detached());
        peers.remember("g", "b", 2, Peer::detached());
        peers.remember("h", "a", 1, Peer::detached());
        // A member that reconnects is remembered on its new connection only.
        peers.remember("g", "b", 3, Peer::detached());
        peers.forget_connection(2);
        assert_eq!(peers.inner.lock().groups["g"].len(), 2);

        peers.forget_connection(1);
        let mut groups = peers.groups();
        groups.sort();
        assert_eq!(groups, ["g"], "h had one member, on the closed connection");
        assert_eq!(peers.inner.lock().groups["g"].len(), 1);

        // Detached peers are closed: notifying forgets them.
        assert_eq!(peers.notify("g", 7), 0);
        assert!(peers.groups().is_empty());
        assert!(peers
            .inner
            .lock()
            .connections
            .values()
            .all(HashSet::is_empty));
    }
}
