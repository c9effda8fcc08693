//! `Ledger`: what a test's consumers received, by message number, for the checks every fault
//! test makes — acknowledged messages lost (must be 0), duplicates (counted), bodies intact,
//! each message where its receipt put it.
//!
//! Messages carry their number in the `NUMBER_PROPERTY` property and a body derived from it
//! (`payload::body(number, sizes[number])`), so the ledger checks a body without remembering
//! what was sent. Listener code calls `record`; the test awaits `delivered_all` and reads
//! `report` at the end.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

use wire::client::{Client, ConsumeResult, PushConsumer, PushConsumerConfig};
use wire::ReceivedMessage;

use crate::payload::{self, NUMBER_PROPERTY};

/// Problems kept for the failure message; more are counted.
const PROBLEMS_KEPT_MAX: usize = 50;

/// Deliveries by message number; see the module docs.
#[derive(Debug)]
pub struct Ledger {
    sizes: Vec<usize>,
    counts: Vec<AtomicU32>,
    /// Where each message was first delivered: (queue, offset).
    placements: Mutex<Vec<Option<(u32, u64)>>>,
    deliveries: AtomicUsize,
    problems: Mutex<Vec<String>>,
    problems_seen: AtomicUsize,
}

/// What the ledger holds about a set of acknowledged messages.
#[derive(Debug, Default)]
pub struct LedgerReport {
    /// Acknowledged messages never delivered, by number (the first few).
    pub lost: Vec<usize>,
    pub lost_count: usize,
    /// Deliveries beyond each message's first.
    pub duplicates: u64,
    /// Messages delivered more than once.
    pub redelivered: usize,
    /// Bad bodies, missing numbers, deliveries at another place than the receipt's.
    pub problems: Vec<String>,
}

impl Ledger {
    /// A ledger for messages numbered below `sizes.len()`, message `n` being `sizes[n]`
    /// bytes long.
    pub fn new(sizes: Vec<usize>) -> Ledger {
        Ledger {
            counts: (0..sizes.len()).map(|_| AtomicU32::new(0)).collect(),
            placements: Mutex::new(vec![None; sizes.len()]),
            sizes,
            deliveries: AtomicUsize::new(0),
            problems: Mutex::new(Vec::new()),
            problems_seen: AtomicUsize::new(0),
        }
    }

    /// The message numbered `number`, for `topic`, as the ledger expects it.
    pub fn message(&self, topic: &str, number: usize) -> wire::Message {
        wire::Message::new(topic, payload::body(number as u64, self.sizes[number]))
            .with_property(NUMBER_PROPERTY, number.to_string())
    }

