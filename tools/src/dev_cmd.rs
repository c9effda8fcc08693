//! `runnel dev cluster`: a whole cluster on this machine for trying things out — one etcd on
//! free loopback ports and N brokers, each a child process of this same binary.
//!
//! Layout under `--base-dir` (default `./runnel-dev-cluster`): `etcd/` (its data) and
//! `etcd.log`; per broker `broker-<id>/` (its data dir) and `broker-<id>.log` (its stderr).
//! Broker `i` (ids from 0) listens on `127.0.0.1:<base-port + i>` and serves metrics on
//! `127.0.0.1:<base-port + N + i>`: with the default base port 10911 and three brokers,
//! clients on 10911–10913 and metrics on 10914–10916.
//!
//! The children run in their own process group, so a Ctrl-C in the terminal reaches this
//! process only, which stops them in order: the brokers first (SIGTERM; each closes its logs
//! and revokes its etcd lease), then etcd. Each gets `STOP_DEADLINE` before it is killed. If a
//! child exits on its own, the rest are stopped and the command fails.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use coordinator::{EtcdConfig, EtcdCoordinator, SystemClock};

use crate::shutdown::Shutdown;

/// How long etcd, or a broker, may take to start answering.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a stopped child may take to exit after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two looks at the children (exits, the stop signal, etcd readiness).
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The most brokers one dev cluster runs.
const BROKERS_MAX: u32 = 64;

#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(subcommand)]
    command: DevCommand,
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Run etcd and N brokers on this machine until Ctrl-C.
    Cluster(ClusterArgs),
}

#[derive(Debug, Args)]
struct ClusterArgs {
    /// Number of brokers.
    #[arg(long, default_value_t = 3)]
    brokers: u32,
    /// Where etcd's and the brokers' data and logs go.
    #[arg(long, default_value = "./runnel-dev-cluster")]
    base_dir: PathBuf,
    /// The etcd binary [default: $RUNNEL_ETCD_BIN, else `etcd` on PATH].
    #[arg(long, env = "RUNNEL_ETCD_BIN", default_value = "etcd")]
    etcd_bin: PathBuf,
    /// Client port of broker 0; broker i uses base-port + i, its metrics base-port + N + i.
    #[arg(long, default_value_t = 10911)]
    base_port: u16,
    /// The cluster's name in etcd.
    #[arg(long, default_value = "runnel")]
    cluster: String,
}

pub fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let DevCommand::Cluster(args) = args.command;
    if args.brokers == 0 || args.brokers > BROKERS_MAX {
        bail!("--brokers must be in 1..={BROKERS_MAX}");
    }
    let last = u32::from(args.base_port) + 2 * args.brokers - 1;
    if last > u32::from(u16::MAX) {
        bail!(
            "--base-port {} leaves no room for {} brokers",
            args.base_port,
            args.brokers
        );
    }
    let shutdown = Shutdown::install()?;
    std::fs::create_dir_all(&args.base_dir)
        .with_context(|| format!("creating {}", args.base_dir.display()))?;
    let mut children = Children::default();
    let outcome = start_and_wait(&args, &shutdown, &mut children);
    children.stop_all();
    outcome
}

