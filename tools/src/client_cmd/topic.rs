//! `runnel topic create|list|describe|delete`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;
use wire::client::Admin;
use wire::protocol::TopicDescription;

use super::{block_on, print_json, ConnectArgs};
use crate::output::Table;

#[derive(Debug, Args)]
pub struct TopicArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic with N queues.
    Create {
        name: String,
        /// Number of queues (partitions).
        #[arg(long, short = 'q', default_value_t = 4)]
        queues: u32,
        /// Topic setting KEY=VALUE (repeatable).
        #[arg(long = "config", short = 'c', value_parser = parse_setting)]
        config: Vec<(String, String)>,
        #[arg(long)]
        json: bool,
    },
    /// List topics.
    List {
        /// Include internal topics (consumer offsets).
        #[arg(long)]
        internal: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show a topic's queues: leader, offsets, size.
    Describe {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a topic and its data.
    Delete { name: String },
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    Ok((key.trim().to_owned(), value.trim().to_owned()))
}

pub fn run(args: TopicArgs) -> anyhow::Result<ExitCode> {
    block_on(async move {
        let client = args.connect.client("runnel-topic").await?;
        let admin = Admin::new(&client);
        match args.command {
            TopicCommand::Create {
                name,
                queues,
                config,
                json,
            } => {
                let topic = admin.create_topic(&name, queues, config).await?;
                if json {
                    print_json(&JsonTopic::from(&topic))?;
                } else {
                    println!(
                        "created topic {} with {} queues",
                        topic.name,
                        topic.queues.len()
                    );
                }
            }
            TopicCommand::List { internal, json } => {
                let topics = admin.list_topics(internal).await?;
                if json {
                    for topic in &topics {
                        print_json(&serde_json::json!({
                            "topic": topic.name, "queues": topic.queues, "internal": topic.internal,
                        }))?;
                    }
                } else {
                    let mut table = Table::new(&["TOPIC", "QUEUES", "INTERNAL"]);
                    for topic in topics {
                        table.row(vec![
                            topic.name,
                            topic.queues.to_string(),
                            topic.internal.to_string(),
                        ]);
                    }
                    table.print();
                }
            }
            TopicCommand::Describe { name, json } => {
                let topic = admin.describe_topic(&name).await?;
                if json {
                    print_json(&JsonTopic::from(&topic))?;
                } else {
                    print_topic(&topic);
                }
            }
            TopicCommand::Delete { name } => {
                admin.delete_topic(&name).await?;
                println!("deleted topic {name}");
            }
        }
        client.close();
        Ok(ExitCode::SUCCESS)
    })?
}

fn print_topic(topic: &TopicDescription) {
    let settings: Vec<String> = topic
        .config
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "TOPIC {}  QUEUES {}  INTERNAL {}  CONFIG {}",
        topic.name,
        topic.queues.len(),
        topic.internal,
        if settings.is_empty() {
            "-".to_owned()
        } else {
            settings.join(",")
        }
    );
    let mut table = Table::new(&[
        "QUEUE",
        "LEADER",
        "EPOCH",
        "LOG-START",
        "LOG-END",
        "HIGH-WATERMARK",
        "SIZE-BYTES",
    ]);
    for q in &topic.queues {
        table.row(vec![
            q.queue.to_string(),
            q.leader.to_string(),
            q.leader_epoch.to_string(),
            q.log_start_offset.to_string(),
            q.log_end_offset.to_string(),
            q.high_watermark.to_string(),
            q.size_bytes.to_string(),
        ]);
    }
    table.print();
}

#[derive(Debug, Serialize)]
struct JsonTopic {
    topic: String,
    internal: bool,
    config: std::collections::BTreeMap<String, String>,
    queues: Vec<JsonQueue>,
}

#[derive(Debug, Serialize)]
struct JsonQueue {
    queue: u32,
    leader: u32,
    leader_epoch: u32,
    log_start_offset: u64,
    log_end_offset: u64,
    high_watermark: u64,
    size_bytes: u64,
}

impl From<&TopicDescription> for JsonTopic {
    fn from(topic: &TopicDescription) -> JsonTopic {
        JsonTopic {
            topic: topic.name.clone(),
            internal: topic.internal,
            config: topic.config.iter().cloned().collect(),
            queues: topic
                .queues
                .iter()
                .map(|q| JsonQueue {
                    queue: q.queue,
                    leader: q.leader,
                    leader_epoch: q.leader_epoch,
                    log_start_offset: q.log_start_offset,
                    log_end_offset: q.log_end_offset,
                    high_watermark: q.high_watermark,
                    size_bytes: q.size_bytes,
                })
                .collect(),
        }
    }
}
