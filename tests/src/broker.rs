//! `BrokerProcess`: one real `runnel broker` child process, and what a test asks of it
//! beyond the protocol: is it alive, and what do its metrics say.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use crate::{runnel_bin, AWAIT_TIMEOUT};

/// A running broker. Killed on drop, so a failing test leaves no process behind.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Option<Child>,
    data_dir: PathBuf,
    extra_args: Vec<String>,
    /// Prefixes its log lines in the test's output (`[broker 2] …`).
    name: String,
    /// `host:port` the broker listens on; kept across restarts.
    pub address: String,
    /// `host:port` of the metrics endpoint.
    pub admin_address: Option<String>,
}

impl BrokerProcess {
    /// Starts a broker on a free loopback port with its data in `data_dir`, plus `extra_args`
    /// (e.g. `["--flush", "every-write"]`), and waits until it listens.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> BrokerProcess {
        BrokerProcess::start_named("broker", data_dir, extra_args)
    }

    /// `start`, with `name` prefixing the broker's log lines (several brokers in one test).
    pub fn start_named(name: &str, data_dir: &Path, extra_args: &[&str]) -> BrokerProcess {
        let mut broker = BrokerProcess {
            child: None,
            data_dir: data_dir.to_path_buf(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            name: name.to_owned(),
            address: "127.0.0.1:0".to_owned(),
            admin_address: None,
        };
        broker.spawn("127.0.0.1:0");
        broker
    }

    fn spawn(&mut self, listen: &str) {
        let mut child = Command::new(runnel_bin())
            .arg("broker")
            .args(["--listen", listen, "--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start runnel broker");
        let stdout = child.stdout.take().expect("broker stdout");
        let stderr = child.stderr.take().expect("broker stderr");
        // Broker logs go to the test's stderr, prefixed, so a failure shows what it did.
        let name = self.name.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{name}] {line}");
            }
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut first = String::new();
            let _ = lines.read_line(&mut first);
            let _ = ready_tx.send(first);
            let mut rest = Vec::new();
            let _ = lines.read_to_end(&mut rest);
        });
        let deadline = Instant::now() + AWAIT_TIMEOUT;
        let line = loop {
            match ready_rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(line) => break line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("{} exited before listening: {status}", self.name);
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{} did not start listening",
                        self.name
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("broker stdout closed"),
            }
        };
        self.address = word_after(&line, "listening on ")
            .unwrap_or_else(|| panic!("unexpected first broker line {line:?}"));
        self.admin_address = word_after(&line, "metrics on http://")
            .map(|a| a.trim_end_matches("/metrics").to_owned());
        self.child = Some(child);
    }

    /// Stops the broker with SIGTERM and waits for it to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait()
    }

    /// Kills the broker with SIGKILL (no clean shutdown) and reaps it.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait();
    }

    /// Starts the broker again on the same address and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the broker before restarting it");
        let address = self.address.clone();
        self.spawn(&address);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the broker process is still running (it has not exited or been reaped).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The broker's metrics page (Prometheus text), fetched from its admin endpoint.
    pub fn metrics(&self) -> String {
        let address = self
            .admin_address
            .as_deref()
            .expect("the broker announced no metrics address");
        metrics_page(address)
    }

    /// The value of one metric series, written as on the metrics page (`name` or
    /// `name{label="value"}`); `None` while the broker has not recorded it.
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics(), series)
    }

    fn signal(&mut self, signal: i32) {
        if let Some(child) = &self.child {
            let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
            // SAFETY: kill(2) with a pid we own; no memory is shared.
            unsafe { libc::kill(pid, signal) };
        }
    }

    fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker is running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = done_tx.send(child.wait());
        });
        match done_rx.recv_timeout(AWAIT_TIMEOUT) {
            Ok(status) => status.expect("wait for broker"),
            Err(_) => {
                // SAFETY: kill(2) on our own child's pid.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("broker did not exit within {AWAIT_TIMEOUT:?}");
            }
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Fetches the metrics page (Prometheus text) from a broker's admin endpoint at `address`.
/// Blocking: async tests call it through `spawn_blocking`.
pub fn metrics_page(address: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(AWAIT_TIMEOUT))
        .expect("set a read timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the metrics request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the metrics response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "metrics answered {head:?}"
    );
    body.to_owned()
}

/// The value of one metric series of the broker whose admin endpoint is `address` (see
/// `BrokerProcess::metric`), fetched off the async worker threads.
pub async fn scrape_metric(address: &str, series: &str) -> Option<f64> {
    let (address, series) = (address.to_owned(), series.to_owned());
    tokio::task::spawn_blocking(move || metric_value(&metrics_page(&address), &series))
        .await
        .expect("the metrics scrape panicked")
}

/// Finds `series` (a name, with its labels if it has any) on a Prometheus text page.
pub fn metric_value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.split_whitespace().next()?.parse().ok()
        })
}

fn word_after(line: &str, marker: &str) -> Option<String> {
    let start = line.find(marker)? + marker.len();
    let word: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',')
        .collect();
    (!word.is_empty()).then_some(word)
}
