//! The controller's work on consumer groups: whenever the cache changes (and every
//! `RECONCILE_PERIOD`, to retry failed writes), the broker holding the election runs
//! `groups::reconcile` for every group with a member key or an assignment, and writes each
//! assignment that changed.
//!
//! Every write is one transaction guarded by the controller's election revision
//! (`create_revision(controller)`) and the assignment's `mod_revision` as cached: a deposed
//! controller cannot write, and a controller whose cache is behind an assignment cannot
//! overwrite it (it retries once its cache has caught up). The state machine lives in the
//! assignment, not in the controller's memory, so a new controller continues from the last
//! written assignment with nothing to rebuild: owned sets there are exactly what members
//! were told.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::groups::{self, AssignmentRecord, Inputs};
use super::keys::encode;
use super::Shared;

/// How often the controller reconciles groups even when nothing changed in its cache.
pub const RECONCILE_PERIOD: Duration = Duration::from_secs(1);

/// Runs until aborted; acts only while this broker is the controller.
pub async fn run(shared: Arc<Shared>) {
    let mut revisions = shared.cache.revision();
    let mut tick = tokio::time::interval(RECONCILE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = revisions.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {}
        }
        if let Some(election) = shared.election() {
            reconcile_all(&shared, election.revision).await;
        }
    }
}

/// One pass over every group.
async fn reconcile_all(shared: &Shared, election_revision: i64) {
    let now = shared.clock.now();
    let keys = &shared.keys;
    let writes: Vec<(String, AssignmentRecord, i64)> = shared.cache.read(|s| {
        let topics = s.topic_map(keys);
        let names: Vec<&String> = s.members.keys().chain(s.assignments.keys()).collect();
        let mut writes = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for name in names {
            if !seen.insert(name) || s.assignment(keys, name).is_err() {
                continue;
            }
            let members: BTreeMap<String, groups::MemberRecord> = s
                .members
                .get(name)
                .map(|m| {
                    m.iter()
                        .map(|(id, m)| (id.clone(), m.value.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let stored = s.assignments.get(name);
            let inputs = Inputs {
                name,
                current: stored.map(|a| &a.value),
                members: &members,
                topics: &topics,
                member_change: s.member_changes.get(name).copied().unwrap_or(0),
                revision: s.revision,
            };
            if let Some(next) = groups::reconcile(&inputs, now) {
                writes.push((name.clone(), next, stored.map_or(0, |a| a.mod_revision)));
            }
        }
        writes
    });
    for (group, record, mod_revision) in writes {
        let key = keys.assignment(&group);
        let txn = Txn::new()
            .when([
                Compare::create_revision(keys.controller(), CompareOp::Equal, election_revision),
                Compare::mod_revision(key.as_str(), CompareOp::Equal, mod_revision),
            ])
            .and_then([TxnOp::put(
                key.as_str(),
                encode(&record),
                None::<PutOptions>,
            )]);
        match shared.txn("write a group assignment", txn).await {
            Ok(answer) if answer.succeeded() => {
                tracing::debug!(%group, generation = record.generation, "wrote the group's assignment");
            }
            Ok(_) => tracing::debug!(%group, "an assignment write lost its guard; retrying later"),
            Err(error) => tracing::warn!(%group, %error, "writing a group assignment failed"),
        }
    }
}
