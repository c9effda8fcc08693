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
}
