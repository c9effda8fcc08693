//! Assignment strategies: how a group's queues are split among its members.
//!
//! Every strategy is a pure function of the sorted member ids, the sorted queues and (for
//! `Sticky`) what each member holds now, so any broker computes the same answer from the
//! same inputs.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{AssignmentStrategy, QueueId};

/// Points each member takes on the consistent-hash ring (RocketMQ's default virtual nodes).
pub const CONSISTENT_HASH_VIRTUAL_NODES: u32 = 10;

/// Splits `queues` among `members` (both sorted by the caller), answering each member's
/// queues in member order. `held[i]` is what member i holds now (only `Sticky` reads it;
/// shorter than `members` means the rest hold nothing).
pub fn assign(
    strategy: AssignmentStrategy,
    members: &[String],
    queues: &[QueueId],
    held: &[Vec<QueueId>],
) -> Vec<Vec<QueueId>> {
    match strategy {
        AssignmentStrategy::Averagely => averagely(members.len(), queues),
        AssignmentStrategy::AveragelyByCircle => by_circle(members.len(), queues),
        AssignmentStrategy::ConsistentHash => consistent_hash(members, queues),
        AssignmentStrategy::Sticky => sticky(members.len(), queues, held),
    }
}

/// RocketMQ's `AllocateMessageQueueConsistentHash`: every member puts
/// `CONSISTENT_HASH_VIRTUAL_NODES` points on a ring (`ring_hash` of `member#i`), and a
/// queue (hashed as `topic#queue`) goes to the first point at or after its hash. A member
/// joining or leaving moves only the queues next to its points; the split is not exactly
/// even.
fn consistent_hash(members: &[String], queues: &[QueueId]) -> Vec<Vec<QueueId>> {
    let mut out = vec![Vec::new(); members.len()];
    if members.is_empty() {
        return out;
    }
    let mut ring: BTreeMap<u64, usize> = BTreeMap::new();
    for (index, member) in members.iter().enumerate() {
        for node in 0..CONSISTENT_HASH_VIRTUAL_NODES {
            // On a collision the lower index keeps the point: still deterministic.
            ring.entry(ring_hash(format!("{member}#{node}").as_bytes()))
                .or_insert(index);
        }
    }
    for queue in queues {
        let point = ring_hash(format!("{}#{}", queue.topic, queue.queue).as_bytes());
        let owner = ring
            .range(point..)
            .next()
            .or_else(|| ring.iter().next())
            .map(|(_, index)| *index)
            .unwrap_or(0);
        out[owner].push(queue.clone());
    }
    out
}

/// Moves the fewest queues while staying as even as `Averagely`: each member keeps what it
/// holds up to its fair share (`queues / members`, one more for `queues % members` of them),
/// and the rest goes, in queue order, to the member holding fewest (lowest index on ties).
fn sticky(members: usize, queues: &[QueueId], held: &[Vec<QueueId>]) -> Vec<Vec<QueueId>> {
    let mut out: Vec<Vec<QueueId>> = vec![Vec::new(); members];
    if members == 0 {
        return out;
    }
    let base = queues.len() / members;
    let extra = queues.len() % members;
    let available: BTreeSet<&QueueId> = queues.iter().collect();
    let mut taken: BTreeSet<&QueueId> = BTreeSet::new();
    for (index, kept) in out.iter_mut().enumerate() {
        let mut mine: Vec<&QueueId> = held
            .get(index)
            .map(|h| h.iter().collect())
            .unwrap_or_default();
        mine.sort();
        for queue in mine {
            if kept.len() > base || !available.contains(queue) || !taken.insert(queue) {
                continue;
            }
            kept.push(queue.clone());
        }
    }
    // At most `extra` members may keep one more than `base`; the later ones give it back.
    let mut over = 0;
    for kept in &mut out {
        if kept.len() > base {
            over += 1;
            if over > extra {
                if let Some(queue) = kept.pop() {
                    taken.remove(&queue);
                }
            }
        }
    }
    for queue in queues.iter().filter(|q| !taken.contains(q)) {
        let fewest = (0..members)
            .min_by_key(|i| (out[*i].len(), *i))
            .unwrap_or(0);
        out[fewest].push(queue.clone());
    }
    for split in &mut out {
        split.sort();
    }
    out
}

