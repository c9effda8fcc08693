//! One benchmark consumer: reads its queues from given offsets until the benchmark's target
//! is reached, counting messages and body bytes and, for e2e, each message's born → received
//! latency (from the send time in its body).
//!
//! Two paths:
//!
//! - the client's `PullConsumer` (default), manually assigned, no group and no commits,
//!   seeking each queue to its start offset: what an application gets;
//! - `--raw`: `Pull` requests sent straight over a `wire::Connection` to each queue's leader,
//!   one in flight per queue. The next pull leaves as soon as the answer's batch headers give
//!   its offset; meanwhile the answer's batches are validated (CRC) and their records
//!   decoded, but no `ReceivedMessage` made. The gap between the two is what the client
//!   adds.
//!
//! A consumer stops when the messages consumed by all consumers reach `target` (which e2e
//! lowers to what the producers got acknowledged once they finish), when its own queues
//! have no more to give (`remaining`), at the deadline, or after `STALL_TIMEOUT` without a
//! message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use log_core::batch::split_batches;
use log_core::{BatchError, BatchHeader};
use tokio::task::JoinHandle;
use wire::client::{Client, ConsumeFrom, PullConsumer, PullConsumerConfig, QueueRef};
use wire::protocol::{PullRequest, PullResponse};
use wire::Connection;

use super::payload::{now_micros, sent_micros};
use super::raw::Leaders;
use super::stats::{Counters, Latencies};

/// How long a consumer goes without a message before it gives up.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker may hold a pull that finds nothing new.
const PULL_WAIT: Duration = Duration::from_millis(200);
/// How long one `poll` waits before the stop conditions are checked again.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);
/// The most messages one `poll` returns: large enough that a poll drains several pulls.
const POLL_MESSAGES_MAX: usize = 16_384;
/// Added to a raw pull's wait for its timeout.
const RAW_PULL_TIMEOUT_MARGIN: Duration = Duration::from_secs(15);

/// One queue to read, and where.
#[derive(Clone, Copy, Debug)]
pub struct QueueRange {
    pub queue: u32,
    pub start: u64,
    /// The offset to stop at, if known (consume: the log end when the benchmark started).
    pub end: Option<u64>,
}

/// What one consumer reads.
#[derive(Clone, Debug)]
pub struct ConsumerPlan {
    pub topic: String,
    pub queues: Vec<QueueRange>,
    pub fetch_bytes: u32,
    pub raw: bool,
    /// Record born → received latencies (e2e).
    pub latency: bool,
    /// Messages to consume across all consumers; shared, so e2e can lower it.
    pub target: Arc<AtomicU64>,
    pub deadline: Option<Instant>,
}

impl ConsumerPlan {
    fn remaining(&self) -> Option<u64> {
        self.queues
            .iter()
            .map(|q| q.end.map(|end| end.saturating_sub(q.start)))
            .sum()
    }
}

/// Why consumers stop; shared by one consumer's tasks.
#[derive(Debug)]
struct Stop {
    target: Arc<AtomicU64>,
    deadline: Option<Instant>,
    counters: Arc<Counters>,
}

