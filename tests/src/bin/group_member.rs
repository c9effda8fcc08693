//! `group_member`: one member of a consumer group as a process of its own, so a test can kill
//! it the way a crash would (SIGKILL: no leave, no final commit, heartbeats just stop).
//!
//! A `PushConsumer` subscribed to one topic with `*`, consuming from the first offset. Usage:
//!
//! ```text
//! group_member BROKER GROUP TOPIC CLIENT_ID SESSION_TIMEOUT_MS
//! ```
//!
//! Output on stdout, one line each, flushed before the listener returns (so what a member
//! printed is what it consumed, and a commit never covers a message it did not print):
//!
//! ```text
//! member <member id>                 once, after the first heartbeat (the join)
//! delivered <queue> <offset> <n>     per message; n is its `n` property (-1 if none)
//! ```
//!
//! SIGINT shuts it down cleanly (commit, leave); anything else just ends it.

use std::io::Write;
use std::time::Duration;

use tests::payload::NUMBER_PROPERTY;
use tests::wait::client_config;
use wire::client::{Client, ConsumeFrom, ConsumeResult, PushConsumer, PushConsumerConfig};

/// Messages per listener call: fewer hand-offs than one at a time, still a small uncommitted
/// tail when the process is killed.
const CONSUME_BATCH_SIZE: usize = 16;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [broker, group, topic, client_id, session_timeout_ms] = args.as_slice() else {
        eprintln!("usage: group_member BROKER GROUP TOPIC CLIENT_ID SESSION_TIMEOUT_MS");
        std::process::exit(2);
    };
    let session_timeout = Duration::from_millis(
        session_timeout_ms
            .parse()
            .expect("SESSION_TIMEOUT_MS is a number"),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let client = Client::connect(client_config(broker, client_id))
            .await
            .expect("connect to the broker");
        let config = PushConsumerConfig {
            session_timeout,
            consume_batch_size: CONSUME_BATCH_SIZE,
            ..PushConsumerConfig::new(group.as_str())
                .subscribe(topic.as_str(), "*")
                .consume_from(ConsumeFrom::First)
        };
        let consumer = PushConsumer::new(&client, config, |messages| {
            let mut out = std::io::stdout().lock();
            for message in messages {
                let number = message
                    .property(NUMBER_PROPERTY)
                    .and_then(|n| n.parse::<i64>().ok())
                    .unwrap_or(-1);
                writeln!(
                    out,
                    "delivered {} {} {number}",
                    message.queue, message.offset
                )
                .expect("write to stdout");
            }
            out.flush().expect("flush stdout");
            ConsumeResult::Success
        })
        .expect("create the consumer");
        consumer.start().await.expect("join the group");
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "member {}", consumer.member_id()).expect("write to stdout");
            out.flush().expect("flush stdout");
        }
        let _ = tokio::signal::ctrl_c().await;
        consumer.shutdown().await;
        client.close();
    });
}
