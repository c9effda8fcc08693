//! The three benchmark phases over one topic: set the topic up, start the workers, wait for
//! them, and report.
//!
//! - produce: P producers send `--count` messages (or run for `--duration`); the clock runs
//!   from the first send to the last receipt.
//! - consume: C consumers read the topic from each queue's start, at most `--count`
//!   messages (all that is stored if fewer); the clock runs until the last is read.
//! - e2e: consumers start at each queue's end, then producers start; consumers stop once
//!   they have read what the producers got acknowledged.
//!
//! Workers are created (connections made) before the clock starts, so the figures do not
//! include connecting.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use wire::client::{Admin, Client, Producer, ProducerConfig, QueueSelector};
use wire::protocol::TopicDescription;
use wire::ErrorCode;

use super::args::WorkloadArgs;
use super::consume::{self, ConsumerPlan, QueueRange};
use super::cpu::{CpuMeter, CpuUse};
use super::payload;
use super::produce::{self, ProducerPlan, WINDOW_MESSAGES_MAX};
use super::raw::{self, RawProducerPlan};
use super::stats::{start_progress, Counters, Latencies, Summary};
use crate::client_cmd::block_on;

/// The producer's buffer holds at least this many batches, so a batch can fill while
/// earlier ones are in flight.
const BUFFER_BATCHES_MIN: usize = 8;
/// The producer's buffer is at least this many bytes (the client's default).
const BUFFER_BYTES_MIN: usize = 32 << 20;
/// How long e2e consumers keep reading after the producers finish, at most.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Exit code when the benchmark ran but messages failed or went missing.
const EXIT_PROBLEM: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Produce,
    Consume,
    EndToEnd,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Produce => "produce",
            Phase::Consume => "consume",
            Phase::EndToEnd => "e2e",
        }
    }
}

/// The whole result, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Report<'a> {
    bench: &'static str,
    config: Config<'a>,
    results: Vec<Summary>,
    cpu: CpuUse,
}

/// The settings a result depends on.
#[derive(Debug, Serialize)]
struct Config<'a> {
    broker: &'a str,
    topic: &'a str,
    queues: usize,
    message_size: usize,
    batch_size: usize,
    batch_bytes: usize,
    /// Each producer's buffer (`--buffer-mib` or the default).
    buffer_bytes: usize,
    linger_ms: f64,
    count: u64,
    duration_s: Option<f64>,
    producers: usize,
    consumers: usize,
    compression: &'static str,
    acks: String,
    sync: bool,
    rate: u64,
    fetch_bytes: u32,
    in_flight: u32,
    producer_path: &'static str,
    consumer_path: &'static str,
}

pub fn run(phase: Phase, args: WorkloadArgs) -> anyhow::Result<ExitCode> {
    block_on(run_phase(phase, args))?
}

async fn run_phase(phase: Phase, args: WorkloadArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client("runnel-bench").await?;
    let topic = match phase {
        Phase::Consume => describe(&client, &args.topic).await?,
        Phase::Produce | Phase::EndToEnd => ensure_topic(&client, &args).await?,
    };
    client.close();
    let batch_bytes = payload::batch_bytes(&args.topic, args.message_size, args.batch_size);
    let cpu = CpuMeter::start(args.broker_pid);
    let results = match phase {
        Phase::Produce => vec![produce_only(&args, &topic, batch_bytes).await?],
        Phase::Consume => vec![consume_only(&args, &topic).await?],
        Phase::EndToEnd => end_to_end(&args, &topic, batch_bytes).await?,
    };
    let report = Report {
        bench: phase.name(),
        config: config(&args, &topic, batch_bytes),
        results,
        cpu: cpu.finish(),
    };
    print_report(&args, &report)?;
    let problem = report.results.iter().any(|r| r.errors > 0)
        || (phase == Phase::EndToEnd && report.results[0].messages != report.results[1].messages);
    Ok(if problem {
        ExitCode::from(EXIT_PROBLEM)
    } else {
        ExitCode::SUCCESS
    })
}

async fn describe(client: &Client, topic: &str) -> anyhow::Result<TopicDescription> {
    Admin::new(client)
        .describe_topic(topic)
        .await
        .with_context(|| format!("describing topic {topic} (run `runnel bench produce` first)"))
}

/// The topic, created with `--queues` queues if missing.
async fn ensure_topic(client: &Client, args: &WorkloadArgs) -> anyhow::Result<TopicDescription> {
    let admin = Admin::new(client);
    match admin.describe_topic(&args.topic).await {
        Ok(topic) => {
            if topic.queues.len() != args.queues as usize {
                eprintln!(
                    "note: topic {} exists with {} queues; --queues {} is ignored",
                    args.topic,
                    topic.queues.len(),
                    args.queues
                );
            }
            Ok(topic)
        }
        Err(error) if error.code() == Some(ErrorCode::UnknownTopic) => {
            let created = admin
                .create_topic(&args.topic, args.queues, Vec::new())
                .await
                .with_context(|| format!("creating topic {}", args.topic))?;
            eprintln!(
                "created topic {} with {} queues",
                created.name,
                created.queues.len()
            );
            Ok(created)
        }
        Err(error) => Err(error).with_context(|| format!("describing topic {}", args.topic)),
    }
}