    /// Records a listener call's messages.
    pub fn record(&self, messages: &[ReceivedMessage]) {
        for message in messages {
            let at = (message.queue, message.offset);
            let number = message
                .property(NUMBER_PROPERTY)
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n < self.sizes.len());
            let Some(number) = number else {
                self.problem(format!("the message at {at:?} carries no valid number"));
                continue;
            };
            if !payload::body_matches(number as u64, self.sizes[number], &message.body) {
                self.problem(format!(
                    "message {number} at {at:?}: body of {} bytes is not the {} bytes sent",
                    message.body.len(),
                    self.sizes[number]
                ));
            }
            self.deliveries.fetch_add(1, Ordering::AcqRel);
            if self.counts[number].fetch_add(1, Ordering::AcqRel) == 0 {
                self.placements.lock().expect("ledger lock")[number] = Some(at);
            }
        }
    }

    /// Deliveries so far, duplicates included.
    pub fn deliveries(&self) -> usize {
        self.deliveries.load(Ordering::Acquire)
    }

    /// `Ok` once every message of `numbers` was delivered; `Err` says how many are missing.
    pub fn delivered_all(&self, numbers: impl IntoIterator<Item = usize>) -> Result<(), String> {
        let mut missing = 0;
        let mut first = None;
        for number in numbers {
            if self.counts[number].load(Ordering::Acquire) == 0 {
                missing += 1;
                first.get_or_insert(number);
            }
        }
        match first {
            None => Ok(()),
            Some(first) => Err(format!(
                "{missing} messages not delivered (the first: {first}); problems: {:?}",
                self.problems()
            )),
        }
    }

    /// Checks the acknowledged messages `receipts` (`(number, queue, offset)`).
    pub fn report(&self, receipts: &[(usize, u32, u64)]) -> LedgerReport {
        let mut report = LedgerReport {
            problems: self.problems(),
            ..LedgerReport::default()
        };
        let placements = self.placements.lock().expect("ledger lock");
        for &(number, queue, offset) in receipts {
            let count = self.counts[number].load(Ordering::Acquire);
            if count == 0 {
                report.lost_count += 1;
                if report.lost.len() < PROBLEMS_KEPT_MAX {
                    report.lost.push(number);
                }
                continue;
            }
            if count > 1 {
                report.redelivered += 1;
                report.duplicates += u64::from(count - 1);
            }
            if placements[number] != Some((queue, offset))
                && report.problems.len() < PROBLEMS_KEPT_MAX
            {
                report.problems.push(format!(
                    "message {number} delivered at {:?}, its receipt says {:?}",
                    placements[number],
                    (queue, offset)
                ));
            }
        }
        report
    }

    fn problem(&self, problem: String) {
        if self.problems_seen.fetch_add(1, Ordering::AcqRel) < PROBLEMS_KEPT_MAX {
            self.problems.lock().expect("ledger lock").push(problem);
        }
    }

    /// Problems seen while recording (bad bodies, missing numbers).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.problems.lock().expect("ledger lock").clone();
        let seen = self.problems_seen.load(Ordering::Acquire);
        if seen > problems.len() {
            problems.push(format!("… {seen} problems in all"));
        }
        problems
    }
}

/// Receipts `send_all` leaves unawaited before it awaits the oldest.
const RECEIPTS_IN_FLIGHT_MAX: usize = 1024;

/// Sends the messages `numbers` of `ledger` to `topic` through `producer`, pipelined, and
/// returns each receipt as `(number, queue, offset)`. Panics if a send fails: callers use it
/// where every send must be acknowledged.
pub async fn send_all(
    producer: &wire::client::Producer,
    ledger: &Ledger,
    topic: &str,
    numbers: impl IntoIterator<Item = usize>,
) -> Vec<(usize, u32, u64)> {
    let mut pending = std::collections::VecDeque::new();
    let mut receipts = Vec::new();
    for number in numbers {
        let handle = producer
            .send_async(ledger.message(topic, number))
            .await
            .unwrap_or_else(|e| panic!("queueing message {number} failed: {e}"));
        pending.push_back((number, handle));
        while pending.len() > RECEIPTS_IN_FLIGHT_MAX {
            let (number, handle) = pending.pop_front().expect("a pending send");
            receipts.push(await_receipt(number, handle).await);
        }
    }
    for (number, handle) in pending {
        receipts.push(await_receipt(number, handle).await);
    }
    receipts
}

async fn await_receipt(number: usize, handle: wire::client::SendHandle) -> (usize, u32, u64) {
    let receipt = crate::wait::within("a send receipt", handle)
        .await
        .unwrap_or_else(|e| panic!("sending message {number} failed: {e}"));
    (number, receipt.queue, receipt.offset)
}

/// Starts a push consumer on `client` with `config` whose listener records every delivery in
/// `ledger` and answers success; returns once it has joined its group.
pub async fn start_recording(
    client: &Client,
    config: PushConsumerConfig,
    ledger: std::sync::Arc<Ledger>,
) -> PushConsumer {
    let consumer = PushConsumer::new(client, config, move |messages| {
        ledger.record(messages);
        ConsumeResult::Success
    })
    .expect("create a push consumer");
    crate::wait::within("a consumer to join", consumer.start())
        .await
        .expect("start a push consumer");
    consumer
}
