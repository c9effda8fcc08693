//! `runnel log append`, `read` and `stats` through the real binary: what goes in as lines
//! comes back byte for byte, from any offset or time, as text or JSON.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{dir_arg, lines, read_values, run, run_ok, split_lines, stats_json};

/// Lines that are not plain text: invalid UTF-8, a kept `\r`, an empty line, a NUL.
const AWKWARD_INPUT: &[u8] = b"plain\ncaf\xe9 latin-1\r\n\n\0nul\nlast without newline";

#[test]
fn stdin_lines_read_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    run_ok(&["log", "append", "--dir", &d], AWKWARD_INPUT);
    let out = run_ok(&["log", "read", "--dir", &d], b"");
    let mut expected = AWKWARD_INPUT.to_vec();
    expected.push(b'\n'); // the last line comes back terminated
    assert_eq!(out, expected);
}

#[test]
fn files_and_stdin_are_appended_in_order_with_any_codec() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.txt");
    let second = dir.path().join("second.txt");
    std::fs::write(&first, AWKWARD_INPUT).unwrap();
    std::fs::write(&second, b"s1\ns2\n").unwrap();
    let (first, second) = (dir_arg(&first), dir_arg(&second));
    let log = dir.path().join("log");
    let l = dir_arg(&log);
    run_ok(
        &[
            "log", "append", "--dir", &l, "-c", "zstd", &first, "-", &second,
        ],
        b"from stdin\n",
    );
    run_ok(
        &[
            "log",
            "append",
            "--dir",
            &l,
            "--compression",
            "lz4",
            &second,
        ],
        b"",
    );
    let mut expected = split_lines(&[AWKWARD_INPUT, b"\n"].concat());
    expected.extend(lines(&["from stdin", "s1", "s2", "s1", "s2"]));
    assert_eq!(read_values(&log), expected);
}

#[test]
fn many_lines_span_batches_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    let input: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    run_ok(
        &["log", "append", "--dir", &d, "--segment-bytes", "16384"],
        input.as_bytes(),
    );
    assert_eq!(read_values(dir.path()), split_lines(input.as_bytes()));
    let stats = stats_json(dir.path());
    assert!(stats["segment_count"].as_u64().unwrap() > 1, "{stats}");
}

#[test]
fn from_offset_skips_earlier_records_of_the_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    // One append of ten short lines is one batch, so offset 3 lies inside it.
    let input: String = (0..10).map(|i| format!("r{i}\n")).collect();
    run_ok(&["log", "append", "--dir", &d], input.as_bytes());
    let out = run_ok(&["log", "read", "--dir", &d, "--from-offset", "3"], b"");
    assert_eq!(
        split_lines(&out),
        lines(&["r3", "r4", "r5", "r6", "r7", "r8", "r9"])
    );
    let out = run_ok(
        &[
            "log",
            "read",
            "--dir",
            &d,
            "--from-offset",
            "3",
            "--count",
            "2",
        ],
        b"",
    );
    assert_eq!(split_lines(&out), lines(&["r3", "r4"]));
    let out = run_ok(&["log", "read", "--dir", &d, "--from-offset", "10"], b"");
    assert!(out.is_empty());
}

#[test]
fn since_starts_at_the_first_record_at_or_after_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    run_ok(&["log", "append", "--dir", &d], b"old 1\nold 2\n");
    let first_time = record_timestamps(&d)[1];
    // Appends stamp the wall clock: wait until it has moved past the first batch's time.
    common::await_condition("the clock to pass the first append", || {
        now_ms() > first_time
    });
    run_ok(&["log", "append", "--dir", &d], b"new 1\nnew 2\n");
    let second_time = record_timestamps(&d)[2];
    assert!(second_time > first_time);

    let since = second_time.to_string();
    let out = run_ok(&["log", "read", "--dir", &d, "--since", &since], b"");
    assert_eq!(split_lines(&out), lines(&["new 1", "new 2"]));
    let out = run_ok(&["log", "read", "--dir", &d, "--since", "1h"], b"");
    assert_eq!(
        split_lines(&out).len(),
        4,
        "everything is younger than an hour"
    );
    let out = run_ok(
        &[
            "log",
            "read",
            "--dir",
            &d,
            "--since",
            "2200-01-01T00:00:00Z",
        ],
        b"",
    );
    assert!(out.is_empty());
}