impl Stop {
    fn reached(&self) -> bool {
        self.counters.messages() >= self.target.load(Ordering::Relaxed)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Runs one consumer until a stop condition; returns its latencies (empty unless
/// `plan.latency`).
pub async fn run(
    client: Client,
    plan: ConsumerPlan,
    counters: Arc<Counters>,
) -> anyhow::Result<Latencies> {
    let stop = Arc::new(Stop {
        target: plan.target.clone(),
        deadline: plan.deadline,
        counters: counters.clone(),
    });
    if plan.raw {
        raw(&client, plan, stop).await
    } else {
        pull_consumer(&client, plan, stop).await
    }
}

async fn pull_consumer(
    client: &Client,
    plan: ConsumerPlan,
    stop: Arc<Stop>,
) -> anyhow::Result<Latencies> {
    let mut config = PullConsumerConfig::new("");
    config.consume_from = ConsumeFrom::First;
    config.pull_batch_bytes = plan.fetch_bytes;
    config.pull_wait = PULL_WAIT;
    config.auto_commit_interval = None;
    config.max_poll_messages = POLL_MESSAGES_MAX;
    let consumer = PullConsumer::new(client, config)?;
    let queue_refs = plan
        .queues
        .iter()
        .map(|q| QueueRef {
            topic: plan.topic.clone(),
            queue: q.queue,
        })
        .collect();
    consumer.assign(queue_refs).await?;
    for queue in &plan.queues {
        consumer.seek(&plan.topic, queue.queue, queue.start).await?;
    }
    let mut remaining = plan.remaining();
    let mut latencies = Latencies::default();
    let mut last_message = Instant::now();
    while !stop.reached() && remaining != Some(0) {
        let messages = consumer.poll(POLL_TIMEOUT).await?;
        if messages.is_empty() {
            if last_message.elapsed() >= STALL_TIMEOUT {
                eprintln!("warning: no message for {STALL_TIMEOUT:?}: a consumer gives up");
                break;
            }
            continue;
        }
        last_message = Instant::now();
        let now_us = plan.latency.then(now_micros);
        let mut bytes = 0;
        for message in &messages {
            bytes += message.body.len() as u64;
            if let (Some(now_us), Some(sent_us)) = (now_us, sent_micros(&message.body)) {
                latencies.record_micros(now_us.saturating_sub(sent_us));
            }
        }
        let count = messages.len() as u64;
        remaining = remaining.map(|r| r.saturating_sub(count));
        stop.counters.add(count, bytes);
    }
    consumer.close().await;
    Ok(latencies)
}

async fn raw(client: &Client, plan: ConsumerPlan, stop: Arc<Stop>) -> anyhow::Result<Latencies> {
    let queues: Vec<u32> = plan.queues.iter().map(|q| q.queue).collect();
    let leaders = Leaders::connect(client, &plan.topic, &queues).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for queue in &plan.queues {
        let connection = leaders
            .get(queue.queue)
            .with_context(|| format!("no connection for queue {}", queue.queue))?;
        let fetcher = RawFetcher {
            connection: connection.clone(),
            topic: plan.topic.clone(),
            range: *queue,
            fetch_bytes: plan.fetch_bytes,
            latency: plan.latency,
            stop: stop.clone(),
        };
        tasks.spawn(fetcher.run());
    }
    let mut latencies = Latencies::default();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a raw fetcher panicked")? {
            Ok(l) => latencies.merge(&l),
            Err(error) => failure = Some(error),
        }
    }
    leaders.close();
    failure.map_or(Ok(latencies), Err)
}

/// Pulls one queue over a connection; see the module docs.
struct RawFetcher {
    connection: Connection,
    topic: String,
    range: QueueRange,
    fetch_bytes: u32,
    latency: bool,
    stop: Arc<Stop>,
}

impl RawFetcher {
    async fn run(self) -> anyhow::Result<Latencies> {
        let mut latencies = Latencies::default();
        let mut offset = self.range.start;
        let mut last_message = Instant::now();
        let mut in_flight = self.wanted(offset).then(|| self.pull(offset));
        while let Some(call) = in_flight.take() {
            let batches = call
                .await
                .context("a raw pull panicked")?
                .with_context(|| format!("pull of queue {} at {offset}", self.range.queue))?
                .batches;
            // The next pull leaves before this answer is checked and decoded, as a
            // consumer hands messages on while it fetches more.
            let next = next_offset(offset, &batches)
                .with_context(|| format!("decoding queue {} at {offset}", self.range.queue))?;
            if self.wanted(next) {
                in_flight = Some(self.pull(next));
            }
            let now_us = self.latency.then(now_micros);
            let (decoded_next, count, bytes) = decode(offset, batches, |body| {
                if let (Some(now_us), Some(sent_us)) = (now_us, sent_micros(body)) {
                    latencies.record_micros(now_us.saturating_sub(sent_us));
                }
            })
            .with_context(|| format!("decoding queue {} at {offset}", self.range.queue))?;
            anyhow::ensure!(
                decoded_next == next,
                "queue {}: the batch headers end at {next}, the records at {decoded_next}",
                self.range.queue
            );
            if count == 0 && last_message.elapsed() >= STALL_TIMEOUT {
                eprintln!("warning: no message for {STALL_TIMEOUT:?}: a raw fetcher gives up");
                break;
            }
            if count > 0 {
                last_message = Instant::now();
            }
            self.stop.counters.add(count, bytes);
            offset = next;
        }
        Ok(latencies)
    }

    /// Whether to pull at `offset`: the run goes on and the queue's range is not done.
    fn wanted(&self, offset: u64) -> bool {
        !self.stop.reached() && self.range.end.is_none_or(|end| offset < end)
    }

