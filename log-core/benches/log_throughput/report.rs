//! Results: one [`Measurement`] per scenario, printed as a table row and a JSON line, and
//! compared with the machine's limits and the targets.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// The limits this run knows: fio's (from `scripts/machine-limits`) and the ones the bench
/// measures itself, in bytes per second.
#[derive(Debug, Default)]
pub struct Limits {
    pub bytes_per_s: BTreeMap<String, f64>,
    pub machine: Value,
    pub source: Option<String>,
}

impl Limits {
    /// Loads the JSON that `scripts/machine-limits` wrote, if there is one.
    pub fn load(path: &Path) -> Limits {
        let mut limits = Limits::default();
        let Ok(text) = fs::read_to_string(path) else {
            return limits;
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            eprintln!("ignoring {}: not JSON", path.display());
            return limits;
        };
        if let Some(map) = value["limits"].as_object() {
            for (name, entry) in map {
                if let Some(rate) = entry["bytes_per_s"].as_f64() {
                    limits.bytes_per_s.insert(format!("fio/{name}"), rate);
                }
            }
        }
        limits.machine = value["machine"].clone();
        limits.source = Some(path.display().to_string());
        limits
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.bytes_per_s.get(name).copied()
    }
}

/// Append latencies in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// A histogram of durations in nanoseconds, up to a minute.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    histogram.saturating_record(elapsed.as_nanos().min(u128::from(u64::MAX)) as u64);
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Latency> {
        (!h.is_empty()).then(|| Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50) as f64 / 1e3,
            p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
            p999_us: h.value_at_quantile(0.999) as f64 / 1e3,
            max_us: h.max() as f64 / 1e3,
        })
    }
}

/// What one scenario measured.
#[derive(Debug)]
pub struct Measurement {
    pub name: String,
    pub group: &'static str,
    pub records: u64,
    /// Bytes before compression: what producers handed over.
    pub logical_bytes: u64,
    /// Bytes the log wrote or read: the disk's work.
    pub stored_bytes: u64,
    pub seconds: f64,
    pub latency: Option<Latency>,
    /// The limit whose bandwidth this is compared with (stored bytes against it).
    pub limit: Option<String>,
    pub details: Map<String, Value>,
}

