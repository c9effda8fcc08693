//! Topic placement: which live broker leads each queue of a new topic. A pure function, so
//! any broker computes the same placement from the same inputs and tests need no cluster.
//!
//! Each queue in turn goes to the broker that leads the fewest queues so far (counting the
//! queues it already leads in other topics), ties broken by the lowest broker id. On an idle
//! cluster that is plain round-robin over the brokers sorted by id (12 queues on 3 brokers: 4
//! each, queue q on broker `q % 3`); on a loaded one new queues fill the least-loaded brokers
//! first, so leadership stays balanced by count.
//!
//! Replication is not built yet: every queue has its leader as its only replica and ISR
//! member, at leader epoch 0 and version 0.

use std::collections::BTreeMap;

use crate::types::{BrokerId, QueueState};

/// Places `queues` queues on `brokers` (any order; duplicates ignored), given how many queues
/// each broker already leads (`load`; brokers absent from it lead none). Answers one
/// `QueueState` per queue, in queue order; empty when there is no broker.
pub fn place(
    queues: u32,
    brokers: &[BrokerId],
    load: &BTreeMap<BrokerId, usize>,
) -> Vec<QueueState> {
    let mut counts: BTreeMap<BrokerId, usize> = brokers
        .iter()
        .map(|id| (*id, load.get(id).copied().unwrap_or(0)))
        .collect();
    if counts.is_empty() {
        return Vec::new();
    }
    (0..queues)
        .map(|queue| {
            let leader = counts
                .iter()
                .min_by_key(|(id, count)| (**count, **id))
                .map(|(id, _)| *id)
                .unwrap_or_default();
            if let Some(count) = counts.get_mut(&leader) {
                *count += 1;
            }
            QueueState {
                queue,
                leader,
                leader_epoch: 0,
                replicas: vec![leader],
                isr: vec![leader],
                version: 0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaders(states: &[QueueState]) -> Vec<BrokerId> {
        states.iter().map(|q| q.leader).collect()
    }

    #[test]
    fn an_idle_cluster_gets_round_robin_by_id() {
        let placed = place(12, &[3, 1, 2], &BTreeMap::new());
        assert_eq!(leaders(&placed), vec![1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
        for (index, state) in placed.iter().enumerate() {
            assert_eq!(state.queue as usize, index);
            assert_eq!(state.replicas, vec![state.leader]);
            assert_eq!(state.isr, vec![state.leader]);
            assert_eq!((state.leader_epoch, state.version), (0, 0));
        }
    }

    #[test]
    fn new_queues_fill_the_least_loaded_brokers_first() {
        let load = BTreeMap::from([(1, 4), (2, 1), (7, 100)]);
        let placed = place(5, &[1, 2, 3], &load);
        // 3 leads none, 2 one, 1 four: 3, then 2 and 3 alternate until they reach 1's load.
        assert_eq!(leaders(&placed), vec![3, 2, 3, 2, 3]);
    }

    #[test]
    fn counts_stay_within_one_of_each_other() {
        for brokers in 1..=5u32 {
            for queues in 0..=40 {
                let ids: Vec<BrokerId> = (1..=brokers).collect();
                let placed = place(queues, &ids, &BTreeMap::new());
                assert_eq!(placed.len(), queues as usize);
                let mut counts = BTreeMap::new();
                for state in &placed {
                    *counts.entry(state.leader).or_insert(0usize) += 1;
                }
                let max = counts.values().max().copied().unwrap_or(0);
                let min = if counts.len() < ids.len() {
                    0
                } else {
                    counts.values().min().copied().unwrap_or(0)
                };
                assert!(max - min <= 1, "{queues} on {brokers}: {counts:?}");
            }
        }
    }

    #[test]
    fn no_broker_places_nothing() {
        assert!(place(3, &[], &BTreeMap::new()).is_empty());
    }
}
