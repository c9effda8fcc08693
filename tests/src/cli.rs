//! Running `runnel` client commands (`topic`, `produce`, `consume`, `group`) as a user would:
//! the real binary, arguments, stdin, and a deadline so a hung command fails the test instead
//! of hanging it.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;

use crate::{runnel_bin, AWAIT_TIMEOUT};

/// Runs `runnel ARGS`, feeding `stdin` to it, and returns its output once it exits. Panics if
/// it does not exit within `AWAIT_TIMEOUT` (after killing it).
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(runnel_bin())
        .args(args)
        .env_remove("RUNNEL_BROKER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start runnel {args:?}: {e}"));
    let mut input = child.stdin.take().expect("child stdin");
    let stdin = stdin.to_vec();
    // A writer thread, so a command that does not read its stdin cannot block the test.
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let pid = child.id();
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    let output = match done_rx.recv_timeout(AWAIT_TIMEOUT) {
        Ok(output) => output.expect("wait for runnel"),
        Err(_) => {
            let pid = libc::pid_t::try_from(pid).expect("pid fits");
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("runnel {args:?} did not exit within {AWAIT_TIMEOUT:?}");
        }
    };
    let _ = writer.join();
    output
}

/// Runs `runnel ARGS` like `run` and asserts it succeeded; returns its stdout as text.
pub fn run_ok(args: &[&str], stdin: &[u8]) -> String {
    let output = run(args, stdin);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "runnel {args:?} failed with {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
