//! Where a consumer starts reading a queue, and where it goes when its offset is out of range.
//!
//! A group's committed offset always wins. `ConsumeFrom` decides only for queues the group
//! never committed (RocketMQ's `ConsumeFromWhere`):
//!
//! | `ConsumeFrom`  | no committed offset → start at                           |
//! |----------------|----------------------------------------------------------|
//! | `First`        | the queue's log start offset (the oldest message kept)   |
//! | `Last`         | the queue's log end offset when the queue is first taken |
//! | `Timestamp(t)` | the first offset stored at or after `t` (ms since epoch) |
//!
//! **Unlike RocketMQ, `Last` means last for a young topic too.** RocketMQ's broker answers 0
//! instead of "not found" for a new group while message 0 is still in memory
//! (`ConsumerManageProcessor.queryConsumerOffset`), so its new `CONSUME_FROM_LAST_OFFSET`
//! groups read young topics from the beginning. Runnel does not: a new group with `Last`
//! sees only messages sent after it first took the queue. Use `First` for a group that must
//! see everything already stored. The resolved start is committed on the first commit, so
//! a restart before any message arrives does not skip ahead again.
//!
//! **Out of range.** When a pull finds the offset outside `[log_start, log_end]` (retention
//! deleted the segment it pointed into, or the queue was recreated), the consumer moves to
//! the log start if it was below it and to the log end if it was above, whatever
//! `ConsumeFrom` says: below means messages expired unread (read what is left), above means
//! the offset belongs to a log that no longer exists (wait for new messages).

use super::cluster::Client;
use crate::error::{Error, ErrorCode, Result, ServiceError};
use crate::protocol::{DescribeTopicRequest, FetchOffsetsRequest, OffsetForTimeRequest, QueueRef};

/// Where a consumer starts a queue its group never committed; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsumeFrom {
    First,
    #[default]
    Last,
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
}

/// A queue's first and next offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueBounds {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// How to find a queue's start offset; `plan_start` picks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartPlan {
    Committed(u64),
    LogStart,
    LogEnd,
    Time(i64),
}

pub(crate) fn plan_start(committed: Option<u64>, from: ConsumeFrom) -> StartPlan {
    match (committed, from) {
        (Some(offset), _) => StartPlan::Committed(offset),
        (None, ConsumeFrom::First) => StartPlan::LogStart,
        (None, ConsumeFrom::Last) => StartPlan::LogEnd,
        (None, ConsumeFrom::Timestamp(time)) => StartPlan::Time(time),
    }
}

/// Where to go after `OffsetOutOfRange` at `requested`; see the module docs.
pub(crate) fn out_of_range_reset(requested: u64, bounds: QueueBounds) -> u64 {
    if requested < bounds.start {
        bounds.start
    } else {
        bounds.end
    }
}

/// The offset to start `queue` at for `group` (an empty group has no committed offsets).
pub(crate) async fn resolve_start(
    client: &Client,
    group: &str,
    queue: &QueueRef,
    from: ConsumeFrom,
) -> Result<u64> {
    let committed = if group.is_empty() {
        None
    } else {
        fetch_committed(client, group, queue).await?
    };
    match plan_start(committed, from) {
        StartPlan::Committed(offset) => Ok(offset),
        StartPlan::LogStart => Ok(queue_bounds(client, queue).await?.start),
        StartPlan::LogEnd => Ok(queue_bounds(client, queue).await?.end),
        StartPlan::Time(timestamp) => offset_for_time(client, queue, timestamp).await,
    }
}

/// The group's committed offset for one queue, if any.
pub(crate) async fn fetch_committed(
    client: &Client,
    group: &str,
    queue: &QueueRef,
) -> Result<Option<u64>> {
    let request = FetchOffsetsRequest {
        group: group.to_owned(),
        topic: queue.topic.clone(),
        queues: vec![queue.queue],
    };
    let response = client.call_group(group, request).await?;
    Ok(response
        .offsets
        .iter()
        .find(|o| o.queue == queue.queue)
        .and_then(|o| o.offset))
}

/// The queue's log start and end, asked of its leader.
pub(crate) async fn queue_bounds(client: &Client, queue: &QueueRef) -> Result<QueueBounds> {
    let request = DescribeTopicRequest {
        name: queue.topic.clone(),
    };
    let timeout = client.config().request_timeout;
    let description = client
        .call_leader(&queue.topic, queue.queue, request, timeout)
        .await?;
    let described = description
        .queues
        .iter()
        .find(|q| q.queue == queue.queue)
        .ok_or_else(|| unknown_queue(queue))?;
    Ok(QueueBounds {
        start: described.log_start_offset,
        end: described.log_end_offset,
    })
}

pub(crate) async fn offset_for_time(
    client: &Client,
    queue: &QueueRef,
    timestamp: i64,
) -> Result<u64> {
    let request = OffsetForTimeRequest {
        topic: queue.topic.clone(),
        queue: queue.queue,
        timestamp,
    };
    let timeout = client.config().request_timeout;
    let response = client
        .call_leader(&queue.topic, queue.queue, request, timeout)
        .await?;
    Ok(response.offset)
}

fn unknown_queue(queue: &QueueRef) -> Error {
    Error::Server(ServiceError::new(
        ErrorCode::UnknownQueue,
        format!("topic {} has no queue {}", queue.topic, queue.queue),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_offset_wins_over_consume_from() {
        for from in [
            ConsumeFrom::First,
            ConsumeFrom::Last,
            ConsumeFrom::Timestamp(5),
        ] {
            assert_eq!(plan_start(Some(42), from), StartPlan::Committed(42));
        }
    }

    #[test]
    fn without_a_commit_consume_from_decides() {
        assert_eq!(plan_start(None, ConsumeFrom::First), StartPlan::LogStart);
        assert_eq!(plan_start(None, ConsumeFrom::Last), StartPlan::LogEnd);
        assert_eq!(
            plan_start(None, ConsumeFrom::Timestamp(1_700_000_000_000)),
            StartPlan::Time(1_700_000_000_000)
        );
        assert_eq!(ConsumeFrom::default(), ConsumeFrom::Last);
    }

    #[test]
    fn out_of_range_goes_to_the_nearer_end() {
        let bounds = QueueBounds {
            start: 100,
            end: 200,
        };
        assert_eq!(out_of_range_reset(0, bounds), 100);
        assert_eq!(out_of_range_reset(99, bounds), 100);
        assert_eq!(out_of_range_reset(201, bounds), 200);
        assert_eq!(out_of_range_reset(u64::MAX, bounds), 200);
    }
}
