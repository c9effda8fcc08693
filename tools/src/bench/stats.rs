//! What a benchmark measures and how it reports: message and byte counters shared by every
//! worker (read once a second for the progress line), per-worker latency histograms merged
//! at the end, and the final summary in human and JSON form.
//!
//! Latencies are recorded in microseconds with three significant digits (hdrhistogram), from
//! 1 µs to 10 minutes; a value past the top is clamped, not dropped, so `max` stays honest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency a histogram records, in microseconds (10 minutes).
const LATENCY_US_MAX: u64 = 600_000_000;
/// How often the progress line is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Counters every worker adds to; the progress line and the summary read them.
#[derive(Debug, Default)]
pub struct Counters {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub fn add(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_errors(&self, errors: u64) {
        self.errors.fetch_add(errors, Ordering::Relaxed);
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> (u64, u64) {
        (
            self.messages.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// One worker's latencies.
#[derive(Debug)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies(Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        self.record_micros(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn record_micros(&mut self, micros: u64) {
        self.0.saturating_record(micros.clamp(1, LATENCY_US_MAX));
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }
}

/// Prints `[   3s] produce 812,345 msgs/s 812.3 MB/s (total 2,437,035) | consume …` to
/// stderr every second, one part per counter, until the returned task is aborted.
pub fn start_progress(parts: Vec<(&'static str, Arc<Counters>)>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut interval = tokio::time::interval(PROGRESS_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        let mut last: Vec<(u64, u64)> = vec![(0, 0); parts.len()];
        let mut last_at = Instant::now();
        loop {
            interval.tick().await;
            let now = Instant::now();
            let seconds = now.duration_since(last_at).as_secs_f64().max(1e-9);
            let mut line = format!("[{:>5.0}s]", started.elapsed().as_secs_f64());
            for ((label, counters), last) in parts.iter().zip(last.iter_mut()) {
                let (messages, bytes) = counters.snapshot();
                line.push_str(&format!(
                    " {label} {} msgs/s {:.1} MB/s (total {})",
                    thousands(((messages - last.0) as f64 / seconds) as u64),
                    (bytes - last.1) as f64 / seconds / 1e6,
                    thousands(messages),
                ));
                let errors = counters.errors.load(Ordering::Relaxed);
                if errors > 0 {
                    line.push_str(&format!(" {errors} errors"));
                }
                *last = (messages, bytes);
            }
            eprintln!("{line}");
            last_at = now;
        }
    })
}

/// The result of one benchmark phase.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub phase: &'static str,
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    /// Body bytes of each message (what MB/s counts).
    pub message_bytes: u64,
    pub seconds: f64,
    pub messages_per_second: f64,
    pub megabytes_per_second: f64,
    /// What the latencies measure, e.g. "send → receipt".
    pub latency_measures: Option<&'static str>,
    /// Latency percentiles in microseconds; absent when the phase measures none.
    pub latency_us: Option<LatencySummary>,
}

#[derive(Debug, Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub mean: f64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Summary {
    pub fn new(
        phase: &'static str,
        counters: &Counters,
        elapsed: Duration,
        latencies: Option<(&'static str, &Latencies)>,
    ) -> Summary {
        let (messages, bytes) = counters.snapshot();
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let latency_measures = latencies.map(|(measures, _)| measures);
        let latencies = latencies.map(|(_, l)| l);
        Summary {
            phase,
            messages,
            bytes,
            errors: counters.errors.load(Ordering::Relaxed),
            message_bytes: bytes.checked_div(messages).unwrap_or(0),
            seconds,
            messages_per_second: messages as f64 / seconds,
            megabytes_per_second: bytes as f64 / seconds / 1e6,
            latency_measures,
            latency_us: latencies.filter(|l| l.len() > 0).map(|l| LatencySummary {
                samples: l.0.len(),
                mean: l.0.mean(),
                p50: l.0.value_at_quantile(0.50),
                p99: l.0.value_at_quantile(0.99),
                p999: l.0.value_at_quantile(0.999),
                max: l.0.max(),
            }),
        }
    }

    pub fn print_human(&self) {
        println!(
            "{}: {} messages, {:.1} MB in {:.2} s: {} msgs/s, {:.1} MB/s{}",
            self.phase,
            thousands(self.messages),
            self.bytes as f64 / 1e6,
            self.seconds,
            thousands(self.messages_per_second as u64),
            self.megabytes_per_second,
            if self.errors > 0 {
                format!(", {} errors", self.errors)
            } else {
                String::new()
            }
        );
        if let Some(l) = &self.latency_us {
            println!(
                "{}: latency ({}) p50 {}  p99 {}  p99.9 {}  max {}  (mean {}, {} samples)",
                self.phase,
                self.latency_measures.unwrap_or("latency"),
                micros(l.p50),
                micros(l.p99),
                micros(l.p999),
                micros(l.max),
                micros(l.mean as u64),
                thousands(l.samples)
            );
        }
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds in the unit a person reads fastest.
fn micros(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{us} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn percentiles_come_from_the_merged_histograms() {
        let mut a = Latencies::default();
        let mut b = Latencies::default();
        for _ in 0..99 {
            a.record(Duration::from_micros(100));
        }
        b.record(Duration::from_millis(50));
        a.merge(&b);
        let counters = Counters::default();
        counters.add(100, 100_000);
        let summary = Summary::new(
            "produce",
            &counters,
            Duration::from_secs(1),
            Some(("send → receipt", &a)),
        );
        let latency = summary.latency_us.expect("latencies recorded");
        assert_eq!(latency.p50, 100);
        assert!(latency.max >= 49_900, "max {}", latency.max);
        assert_eq!(summary.messages_per_second, 100.0);
        assert_eq!(summary.message_bytes, 1_000);
    }
}
