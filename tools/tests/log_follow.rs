//! `--follow`: `append --follow` tails a file through rotation and stops cleanly on SIGTERM;
//! `read --follow` prints what another process appends while it runs.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;

use common::{await_condition, dir_arg, lines, read_values, run, run_ok, split_lines, Running};

/// The file `.clean-shutdown` that log-core's close leaves and its next open removes.
const CLEAN_SHUTDOWN_MARKER: &str = ".clean-shutdown";

#[test]
fn append_follow_survives_rotation_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let source = dir.path().join("app.log");
    let (l, s) = (dir_arg(&log), dir_arg(&source));
    let mut writer = File::create(&source).unwrap();
    writer.write_all(b"1\n2\n3\n").unwrap();
    let follower = Running::start(&["log", "append", "--dir", &l, "--follow", &s], false);
    await_records(&log, &["1", "2", "3"]);

    // A line half written when the file is rotated; the writer finishes it (and writes
    // more) through its open handle after the rename, as a logging library would. The old
    // file keeps being read for ROTATE_WAIT, so nothing is lost however the follower's polls
    // fall; its unfinished last line ("6") is taken as complete only when that wait ends,
    // after the new file's lines.
    writer.write_all(b"4").unwrap();
    fs::rename(&source, dir.path().join("app.log.1")).unwrap();
    writer.write_all(b"\n5\n6").unwrap();
    let mut writer = File::create(&source).unwrap();
    writer.write_all(b"7\n8\n").unwrap();
    await_records(&log, &["1", "2", "3", "4", "5", "7", "8", "6"]);

    // Truncated in place (copytruncate): read again from the start.
    writer.set_len(0).unwrap();
    let mut writer = OpenOptions::new().write(true).open(&source).unwrap();
    writer.write_all(b"9\n").unwrap();
    await_records(&log, &["1", "2", "3", "4", "5", "7", "8", "6", "9"]);

    let status = follower.terminate();
    assert!(
        status.success(),
        "the follower exits 0 on SIGTERM: {status}"
    );
    assert!(
        log.join(CLEAN_SHUTDOWN_MARKER).exists(),
        "the log was closed cleanly"
    );
    run_ok(&["log", "verify", "--dir", &l], b"");
    run_ok(&["log", "append", "--dir", &l], b"10\n");
    assert_eq!(read_values(&log).len(), 10);
}

#[test]
fn append_follow_waits_for_a_file_that_does_not_exist_yet() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let source = dir.path().join("later.log");
    let (l, s) = (dir_arg(&log), dir_arg(&source));
    let follower = Running::start(&["log", "append", "--dir", &l, "--follow", &s], false);
    fs::write(&source, b"finally\n").unwrap();
    await_records(&log, &["finally"]);
    assert!(follower.terminate().success());
}

#[test]
fn read_follow_prints_records_appended_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    run_ok(
        &["log", "append", "--dir", &d, "--segment-bytes", "4096"],
        b"a\nb\nc\n",
    );
    let reader = Running::start(
        &["log", "read", "--dir", &d, "--follow", "--from-offset", "1"],
        true,
    );
    assert_eq!(reader.await_lines(2), lines(&["b", "c"]));

    run_ok(
        &["log", "append", "--dir", &d, "--segment-bytes", "4096"],
        b"d\ne\n",
    );
    assert_eq!(reader.await_lines(2), lines(&["d", "e"]));

    // Enough to roll several segments: the reader must pick up the new files.
    let many: String = (0..2000).map(|i| format!("m{i}\n")).collect();
    run_ok(
        &["log", "append", "--dir", &d, "--segment-bytes", "4096"],
        many.as_bytes(),
    );
    let expected: Vec<Vec<u8>> = (0..2000).map(|i| format!("m{i}").into_bytes()).collect();
    assert_eq!(reader.await_lines(2000), expected);

    let status = reader.terminate();
    assert!(status.success(), "the reader exits 0 on SIGTERM: {status}");
}

#[test]
fn read_follow_runs_beside_a_live_appender() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let source = dir.path().join("app.log");
    let (l, s) = (dir_arg(&log), dir_arg(&source));
    fs::write(&source, b"first\n").unwrap();
    let appender = Running::start(&["log", "append", "--dir", &l, "--follow", &s], false);
    await_records(&log, &["first"]);
    let reader = Running::start(&["log", "read", "--dir", &l, "--follow"], true);
    assert_eq!(reader.await_lines(1), lines(&["first"]));
    OpenOptions::new()
        .append(true)
        .open(&source)
        .unwrap()
        .write_all(b"second\n")
        .unwrap();
    assert_eq!(reader.await_lines(1), lines(&["second"]));
    assert!(reader.terminate().success());
    assert!(appender.terminate().success());
}

/// Awaits the log holding exactly `expected`, read by a separate `runnel log read` (which
/// opens the log read-only beside the running appender).
fn await_records(log: &std::path::Path, expected: &[&str]) {
    let expected = lines(expected);
    await_condition(&format!("the log to hold {expected:?}"), || {
        let output = run(&["log", "read", "--dir", &dir_arg(log)], b"");
        if !output.status.success() {
            return false; // the appender has not created the log yet
        }
        let values = split_lines(&output.stdout);
        assert!(
            values.len() <= expected.len(),
            "more records than expected: {values:?}"
        );
        values == expected
    });
}