#[test]
fn json_has_one_object_per_record_and_keeps_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    run_ok(&["log", "append", "--dir", &d], AWKWARD_INPUT);
    let out = run_ok(&["log", "read", "--dir", &d, "--json"], b"");
    let records: Vec<serde_json::Value> = split_lines(&out)
        .iter()
        .map(|line| serde_json::from_slice(line).expect("each line is a JSON object"))
        .collect();
    assert_eq!(records.len(), 5);
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record["offset"], index as u64);
        assert!(record["timestamp"].as_i64().unwrap() > 0);
        assert!(record["key"].is_null());
        assert_eq!(record["headers"], serde_json::json!([]));
    }
    assert_eq!(records[0]["value"], "plain");
    assert!(
        records[0].get("value_base64").is_none(),
        "valid UTF-8 needs no base64"
    );
    assert_eq!(records[1]["value"], "caf\u{fffd} latin-1\r");
    let exact = STANDARD
        .decode(records[1]["value_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(exact, b"caf\xe9 latin-1\r");
    assert_eq!(records[2]["value"], "");
}

#[test]
fn stats_json_describes_offsets_segments_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    let input: String = (0..2000).map(|i| format!("value {i}\n")).collect();
    run_ok(
        &["log", "append", "--dir", &d, "--segment-bytes", "8192"],
        input.as_bytes(),
    );
    let stats = stats_json(dir.path());
    assert_eq!(stats["log_start_offset"], 0);
    assert_eq!(stats["log_end_offset"], 2000);
    assert_eq!(stats["records"], 2000);
    assert_eq!(
        stats["high_watermark"], 2000,
        "a standalone log commits what it appends"
    );
    assert_eq!(
        stats["recovery_point"], 2000,
        "a clean close syncs everything"
    );
    let segments = stats["segments"].as_array().unwrap();
    assert_eq!(stats["segment_count"], segments.len());
    assert!(segments.len() > 1);
    assert_eq!(segments[0]["file"], "00000000000000000000.log");
    let total: u64 = segments
        .iter()
        .map(|s| s["size_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(stats["size_bytes"], total);
    for pair in segments.windows(2) {
        assert_eq!(pair[0]["next_offset"], pair[1]["base_offset"]);
    }
    let oldest = stats["oldest_timestamp"].as_i64().unwrap();
    let newest = stats["newest_timestamp"].as_i64().unwrap();
    assert!(0 < oldest && oldest <= newest, "{stats}");

    let text = String::from_utf8(run_ok(&["log", "stats", "--dir", &d], b"")).unwrap();
    assert!(text.contains("0..2000 (2000 records)"), "{text}");
    assert!(text.contains("00000000000000000000.log"), "{text}");
}

#[test]
fn readers_refuse_a_missing_or_foreign_directory_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir_arg(&dir.path().join("missing"));
    let empty = dir_arg(dir.path());
    for command in ["read", "stats", "verify"] {
        let output = run(&["log", command, "--dir", &missing], b"");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command} on a missing directory"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("does not exist"), "{command}: {stderr}");
        let output = run(&["log", command, "--dir", &empty], b"");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command} on a directory without segments"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("not a log directory"),
            "{command}: {stderr}"
        );
    }
    assert!(
        !dir.path().join("missing").exists(),
        "readers never create a log"
    );
}

#[test]
fn reading_past_the_log_end_without_follow_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    run_ok(&["log", "append", "--dir", &d], b"one\n");
    let output = run(&["log", "read", "--dir", &d, "--from-offset", "5"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("past the log end 1"));
}

fn record_timestamps(dir: &str) -> Vec<i64> {
    let out = run_ok(&["log", "read", "--dir", dir, "--json"], b"");
    split_lines(&out)
        .iter()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_slice(line).unwrap();
            record["timestamp"].as_i64().unwrap()
        })
        .collect()
}

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_millis()).unwrap()
}
