//! A broker restart in the middle of group consumption loses no acknowledged message, and the
//! group resumes from its committed offsets.
//!
//! Faults: the broker is stopped with SIGTERM (a clean shutdown), or killed with SIGKILL under
//! `--flush every-write` (an acknowledged append, or commit, is on disk before its answer);
//! either way it is started again on the same address and data directory.
//!
//! Workload: a topic with 4 queues; 20 000 numbered messages (log-uniform bodies of 1 B to
//! 4 KiB, derived from their numbers) sent and acknowledged before the fault; a group of two
//! push consumers; 2 000 more messages sent after the restart by the same producer. A gate in
//! the listener paces consumption: a quarter of the messages is consumed and its commit
//! reaches the broker; a second quarter is released and the fault strikes while it is being
//! consumed, so the group has consumed messages it has not committed.
//!
//! Checks:
//! - acknowledged messages lost: 0. Every acknowledged message is delivered, with an intact
//!   body, at the queue and offset its receipt named, and the queues hold exactly the messages
//!   acknowledged;
//! - the group resumes from its committed offsets: no message below the offsets the broker had
//!   committed just before the fault is delivered twice;
//! - duplicates are counted and reported, and there are no more of them than the messages
//!   consumed at or after those offsets before the group took each queue up again (the
//!   uncommitted tail, plus what was in flight). A queue is "taken up again" at its first
//!   redelivery; a message first delivered after that in the same queue and delivered twice
//!   would mean two consumers overlapped on the queue;
//! - sends after the restart succeed, and the group's total lag reaches 0.
//!
//! The tail can extend past the fault: a consumer keeps consuming what it holds, and pulls
//! from the restarted broker, until its first heartbeat there tells it the group was rebuilt.
//! What it consumed meanwhile is committed if its revocation commit is accepted, and replayed
//! otherwise (the restarted group moves through a generation per rejoining member, which can
//! fence that commit); both are at-least-once behaviour, and the report counts the replays.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tests::broker::BrokerProcess;
use tests::payload::{self, NUMBER_PROPERTY};
use tests::wait::{self, client_config, REQUEST_TIMEOUT};
use tests::AWAIT_TIMEOUT;
use wire::client::{
    Admin, Client, ConsumeFrom, ConsumeResult, Producer, ProducerConfig, PushConsumer,
    PushConsumerConfig, SendHandle,
};
use wire::{Message, ReceivedMessage};

const TOPIC: &str = "orders";
const GROUP: &str = "billing";
const QUEUES: u32 = 4;
const CONSUMERS: usize = 2;
/// Messages acknowledged before the fault.
const MESSAGES: usize = 20_000;
/// Messages sent after the restart.
const AFTER_RESTART: usize = 2_000;
/// Messages consumed, and committed, before the fault's tranche is released.
const COMMITTED_BEFORE_FAULT: usize = MESSAGES / 4;
/// Messages released for consumption while the fault strikes.
const IN_FLIGHT_AT_FAULT: usize = MESSAGES / 4;
const BODY_BYTES_MAX: usize = 4 << 10;
const SIZE_SEED: u64 = 0x0BAD_CAFE;
/// Receipts left unawaited before the oldest is awaited.
const RECEIPTS_IN_FLIGHT_MAX: usize = 4096;
/// Problems kept for the failure message; more are counted, not kept.
const PROBLEMS_KEPT_MAX: usize = 50;

