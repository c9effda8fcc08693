//! The harness for multi-process tests: build and start real `runnel broker` processes on
//! free loopback ports with temporary data directories, stop them gracefully (SIGTERM) or
//! not (SIGKILL), and restart them on the same address.
//!
//! A broker announces readiness by printing `listening on ADDR` on its first stdout line, so
//! the harness binds port 0 and learns the port instead of guessing a free one.
//!
//! - `broker`: the broker process (start, SIGTERM, SIGKILL, restart, liveness, metrics).
//! - `cluster`: etcd plus N brokers joined to it, with faults for each (kill, restart, etcd
//!   outage) and the controller's identity.
//! - `ledger`: what consumers received, by message number: lost, duplicates, intact bodies.
//! - `member`: a consumer-group member as a child process (the `group_member` binary), so a
//!   test can kill it as a crash would.
//! - `cli`: running other `runnel` commands against it, with a deadline.
//! - `raw`: request frames for tests that use a raw socket.
//! - `payload`: message bodies derived from their message number, so integrity is checkable
//!   without remembering what was sent.
//! - `wait`: awaiting a condition with `AWAIT_TIMEOUT` (never a bare sleep), and the client
//!   settings and group waits the scenarios share.

pub mod broker;
pub mod cli;
pub mod cluster;
pub mod ledger;
pub mod member;
pub mod payload;
pub mod raw;
pub mod wait;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Shows the client library's warnings (failed pulls, fenced commits, rebalances) in a test's
/// output, which the test harness prints when the test fails. `RUST_LOG` overrides the
/// default filter (`wire=warn`). Call it first in a test; later calls do nothing.
pub fn init_client_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("wire=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// How long any awaited event may take before a test fails: generous, because CI machines
/// stall; a healthy run takes milliseconds to seconds.
pub const AWAIT_TIMEOUT: Duration = Duration::from_secs(120);

/// The `runnel` binary of this build, built once per test process (`cargo test -p tests`
/// alone would not build another package's binary).
pub fn runnel_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "tools", "--bin", "runnel"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build
            .current_dir(&workspace)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the runnel binary failed");
        // Test binaries live in target/<profile>/deps; the runnel binary one level up.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target dir");
        let bin = profile_dir.join("runnel");
        assert!(bin.exists(), "no runnel binary at {}", bin.display());
        bin
    })
    .clone()
}