/// 64-bit FNV-1a, then MurmurHash3's finaliser: FNV alone leaves names that differ only in
/// their last bytes close together on the ring, so a member's points would bunch up.
fn ring_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// RocketMQ's `AllocateMessageQueueAveragely`: member i takes a contiguous block; the first
/// `queues % members` members take one extra queue.
fn averagely(members: usize, queues: &[QueueId]) -> Vec<Vec<QueueId>> {
    if members == 0 {
        return Vec::new();
    }
    let base = queues.len() / members;
    let extra = queues.len() % members;
    let mut out = Vec::with_capacity(members);
    let mut start = 0;
    for i in 0..members {
        let count = base + usize::from(i < extra);
        out.push(queues[start..start + count].to_vec());
        start += count;
    }
    out
}

/// RocketMQ's `AllocateMessageQueueAveragelyByCircle`: queue j goes to member `j % members`.
fn by_circle(members: usize, queues: &[QueueId]) -> Vec<Vec<QueueId>> {
    let mut out = vec![Vec::new(); members];
    if members == 0 {
        return out;
    }
    for (j, queue) in queues.iter().enumerate() {
        out[j % members].push(queue.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: u32) -> Vec<QueueId> {
        (0..n).map(|q| QueueId::new("t", q)).collect()
    }

    #[test]
    fn averagely_gives_contiguous_blocks_and_the_remainder_to_the_first() {
        let members: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let split = assign(AssignmentStrategy::Averagely, &members, &queues(8), &[]);
        let sizes: Vec<usize> = split.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![3, 3, 2]);
        assert_eq!(split[1][0].queue, 3);
        let all: Vec<QueueId> = split.concat();
        assert_eq!(all, queues(8));
    }

    #[test]
    fn more_members_than_queues_leaves_some_idle() {
        let members: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let split = assign(AssignmentStrategy::Averagely, &members, &queues(2), &[]);
        let sizes: Vec<usize> = split.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 1, 0, 0, 0]);
    }

    #[test]
    fn by_circle_deals_queues_round_the_members() {
        let members: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let split = assign(
            AssignmentStrategy::AveragelyByCircle,
            &members,
            &queues(8),
            &[],
        );
        let numbers: Vec<Vec<u32>> = split
            .iter()
            .map(|qs| qs.iter().map(|q| q.queue).collect())
            .collect();
        assert_eq!(numbers, vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
    }

    #[test]
    fn by_circle_with_more_members_than_queues_leaves_the_last_idle() {
        let members: Vec<String> = (0..4).map(|i| i.to_string()).collect();
        let split = assign(
            AssignmentStrategy::AveragelyByCircle,
            &members,
            &queues(2),
            &[],
        );
        let sizes: Vec<usize> = split.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 1, 0, 0]);
    }

    #[test]
    fn every_strategy_gives_each_queue_to_exactly_one_member() {
        for strategy in [
            AssignmentStrategy::Averagely,
            AssignmentStrategy::AveragelyByCircle,
            AssignmentStrategy::Sticky,
        ] {
            for member_count in 1..=7 {
                for queue_count in 0..=20 {
                    let members: Vec<String> = (0..member_count).map(|i| format!("m{i}")).collect();
                    // Sticky starts from a lopsided holding: everything on the first member.
                    let held = vec![queues(queue_count)];
                    let split = assign(strategy, &members, &queues(queue_count), &held);
                    assert_eq!(split.len(), members.len(), "{strategy:?}");
                    let mut all: Vec<QueueId> = split.concat();
                    all.sort();
                    assert_eq!(all, queues(queue_count), "{strategy:?} {member_count}");
                    let sizes: Vec<usize> = split.iter().map(Vec::len).collect();
                    let spread =
                        sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0);
                    assert!(spread <= 1, "{strategy:?} is unbalanced: {sizes:?}");
                }
            }
        }
    }

    #[test]
    fn no_members_take_nothing() {
        for strategy in [
            AssignmentStrategy::Averagely,
            AssignmentStrategy::AveragelyByCircle,
            AssignmentStrategy::ConsistentHash,
            AssignmentStrategy::Sticky,
        ] {
            assert!(assign(strategy, &[], &queues(3), &[]).is_empty());
        }
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("member-{i}")).collect()
    }

    /// Queues of `after` (member → queues) that are not with the same member in `before`.
    fn moved(
        before: &[Vec<QueueId>],
        before_ids: &[String],
        after: &[Vec<QueueId>],
        after_ids: &[String],
    ) -> usize {
        let owner: BTreeMap<&QueueId, &String> = before
            .iter()
            .zip(before_ids)
            .flat_map(|(qs, id)| qs.iter().map(move |q| (q, id)))
            .collect();
        after
            .iter()
            .zip(after_ids)
            .flat_map(|(qs, id)| qs.iter().map(move |q| (q, id)))
            .filter(|(q, id)| owner.get(q) != Some(id))
            .count()
    }

    #[test]
    fn consistent_hash_gives_every_queue_once_and_a_joiner_takes_only_from_others() {
        let all = queues(48);
        let three = assign(AssignmentStrategy::ConsistentHash, &ids(3), &all, &[]);
        let mut every: Vec<QueueId> = three.concat();
        every.sort();
        assert_eq!(every, all);
        let four = assign(AssignmentStrategy::ConsistentHash, &ids(4), &all, &[]);
        // Queues that moved all moved to the new member.
        for (index, split) in four.iter().enumerate().take(3) {
            assert!(
                split.iter().all(|q| three[index].contains(q)),
                "member {index} gained {split:?}"
            );
        }
        assert!(!four[3].is_empty(), "the joiner got nothing of 48 queues");
    }

    #[test]
    fn sticky_moves_only_what_balance_needs() {
        let all = queues(12);
        let three = assign(AssignmentStrategy::Sticky, &ids(3), &all, &[]);
        let sizes: Vec<usize> = three.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![4, 4, 4]);
        // A fourth member joins: it takes one queue from each, nothing else moves.
        let four = assign(AssignmentStrategy::Sticky, &ids(4), &all, &three);
        assert_eq!(moved(&three, &ids(3), &four, &ids(4)), 3);
        assert!(four.iter().all(|s| s.len() == 3));
        // Member 1 leaves: only its three queues move.
        let left: Vec<String> = vec![ids(4)[0].clone(), ids(4)[2].clone(), ids(4)[3].clone()];
        let held = vec![four[0].clone(), four[2].clone(), four[3].clone()];
        let after = assign(AssignmentStrategy::Sticky, &left, &all, &held);
        assert_eq!(moved(&held, &left, &after, &left), 3);
        // Averagely, by contrast, reshuffles on the same join.
        let averagely = assign(AssignmentStrategy::Averagely, &ids(4), &all, &[]);
        assert!(moved(&three, &ids(3), &averagely, &ids(4)) > 3);
    }

    #[test]
    fn sticky_ignores_held_queues_that_no_longer_exist_or_are_held_twice() {
        let held = vec![
            vec![QueueId::new("gone", 0), QueueId::new("t", 0)],
            vec![QueueId::new("t", 0)],
        ];
        let split = assign(AssignmentStrategy::Sticky, &ids(2), &queues(2), &held);
        assert_eq!(split[0], vec![QueueId::new("t", 0)]);
        assert_eq!(split[1], vec![QueueId::new("t", 1)]);
    }
}
