//! Assignment strategies: how a group's queues are split among its members.
//!
//! Every strategy is a pure function of the sorted member ids and the sorted queues, so any
//! broker computes the same answer from the same inputs.

use crate::types::{AssignmentStrategy, QueueId};

/// Splits `queues` among `members` (both sorted by the caller), answering each member's
/// queues in member order.
pub fn assign(
    strategy: AssignmentStrategy,
    members: &[String],
    queues: &[QueueId],
) -> Vec<Vec<QueueId>> {
    match strategy {
        AssignmentStrategy::Averagely => averagely(members.len(), queues),
        AssignmentStrategy::AveragelyByCircle => by_circle(members.len(), queues),
    }
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
        let split = assign(AssignmentStrategy::Averagely, &members, &queues(8));
        let sizes: Vec<usize> = split.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![3, 3, 2]);
        assert_eq!(split[1][0].queue, 3);
        let all: Vec<QueueId> = split.concat();
        assert_eq!(all, queues(8));
    }

    #[test]
    fn more_members_than_queues_leaves_some_idle() {
        let members: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let split = assign(AssignmentStrategy::Averagely, &members, &queues(2));
        let sizes: Vec<usize> = split.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 1, 0, 0, 0]);
    }

    #[test]
    fn by_circle_deals_queues_round_the_members() {
        let members: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let split = assign(AssignmentStrategy::AveragelyByCircle, &members, &queues(8));
        let numbers: Vec<Vec<u32>> = split
            .iter()
            .map(|qs| qs.iter().map(|q| q.queue).collect())
            .collect();
        assert_eq!(numbers, vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
    }

    #[test]
    fn by_circle_with_more_members_than_queues_leaves_the_last_idle() {
        let members: Vec<String> = (0..4).map(|i| i.to_string()).collect();
        let split = assign(AssignmentStrategy::AveragelyByCircle, &members, &queues(2));
        let sizes: Vec<usize> = split.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 1, 0, 0]);
    }

    #[test]
    fn every_strategy_gives_each_queue_to_exactly_one_member() {
        for strategy in [
            AssignmentStrategy::Averagely,
            AssignmentStrategy::AveragelyByCircle,
        ] {
            for member_count in 1..=7 {
                for queue_count in 0..=20 {
                    let members: Vec<String> = (0..member_count).map(|i| format!("m{i}")).collect();
                    let split = assign(strategy, &members, &queues(queue_count));
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
        ] {
            assert!(assign(strategy, &[], &queues(3)).is_empty());
        }
    }
}