fn start_and_wait(
    args: &ClusterArgs,
    shutdown: &Shutdown,
    children: &mut Children,
) -> anyhow::Result<ExitCode> {
    let endpoint = start_etcd(args, children)?;
    println!(
        "etcd    {endpoint}  (data and log in {})",
        args.base_dir.display()
    );
    let exe = std::env::current_exe().context("finding the runnel binary")?;
    for id in 0..args.brokers {
        let port = args.base_port + id as u16;
        let admin = args.base_port + (args.brokers + id) as u16;
        let data = args.base_dir.join(format!("broker-{id}"));
        let log = args.base_dir.join(format!("broker-{id}.log"));
        let mut command = Command::new(&exe);
        command
            .arg("broker")
            .args(["--broker-id", &id.to_string()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .arg("--data-dir")
            .arg(&data)
            .args(["--etcd", &endpoint, "--cluster", &args.cluster]);
        let line = children.start_broker(format!("broker {id}"), command, &log)?;
        println!(
            "broker {id}  127.0.0.1:{port}  metrics http://127.0.0.1:{admin}/metrics  ({line})"
        );
    }
    println!(
        "cluster {} is up; try `runnel cluster status -b 127.0.0.1:{}`. Ctrl-C stops it.",
        args.cluster, args.base_port
    );
    std::io::stdout().flush()?;
    loop {
        if let Some(signal) = shutdown.requested() {
            eprintln!("signal {signal}: stopping the brokers, then etcd");
            return Ok(ExitCode::SUCCESS);
        }
        if let Some((name, status)) = children.exited() {
            bail!(
                "{name} exited on its own ({status}); see its log in {}",
                args.base_dir.display()
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Starts etcd on free loopback ports and waits until it answers; returns its client URL.
fn start_etcd(args: &ClusterArgs, children: &mut Children) -> anyhow::Result<String> {
    let (client_port, peer_port) = (free_port()?, free_port()?);
    let endpoint = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let log_path = args.base_dir.join("etcd.log");
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = Command::new(&args.etcd_bin);
    command
        .args(["--name", "runnel-dev"])
        .arg("--data-dir")
        .arg(args.base_dir.join("etcd"))
        .args(["--listen-client-urls", &endpoint])
        .args(["--advertise-client-urls", &endpoint])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("runnel-dev={peer}")])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    die_with_parent(&mut command);
    let child = command.spawn().with_context(|| {
        format!(
            "starting {} (install etcd, e.g. `apt-get install etcd-server`, or pass --etcd-bin)",
            args.etcd_bin.display()
        )
    })?;
    children.push("etcd".into(), child);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let mut config = EtcdConfig::new(vec![endpoint.clone()], args.cluster.clone());
        config.request_timeout = Duration::from_secs(1);
        if runtime
            .block_on(EtcdCoordinator::connect(config, Arc::new(SystemClock)))
            .is_ok()
        {
            return Ok(endpoint);
        }
        if let Some((_, status)) = children.exited() {
            bail!("etcd exited ({status}); see {}", log_path.display());
        }
        if Instant::now() > deadline {
            bail!(
                "etcd did not answer within {START_DEADLINE:?}; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The children started so far, in start order (etcd first).
#[derive(Debug, Default)]
struct Children {
    running: Vec<(String, Child)>,
}

impl Children {
    fn push(&mut self, name: String, child: Child) {
        self.running.push((name, child));
    }

    /// Starts a broker with its stderr in `log` and waits for its first stdout line (it
    /// listens); the rest of its stdout goes to the log too.
    fn start_broker(
        &mut self,
        name: String,
        mut command: Command,
        log: &Path,
    ) -> anyhow::Result<String> {
        let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        die_with_parent(&mut command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file.try_clone()?)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().context("broker stdout")?;
        self.push(name.clone(), child);
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = sender.send(first);
            let mut file = file;
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
            }
        });
        match receiver.recv_timeout(START_DEADLINE) {
            Ok(Some(Ok(line))) => Ok(line),
            Ok(_) => bail!("{name} exited before it listened; see {}", log.display()),
            Err(_) => bail!(
                "{name} did not start within {START_DEADLINE:?}; see {}",
                log.display()
            ),
        }
    }

    /// The first child found exited, if any.
    fn exited(&mut self) -> Option<(String, String)> {
        self.running
            .iter_mut()
            .find_map(|(name, child)| match child.try_wait() {
                Ok(Some(status)) => Some((name.clone(), status.to_string())),
                _ => None,
            })
    }

    /// Stops every child, the last started first (brokers, then etcd).
    fn stop_all(&mut self) {
        let mut brokers: Vec<(String, Child)> = self.running.drain(..).collect();
        let etcd = (!brokers.is_empty()).then(|| brokers.remove(0));
        for (_, child) in &mut brokers {
            terminate(child);
        }
        for (name, child) in &mut brokers {
            reap(name, child);
        }
        if let Some((name, mut child)) = etcd {
            terminate(&mut child);
            reap(&name, &mut child);
        }
    }
}

fn terminate(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return; // exited (and reaped): its pid may belong to another process by now
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a pid this process spawned and has not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// Waits for `child` to exit, killing it after `STOP_DEADLINE`.
fn reap(name: &str, child: &mut Child) {
    let deadline = Instant::now() + STOP_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                eprintln!("{name} stopped ({status})");
                return;
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
            _ => {
                eprintln!("{name} did not stop within {STOP_DEADLINE:?}; killing it");
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
        }
    }
}

/// Has the child receive SIGTERM when this process dies, however it dies (a SIGKILL leaves no
/// chance to stop the children): each is in a process group of its own, so it would
/// otherwise outlive `runnel dev cluster`, holding its ports. Linux only; elsewhere the
/// children are stopped on a clean exit alone.
fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (prctl, getppid, _exit).
        let parent = unsafe { libc::getpid() };
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the prctl: then nobody will signal.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}
