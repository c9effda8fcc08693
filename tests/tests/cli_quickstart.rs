//! The quick-start flow with the real `runnel` binary: start a broker, create a topic, pipe
//! lines into `runnel produce`, read them back with `runnel consume`, and check a group's lag
//! and a topic's description as JSON.
//!
//! Workload: `runnel topic create demo --queues 4`; `printf 'a\nb\nc\n' | runnel produce demo`;
//! `runnel consume demo --count 3`; `runnel consume demo --group readers --count 3`;
//! `runnel group describe readers --json`; `runnel topic describe demo --json`. Every command
//! is given the broker with `--broker ADDR`.
//!
//! Checks: each command succeeds; consume prints exactly the three lines (in any order: they
//! went round-robin to different queues); after the group consume, the group's total lag is 0
//! and every queue holding messages is committed to its end; the topic description parses and
//! shows 4 queues holding 3 messages.

use serde_json::Value;
use tests::broker::BrokerProcess;
use tests::cli;

const TOPIC: &str = "demo";
const GROUP: &str = "readers";

#[test]
fn the_quick_start_flow_works_with_the_real_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let address = broker.address.clone();

    let created = runnel(&address, &["topic", "create", TOPIC, "--queues", "4"], b"");
    assert!(created.contains(TOPIC), "topic create printed {created:?}");

    runnel(&address, &["produce", TOPIC], b"a\nb\nc\n");

    let consumed = runnel(&address, &["consume", TOPIC, "--count", "3"], b"");
    assert_eq!(
        lines(&consumed),
        lines("a\nb\nc\n"),
        "consume printed {consumed:?}"
    );

    let as_group = runnel(
        &address,
        &["consume", TOPIC, "--group", GROUP, "--count", "3"],
        b"",
    );
    assert_eq!(
        lines(&as_group),
        lines("a\nb\nc\n"),
        "group consume printed {as_group:?}"
    );

    let described = runnel(&address, &["group", "describe", GROUP, "--json"], b"");
    let group: Value = serde_json::from_str(described.trim()).expect("group describe --json");
    assert_eq!(group["group"], GROUP);
    assert_eq!(group["total_lag"], 0, "{group}");
    let queues = group["queues"].as_array().expect("queues");
    assert_eq!(queues.len(), 4, "{group}");
    for queue in queues {
        assert_eq!(queue["lag"], 0, "{queue}");
        let end = queue["log_end_offset"].as_u64().expect("log_end_offset");
        if end > 0 {
            assert_eq!(queue["committed"].as_u64(), Some(end), "{queue}");
        }
    }

    let described = runnel(&address, &["topic", "describe", TOPIC, "--json"], b"");
    let topic: Value = serde_json::from_str(described.trim()).expect("topic describe --json");
    assert_eq!(topic["topic"], TOPIC);
    assert_eq!(topic["internal"], false);
    let queues = topic["queues"].as_array().expect("queues");
    assert_eq!(queues.len(), 4, "{topic}");
    let stored: u64 = queues
        .iter()
        .map(|q| q["log_end_offset"].as_u64().expect("log_end_offset"))
        .sum();
    assert_eq!(stored, 3, "{topic}");

    let status = broker.terminate();
    assert!(status.success(), "the broker exited with {status}");
}

/// Runs `runnel ARGS --broker ADDRESS` with `stdin`; asserts it succeeded; returns stdout.
fn runnel(address: &str, args: &[&str], stdin: &[u8]) -> String {
    let mut args = args.to_vec();
    args.extend(["--broker", address]);
    cli::run_ok(&args, stdin)
}

/// The lines of a command's output, sorted (their order across queues is not defined).
fn lines(output: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = output.lines().collect();
    lines.sort_unstable();
    lines
}
