//! `runnel cluster status`: the cluster as a broker sees it — the coordinator, the controller,
//! the live brokers, and where every topic's queues are led (from `ListTopics` and
//! `QueryRoute`, internal topics included). A table by default, one JSON document with
//! `--json`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;
use wire::client::Admin;

use super::{block_on, print_json, ConnectArgs};
use crate::output::Table;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Brokers, controller, and the leader of every queue of every topic.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Serialize)]
struct Status {
    coordinator: String,
    cluster: String,
    controller: Option<u32>,
    brokers: Vec<Broker>,
    topics: Vec<Placement>,
}

#[derive(Debug, Serialize)]
struct Broker {
    broker_id: u32,
    address: String,
    started_at_ms: i64,
}

#[derive(Debug, Serialize)]
struct Placement {
    topic: String,
    internal: bool,
    /// Queue numbers by leader broker id.
    leaders: BTreeMap<u32, Vec<u32>>,
}

pub fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    block_on(async move {
        let client = args.connect.client("runnel-cluster").await?;
        let admin = Admin::new(&client);
        let ClusterCommand::Status { json } = args.command;
        let cluster = admin.describe_cluster().await?;
        let mut topics = Vec::new();
        for topic in admin.list_topics(true).await? {
            let route = match admin.query_route(&topic.name).await {
                Ok(route) => route,
                // Deleted since it was listed.
                Err(e) if e.code() == Some(wire::ErrorCode::UnknownTopic) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut leaders: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
            for queue in route.queues {
                leaders.entry(queue.leader).or_default().push(queue.queue);
            }
            for queues in leaders.values_mut() {
                queues.sort_unstable();
            }
            topics.push(Placement {
                topic: topic.name,
                internal: topic.internal,
                leaders,
            });
        }
        client.close();
        let status = Status {
            coordinator: cluster.coordinator,
            cluster: cluster.cluster,
            controller: cluster.controller,
            brokers: cluster
                .brokers
                .into_iter()
                .map(|b| Broker {
                    broker_id: b.broker_id,
                    address: b.address,
                    started_at_ms: b.started_at_ms,
                })
                .collect(),
            topics,
        };
        if json {
            print_json(&status)?;
        } else {
            print_status(&status);
        }
        Ok(ExitCode::SUCCESS)
    })?
}

fn print_status(status: &Status) {
    let name = if status.cluster.is_empty() {
        "-"
    } else {
        status.cluster.as_str()
    };
    let controller = status
        .controller
        .map_or_else(|| "none".to_owned(), |id| id.to_string());
    println!(
        "CLUSTER {name}  COORDINATOR {}  CONTROLLER {controller}",
        status.coordinator
    );
    let mut brokers = Table::new(&["BROKER", "ADDRESS", "STARTED", "CONTROLLER"]);
    for broker in &status.brokers {
        brokers.row(vec![
            broker.broker_id.to_string(),
            broker.address.clone(),
            started(broker.started_at_ms),
            if status.controller == Some(broker.broker_id) {
                "yes".into()
            } else {
                String::new()
            },
        ]);
    }
    brokers.print();
    println!();
    let mut placement = Table::new(&["TOPIC", "INTERNAL", "LEADER", "QUEUES"]);
    for topic in &status.topics {
        for (leader, queues) in &topic.leaders {
            let live = status.brokers.iter().any(|b| b.broker_id == *leader);
            placement.row(vec![
                topic.topic.clone(),
                topic.internal.to_string(),
                if live {
                    leader.to_string()
                } else {
                    format!("{leader} (not live)")
                },
                ranges(queues),
            ]);
        }
    }
    placement.print();
}

/// A start time as RFC 3339 (UTC, seconds).
fn started(ms: i64) -> String {
    let Ok(ms) = u64::try_from(ms) else {
        return ms.to_string();
    };
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `0-3,7,9-10` for queues 0, 1, 2, 3, 7, 9, 10 (sorted input).
fn ranges(queues: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = queues.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_lists_print_as_ranges() {
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[4]), "4");
        assert_eq!(ranges(&[0, 1, 2, 3, 7, 9, 10]), "0-3,7,9-10");
        assert_eq!(ranges(&[0, 2, 4]), "0,2,4");
    }
}
