//! The `--raw` paths: requests sent straight over a `wire::Connection` to each queue's leader,
//! without the client's `Producer` or `PullConsumer`. They show what the broker takes when
//! the client costs next to nothing, beside what the native client reaches.
//!
//! `produce --raw` sends pre-built batches, as `log-core`'s own append benchmark appends
//! pre-built batches: at start each producer builds a few batches of `--batch-size`
//! messages exactly as the client's `Producer` would (same record layout, ids and
//! compression), then sends them in turn as `Send` requests, `--in-flight` at a time per
//! queue, rotating over the queues. The broker assigns every batch its offsets, so resending
//! the same bytes appends new records each time. Latency is per request (a batch's send →
//! receipt).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use log_core::{BatchBuilder, Compression};
use tokio::task::JoinHandle;
use wire::client::{Admin, Client};
use wire::protocol::{Acks, SendRequest, SendResponse};
use wire::{Connection, ConnectionConfig, Message, MessageId};

use super::payload::Payloads;
use super::stats::{Counters, Latencies};

/// Distinct batches each raw producer builds and sends in turn.
const PREBUILT_BATCHES: usize = 4;
/// How long one raw send may take.
const RAW_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Errors a raw producer prints before it only counts them.
const ERRORS_PRINTED_MAX: u64 = 5;

/// One connection per leader broker, and which serves each queue.
pub struct Leaders {
    by_queue: HashMap<u32, Connection>,
    connections: Vec<Connection>,
}

impl Leaders {
    /// Connects to the leaders of `queues` of `topic`, one connection per broker.
    pub async fn connect(client: &Client, topic: &str, queues: &[u32]) -> anyhow::Result<Leaders> {
        let route = Admin::new(client)
            .query_route(topic)
            .await
            .context("asking for the topic's route")?;
        let addresses: HashMap<u32, &str> = route
            .brokers
            .iter()
            .map(|b| (b.broker_id, b.address.as_str()))
            .collect();
        let mut by_address: HashMap<&str, Connection> = HashMap::new();
        let mut by_queue = HashMap::new();
        for &queue in queues {
            let leader = route
                .queues
                .iter()
                .find(|q| q.queue == queue)
                .and_then(|q| addresses.get(&q.leader).copied())
                .with_context(|| format!("queue {queue} has no leader address"))?;
            let connection = match by_address.get(leader) {
                Some(connection) => connection.clone(),
                None => {
                    let config = ConnectionConfig {
                        client_id: client.config().client_id.clone(),
                        ..ConnectionConfig::default()
                    };
                    let connection = Connection::connect(leader, config).await?;
                    by_address.insert(leader, connection.clone());
                    connection
                }
            };
            by_queue.insert(queue, connection);
        }
        Ok(Leaders {
            by_queue,
            connections: by_address.into_values().collect(),
        })
    }

    /// The connection to `queue`'s leader.
    pub fn get(&self, queue: u32) -> Option<&Connection> {
        self.by_queue.get(&queue)
    }

    pub fn close(&self) {
        for connection in &self.connections {
            connection.close();
        }
    }
}

/// What one raw producer sends.
#[derive(Clone, Debug)]
pub struct RawProducerPlan {
    pub topic: String,
    /// The queues it rotates over, one batch each in turn.
    pub queues: Vec<u32>,
    pub message_size: usize,
    pub batch_size: usize,
    pub compression: Compression,
    pub acks: Acks,
    /// Requests in flight per queue.
    pub in_flight: usize,
    /// This producer's share of `--count`; `None` runs until `deadline`.
    pub messages: Option<u64>,
    pub deadline: Option<Instant>,
}

/// Batches of `size` messages of `message_size` bytes, built as the client's `Producer`
/// builds them (one shared body, a fresh message id per record).
pub fn prebuilt_batches(
    topic: &str,
    message_size: usize,
    size: usize,
    compression: Compression,
    count: usize,
) -> anyhow::Result<Vec<Bytes>> {
    let body = Payloads::new(message_size).shared();
    (0..count)
        .map(|_| {
            let mut builder = BatchBuilder::new(compression);
            for _ in 0..size {
                Message::new(topic, body.clone()).append_to(&mut builder, &MessageId::generate());
            }
            let batch = builder.build().context("building a batch")?;
            Ok(batch.freeze())
        })
        .collect()
}

