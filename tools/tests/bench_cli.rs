//! `runnel bench` against a real broker process, with tiny counts: every phase runs, counts
//! what it should, reports JSON, and the producer cuts batches of `--batch-size` messages.
//! No timing is asserted.

mod common;

use std::path::{Path, PathBuf};

use common::{dir_arg, run, run_ok, Running};
use log_core::batch::batches;
use serde_json::Value;

const TOPIC: &str = "bench-smoke";
const MESSAGES: u64 = 200;
const BATCH: u64 = 10;

/// A broker on a free port with its data in `dir`; returns it and its address.
fn start_broker(dir: &Path) -> (Running, String) {
    let broker = Running::start(
        &[
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
            &dir_arg(dir),
        ],
        true,
    );
    let line = String::from_utf8(broker.await_lines(1).remove(0)).expect("UTF-8 line");
    let address = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    (broker, address)
}

/// Runs `runnel bench ARGS --broker ADDRESS --json` and returns its JSON report.
fn bench(address: &str, args: &[&str]) -> Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--broker", address, "--topic", TOPIC, "--json"]);
    let out = run_ok(&all, b"");
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "bench {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    })
}

fn result<'a>(report: &'a Value, phase: &str) -> &'a Value {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["phase"] == phase)
        .unwrap_or_else(|| panic!("no {phase} result in {report}"))
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let partition = dir.join("logs").join(format!("{TOPIC}-0"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&partition)
        .unwrap_or_else(|e| panic!("reading {}: {e}", partition.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_phase_runs_against_a_real_broker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (broker, address) = start_broker(dir.path());
    let count = MESSAGES.to_string();
    let batch = BATCH.to_string();

    // A long linger: only size (and the final flush) cuts batches, whatever the timing.
    let produced = bench(
        &address,
        &[
            "produce",
            "--count",
            &count,
            "--batch-size",
            &batch,
            "--message-size",
            "100",
            "--linger",
            "1m",
            "--producers",
            "2",
        ],
    );
    let produce = result(&produced, "produce");
    assert_eq!(produce["messages"], MESSAGES);
    assert_eq!(produce["errors"], 0);
    assert_eq!(produce["bytes"], MESSAGES * 100);
    assert_eq!(produce["latency_us"]["samples"], MESSAGES);
    assert!(produced["cpu"]["wall_seconds"].as_f64().expect("wall") > 0.0);

    for path in ["PullConsumer", "raw"] {
        let mut args = vec!["consume", "--count", &count];
        if path == "raw" {
            args.push("--raw");
        }
        let consumed = bench(&address, &args);
        assert_eq!(consumed["config"]["consumer_path"], path);
        let consume = result(&consumed, "consume");
        assert_eq!(consume["messages"], MESSAGES, "{path}");
        assert_eq!(consume["bytes"], MESSAGES * 100, "{path}");
        assert_eq!(consume["errors"], 0, "{path}");
    }

    let sync = bench(
        &address,
        &["produce", "--sync", "--rate", "2000", "--count", "20"],
    );
    assert_eq!(result(&sync, "produce")["messages"], 20);

    for raw in [false, true] {
        let mut args = vec!["e2e", "--count", "100", "--batch-size", "5"];
        if raw {
            args.push("--raw");
        }
        let e2e = bench(&address, &args);
        assert_eq!(result(&e2e, "produce")["messages"], 100, "raw {raw}");
        let consume = result(&e2e, "consume");
        assert_eq!(consume["messages"], 100, "raw {raw}");
        assert_eq!(consume["latency_us"]["samples"], 100, "raw {raw}");
        assert_eq!(consume["latency_measures"], "born → received");
    }

    // Raw: pre-built batches as Send requests. Each producer's share (525) ends on a short
    // batch, so each sends 6 requests.
    let raw = bench(
        &address,
        &[
            "produce",
            "--raw",
            "--count",
            "1050",
            "--batch-size",
            "100",
            "--message-size",
            "100",
            "--producers",
            "2",
        ],
    );
    assert_eq!(raw["config"]["producer_path"], "raw");
    let produce = result(&raw, "produce");
    assert_eq!(produce["messages"], 1050);
    assert_eq!(produce["bytes"], 1050 * 100);
    assert_eq!(produce["errors"], 0);
    assert_eq!(
        produce["latency_us"]["samples"], 12,
        "one sample per request"
    );
    // Every message of every run is there to read, the raw ones included.
    let total = MESSAGES + 20 + 2 * 100 + 1050;
    let consumed = bench(
        &address,
        &["consume", "--raw", "--count", &total.to_string()],
    );
    assert_eq!(result(&consumed, "consume")["messages"], total);

    assert!(broker.terminate().success(), "the broker stops cleanly");
    // The first produce run's batches: exactly --batch-size messages each.
    let files = segment_files(dir.path());
    let bytes = std::fs::read(files.first().expect("a segment")).expect("read segment");
    let sizes: Vec<u64> = batches(&bytes)
        .map_while(Result::ok)
        .map(|(_, header, _)| header.last_offset().0 - header.base_offset().0 + 1)
        .take((MESSAGES / BATCH) as usize)
        .collect();
    assert_eq!(sizes, vec![BATCH; (MESSAGES / BATCH) as usize]);
}

#[test]
fn consume_of_a_missing_topic_fails_and_loopback_measures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_broker, address) = start_broker(dir.path());
    let output = run(
        &[
            "bench", "consume", "--broker", &address, "--topic", "absent",
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("run `runnel bench produce` first"));

    let out = run_ok(&["bench", "loopback", "--duration", "100ms", "--json"], b"");
    let report: Value = serde_json::from_slice(&out).expect("JSON");
    assert!(report["bytes"].as_u64().expect("bytes") > 0);
}
