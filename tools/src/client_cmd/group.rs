//! `runnel group list|describe|reset-offsets`.
//!
//! `describe` prints one row per queue — committed offset, end offset, lag, owner — then the
//! total lag, as `kafka-consumer-groups --describe` does. `reset-offsets` prints the plan and
//! changes nothing unless `--execute` is given; the broker refuses it while the group has
//! live members.

use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use serde::Serialize;
use wire::client::Admin;
use wire::protocol::{GroupDescription, GroupState, OffsetSpec};

use super::{block_on, print_json, ConnectArgs};
use crate::output::{or_dash, Table};
use crate::time_spec::parse_since;

#[derive(Debug, Args)]
pub struct GroupArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// List consumer groups with their state and member count.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a group's members and, per queue, committed offset, end offset and lag.
    Describe {
        group: String,
        #[arg(long)]
        json: bool,
    },
    /// Move a group's committed offsets (dry run unless --execute).
    ResetOffsets {
        group: String,
        /// Only this topic (default: every topic the group has offsets for).
        #[arg(long)]
        topic: Option<String>,
        /// To the oldest stored message.
        #[arg(long, group = "target", required = true)]
        to_earliest: bool,
        /// To the end: skip everything not yet consumed.
        #[arg(long, group = "target")]
        to_latest: bool,
        /// To the first message at or after TIME (10m, 2026-11-21T10:00:00Z, epoch ms).
        #[arg(long, group = "target", value_name = "TIME")]
        to_time: Option<String>,
        /// Apply the plan (without it, only print it).
        #[arg(long)]
        execute: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: GroupArgs) -> anyhow::Result<ExitCode> {
    block_on(async move {
        let client = args.connect.client("runnel-group").await?;
        let admin = Admin::new(&client);
        match args.command {
            GroupCommand::List { json } => {
                let groups = admin.list_groups().await?;
                if json {
                    for g in &groups {
                        print_json(&serde_json::json!({
                            "group": g.group, "state": state_name(g.state), "members": g.members,
                        }))?;
                    }
                } else {
                    let mut table = Table::new(&["GROUP", "STATE", "MEMBERS"]);
                    for g in groups {
                        table.row(vec![
                            g.group,
                            state_name(g.state).to_owned(),
                            g.members.to_string(),
                        ]);
                    }
                    table.print();
                }
            }
            GroupCommand::Describe { group, json } => {
                let description = admin.describe_group(&group).await?;
                if json {
                    print_json(&JsonGroup::from(&description))?;
                } else {
                    print_group(&description);
                }
            }
            GroupCommand::ResetOffsets {
                group,
                topic,
                to_earliest: _,
                to_latest,
                to_time,
                execute,
                json,
            } => {
                let spec = match (to_latest, to_time) {
                    (_, Some(time)) => {
                        OffsetSpec::Timestamp(parse_since(&time, SystemTime::now())?)
                    }
                    (true, None) => OffsetSpec::Latest,
                    (false, None) => OffsetSpec::Earliest,
                };
                let plan = admin
                    .reset_offsets(&group, topic.as_deref(), spec, execute)
                    .await?;
                if json {
                    for e in &plan {
                        print_json(&serde_json::json!({
                            "group": group, "topic": e.topic, "queue": e.queue,
                            "current": e.current, "new": e.new, "executed": execute,
                        }))?;
                    }
                } else {
                    let mut table =
                        Table::new(&["GROUP", "TOPIC", "QUEUE", "CURRENT-OFFSET", "NEW-OFFSET"]);
                    for e in &plan {
                        table.row(vec![
                            group.clone(),
                            e.topic.clone(),
                            e.queue.to_string(),
                            or_dash(e.current),
                            e.new.to_string(),
                        ]);
                    }
                    table.print();
                    if execute {
                        println!("applied: {} queue offsets changed", plan.len());
                    } else {
                        println!("dry run: nothing changed; add --execute to apply this plan");
                    }
                }
            }
        }
        client.close();
        Ok(ExitCode::SUCCESS)
    })?
}

fn state_name(state: GroupState) -> &'static str {
    match state {
        GroupState::Empty => "Empty",
        GroupState::Rebalancing => "Rebalancing",
        GroupState::Stable => "Stable",
    }
}

fn print_group(group: &GroupDescription) {
    println!(
        "GROUP {}  STATE {}  GENERATION {}  MEMBERS {}",
        group.group,
        state_name(group.state),
        group.generation,
        group.members.len()
    );
    let mut table = Table::new(&[
        "TOPIC",
        "QUEUE",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "OWNER",
    ]);
    let mut total = 0u64;
    for q in &group.offsets {
        total += q.lag;
        table.row(vec![
            q.topic.clone(),
            q.queue.to_string(),
            or_dash(q.committed),
            q.log_end_offset.to_string(),
            q.lag.to_string(),
            or_dash(q.owner.clone()),
        ]);
    }
    table.print();
    println!("TOTAL-LAG {total}");
    if !group.members.is_empty() {
        println!();
        let mut members = Table::new(&["MEMBER", "CLIENT", "HOST", "QUEUES"]);
        for m in &group.members {
            members.row(vec![
                m.member_id.clone(),
                m.client_id.clone(),
                m.host.clone(),
                m.assignment.len().to_string(),
            ]);
        }
        members.print();
    }
}

#[derive(Debug, Serialize)]
struct JsonGroup {
    group: String,
    state: &'static str,
    generation: u64,
    total_lag: u64,
    members: Vec<serde_json::Value>,
    queues: Vec<serde_json::Value>,
}

impl From<&GroupDescription> for JsonGroup {
    fn from(g: &GroupDescription) -> JsonGroup {
        JsonGroup {
            group: g.group.clone(),
            state: state_name(g.state),
            generation: g.generation,
            total_lag: g.offsets.iter().map(|q| q.lag).sum(),
            members: g
                .members
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "member_id": m.member_id, "client_id": m.client_id, "host": m.host,
                        "subscriptions": m.subscriptions.iter()
                            .map(|s| serde_json::json!({"topic": s.topic, "expression": s.expression}))
                            .collect::<Vec<_>>(),
                        "assignment": m.assignment.iter()
                            .map(|q| serde_json::json!({"topic": q.topic, "queue": q.queue}))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect(),
            queues: g
                .offsets
                .iter()
                .map(|q| {
                    serde_json::json!({
                        "topic": q.topic, "queue": q.queue, "committed": q.committed,
                        "log_end_offset": q.log_end_offset, "lag": q.lag, "owner": q.owner,
                    })
                })
                .collect(),
        }
    }
}