/// A send in flight: when it left, how many messages it carries, its answer.
type InFlight = (Instant, u64, JoinHandle<wire::Result<SendResponse>>);

/// Runs one raw producer to the end of its plan; returns its per-request latencies.
pub async fn produce(
    client: Client,
    plan: RawProducerPlan,
    counters: Arc<Counters>,
) -> anyhow::Result<Latencies> {
    if plan.queues.is_empty() {
        bail!("the topic has no queues");
    }
    let batches = prebuilt_batches(
        &plan.topic,
        plan.message_size,
        plan.batch_size,
        plan.compression,
        PREBUILT_BATCHES,
    )?;
    let leaders = Leaders::connect(&client, &plan.topic, &plan.queues).await?;
    let mut producer = RawProducer {
        pending: VecDeque::with_capacity(plan.in_flight * plan.queues.len()),
        latencies: Latencies::default(),
        errors: 0,
        counters,
    };
    let window = plan.in_flight * plan.queues.len();
    let mut sent: u64 = 0;
    let mut turn = 0usize;
    loop {
        let remaining = plan.messages.map(|n| n.saturating_sub(sent));
        if remaining == Some(0) || plan.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let batch_size = plan.batch_size as u64;
        let (batch, messages) = match remaining {
            Some(left) if left < batch_size => {
                let last = prebuilt_batches(
                    &plan.topic,
                    plan.message_size,
                    left as usize,
                    plan.compression,
                    1,
                )?;
                (last.into_iter().next().unwrap_or_default(), left)
            }
            _ => (batches[turn % batches.len()].clone(), batch_size),
        };
        let queue = plan.queues[turn % plan.queues.len()];
        turn = turn.wrapping_add(1);
        let connection = leaders
            .get(queue)
            .with_context(|| format!("no connection for queue {queue}"))?
            .clone();
        let request = SendRequest {
            topic: plan.topic.clone(),
            queue,
            acks: plan.acks,
            timeout_ms: u32::try_from(RAW_SEND_TIMEOUT.as_millis()).unwrap_or(u32::MAX),
            batches: batch,
        };
        let call =
            tokio::spawn(async move { connection.call_timeout(request, RAW_SEND_TIMEOUT).await });
        producer.pending.push_back((Instant::now(), messages, call));
        sent += messages;
        while producer.pending.len() >= window {
            producer.reap_oldest(plan.message_size).await?;
        }
    }
    while !producer.pending.is_empty() {
        producer.reap_oldest(plan.message_size).await?;
    }
    leaders.close();
    Ok(producer.latencies)
}

struct RawProducer {
    pending: VecDeque<InFlight>,
    latencies: Latencies,
    errors: u64,
    counters: Arc<Counters>,
}

impl RawProducer {
    /// Waits for the oldest send's answer and counts it.
    async fn reap_oldest(&mut self, message_size: usize) -> anyhow::Result<()> {
        let Some((sent, messages, call)) = self.pending.pop_front() else {
            return Ok(());
        };
        match call.await.context("a raw send panicked")? {
            Ok(_) => {
                self.latencies.record(sent.elapsed());
                self.counters.add(messages, messages * message_size as u64);
            }
            Err(error) => {
                self.errors += 1;
                self.counters.add_errors(messages);
                if self.errors <= ERRORS_PRINTED_MAX {
                    eprintln!("error: a raw send of {messages} messages failed: {error}");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use log_core::batch::split_batches;

    use super::*;

    #[test]
    fn prebuilt_batches_hold_the_asked_messages_and_differ_in_their_ids() {
        let batches = prebuilt_batches("bench", 100, 10, Compression::None, 2).unwrap();
        assert_eq!(batches.len(), 2);
        for batch in &batches {
            let parsed: Vec<_> = split_batches(batch.clone()).collect();
            assert_eq!(parsed.len(), 1, "one batch each");
            let batch = parsed.into_iter().next().unwrap().unwrap();
            let records: Vec<_> = batch.records().unwrap().map(Result::unwrap).collect();
            assert_eq!(records.len(), 10);
            assert!(records
                .iter()
                .all(|r| r.value.as_ref().unwrap().len() == 100));
        }
        assert_ne!(batches[0], batches[1], "each record has its own message id");

        let compressed = prebuilt_batches("bench", 100, 10, Compression::Lz4, 1).unwrap();
        assert!(compressed[0].len() < batches[0].len());
    }
}
