//! The broker side of consumer groups: the members whose heartbeats this broker receives.
//!
//! A heartbeat writes the member's key, `groups/<g>/members/<m>` (its spec and the generation
//! it confirms), only when that changes, or when the member is new here; the key is bound to a
//! per-member lease of TTL session timeout + `MEMBER_LEASE_GRACE`, which this broker keeps
//! alive while the member heartbeats. Then the heartbeat waits until the cached assignment
//! reflects the key's revision (the controller has processed it) and answers `owned ∩
//! target` from it.
//!
//! Expiry is timed on the injected `Clock`: the reaper (every `REAPER_PERIOD`, and on
//! `expire_sessions`) revokes the lease of a member silent for its session timeout, which
//! deletes its key; the controller then sees a leave. If this broker dies, its members'
//! leases run out after their TTL instead. A member that moves to another broker gets a lease
//! there; the old broker's lease then only guards nothing and is revoked by its reaper.
//!
//! Each lease is refreshed every `MEMBER_KEEPALIVE_PERIOD` with a one-shot keep-alive stream:
//! simple, and cheap enough for hundreds of members per broker; thousands would want one
//! shared lease per broker and session timeout instead.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::groups::{self, MemberRecord};
use super::keys::encode;
use super::rpc::within;
use super::Shared;
use crate::embedded::heartbeat_interval;
use crate::error::{Error, Result};
use crate::limits::{check_group_name, check_member_spec, GROUP_MEMBERS_MAX};
use crate::types::{MemberAssignment, MemberSpec};

/// How much longer than its session timeout a member's lease lives: the backstop after a
/// broker dies, never the normal way a member expires.
pub const MEMBER_LEASE_GRACE: Duration = Duration::from_secs(2);
/// How often this broker refreshes the leases of its members.
pub const MEMBER_KEEPALIVE_PERIOD: Duration = Duration::from_secs(1);
/// How often the reaper looks for silent members.
pub const REAPER_PERIOD: Duration = Duration::from_millis(200);

/// The members this broker serves.
#[derive(Debug, Default)]
pub struct Members {
    local: parking_lot::Mutex<BTreeMap<(String, String), Local>>,
    /// Serialises this broker's member-key writes, so two heartbeats of one member never
    /// grant two leases.
    writes: tokio::sync::Mutex<()>,
}

#[derive(Clone, Debug)]
struct Local {
    lease: i64,
    ttl: i64,
    session_timeout: Duration,
    last_seen: Instant,
    /// Heartbeats of this member waiting for the controller: the reaper leaves it alone
    /// meanwhile, so a slow answer never expires the member that is waiting for it.
    in_flight: usize,
}

/// Marks one heartbeat of a member as in flight; when it ends (answered, failed or dropped)
/// the member's session restarts from then.
struct InFlight<'a> {
    shared: &'a Shared,
    slot: (String, String),
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let now = self.shared.clock.now();
        if let Some(local) = self.shared.members.local.lock().get_mut(&self.slot) {
            local.in_flight = local.in_flight.saturating_sub(1);
            local.last_seen = local.last_seen.max(now);
        }
    }
}

/// The member lease TTL for `session_timeout`, in whole seconds.
fn lease_ttl(session_timeout: Duration) -> i64 {
    let seconds = (session_timeout + MEMBER_LEASE_GRACE).as_secs_f64().ceil();
    seconds.min(i64::MAX as f64) as i64
}

pub async fn heartbeat(
    shared: &Shared,
    group: &str,
    spec: MemberSpec,
    generation: Option<u64>,
) -> Result<MemberAssignment> {
    check_group_name(group)?;
    check_member_spec(&spec)?;
    let id = spec.member_id.clone();
    let written = write_member(shared, group, &spec, generation).await?;
    let _in_flight = InFlight {
        shared,
        slot: (group.to_owned(), id.clone()),
    };
    let keys = &shared.keys;
    shared
        .cache
        .wait_until(
            shared.config.cache_wait,
            &format!("the controller's answer to member {id} of group {group}"),
            |s| matches!(s.assignment(keys, group), Ok(Some(a)) if a.revision >= written),
        )
        .await?;
    shared.cache.read(|s| {
        let assignment = s.assignment(keys, group)?;
        let queues = assignment.and_then(|a| groups::answer(a, &id));
        match (assignment, queues) {
            (Some(a), Some(queues)) => Ok(MemberAssignment {
                generation: a.generation,
                queues,
                heartbeat_interval: heartbeat_interval(spec.session_timeout),
            }),
            _ => Err(unknown_member(group, &id)),
        }
    })
}

