//! `runnel log verify`: exit 0 on a sound log; on a flipped byte in a sealed segment, exit 1
//! naming the segment file, position and offset.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use common::{dir_arg, run, run_ok};

/// Byte 30 lies in the first batch's base timestamp, inside the CRC-covered part.
const FLIPPED_POSITION: u64 = 30;

fn write_log_with_segments(dir: &str) {
    let input: String = (0..3000).map(|i| format!("record number {i}\n")).collect();
    run_ok(
        &["log", "append", "--dir", dir, "--segment-bytes", "8192"],
        input.as_bytes(),
    );
}

#[test]
fn a_sound_log_verifies_with_exit_code_0() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    write_log_with_segments(&d);
    let out = String::from_utf8(run_ok(&["log", "verify", "--dir", &d], b"")).unwrap();
    assert!(out.starts_with("ok: "), "{out}");
    assert!(out.contains("3000 records"), "{out}");
    let out = run_ok(&["log", "verify", "--dir", &d, "--json"], b"");
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["damage"], serde_json::json!([]));
    assert!(report["segments"].as_u64().unwrap() > 1);
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_named_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    write_log_with_segments(&d);
    let sealed = dir.path().join("00000000000000000000.log");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&sealed)
        .unwrap();
    let mut byte = [0];
    file.read_exact_at(&mut byte, FLIPPED_POSITION).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], FLIPPED_POSITION)
        .unwrap();
    drop(file);

    let output = run(&["log", "verify", "--dir", &d], b"");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("00000000000000000000.log"), "{stdout}");
    assert!(stdout.contains("offset 0"), "{stdout}");

    let output = run(&["log", "verify", "--dir", &d, "--json"], b"");
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let damage = &report["damage"][0];
    assert!(
        damage["file"]
            .as_str()
            .unwrap()
            .ends_with("00000000000000000000.log"),
        "{report}"
    );
    assert_eq!(damage["offset"], 0);
    assert_eq!(damage["position"], 0);
}
