//! CPU time used by the benchmark itself and, when its pid is given, by the broker, over a
//! run. On a small machine the two share the cores, so a throughput figure means little
//! without knowing who used them; and a benchmark that uses a core of its own is the
//! bottleneck, not the broker.
//!
//! Read from `/proc/PID/stat` (user + system time, fields 14 and 15, in clock ticks), so the
//! numbers are what `top` and `time` would show. The whole machine's busy time comes from
//! the first line of `/proc/stat` (everything but idle and iowait): what is left after the
//! benchmark and the broker is what other processes took, which on a shared machine says
//! whether a figure is to be trusted. Elsewhere than Linux, nothing is reported.

use std::time::{Duration, Instant};

use serde::Serialize;

/// CPU time of one process at one moment.
#[derive(Clone, Copy, Debug)]
struct Sample {
    cpu: Duration,
}

/// CPU use between `start` and `finish`, of this process and optionally another.
#[derive(Debug)]
pub struct CpuMeter {
    started: Instant,
    own: Option<Sample>,
    broker: Option<(u32, Sample)>,
    machine: Option<Sample>,
}

/// What `CpuMeter::finish` reports: CPU seconds, and cores busy on average (1.0 = one core
/// all the time).
#[derive(Debug, Serialize)]
pub struct CpuUse {
    pub wall_seconds: f64,
    pub bench_cpu_seconds: Option<f64>,
    pub bench_cores: Option<f64>,
    pub broker_pid: Option<u32>,
    pub broker_cpu_seconds: Option<f64>,
    pub broker_cores: Option<f64>,
    /// Cores busy on the whole machine, and those of them neither ours nor the broker's.
    pub machine_cores: Option<f64>,
    pub other_cores: Option<f64>,
    pub cores_online: usize,
    /// `/proc/loadavg`'s 1, 5 and 15 minute averages when the run ended.
    pub load_average: Option<String>,
}

impl CpuMeter {
    pub fn start(broker_pid: Option<u32>) -> CpuMeter {
        let broker = broker_pid.and_then(|pid| Some((pid, sample(&pid.to_string())?)));
        if let (Some(pid), None) = (broker_pid, &broker) {
            eprintln!("warning: cannot read /proc/{pid}/stat: the broker's CPU is not reported");
        }
        CpuMeter {
            started: Instant::now(),
            own: sample("self"),
            broker,
            machine: machine_sample(),
        }
    }

    pub fn finish(&self) -> CpuUse {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let delta = |before: Sample, process: &str| {
            sample(process).map(|after| after.cpu.saturating_sub(before.cpu).as_secs_f64())
        };
        let bench = self.own.and_then(|before| delta(before, "self"));
        let broker = self
            .broker
            .and_then(|(pid, before)| delta(before, &pid.to_string()));
        let machine = self.machine.and_then(|before| {
            let after = machine_sample()?;
            Some(after.cpu.saturating_sub(before.cpu).as_secs_f64() / wall)
        });
        let ours = bench.unwrap_or(0.0) + broker.unwrap_or(0.0);
        CpuUse {
            wall_seconds: wall,
            machine_cores: machine,
            other_cores: machine.map(|m| (m - ours / wall).max(0.0)),
            cores_online: std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
            bench_cpu_seconds: bench,
            bench_cores: bench.map(|s| s / wall),
            broker_pid: self.broker.map(|(pid, _)| pid),
            broker_cpu_seconds: broker,
            broker_cores: broker.map(|s| s / wall),
        }
    }
}

impl CpuUse {
    pub fn print_human(&self) {
        let cores = |seconds: Option<f64>, cores: Option<f64>| match (seconds, cores) {
            (Some(s), Some(c)) => format!("{s:.2} s CPU ({:.0} % of a core)", c * 100.0),
            _ => "not measured".to_owned(),
        };
        let mut line = format!(
            "cpu: bench {}",
            cores(self.bench_cpu_seconds, self.bench_cores)
        );
        if let Some(pid) = self.broker_pid {
            line.push_str(&format!(
                ", broker (pid {pid}) {}",
                cores(self.broker_cpu_seconds, self.broker_cores)
            ));
        }
        line.push_str(&format!(" over {:.2} s", self.wall_seconds));
        if let Some(other) = self.other_cores {
            line.push_str(&format!(
                "; other processes {:.0} % of a core ({} cores online, load {})",
                other * 100.0,
                self.cores_online,
                self.load_average.as_deref().unwrap_or("?")
            ));
        }
        println!("{line}");
    }
}

/// User + system CPU time of `/proc/<process>/stat`.
fn sample(process: &str) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{process}/stat")).ok()?;
    Some(Sample {
        cpu: parse_stat_cpu(&stat, clock_ticks_per_second()?)?,
    })
}

/// Busy time of all cores together: the first line of `/proc/stat` (`cpu user nice system
/// idle iowait irq softirq steal ...`, in clock ticks) minus idle and iowait. Guest time is
/// already inside user time.
fn machine_sample() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    Some(Sample {
        cpu: parse_machine_busy(stat.lines().next()?, clock_ticks_per_second()?)?,
    })
}

fn parse_machine_busy(line: &str, ticks_per_second: u64) -> Option<Duration> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    let busy = total.saturating_sub(idle);
    Some(Duration::from_micros(
        busy * 1_000_000 / ticks_per_second.max(1),
    ))
}

/// Fields 14 (utime) and 15 (stime) of a stat line. The command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted after its closing parenthesis.
fn parse_stat_cpu(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11); // field 3 is the first here
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks = user + system;
    Some(Duration::from_micros(
        ticks * 1_000_000 / ticks_per_second.max(1),
    ))
}

fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_user_plus_system() {
        let stat = "1234 (runnel (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100";
        assert_eq!(parse_stat_cpu(stat, 100), Some(Duration::from_secs(3)));
        assert_eq!(parse_stat_cpu("garbage", 100), None);
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_iowait() {
        let line = "cpu  100 0 50 1000 20 5 5 10 0 0";
        assert_eq!(
            parse_machine_busy(line, 100),
            Some(Duration::from_millis(1700))
        );
        assert_eq!(parse_machine_busy("cpu0 1 2 3 4 5 6 7 8", 100), None);
    }

    #[test]
    fn this_process_is_measured() {
        let meter = CpuMeter::start(None);
        let mut x = 0u64;
        for i in 0..10_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let used = meter.finish();
        assert!(used.bench_cpu_seconds.is_some());
        assert!(used.broker_cpu_seconds.is_none());
    }
}