/// Writes the member key if it changed (or the member is new here) and marks a heartbeat in
/// flight; answers the revision the controller must have processed for the answer to be
/// current.
async fn write_member(
    shared: &Shared,
    group: &str,
    spec: &MemberSpec,
    generation: Option<u64>,
) -> Result<i64> {
    let id = spec.member_id.clone();
    let record = MemberRecord::new(spec, generation);
    let ttl = lease_ttl(spec.session_timeout);
    let now = shared.clock.now();
    let members = &shared.members;
    let _writes = members.writes.lock().await;
    let slot = (group.to_owned(), id.clone());
    let local = members.local.lock().get(&slot).cloned();
    let (cached, count) = shared.cache.read(|s| {
        let group_members = s.members.get(group);
        let cached = group_members
            .and_then(|m| m.get(&id))
            .map(|m| (m.value.clone(), m.lease, m.mod_revision));
        (cached, group_members.map_or(0, BTreeMap::len))
    });
    let key = shared.keys.member(group, &id);
    if let (Some(local), Some((value, lease, revision))) = (&local, &cached) {
        if *lease == local.lease && local.ttl == ttl {
            let written = if *value == record {
                *revision
            } else {
                put(shared, &key, &record, local.lease).await?
            };
            if let Some(entry) = members.local.lock().get_mut(&slot) {
                entry.last_seen = now;
                entry.in_flight += 1;
            }
            return Ok(written);
        }
    }
    if cached.is_none() && count >= GROUP_MEMBERS_MAX {
        return Err(Error::InvalidArgument(format!(
            "group {group} already has {GROUP_MEMBERS_MAX} members"
        )));
    }
    let mut leases = shared.client.lease_client();
    let timeout = shared.config.request_timeout;
    let lease = within(timeout, "grant a member lease", leases.grant(ttl, None))
        .await?
        .id();
    let written = put(shared, &key, &record, lease).await?;
    let fresh = Local {
        lease,
        ttl,
        session_timeout: spec.session_timeout,
        last_seen: now,
        in_flight: local.as_ref().map_or(0, |l| l.in_flight) + 1,
    };
    members.local.lock().insert(slot, fresh);
    if let Some(old) = local {
        let _ = within(timeout, "revoke a member lease", leases.revoke(old.lease)).await;
    }
    Ok(written)
}

async fn put(shared: &Shared, key: &str, record: &MemberRecord, lease: i64) -> Result<i64> {
    let mut kv = shared.client.kv_client();
    let options = PutOptions::new().with_lease(lease);
    let put = within(
        shared.config.request_timeout,
        "put a member key",
        kv.put(key, encode(record), Some(options)),
    )
    .await?;
    Ok(put.header().map_or(0, |h| h.revision()))
}

pub async fn leave(shared: &Shared, group: &str, member_id: &str) -> Result<()> {
    if check_group_name(group).is_err() {
        return Err(unknown_member(group, member_id));
    }
    let key = shared.keys.member(group, member_id);
    let deleted = {
        let _writes = shared.members.writes.lock().await;
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.as_str(),
                CompareOp::Greater,
                0,
            )])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        let answer = shared.txn("delete a member key", txn).await?;
        if !answer.succeeded() {
            return Err(unknown_member(group, member_id));
        }
        let local = shared
            .members
            .local
            .lock()
            .remove(&(group.to_owned(), member_id.to_owned()));
        if let Some(local) = local {
            let mut leases = shared.client.lease_client();
            let what = "revoke a member lease";
            let _ = within(
                shared.config.request_timeout,
                what,
                leases.revoke(local.lease),
            )
            .await;
        }
        answer.header().map_or(0, |h| h.revision())
    };
    let keys = &shared.keys;
    shared
        .cache
        .wait_until(
            shared.config.cache_wait,
            &format!("the controller's processing of {member_id} leaving {group}"),
            |s| matches!(s.assignment(keys, group), Ok(Some(a)) if a.revision >= deleted),
        )
        .await
}