fn config<'a>(args: &'a WorkloadArgs, topic: &TopicDescription, batch_bytes: usize) -> Config<'a> {
    Config {
        broker: &args.connect.broker,
        topic: &args.topic,
        queues: topic.queues.len(),
        message_size: args.message_size,
        batch_size: args.batch_size,
        batch_bytes,
        buffer_bytes: buffer_bytes(args, batch_bytes),
        linger_ms: args.linger.as_secs_f64() * 1e3,
        count: args.count,
        duration_s: args.duration.map(|d| d.as_secs_f64()),
        producers: args.producers,
        consumers: args.consumers,
        compression: args.compression.name(),
        acks: format!("{:?}", args.acks).to_lowercase(),
        sync: args.sync,
        rate: args.rate,
        fetch_bytes: args.fetch_bytes,
        in_flight: args.in_flight,
        producer_path: if args.raw { "raw" } else { "Producer" },
        consumer_path: if args.raw { "raw" } else { "PullConsumer" },
    }
}

/// Each producer's buffer: `--buffer-mib`, or the client's default unless 8 batches need more.
/// Never below one batch, which the client requires.
fn buffer_bytes(args: &WorkloadArgs, batch_bytes: usize) -> usize {
    match args.buffer_mib {
        Some(mib) => (mib as usize * 1024 * 1024).max(batch_bytes),
        None => BUFFER_BYTES_MIN.max(batch_bytes * BUFFER_BATCHES_MIN),
    }
}

/// Worker `index`'s part of `total` split evenly over `workers`: the first `total % workers`
/// take one more.
fn share(total: u64, workers: usize, index: usize) -> u64 {
    let workers = workers.max(1) as u64;
    total / workers + u64::from((index as u64) < total % workers)
}

