//! One benchmark producer: sends its share of the messages through a `wire::client::Producer`
//! and records each message's send → receipt latency.
//!
//! Two modes:
//!
//! - pipelined (default): `send_async`, keeping up to the producer's buffer of messages in
//!   flight. Receipts are not awaited one by one on another task (a channel hop per message
//!   would cost the benchmark more than the producer's own bookkeeping): after each send the
//!   oldest handles are polled without blocking, and while pacing, the task sleeps on the
//!   oldest handle and the next send time at once. A receipt is therefore seen within one
//!   send of its arrival, or at once when the producer is idle.
//! - `--sync`: `send` and wait for the receipt before the next message.
//!
//! With a rate, message `i` is due at `start + i / rate`; a producer behind schedule sends at
//! once, so the achieved rate shows in the summary rather than being hidden in latency.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wire::client::{Producer, SendHandle, SendReceipt};
use wire::Message;

use super::payload::{now_micros, Payloads};
use super::stats::{Counters, Latencies};

/// The most receipts one producer tracks at a time (bounded by the producer's buffer first
/// in practice).
pub const WINDOW_MESSAGES_MAX: usize = 262_144;
/// Errors a producer prints before it only counts them.
const ERRORS_PRINTED_MAX: u64 = 5;
/// How often, in messages, an unpaced producer looks at the clock for its deadline.
const DEADLINE_CHECK_MESSAGES: u64 = 64;

/// What one producer sends.
#[derive(Clone, Debug)]
pub struct ProducerPlan {
    pub topic: String,
    pub message_size: usize,
    /// This producer's share of `--count`; `None` runs until `deadline`.
    pub messages: Option<u64>,
    pub deadline: Option<Instant>,
    /// This producer's messages per second; `None` is unlimited.
    pub rate: Option<f64>,
    pub sync: bool,
    /// Receipts tracked at a time (pipelined mode).
    pub window: usize,
    /// Whether each body carries its send time (e2e: the consumers read it); otherwise
    /// every message shares one body.
    pub stamp_send_time: bool,
}

/// Runs one producer to the end of its plan; returns its latencies.
pub async fn run(producer: Producer, plan: ProducerPlan, counters: Arc<Counters>) -> Latencies {
    let mut sender = Sender {
        payloads: Payloads::new(plan.message_size),
        clock: WallClock::new(),
        pacer: plan.rate.map(Pacer::new),
        sent: 0,
        errors: 0,
        plan,
        counters,
    };
    let latencies = if sender.plan.sync {
        sender.run_sync(&producer).await
    } else {
        sender.run_pipelined(&producer).await
    };
    producer.close().await;
    latencies
}

struct Sender {
    plan: ProducerPlan,
    payloads: Payloads,
    clock: WallClock,
    pacer: Option<Pacer>,
    sent: u64,
    errors: u64,
    counters: Arc<Counters>,
}

impl Sender {
    /// Whether the plan is done before the next message.
    fn finished(&self) -> bool {
        if self.plan.messages.is_some_and(|n| self.sent >= n) {
            return true;
        }
        match self.plan.deadline {
            Some(deadline)
                if self.pacer.is_some() || self.sent.is_multiple_of(DEADLINE_CHECK_MESSAGES) =>
            {
                Instant::now() >= deadline
            }
            _ => false,
        }
    }

    /// The next message and its send time (one clock read for both).
    fn message(&mut self) -> (Message, Instant) {
        let now = Instant::now();
        let body = if self.plan.stamp_send_time {
            self.payloads.body(self.clock.micros_at(now))
        } else {
            self.payloads.shared()
        };
        let message = Message::new(self.plan.topic.clone(), body);
        (message, now)
    }

    fn failed(&mut self, error: &wire::Error) {
        self.errors += 1;
        self.counters.add_errors(1);
        if self.errors <= ERRORS_PRINTED_MAX {
            eprintln!("error: send failed: {error}");
        }
    }

    async fn run_sync(&mut self, producer: &Producer) -> Latencies {
        let mut latencies = Latencies::default();
        while !self.finished() {
            if let Some(due) = self.pacer.as_ref().map(|p| p.due(self.sent)) {
                tokio::time::sleep_until(due.into()).await;
            }
            let (message, sent) = self.message();
            match producer.send(message).await {
                Ok(_) => {
                    latencies.record(sent.elapsed());
                    self.counters.add(1, self.plan.message_size as u64);
                }
                Err(error) => self.failed(&error),
            }
            self.sent += 1;
        }
        latencies
    }