    /// Sends a pull at `offset`; its answer is awaited later.
    fn pull(&self, offset: u64) -> JoinHandle<wire::Result<PullResponse>> {
        let request = PullRequest {
            topic: self.topic.clone(),
            queue: self.range.queue,
            offset,
            max_bytes: self.fetch_bytes,
            max_wait_ms: u32::try_from(PULL_WAIT.as_millis()).unwrap_or(u32::MAX),
        };
        let connection = self.connection.clone();
        tokio::spawn(async move {
            connection
                .call_timeout(request, PULL_WAIT + RAW_PULL_TIMEOUT_MARGIN)
                .await
        })
    }
}

/// Where the pull after one at `offset` starts, from the batch headers of its answer alone
/// (no CRC check, no records): past the last whole batch. A partial batch at the end (a byte
/// limit cut it) is pulled again.
fn next_offset(offset: u64, batches: &[u8]) -> Result<u64, BatchError> {
    let mut next = offset;
    let mut position = 0;
    while position < batches.len() {
        let prefix = match BatchHeader::parse_prefix(&batches[position..]) {
            Ok(prefix) => prefix,
            Err(BatchError::Truncated { .. }) if position > 0 => break,
            Err(error) => return Err(error),
        };
        if position + prefix.batch_size > batches.len() {
            if position == 0 {
                return Err(BatchError::Truncated {
                    needed: prefix.batch_size,
                    available: batches.len(),
                });
            }
            break;
        }
        let end = prefix.base_offset as u64 + prefix.last_offset_delta as u64 + 1;
        next = next.max(end);
        position += prefix.batch_size;
    }
    Ok(next)
}

/// Walks a pull response: the next offset, messages and body bytes at or after `offset`;
/// `each` sees every body. A partial batch at the end (a byte limit cut it) is left for the
/// next pull.
fn decode(
    offset: u64,
    batches: bytes::Bytes,
    mut each: impl FnMut(&[u8]),
) -> Result<(u64, u64, u64), BatchError> {
    let mut next = offset;
    let mut count = 0;
    let mut bytes = 0;
    for (index, batch) in split_batches(batches).enumerate() {
        let batch = match batch {
            Ok(batch) => batch,
            Err(BatchError::Truncated { .. }) if index > 0 => break,
            Err(error) => return Err(error),
        };
        let batch_end = batch.header().next_offset().0;
        if batch_end > offset && !batch.header().is_control() {
            for record in batch.records()? {
                let record = record?;
                if record.offset.0 < offset {
                    continue;
                }
                let body = record.value.unwrap_or_default();
                bytes += body.len() as u64;
                count += 1;
                each(&body);
            }
        }
        next = next.max(batch_end);
    }
    Ok((next, count, bytes))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use log_core::{BatchBuilder, Compression, Offset};

    use super::*;

    fn stored(base: u64, bodies: &[&[u8]]) -> BytesMut {
        let mut builder = BatchBuilder::new(Compression::None);
        for body in bodies {
            builder.append(0, None, Some(body), &[]);
        }
        let mut bytes = builder.build().unwrap();
        log_core::batch::set_base_offset(&mut bytes, Offset(base));
        bytes
    }

    #[test]
    fn decode_skips_records_before_the_offset_and_a_partial_tail() {
        let mut response = stored(10, &[b"aaaaaaaa", b"bbbbbbbb", b"cccccccc"]);
        let tail = stored(13, &[b"dddddddd"]);
        response.extend_from_slice(&tail[..tail.len() - 3]);
        let mut seen = Vec::new();
        assert_eq!(
            next_offset(11, &response).unwrap(),
            13,
            "headers alone agree"
        );
        let (next, count, bytes) =
            decode(11, response.freeze(), |body| seen.push(body.to_vec())).unwrap();
        assert_eq!((next, count, bytes), (13, 2, 16));
        assert_eq!(seen, vec![b"bbbbbbbb".to_vec(), b"cccccccc".to_vec()]);
    }

    #[test]
    fn next_offset_reads_headers_only_and_refuses_what_is_not_a_batch() {
        assert_eq!(next_offset(7, &[]).unwrap(), 7, "an empty answer stays put");
        let mut two = stored(10, &[b"a", b"b"]);
        two.extend_from_slice(&stored(12, &[b"c"]));
        assert_eq!(next_offset(10, &two).unwrap(), 13);
        let partial = stored(10, &[b"aaaaaaaa"]);
        assert!(next_offset(10, &partial[..partial.len() - 1]).is_err());
        assert!(next_offset(10, &[0u8; 100]).is_err());
    }

    #[test]
    fn decode_refuses_a_corrupt_batch() {
        let mut response = stored(0, &[b"aaaaaaaa"]);
        let last = response.len() - 1;
        response[last] ^= 0xff;
        assert!(decode(0, response.freeze(), |_| {}).is_err());
    }
}