impl Measurement {
    pub fn new(name: String, group: &'static str) -> Measurement {
        Measurement {
            name,
            group,
            records: 0,
            logical_bytes: 0,
            stored_bytes: 0,
            seconds: 0.0,
            latency: None,
            limit: None,
            details: Map::new(),
        }
    }

    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.details.insert(key.to_string(), value.into());
    }

    fn rate(&self, amount: u64) -> f64 {
        if self.seconds > 0.0 {
            amount as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn records_per_s(&self) -> f64 {
        self.rate(self.records)
    }

    pub fn stored_bytes_per_s(&self) -> f64 {
        self.rate(self.stored_bytes)
    }

    pub fn logical_bytes_per_s(&self) -> f64 {
        self.rate(self.logical_bytes)
    }

    pub fn ratio(&self, limits: &Limits) -> Option<f64> {
        let limit = limits.get(self.limit.as_deref()?)?;
        Some(self.stored_bytes_per_s() / limit)
    }

    pub fn to_json(&self, limits: &Limits) -> Value {
        let mut value = json!({
            "bench": "log-core/log_throughput",
            "scenario": self.name,
            "group": self.group,
            "records": self.records,
            "logical_bytes": self.logical_bytes,
            "stored_bytes": self.stored_bytes,
            "seconds": round(self.seconds, 4),
            "records_per_s": round(self.records_per_s(), 0),
            "logical_bytes_per_s": round(self.logical_bytes_per_s(), 0),
            "stored_bytes_per_s": round(self.stored_bytes_per_s(), 0),
        });
        if let Some(latency) = self.latency {
            value["latency_us"] = json!({
                "count": latency.count,
                "p50": round(latency.p50_us, 1),
                "p99": round(latency.p99_us, 1),
                "p99.9": round(latency.p999_us, 1),
                "max": round(latency.max_us, 1),
            });
        }
        if let Some(limit) = self.limit.as_deref() {
            value["limit"] = json!(limit);
            value["limit_bytes_per_s"] = json!(limits.get(limit).map(|v| round(v, 0)));
            value["ratio"] = json!(self.ratio(limits).map(|v| round(v, 3)));
        }
        for (key, detail) in &self.details {
            value[key] = detail.clone();
        }
        value
    }
}

pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

pub const TABLE_HEADER: &str = "scenario                                   records/s  logical MB/s  stored MB/s   p50 us   p99 us   max ms  limit                        ratio";

pub fn table_row(m: &Measurement, limits: &Limits) -> String {
    let (p50, p99, max) = m
        .latency
        .map_or((String::new(), String::new(), String::new()), |l| {
            (
                format!("{:.0}", l.p50_us),
                format!("{:.0}", l.p99_us),
                format!("{:.1}", l.max_us / 1e3),
            )
        });
    let records = if m.records > 0 {
        format!("{:.0}", m.records_per_s())
    } else {
        String::new()
    };
    let logical = if m.logical_bytes > 0 {
        format!("{:.0}", m.logical_bytes_per_s() / 1e6)
    } else {
        String::new()
    };
    let ratio = m
        .ratio(limits)
        .map_or(String::new(), |r| format!("{:.0} %", r * 100.0));
    format!(
        "{:<42} {:>9} {:>13} {:>12} {:>8} {:>8} {:>8}  {:<26} {:>6}",
        m.name,
        records,
        logical,
        format!("{:.0}", m.stored_bytes_per_s() / 1e6),
        p50,
        p99,
        max,
        m.limit.as_deref().unwrap_or(""),
        ratio
    )
}

/// One of the targets and whether this run met it.
#[derive(Debug)]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

/// Checks the targets against this run's measurements and limits.
pub fn check_targets(results: &[Measurement], limits: &Limits) -> Vec<TargetCheck> {
    let find = |name: &str| results.iter().find(|m| m.name == name);
    let mut checks = Vec::new();
    for (scenario, limit, raw, share) in [
        (
            "append/1MiB/os/none/1w",
            "fio/write_prealloc",
            "raw/1MiB/prealloc-end-fsync",
            0.70,
        ),
        (
            "append/1MiB/every-write/none/4w",
            "fio/write_fdatasync",
            "raw/1MiB/fdatasync-each",
            0.70,
        ),
    ] {
        let target = format!("{scenario} >= {:.0} % of {limit}", share * 100.0);
        let same_run = match (find(scenario), find(raw)) {
            (Some(m), Some(r)) => format!(
                " (same-run raw file {:.0} MB/s: {:.0} %)",
                r.stored_bytes_per_s() / 1e6,
                m.stored_bytes_per_s() / r.stored_bytes_per_s() * 100.0
            ),
            _ => String::new(),
        };
        let check = match (find(scenario), limits.get(limit)) {
            (Some(m), Some(rate)) => TargetCheck {
                target,
                measured: format!(
                    "{:.0} MB/s vs {:.0} MB/s = {:.0} %{same_run}",
                    m.stored_bytes_per_s() / 1e6,
                    rate / 1e6,
                    m.stored_bytes_per_s() / rate * 100.0
                ),
                met: Some(m.stored_bytes_per_s() >= share * rate),
            },
            (Some(_), None) => TargetCheck {
                target,
                measured: "no limit measured (run scripts/machine-limits first)".into(),
                met: None,
            },
            (None, _) => continue,
        };
        checks.push(check);
    }
    for scenario in [
        "append/16KiB/os/none/1w",
        "append/1MiB/os/none/1w",
        "build+append/16KiB/os/none/1w",
    ] {
        if let Some(m) = find(scenario) {
            checks.push(TargetCheck {
                target: format!("{scenario} >= 1 000 000 records/s (1 KiB records)"),
                measured: format!("{:.0} records/s", m.records_per_s()),
                met: Some(m.records_per_s() >= 1e6),
            });
        }
    }
    for scenario in [
        "recovery/1MiB/synced-warm",
        "recovery/1MiB/synced-cold",
        "recovery/1MiB/dirty",
    ] {
        if let Some(m) = find(scenario) {
            checks.push(TargetCheck {
                target: format!("{scenario} >= 1 GB/s"),
                measured: format!("{:.2} GB/s", m.stored_bytes_per_s() / 1e9),
                met: Some(m.stored_bytes_per_s() >= 1e9),
            });
        }
    }
    checks
}
