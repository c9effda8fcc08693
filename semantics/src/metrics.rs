//! The broker's metrics, through the `metrics` facade: the binary installs an exporter
//! (Prometheus); without one every call here is a no-op.
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `runnel_messages_in_total` | counter | topic | records appended (from batch headers, never decompressed) |
//! | `runnel_bytes_in_total` | counter | topic | batch bytes appended |
//! | `runnel_messages_out_total` | counter | topic | records returned by pulls, at or after the offset asked for |
//! | `runnel_bytes_out_total` | counter | topic | batch bytes returned by pulls |
//! | `runnel_request_duration_seconds` | histogram | api | from dispatch to answer, long-poll waits included |
//! | `runnel_group_lag` | gauge | group, topic | messages between the group's committed offsets and the log ends |
//! | `runnel_long_polls_waiting` | gauge | — | pulls waiting for an append now |
//! | `runnel_pull_memory_held_bytes` | gauge | — | pull memory budget held by reads and their unsent responses (`pull_memory_bytes`) |
//! | `runnel_pulls_waiting_for_memory` | gauge | — | pulls waiting for that budget |
//! | `runnel_coordinator_connected` | gauge | — | 1 while the metadata store (etcd) is reachable, 0 while the broker serves from what it last saw |

use log_core::batch::BatchHeader;
use log_core::Offset;
use metrics::{counter, gauge, histogram};
use wire::protocol::ApiKey;

pub const MESSAGES_IN: &str = "runnel_messages_in_total";
pub const BYTES_IN: &str = "runnel_bytes_in_total";
pub const MESSAGES_OUT: &str = "runnel_messages_out_total";
pub const BYTES_OUT: &str = "runnel_bytes_out_total";
pub const REQUEST_DURATION: &str = "runnel_request_duration_seconds";
pub const GROUP_LAG: &str = "runnel_group_lag";
pub const LONG_POLLS_WAITING: &str = "runnel_long_polls_waiting";
pub const COORDINATOR_CONNECTED: &str = "runnel_coordinator_connected";
pub const PULL_MEMORY_HELD: &str = "runnel_pull_memory_held_bytes";
pub const PULLS_WAITING_FOR_MEMORY: &str = "runnel_pulls_waiting_for_memory";

/// Registers each metric's help text with the installed recorder (if any).
pub fn describe() {
    metrics::describe_counter!(MESSAGES_IN, "Records appended to a topic.");
    metrics::describe_counter!(BYTES_IN, "Record batch bytes appended to a topic.");
    metrics::describe_counter!(MESSAGES_OUT, "Records returned by pulls from a topic.");
    metrics::describe_counter!(
        BYTES_OUT,
        "Record batch bytes returned by pulls from a topic."
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from dispatch to answer, by API (long-poll waits included)."
    );
    metrics::describe_gauge!(
        GROUP_LAG,
        "Messages between a group's committed offsets and the log ends, by topic."
    );
    metrics::describe_gauge!(LONG_POLLS_WAITING, "Pulls waiting for an append.");
    metrics::describe_gauge!(
        PULL_MEMORY_HELD,
        metrics::Unit::Bytes,
        "Pull memory budget held by reads and their responses not yet written."
    );
    metrics::describe_gauge!(
        PULLS_WAITING_FOR_MEMORY,
        "Pulls waiting for the pull memory budget."
    );
    metrics::describe_gauge!(
        COORDINATOR_CONNECTED,
        "1 while the metadata store (etcd) is reachable, 0 while it is not."
    );
}

/// Publishes whether the coordinator's metadata store is reachable.
pub fn coordinator_connected(connected: bool) {
    gauge!(COORDINATOR_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

/// The `api` label of an API.
pub fn api_name(api: ApiKey) -> &'static str {
    match api {
        ApiKey::ApiVersions => "api_versions",
        ApiKey::Send => "send",
        ApiKey::Pull => "pull",
        ApiKey::CreateTopic => "create_topic",
        ApiKey::DeleteTopic => "delete_topic",
        ApiKey::ListTopics => "list_topics",
        ApiKey::DescribeTopic => "describe_topic",
        ApiKey::QueryRoute => "query_route",
        ApiKey::Heartbeat => "heartbeat",
        ApiKey::LeaveGroup => "leave_group",
        ApiKey::CommitOffsets => "commit_offsets",
        ApiKey::FetchOffsets => "fetch_offsets",
        ApiKey::ListGroups => "list_groups",
        ApiKey::DescribeGroup => "describe_group",
        ApiKey::ResetOffsets => "reset_offsets",
        ApiKey::OffsetForTime => "offset_for_time",
        ApiKey::DescribeCluster => "describe_cluster",
        ApiKey::NotifyAssignment => "notify_assignment",
    }
}

pub(crate) fn request_done(api: ApiKey, seconds: f64) {
    histogram!(REQUEST_DURATION, "api" => api_name(api)).record(seconds);
}

pub(crate) fn appended(topic: &str, messages: u64, bytes: u64) {
    counter!(MESSAGES_IN, "topic" => topic.to_owned()).increment(messages);
    counter!(BYTES_IN, "topic" => topic.to_owned()).increment(bytes);
}

/// Counts a pull's records from the batch headers (no decompression): those at or after
/// `from`, since the first batch may start before it.
pub(crate) fn pulled(topic: &str, from: Offset, batches: &[u8]) {
    if batches.is_empty() {
        return;
    }
    let mut messages = 0u64;
    let mut at = 0;
    while let Some(rest) = batches.get(at..).filter(|r| !r.is_empty()) {
        let Ok(prefix) = BatchHeader::parse_prefix(rest) else {
            break;
        };
        let first = prefix.base_offset().max(from);
        messages += (prefix.last_offset().0 + 1).saturating_sub(first.0);
        at += prefix.batch_size;
    }
    counter!(MESSAGES_OUT, "topic" => topic.to_owned()).increment(messages);
    counter!(BYTES_OUT, "topic" => topic.to_owned()).increment(batches.len() as u64);
}

pub(crate) fn group_lag(group: &str, topic: &str, lag: u64) {
    gauge!(GROUP_LAG, "group" => group.to_owned(), "topic" => topic.to_owned()).set(lag as f64);
}

/// Adds `amount` to a gauge for as long as it lives: a pull waiting for an append or for
/// budget (1 each), the pull memory a response holds (its bytes).
#[derive(Debug)]
pub(crate) struct GaugeShare {
    name: &'static str,
    amount: f64,
}

impl GaugeShare {
    pub(crate) fn add(name: &'static str, amount: f64) -> GaugeShare {
        gauge!(name).increment(amount);
        GaugeShare { name, amount }
    }
}

impl Drop for GaugeShare {
    fn drop(&mut self) {
        gauge!(self.name).decrement(self.amount);
    }
}