/// Revokes the leases of members silent for their session timeout on the clock, then waits
/// until the controller has processed their departure; answers how many expired.
pub async fn expire(shared: &Shared) -> Result<usize> {
    let now = shared.clock.now();
    let mut revoked = Vec::new();
    let mut revision = 0;
    {
        let _writes = shared.members.writes.lock().await;
        let expired: Vec<((String, String), Local)> = {
            let mut local = shared.members.local.lock();
            let silent: Vec<(String, String)> = local
                .iter()
                .filter(|(_, m)| {
                    m.in_flight == 0
                        && now.saturating_duration_since(m.last_seen) >= m.session_timeout
                })
                .map(|(slot, _)| slot.clone())
                .collect();
            silent
                .into_iter()
                .filter_map(|slot| local.remove(&slot).map(|m| (slot, m)))
                .collect()
        };
        let mut leases = shared.client.lease_client();
        for ((group, member), local) in expired {
            tracing::info!(%group, %member, "a consumer group member's session expired");
            let what = "revoke an expired member's lease";
            match within(
                shared.config.request_timeout,
                what,
                leases.revoke(local.lease),
            )
            .await
            {
                Ok(answer) => revision = revision.max(answer.header().map_or(0, |h| h.revision())),
                Err(error) => {
                    tracing::warn!(%group, %member, %error, "{what} failed; its TTL will end it")
                }
            }
            revoked.push((group, member));
        }
    }
    if revoked.is_empty() {
        return Ok(0);
    }
    let keys = &shared.keys;
    shared
        .cache
        .wait_until(
            shared.config.cache_wait,
            "the processing of expired members",
            |s| {
                s.revision >= revision
                    && revoked.iter().all(|(group, member)| {
                        let alive_elsewhere =
                            s.members.get(group).is_some_and(|m| m.contains_key(member));
                        let assigned = matches!(s.assignment(keys, group),
                        Ok(Some(a)) if a.members.contains_key(member));
                        alive_elsewhere || !assigned
                    })
            },
        )
        .await?;
    Ok(revoked.len())
}

/// Refreshes every local member's lease once; forgets members whose lease is gone.
async fn keep_alive(shared: &Shared) {
    let leases: Vec<((String, String), i64)> = shared
        .members
        .local
        .lock()
        .iter()
        .map(|(slot, m)| (slot.clone(), m.lease))
        .collect();
    let mut client = shared.client.lease_client();
    for (slot, lease) in leases {
        // `keep_alive` sends one refresh and awaits its answer; a lease etcd no longer knows
        // comes back as `LeaseKeepAliveError` ("lease not found").
        let refresh = client.keep_alive(lease);
        let what = "refresh a member lease";
        match tokio::time::timeout(shared.config.request_timeout, refresh).await {
            Ok(Ok(_)) => {}
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(reason))) => {
                tracing::warn!(group = %slot.0, member = %slot.1, %reason, "a member's lease is gone");
                let mut local = shared.members.local.lock();
                if local.get(&slot).is_some_and(|m| m.lease == lease) {
                    local.remove(&slot);
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(group = %slot.0, member = %slot.1, %error, "{what} failed")
            }
            Err(_) => tracing::warn!(
                group = %slot.0,
                member = %slot.1,
                "{what} failed: etcd did not answer within {:?}",
                shared.config.request_timeout
            ),
        }
    }
}

/// The lease keeper of this broker's members, and (with `reap`) the reaper; runs until
/// aborted.
pub async fn run(shared: std::sync::Arc<Shared>, reap: bool) {
    let mut reaper = tokio::time::interval(REAPER_PERIOD);
    let mut keeper = tokio::time::interval(MEMBER_KEEPALIVE_PERIOD);
    for ticks in [&mut reaper, &mut keeper] {
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = reaper.tick(), if reap => {
                if let Err(error) = expire(&shared).await {
                    tracing::warn!(%error, "expiring consumer group sessions failed; retrying");
                }
            }
            _ = keeper.tick() => keep_alive(&shared).await,
        }
    }
}

fn unknown_member(group: &str, member_id: &str) -> Error {
    Error::UnknownMember {
        group: group.to_owned(),
        member_id: member_id.to_owned(),
    }
}