/// How the broker is stopped.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Sigterm,
    Sigkill,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigterm_restart_mid_consumption_loses_nothing_and_resumes_from_commits() {
    restart_mid_consumption(Fault::Sigterm, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_restart_with_every_write_flush_loses_nothing_and_resumes_from_commits() {
    restart_mid_consumption(Fault::Sigkill, &["--flush", "every-write"]).await;
}

async fn restart_mid_consumption(fault: Fault, broker_args: &[&str]) {
    tests::init_client_logs();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::start(dir.path(), broker_args);
    let admin_client = Client::new(client_config(&broker.address, "admin")).expect("client");
    let admin = Admin::new(&admin_client);
    admin
        .create_topic(TOPIC, QUEUES, Vec::new())
        .await
        .expect("create the topic");

    let total = MESSAGES + AFTER_RESTART;
    let sizes = Arc::new(payload::log_uniform_sizes(total, BODY_BYTES_MAX, SIZE_SEED));
    let gate = Arc::new(Gate::default());
    let _open_gate_on_exit = OpenOnDrop(gate.clone());
    let ledger = Arc::new(Ledger::new(sizes.clone()));
    let mut consumers = Vec::new();
    for index in 0..CONSUMERS {
        let consumer = start_consumer(&broker.address, index, &gate, &ledger).await;
        consumers.push(consumer);
    }
    wait::group_stable(&admin, GROUP, CONSUMERS, QUEUES as usize).await;
    // Stable is the broker's view; a member learns of a queue handed to it at its next
    // heartbeat. A committed start position for every queue shows each is being consumed.
    wait::until("every queue to have a committed start position", || async {
        let committed = committed_offsets(&admin).await?;
        if committed.len() == QUEUES as usize {
            Ok(())
        } else {
            Err(format!("committed {committed:?}"))
        }
    })
    .await;

    let producer_client = Client::new(client_config(&broker.address, "producer")).expect("client");
    let config = ProducerConfig {
        request_timeout: REQUEST_TIMEOUT,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(&producer_client, config).expect("producer");
    let mut receipts = vec![None; total];
    send_all(&producer, 0..MESSAGES, &sizes, &mut receipts).await;

    // A quarter consumed and committed: the last commit before the fault.
    gate.grant(COMMITTED_BEFORE_FAULT);
    wait_delivered(&ledger, COMMITTED_BEFORE_FAULT).await;
    wait::until("the consumed quarter to be committed", || async {
        let committed = committed_offsets(&admin).await?;
        let sum: u64 = committed.values().sum();
        if sum == COMMITTED_BEFORE_FAULT as u64 {
            Ok(())
        } else {
            Err(format!("committed {committed:?}"))
        }
    })
    .await;

    // The next quarter is being consumed when the fault strikes.
    gate.grant(IN_FLIGHT_AT_FAULT);
    wait_delivered(&ledger, COMMITTED_BEFORE_FAULT + IN_FLIGHT_AT_FAULT / 2).await;
    let committed_at_fault = wait::within("the committed offsets", committed_offsets(&admin))
        .await
        .expect("fetch the committed offsets before the fault");
    match fault {
        Fault::Sigterm => {
            let status = broker.terminate();
            assert!(status.success(), "the broker exited with {status}");
        }
        Fault::Sigkill => broker.kill(),
    }
    let delivered_at_fault = ledger.deliveries.load(Ordering::Acquire);
    broker.restart();
    ledger.restarted.store(true, Ordering::Release);
    let restart_sequence = ledger.deliveries.load(Ordering::Acquire);
    gate.open();
    eprintln!(
        "{fault:?} after {delivered_at_fault} deliveries; committed then: {committed_at_fault:?}"
    );

    send_all(&producer, MESSAGES..total, &sizes, &mut receipts).await;
    wait_delivered_distinct(&ledger, total).await;
    let caught_up = wait::group_caught_up(&admin, GROUP, QUEUES as usize).await;
    let stored: u64 = caught_up.offsets.iter().map(|q| q.log_end_offset).sum();

    let report = ledger.check(&receipts, &committed_at_fault, restart_sequence);
    eprintln!(
        "{fault:?}: {} deliveries before the restart, {} committed at the fault, \
         uncommitted tail {}, {} messages redelivered ({} duplicate deliveries, by consumer \
         {:?}), {stored} stored, done in {:?}",
        report.delivered_before_restart,
        committed_at_fault.values().sum::<u64>(),
        report.tail,
        report.redelivered,
        report.duplicates,
        report.duplicates_by_consumer,
        started.elapsed()
    );
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert!(
        report.redelivered <= report.tail,
        "more messages redelivered ({}) than were consumed past the last commit ({}): \
         two consumers overlapped on a queue",
        report.redelivered,
        report.tail
    );
    assert_eq!(
        stored, total as u64,
        "the queues should hold exactly the acknowledged messages"
    );

    wait::within("the producer to close", producer.close()).await;
    producer_client.close();
    for (consumer, client) in &consumers {
        wait::within("a consumer to shut down", consumer.shutdown()).await;
        client.close();
    }
    admin_client.close();
    let status = broker.terminate();
    assert!(status.success(), "the broker exited with {status}");
}

/// Sends the messages numbered `numbers`, pipelined, and records each receipt's placement.
async fn send_all(
    producer: &Producer,
    numbers: std::ops::Range<usize>,
    sizes: &[usize],
    receipts: &mut [Option<(u32, u64)>],
) {
    let mut pending: std::collections::VecDeque<(usize, SendHandle)> = Default::default();
    for number in numbers {
        let body = payload::body(number as u64, sizes[number]);
        let message = Message::new(TOPIC, body).with_property(NUMBER_PROPERTY, number.to_string());
        let handle = producer
            .send_async(message)
            .await
            .unwrap_or_else(|e| panic!("queueing message {number} failed: {e}"));
        pending.push_back((number, handle));
        while pending.len() > RECEIPTS_IN_FLIGHT_MAX {
            let (number, handle) = pending.pop_front().expect("a pending send");
            receipts[number] = Some(await_receipt(number, handle).await);
        }
    }
    for (number, handle) in pending {
        receipts[number] = Some(await_receipt(number, handle).await);
    }
}

async fn await_receipt(number: usize, handle: SendHandle) -> (u32, u64) {
    let receipt = wait::within("a send receipt", handle)
        .await
        .unwrap_or_else(|e| panic!("sending message {number} failed: {e}"));
    (receipt.queue, receipt.offset)
}

/// The group's committed offset per queue (queues without one are left out).
async fn committed_offsets(admin: &Admin) -> Result<HashMap<u32, u64>, String> {
    let offsets = admin
        .fetch_offsets(GROUP, TOPIC, Vec::new())
        .await
        .map_err(|e| e.to_string())?;
    Ok(offsets
        .into_iter()
        .filter_map(|q| Some((q.queue, q.offset?)))
        .collect())
}

async fn wait_delivered(ledger: &Ledger, deliveries: usize) {
    let what = format!("{deliveries} deliveries");
    wait::until(&what, || async {
        let seen = ledger.deliveries.load(Ordering::Acquire);
        if seen >= deliveries {
            Ok(())
        } else {
            Err(format!("{seen} deliveries"))
        }
    })
    .await;
}

async fn wait_delivered_distinct(ledger: &Ledger, messages: usize) {
    let what = format!("all {messages} messages to be delivered");
    wait::until(&what, || async {
        let seen = ledger.distinct.load(Ordering::Acquire);
        if seen >= messages {
            Ok(())
        } else {
            Err(format!("{seen} distinct messages delivered"))
        }
    })
    .await;
}

async fn start_consumer(
    address: &str,
    index: usize,
    gate: &Arc<Gate>,
    ledger: &Arc<Ledger>,
) -> (PushConsumer, Client) {
    let client = Client::new(client_config(address, &format!("consumer-{index}"))).expect("client");
    let config = PushConsumerConfig::new(GROUP)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFrom::First);
    let (gate, ledger) = (gate.clone(), ledger.clone());
    // One message per call (the default batch size): the gate counts messages.
    let consumer = PushConsumer::new(&client, config, move |messages| {
        for _ in messages {
            if !gate.pass() {
                ledger.problem("the gate stayed shut for AWAIT_TIMEOUT".to_owned());
                return ConsumeResult::ReconsumeLater;
            }
        }
        ledger.record(index, messages);
        ConsumeResult::Success
    })
    .expect("create a push consumer");
    consumer.start().await.expect("start a push consumer");
    (consumer, client)
}

/// Lets the listener consume as many messages as the test granted; blocks it otherwise (it
/// runs on the blocking pool, so blocking is allowed). Starts shut.
#[derive(Debug)]
struct Gate {
    /// Messages that may still pass; `None` once the gate is open for good.
    budget: Mutex<Option<usize>>,
    changed: Condvar,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            budget: Mutex::new(Some(0)),
            changed: Condvar::new(),
        }
    }
}

