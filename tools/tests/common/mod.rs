//! Helpers for the `runnel log` tests: run the real binary, await conditions with a deadline,
//! and stop long-running children (a child left behind by a failing test is killed on drop).

#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long any awaited event may take before the test fails: generous, because CI
/// machines stall; a healthy run takes milliseconds.
pub const AWAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two checks of an awaited condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

pub fn runnel() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runnel"));
    command.env_remove("RUNNEL_LOG_DIR");
    command
}

/// Runs `runnel ARGS` with `stdin` as its input and waits for it.
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = runnel()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start runnel");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait for runnel")
}

/// Runs `runnel ARGS` and asserts it succeeded; returns stdout.
pub fn run_ok(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let output = run(args, stdin);
    assert!(
        output.status.success(),
        "runnel {args:?} failed with {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

pub fn dir_arg(dir: &Path) -> String {
    dir.to_str().expect("UTF-8 temp path").to_owned()
}

/// Every record value in the log, via `runnel log read`.
pub fn read_values(dir: &Path) -> Vec<Vec<u8>> {
    let out = run_ok(&["log", "read", "--dir", &dir_arg(dir)], b"");
    split_lines(&out)
}

pub fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(lines.pop(), Some(Vec::new()), "output ends with a newline");
    lines
}

pub fn lines(values: &[&str]) -> Vec<Vec<u8>> {
    values.iter().map(|v| v.as_bytes().to_vec()).collect()
}

pub fn stats_json(dir: &Path) -> serde_json::Value {
    let out = run_ok(&["log", "stats", "--json", "--dir", &dir_arg(dir)], b"");
    serde_json::from_slice(&out).expect("stats --json is JSON")
}

/// Polls `condition` until it holds; fails loudly after [`AWAIT_TIMEOUT`].
pub fn await_condition(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + AWAIT_TIMEOUT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {AWAIT_TIMEOUT:?} waiting for {what}"
        );
        thread::sleep(POLL_INTERVAL);
    }
}

/// A long-running `runnel` (a follower). Killed on drop if the test did not stop it.
pub struct Running {
    child: Child,
    /// Lines of its stdout, if it was piped.
    pub stdout: Option<Receiver<Vec<u8>>>,
}

impl Running {
    /// Starts `runnel ARGS`; with `capture_stdout`, its stdout lines arrive on `stdout`.
    pub fn start(args: &[&str], capture_stdout: bool) -> Running {
        let mut child = runnel()
            .args(args)
            .stdin(Stdio::null())
            .stdout(if capture_stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start runnel");
        let stdout = child.stdout.take().map(|out| {
            let (sender, receiver) = mpsc::channel();
            thread::spawn(move || {
                let mut reader = BufReader::new(out);
                loop {
                    let mut line = Vec::new();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            if line.last() == Some(&b'\n') {
                                line.pop();
                            }
                            if sender.send(line).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            receiver
        });
        Running { child, stdout }
    }

    /// Awaits the next `n` lines of stdout.
    pub fn await_lines(&self, n: usize) -> Vec<Vec<u8>> {
        let receiver = self.stdout.as_ref().expect("stdout was captured");
        let deadline = Instant::now() + AWAIT_TIMEOUT;
        (0..n)
            .map(|i| {
                let left = deadline.saturating_duration_since(Instant::now());
                receiver
                    .recv_timeout(left)
                    .unwrap_or_else(|e| panic!("line {} of {n} did not arrive: {e}", i + 1))
            })
            .collect()
    }

    /// Sends SIGTERM and awaits the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child's pid; the child has not been reaped yet (we
        // only reap below), so the pid cannot have been reused.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "kill(SIGTERM) failed");
        let mut status = None;
        await_condition("the follower to exit after SIGTERM", || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status.expect("exited")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