    async fn run_pipelined(&mut self, producer: &Producer) -> Latencies {
        let mut window = Window {
            pending: VecDeque::with_capacity(self.plan.window.min(WINDOW_MESSAGES_MAX)),
            latencies: Latencies::default(),
            message_bytes: self.plan.message_size as u64,
        };
        let capacity = self.plan.window.clamp(1, WINDOW_MESSAGES_MAX);
        while !self.finished() {
            if let Some(due) = self.pacer.as_ref().map(|p| p.due(self.sent)) {
                window.wait_until(due, self).await;
            }
            let (message, sent) = self.message();
            match producer.send_async(message).await {
                Ok(handle) => window.pending.push_back((sent, handle)),
                Err(error) => self.failed(&error),
            }
            self.sent += 1;
            window.reap_ready(self);
            while window.pending.len() >= capacity {
                window.reap_oldest(self).await;
            }
        }
        // Send the last batch now rather than after its linger, taking receipts meanwhile.
        let drain = async {
            while !window.pending.is_empty() {
                window.reap_oldest(self).await;
            }
        };
        tokio::join!(producer.flush(), drain);
        window.latencies
    }
}

/// Receipts not yet seen, oldest first.
struct Window {
    pending: VecDeque<(Instant, SendHandle)>,
    latencies: Latencies,
    message_bytes: u64,
}

impl Window {
    /// Takes every receipt at the front that has arrived, without waiting.
    fn reap_ready(&mut self, sender: &mut Sender) {
        let mut context = Context::from_waker(Waker::noop());
        let mut now = None;
        let mut received = 0;
        while let Some((sent, handle)) = self.pending.front_mut() {
            let Poll::Ready(result) = Pin::new(handle).poll(&mut context) else {
                break;
            };
            let now = *now.get_or_insert_with(Instant::now);
            let sent = *sent;
            self.pending.pop_front();
            received += self.complete(sent, now, result, sender);
        }
        sender.counters.add(received, received * self.message_bytes);
    }

    /// Waits for the oldest receipt.
    async fn reap_oldest(&mut self, sender: &mut Sender) {
        let Some((sent, handle)) = self.pending.pop_front() else {
            return;
        };
        let result = handle.await;
        let received = self.complete(sent, Instant::now(), result, sender);
        sender.counters.add(received, received * self.message_bytes);
        self.reap_ready(sender);
    }

    /// Takes receipts as they arrive until `due`.
    async fn wait_until(&mut self, due: Instant, sender: &mut Sender) {
        let due = tokio::time::Instant::from_std(due);
        loop {
            self.reap_ready(sender);
            let Some((_, oldest)) = self.pending.front_mut() else {
                tokio::time::sleep_until(due).await;
                return;
            };
            let received = tokio::select! {
                biased;
                _ = tokio::time::sleep_until(due) => return,
                result = oldest => result,
            };
            if let Some((sent, _)) = self.pending.pop_front() {
                let received = self.complete(sent, Instant::now(), received, sender);
                sender.counters.add(received, received * self.message_bytes);
            }
        }
    }

    /// Records one receipt; returns 1 if it was a success.
    fn complete(
        &mut self,
        sent: Instant,
        now: Instant,
        result: wire::Result<SendReceipt>,
        sender: &mut Sender,
    ) -> u64 {
        match result {
            Ok(_) => {
                self.latencies.record(now.saturating_duration_since(sent));
                1
            }
            Err(error) => {
                sender.failed(&error);
                0
            }
        }
    }
}

/// Wall-clock microseconds from monotonic instants: one clock read per message serves both
/// the latency (monotonic) and the send time in the body (wall clock, for consumers).
#[derive(Debug)]
struct WallClock {
    anchor: Instant,
    anchor_us: u64,
}

impl WallClock {
    fn new() -> WallClock {
        WallClock {
            anchor: Instant::now(),
            anchor_us: now_micros(),
        }
    }

    fn micros_at(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.anchor).as_micros();
        self.anchor_us + u64::try_from(since).unwrap_or(u64::MAX / 2)
    }
}

/// When each message is due at a fixed rate.
#[derive(Debug)]
struct Pacer {
    start: Instant,
    nanos_per_message: f64,
}

impl Pacer {
    fn new(rate: f64) -> Pacer {
        Pacer {
            start: Instant::now(),
            nanos_per_message: 1e9 / rate,
        }
    }

    fn due(&self, index: u64) -> Instant {
        self.start + Duration::from_nanos((index as f64 * self.nanos_per_message) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_micros_follow_the_monotonic_clock() {
        let clock = WallClock::new();
        let later = clock.anchor + Duration::from_millis(3);
        assert_eq!(clock.micros_at(later), clock.anchor_us + 3_000);
        let wall = now_micros();
        let derived = clock.micros_at(Instant::now());
        assert!(derived.abs_diff(wall) < 1_000_000, "{derived} vs {wall}");
    }

    #[test]
    fn paced_messages_are_due_evenly() {
        let pacer = Pacer::new(10_000.0);
        assert_eq!(pacer.due(0), pacer.start);
        assert_eq!(pacer.due(10_000) - pacer.start, Duration::from_secs(1));
        assert_eq!(pacer.due(5) - pacer.start, Duration::from_micros(500));
    }
}