impl Gate {
    fn grant(&self, messages: usize) {
        let mut budget = self.budget.lock().expect("gate lock");
        if let Some(left) = budget.as_mut() {
            *left += messages;
        }
        self.changed.notify_all();
    }

    fn open(&self) {
        *self.budget.lock().expect("gate lock") = None;
        self.changed.notify_all();
    }

    /// Takes one message's passage; false if none was granted within `AWAIT_TIMEOUT`.
    fn pass(&self) -> bool {
        let budget = self.budget.lock().expect("gate lock");
        let (mut budget, timeout) = self
            .changed
            .wait_timeout_while(budget, AWAIT_TIMEOUT, |b| *b == Some(0))
            .expect("gate lock");
        if timeout.timed_out() {
            return false;
        }
        if let Some(left) = budget.as_mut() {
            *left -= 1;
        }
        true
    }
}

/// Opens the gate when dropped, so a failing test does not leave listeners blocked (the
/// runtime waits for blocking-pool threads when it shuts down).
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// One delivery of a message.
#[derive(Clone, Copy, Debug)]
struct Delivery {
    /// Which consumer of the group delivered it.
    consumer: usize,
    queue: u32,
    offset: u64,
    /// Its place among all deliveries of the test, in the order they were recorded.
    sequence: usize,
    /// Whether the broker had been restarted by then.
    after_restart: bool,
}

/// Every delivery, by message number.
#[derive(Debug)]
struct Ledger {
    sizes: Arc<Vec<usize>>,
    delivered: Mutex<Vec<Vec<Delivery>>>,
    deliveries: AtomicUsize,
    distinct: AtomicUsize,
    restarted: AtomicBool,
    problems: Mutex<Vec<String>>,
    problems_seen: AtomicUsize,
}