/// Producers, connected and ready, with their plans.
async fn make_producers(
    args: &WorkloadArgs,
    batch_bytes: usize,
    deadline: Option<Instant>,
    stamp_send_time: bool,
) -> anyhow::Result<Vec<(Client, Producer, ProducerPlan)>> {
    let buffer_bytes = buffer_bytes(args, batch_bytes);
    let mut producers = Vec::with_capacity(args.producers);
    for index in 0..args.producers {
        let client = args
            .connect
            .client(&format!("runnel-bench-producer-{index}"))
            .await?;
        let config = ProducerConfig {
            linger: args.linger,
            batch_bytes,
            compression: args.compression,
            acks: args.acks.into(),
            buffer_bytes,
            max_in_flight_per_queue: args.in_flight as usize,
            queue_selector: QueueSelector::RoundRobin,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(&client, config)?;
        let plan = ProducerPlan {
            topic: args.topic.clone(),
            message_size: args.message_size,
            messages: args
                .duration
                .is_none()
                .then(|| share(args.count, args.producers, index)),
            deadline,
            rate: (args.rate > 0).then(|| args.rate as f64 / args.producers as f64),
            sync: args.sync,
            window: (buffer_bytes / args.message_size + 1).min(WINDOW_MESSAGES_MAX),
            stamp_send_time,
        };
        producers.push((client, producer, plan));
    }
    Ok(producers)
}

/// Consumers, connected and ready, each with a disjoint share of `ranges`.
async fn make_consumers(
    args: &WorkloadArgs,
    ranges: Vec<QueueRange>,
    target: &Arc<AtomicU64>,
    latency: bool,
) -> anyhow::Result<Vec<(Client, ConsumerPlan)>> {
    let workers = args.consumers.min(ranges.len());
    if workers < args.consumers {
        eprintln!(
            "note: {} queues for {} consumers: {} consumers run",
            ranges.len(),
            args.consumers,
            workers
        );
    }
    let mut consumers = Vec::with_capacity(workers);
    for index in 0..workers {
        let client = args
            .connect
            .client(&format!("runnel-bench-consumer-{index}"))
            .await?;
        let plan = ConsumerPlan {
            topic: args.topic.clone(),
            queues: ranges
                .iter()
                .skip(index)
                .step_by(workers)
                .copied()
                .collect(),
            fetch_bytes: args.fetch_bytes,
            raw: args.raw,
            latency,
            target: target.clone(),
            deadline: None,
        };
        consumers.push((client, plan));
    }
    Ok(consumers)
}

type Running<T> = Vec<tokio::task::JoinHandle<T>>;

fn start_producers(
    producers: Vec<(Client, Producer, ProducerPlan)>,
    counters: &Arc<Counters>,
) -> Running<Latencies> {
    producers
        .into_iter()
        .map(|(client, producer, plan)| {
            let counters = counters.clone();
            tokio::spawn(async move {
                let latencies = produce::run(producer, plan, counters).await;
                client.close();
                latencies
            })
        })
        .collect()
}

fn start_consumers(
    consumers: Vec<(Client, ConsumerPlan)>,
    counters: &Arc<Counters>,
    deadline: Option<Instant>,
) -> Running<anyhow::Result<Latencies>> {
    consumers
        .into_iter()
        .map(|(client, mut plan)| {
            plan.deadline = deadline;
            let counters = counters.clone();
            tokio::spawn(async move {
                let latencies = consume::run(client.clone(), plan, counters).await;
                client.close();
                latencies
            })
        })
        .collect()
}

async fn join_producers(running: Running<Latencies>) -> anyhow::Result<Latencies> {
    let mut all = Latencies::default();
    for task in running {
        all.merge(&task.await.context("a producer panicked")?);
    }
    Ok(all)
}

/// Waits for workers that can fail (`role`: "consumer", "raw producer") and merges their
/// latencies.
async fn join_fallible(
    running: Running<anyhow::Result<Latencies>>,
    role: &str,
) -> anyhow::Result<Latencies> {
    let mut all = Latencies::default();
    for task in running {
        all.merge(&task.await.with_context(|| format!("a {role} panicked"))??);
    }
    Ok(all)
}

async fn produce_only(
    args: &WorkloadArgs,
    topic: &TopicDescription,
    batch_bytes: usize,
) -> anyhow::Result<Summary> {
    if args.raw {
        return raw_produce(args, topic).await;
    }
    let counters = Arc::new(Counters::default());
    // Nobody reads the send times: every message shares one body, as Kafka's
    // producer-perf-test sends one payload.
    let producers = make_producers(args, batch_bytes, None, false).await?;
    let progress = start_progress(vec![("produce", counters.clone())]);
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let producers = producers
        .into_iter()
        .map(|(client, producer, plan)| (client, producer, ProducerPlan { deadline, ..plan }))
        .collect();
    let latencies = join_producers(start_producers(producers, &counters)).await?;
    let elapsed = started.elapsed();
    progress.abort();
    Ok(Summary::new(
        "produce",
        &counters,
        elapsed,
        Some(("send → receipt", &latencies)),
    ))
}

/// `produce --raw`: see the `raw` module.
async fn raw_produce(args: &WorkloadArgs, topic: &TopicDescription) -> anyhow::Result<Summary> {
    if args.sync || args.rate > 0 {
        bail!("produce --raw sends pre-built batches as fast as it can: not with --sync or --rate");
    }
    let counters = Arc::new(Counters::default());
    let queues: Vec<u32> = topic.queues.iter().map(|q| q.queue).collect();
    let mut plans = Vec::with_capacity(args.producers);
    for index in 0..args.producers {
        let client = args
            .connect
            .client(&format!("runnel-bench-producer-{index}"))
            .await?;
        let plan = RawProducerPlan {
            topic: args.topic.clone(),
            // Each producer starts at its own queue, so producers spread over the queues.
            queues: queues
                .iter()
                .cycle()
                .skip(index % queues.len().max(1))
                .take(queues.len())
                .copied()
                .collect(),
            message_size: args.message_size,
            batch_size: args.batch_size,
            compression: args.compression,
            acks: args.acks.into(),
            in_flight: args.in_flight as usize,
            messages: args
                .duration
                .is_none()
                .then(|| share(args.count, args.producers, index)),
            deadline: None,
        };
        plans.push((client, plan));
    }
    let progress = start_progress(vec![("produce", counters.clone())]);
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let running: Running<anyhow::Result<Latencies>> = plans
        .into_iter()
        .map(|(client, plan)| {
            let counters = counters.clone();
            tokio::spawn(async move {
                let latencies = raw::produce(
                    client.clone(),
                    RawProducerPlan { deadline, ..plan },
                    counters,
                )
                .await;
                client.close();
                latencies
            })
        })
        .collect();
    let latencies = join_fallible(running, "raw producer").await?;
    let elapsed = started.elapsed();
    progress.abort();
    Ok(Summary::new(
        "produce",
        &counters,
        elapsed,
        Some(("batch send → receipt", &latencies)),
    ))
}

async fn consume_only(args: &WorkloadArgs, topic: &TopicDescription) -> anyhow::Result<Summary> {
    let ranges: Vec<QueueRange> = topic
        .queues
        .iter()
        .map(|q| QueueRange {
            queue: q.queue,
            start: q.log_start_offset,
            end: Some(q.log_end_offset),
        })
        .collect();
    let stored: u64 = topic
        .queues
        .iter()
        .map(|q| q.log_end_offset.saturating_sub(q.log_start_offset))
        .sum();
    if stored == 0 {
        bail!(
            "topic {} holds no messages: run `runnel bench produce` first",
            topic.name
        );
    }
    let wanted = if args.duration.is_some() {
        stored
    } else {
        args.count
    };
    if wanted > stored {
        eprintln!(
            "note: topic {} holds {stored} messages; consuming those, not {wanted}",
            topic.name
        );
    }
    let target = Arc::new(AtomicU64::new(wanted.min(stored)));
    let counters = Arc::new(Counters::default());
    let consumers = make_consumers(args, ranges, &target, false).await?;
    let progress = start_progress(vec![("consume", counters.clone())]);
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    join_fallible(start_consumers(consumers, &counters, deadline), "consumer").await?;
    let elapsed = started.elapsed();
    progress.abort();
    let summary = Summary::new("consume", &counters, elapsed, None);
    let expected = target.load(Ordering::Relaxed);
    if args.duration.is_none() && summary.messages < expected {
        eprintln!(
            "error: consumed {} of {expected} messages",
            summary.messages
        );
        counters.add_errors(expected - summary.messages);
        return Ok(Summary::new("consume", &counters, elapsed, None));
    }
    Ok(summary)
}

async fn end_to_end(
    args: &WorkloadArgs,
    topic: &TopicDescription,
    batch_bytes: usize,
) -> anyhow::Result<Vec<Summary>> {
    let ranges = topic
        .queues
        .iter()
        .map(|q| QueueRange {
            queue: q.queue,
            start: q.log_end_offset,
            end: None,
        })
        .collect();
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let produced = Arc::new(Counters::default());
    let consumed = Arc::new(Counters::default());
    let consumers = make_consumers(args, ranges, &target, true).await?;
    let producers = make_producers(args, batch_bytes, None, true).await?;
    let progress = start_progress(vec![
        ("produce", produced.clone()),
        ("consume", consumed.clone()),
    ]);
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let consuming = start_consumers(consumers, &consumed, None);
    let producers = producers
        .into_iter()
        .map(|(client, producer, plan)| (client, producer, ProducerPlan { deadline, ..plan }))
        .collect();
    let send_latencies = join_producers(start_producers(producers, &produced)).await?;
    let produce_elapsed = started.elapsed();
    target.store(produced.messages(), Ordering::Relaxed);
    let consume_latencies =
        tokio::time::timeout(DRAIN_TIMEOUT, join_fallible(consuming, "consumer"))
            .await
            .unwrap_or_else(|_| {
                eprintln!("error: consumers did not catch up within {DRAIN_TIMEOUT:?}");
                Ok(Latencies::default())
            })?;
    let consume_elapsed = started.elapsed();
    progress.abort();
    let missing = produced.messages().saturating_sub(consumed.messages());
    if missing > 0 {
        eprintln!("error: {missing} acknowledged messages were not consumed");
        consumed.add_errors(missing);
    }
    Ok(vec![
        Summary::new(
            "produce",
            &produced,
            produce_elapsed,
            Some(("send → receipt", &send_latencies)),
        ),
        Summary::new(
            "consume",
            &consumed,
            consume_elapsed,
            Some(("born → received", &consume_latencies)),
        ),
    ])
}

fn print_report(args: &WorkloadArgs, report: &Report<'_>) -> anyhow::Result<()> {
    let json = serde_json::to_string(report)?;
    if let Some(path) = &args.output_file {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{json}");
        return Ok(());
    }
    let c = &report.config;
    println!(
        "{}: topic {} ({} queues), {} B messages, batches of {} ({} bytes, linger {} ms), \
         {} producers, {} consumers ({}), compression {}, acks {}{}{}",
        report.bench,
        c.topic,
        c.queues,
        c.message_size,
        c.batch_size,
        c.batch_bytes,
        c.linger_ms,
        c.producers,
        c.consumers,
        c.consumer_path,
        c.compression,
        c.acks,
        if c.sync { ", sync sends" } else { "" },
        if c.rate > 0 {
            format!(", rate {} msgs/s", c.rate)
        } else {
            String::new()
        },
    );
    for summary in &report.results {
        summary.print_human();
    }
    report.cpu.print_human();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up_to_the_total_and_differ_by_at_most_one() {
        for (total, workers) in [(10, 3), (2, 5), (0, 2), (1_000_000, 7)] {
            let shares: Vec<u64> = (0..workers).map(|i| share(total, workers, i)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total, "{total} over {workers}");
            let (min, max) = (shares.iter().min(), shares.iter().max());
            assert!(max.unwrap() - min.unwrap() <= 1, "{shares:?}");
        }
    }
}
