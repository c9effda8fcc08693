//! A real etcd server for tests: `EtcdServer` starts the `etcd` binary on free loopback ports
//! with a temporary data directory, and stops, kills or restarts it on demand.
//!
//! Behind the `testing` feature so that only tests (this crate's, through its dev-dependency
//! on itself, and the workspace `tests` crate) compile it. The binary is `RUNNEL_ETCD_BIN` or
//! `etcd` on `PATH` (Debian: `apt-get install etcd-server`).
//!
//! The server is tuned for tests, not for durability: a 10 ms heartbeat and 100 ms election
//! timeout make a single node ready in a fraction of a second (and allow 1 s leases), and
//! `--unsafe-no-fsync` skips fsync. Data written survives the process being killed (it is in
//! the page cache), which is all a restart test needs; it would not survive a power cut.
//!
//! Readiness is awaited by asking the server for its status through etcd-client until it
//! answers or `STARTUP_DEADLINE` passes; a server that exits early is reported with the tail
//! of its log.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a starting server may take to answer before `start` fails.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// How long `stop` waits for the server to exit after SIGTERM before it kills it.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between two readiness probes, or two looks at whether a stopped server exited.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Timeout of one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Bytes of the server's log quoted when it fails to start.
const LOG_TAIL_BYTES: usize = 4096;
/// Times `start` picks new ports when the server could not bind the ones it was given.
const START_ATTEMPTS: usize = 3;

/// A running etcd process owned by a test. Killed when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    binary: PathBuf,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot run etcd at {binary}: {cause} (install it with `apt-get install etcd-server`, \
         or point RUNNEL_ETCD_BIN at the binary)"
    )]
    Missing {
        binary: PathBuf,
        cause: std::io::Error,
    },
    #[error("etcd setup failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("etcd exited before it was ready ({status}); its log ends with:\n{log}")]
    Exited { status: String, log: String },
    #[error("etcd did not answer within {STARTUP_DEADLINE:?}; its log ends with:\n{log}")]
    NotReady { log: String },
}

impl EtcdServer {
    /// Starts a fresh single-node server and waits until it answers.
    pub async fn start() -> Result<EtcdServer, StartError> {
        let binary = std::env::var_os("RUNNEL_ETCD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("etcd"));
        let mut dir = tempfile::Builder::new().prefix("runnel-etcd").tempdir()?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let mut server = EtcdServer {
                binary: binary.clone(),
                dir,
                client_port: free_port()?,
                peer_port: free_port()?,
                child: None,
            };
            match server.launch().await {
                Ok(()) => return Ok(server),
                // Another process may have taken a port between our probe and etcd's bind.
                Err(StartError::Exited { status, log })
                    if log.contains("address already in use") =>
                {
                    last = Some(StartError::Exited { status, log });
                    dir = server.take_dir()?;
                }
                Err(other) => return Err(other),
            }
        }
        Err(last.unwrap_or(StartError::NotReady { log: String::new() }))
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The server's data directory (kept across `restart`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Stops the server with SIGTERM and waits for it to exit (killing it after
    /// `STOP_DEADLINE`).
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) with a pid we own and a valid signal has no memory effects.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data directory and ports (stopping it first if it
    /// runs), and waits until it answers.
    pub async fn restart(&mut self) -> Result<(), StartError> {
        self.stop().await;
        self.launch().await
    }

    async fn launch(&mut self) -> Result<(), StartError> {
        let log_path = self.log_path();
        let log = File::options().create(true).append(true).open(&log_path)?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(&self.binary)
            .arg("--name=runnel-test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=runnel-test={peer}"))
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=100")
            .arg("--unsafe-no-fsync")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|cause| StartError::Missing {
                binary: self.binary.clone(),
                cause,
            })?;
        self.child = Some(child);
        self.await_ready().await
    }

    async fn await_ready(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let endpoint = self.endpoint();
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(StartError::Exited {
                        status: status.to_string(),
                        log: tail(&self.log_path()),
                    });
                }
            }
            if probe(&endpoint).await {
                return Ok(());
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        self.kill();
        Err(StartError::NotReady {
            log: tail(&self.log_path()),
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Gives up the directory of a server that never started, for the next attempt.
    fn take_dir(mut self) -> std::io::Result<TempDir> {
        self.kill();
        let fresh = tempfile::Builder::new().prefix("runnel-etcd").tempdir()?;
        Ok(std::mem::replace(&mut self.dir, fresh))
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the server at `endpoint` answers a status request.
async fn probe(endpoint: &str) -> bool {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(PROBE_TIMEOUT)
        .with_timeout(PROBE_TIMEOUT);
    let attempt = async {
        let mut client = etcd_client::Client::connect([endpoint], Some(options)).await?;
        client.status().await
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, attempt).await,
        Ok(Ok(_))
    )
}

/// A loopback port nobody listens on right now.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn tail(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::from("(no log)");
    };
    let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_answers_and_keeps_its_data_and_port_across_restarts() {
        let mut server = EtcdServer::start().await.expect("start etcd");
        let endpoint = server.endpoint();
        let connect = || etcd_client::Client::connect([endpoint.clone()], None);
        let mut client = connect().await.expect("connect");
        client.put("k", "v", None).await.expect("put");
        server.kill();
        assert!(!server.is_running());
        server.restart().await.expect("restart after kill");
        server.stop().await;
        server.restart().await.expect("restart after stop");
        assert_eq!(server.endpoint(), endpoint);
        let mut client = connect().await.expect("reconnect");
        let got = client.get("k", None).await.expect("get");
        assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"v"[..]));
    }

    #[tokio::test]
    async fn a_missing_binary_is_named_with_its_package() {
        let error = EtcdServer {
            binary: PathBuf::from("/nonexistent/etcd"),
            dir: tempfile::tempdir().expect("tempdir"),
            client_port: 1,
            peer_port: 1,
            child: None,
        }
        .launch()
        .await
        .expect_err("no such binary");
        let message = error.to_string();
        assert!(message.contains("apt-get install etcd-server"), "{message}");
    }
}