/// What `Ledger::check` found.
#[derive(Debug, Default)]
struct Report {
    problems: Vec<String>,
    delivered_before_restart: usize,
    /// Messages the group had consumed, before it took each queue up again (its first
    /// redelivery; the restart for a queue never redelivered), at or after the offsets
    /// committed just before the fault: the uncommitted tail plus what was in flight, all
    /// that a resumption may legitimately repeat.
    tail: usize,
    /// Messages delivered more than once.
    redelivered: usize,
    /// Deliveries beyond each message's first.
    duplicates: usize,
    /// Deliveries beyond each message's first, by the consumer that made them.
    duplicates_by_consumer: [usize; CONSUMERS],
}

impl Ledger {
    fn new(sizes: Arc<Vec<usize>>) -> Ledger {
        Ledger {
            delivered: Mutex::new(vec![Vec::new(); sizes.len()]),
            sizes,
            deliveries: AtomicUsize::new(0),
            distinct: AtomicUsize::new(0),
            restarted: AtomicBool::new(false),
            problems: Mutex::new(Vec::new()),
            problems_seen: AtomicUsize::new(0),
        }
    }

    fn record(&self, consumer: usize, messages: &[ReceivedMessage]) {
        let after_restart = self.restarted.load(Ordering::Acquire);
        for message in messages {
            let number = message
                .property(NUMBER_PROPERTY)
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n < self.sizes.len());
            let Some(number) = number else {
                self.problem(format!(
                    "the message at {}:{} carries no valid number",
                    message.queue, message.offset
                ));
                continue;
            };
            if !payload::body_matches(number as u64, self.sizes[number], &message.body) {
                self.problem(format!("message {number}: the body is not the one sent"));
            }
            let mut delivered = self.delivered.lock().expect("ledger lock");
            if delivered[number].is_empty() {
                self.distinct.fetch_add(1, Ordering::AcqRel);
            }
            delivered[number].push(Delivery {
                consumer,
                queue: message.queue,
                offset: message.offset,
                sequence: self.deliveries.fetch_add(1, Ordering::AcqRel),
                after_restart,
            });
        }
    }

    fn problem(&self, problem: String) {
        if self.problems_seen.fetch_add(1, Ordering::AcqRel) < PROBLEMS_KEPT_MAX {
            self.problems.lock().expect("problems lock").push(problem);
        }
    }

    /// Checks every message's deliveries against its receipt and the committed offsets.
    /// `restart_sequence` is the sequence of the first delivery after the restart.
    fn check(
        &self,
        receipts: &[Option<(u32, u64)>],
        committed: &HashMap<u32, u64>,
        restart_sequence: usize,
    ) -> Report {
        let delivered = self.delivered.lock().expect("ledger lock");
        let mut report = Report {
            problems: self.problems.lock().expect("problems lock").clone(),
            ..Report::default()
        };
        let mut problem = |text: String| {
            if report.problems.len() < PROBLEMS_KEPT_MAX {
                report.problems.push(text);
            }
        };
        // Where each queue was taken up again: its first redelivery.
        let mut resumed: HashMap<u32, usize> = HashMap::new();
        for deliveries in delivered.iter().filter(|d| d.len() > 1) {
            let again = deliveries[1];
            let first = resumed.entry(again.queue).or_insert(again.sequence);
            *first = (*first).min(again.sequence);
        }
        for (number, deliveries) in delivered.iter().enumerate() {
            let Some(receipt) = receipts[number] else {
                problem(format!("message {number} has no receipt"));
                continue;
            };
            let Some(first) = deliveries.first() else {
                problem(format!(
                    "acknowledged message {number} at {receipt:?} was lost"
                ));
                continue;
            };
            for delivery in deliveries {
                if (delivery.queue, delivery.offset) != receipt {
                    problem(format!(
                        "message {number} delivered at {delivery:?}, its receipt says {receipt:?}"
                    ));
                }
                report.delivered_before_restart += usize::from(!delivery.after_restart);
            }
            let floor = committed.get(&receipt.0).copied().unwrap_or(0);
            let resumption = resumed.get(&receipt.0).copied().unwrap_or(restart_sequence);
            if first.sequence < resumption && receipt.1 >= floor {
                report.tail += 1;
            }
            if deliveries.len() > 1 {
                report.redelivered += 1;
                report.duplicates += deliveries.len() - 1;
                for again in &deliveries[1..] {
                    report.duplicates_by_consumer[again.consumer] += 1;
                }
                if receipt.1 < floor {
                    problem(format!(
                        "message {number} at {receipt:?}, below the offset {floor} committed \
                         before the fault, was delivered {} times: {deliveries:?}",
                        deliveries.len()
                    ));
                }
            }
        }
        report
    }
}
