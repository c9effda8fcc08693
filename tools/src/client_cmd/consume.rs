//! `runnel consume TOPIC`: print messages, one body per line (or one JSON object per line
//! with `--json`), until `--count` messages or Ctrl-C.
//!
//! With `--group`, the command is a member of that consumer group: it gets queues from the
//! group, starts where the group committed (or at `--from` for queues without a commit) and
//! commits what it printed. Without `--group` it reads every queue of the topic from `--from`
//! and commits nothing. `--from` is `earliest` (the default: a console reader wants what is
//! there), `latest`, or a time (`10m` ago, RFC 3339, or epoch milliseconds).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Args;
use serde::Serialize;
use wire::client::{Admin, ConsumeFrom, PullConsumer, PullConsumerConfig, TagFilter};
use wire::protocol::GroupStrategy;
use wire::protocol::QueueRef;
use wire::ReceivedMessage;

use super::{block_on, ConnectArgs};
use crate::time_spec::parse_since;

/// How long one poll waits before checking for Ctrl-C and the count again.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    topic: String,
    /// Consume as a member of this consumer group (committing offsets).
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Where to start without a committed offset: earliest, latest, or a time
    /// (10m, 2026-11-21T10:00:00Z, epoch ms).
    #[arg(long, default_value = "earliest")]
    from: String,
    /// Tag expression: '*' or 'TagA || TagB'.
    #[arg(long = "tags", short = 't', default_value = "*")]
    tags: String,
    /// How the group's queues are split among its members: averagely,
    /// averagely-by-circle, consistent-hash or sticky (the group uses the choice of its
    /// lowest member id).
    #[arg(long, default_value = "averagely")]
    strategy: GroupStrategy,
    /// Exit after this many messages.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// One JSON object per message: topic, queue, offset, message_id, tag, keys, properties,
    /// born_timestamp, body (body_base64 too when the body is not UTF-8).
    #[arg(long)]
    json: bool,
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    block_on(consume(args))?
}

fn parse_from(spec: &str) -> anyhow::Result<ConsumeFrom> {
    Ok(match spec {
        "earliest" | "first" | "beginning" => ConsumeFrom::First,
        "latest" | "last" | "end" => ConsumeFrom::Last,
        time => ConsumeFrom::Timestamp(parse_since(time, SystemTime::now())?),
    })
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let from = parse_from(&args.from)?;
    let filter = TagFilter::parse(&args.tags).context("--tags")?;
    let client = args.connect.client("runnel-consume").await?;
    let mut config = PullConsumerConfig::new(args.group.clone().unwrap_or_default());
    config.consume_from = from;
    config.strategy = args.strategy;
    config.pull_wait = Duration::from_secs(1);
    let consumer = PullConsumer::new(&client, config)?;
    if args.group.is_some() {
        consumer
            .subscribe(args.topic.clone(), args.tags.clone())
            .await?;
    } else {
        let topic = Admin::new(&client).describe_topic(&args.topic).await?;
        let queues = topic
            .queues
            .iter()
            .map(|q| QueueRef {
                topic: topic.name.clone(),
                queue: q.queue,
            })
            .collect();
        consumer.assign(queues).await?;
    }
    let mut printed = 0u64;
    let mut stdout = std::io::stdout().lock();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    'consuming: while args.count.is_none_or(|count| printed < count) {
        let messages = tokio::select! {
            polled = consumer.poll(POLL_TIMEOUT) => polled?,
            _ = &mut interrupted => break,
        };
        for message in messages {
            if !filter.matches(message.tag.as_deref()) {
                continue;
            }
            print_message(&mut stdout, &message, args.json)?;
            printed += 1;
            if args.count.is_some_and(|count| printed >= count) {
                break 'consuming;
            }
        }
        stdout.flush()?;
    }
    stdout.flush()?;
    drop(stdout);
    if args.group.is_some() {
        consumer.commit().await.context("committing offsets")?;
    }
    consumer.close().await;
    client.close();
    Ok(ExitCode::SUCCESS)
}

fn print_message(
    out: &mut impl Write,
    message: &ReceivedMessage,
    json: bool,
) -> anyhow::Result<()> {
    if !json {
        out.write_all(&message.body)?;
        out.write_all(b"\n")?;
        return Ok(());
    }
    let body = String::from_utf8_lossy(&message.body);
    let exact = matches!(body, std::borrow::Cow::Borrowed(_));
    let line = JsonMessage {
        topic: &message.topic,
        queue: message.queue,
        offset: message.offset,
        message_id: &message.message_id,
        tag: message.tag.as_deref(),
        keys: &message.keys,
        properties: message.properties.iter().cloned().collect(),
        born_timestamp: message.born_timestamp,
        body: &body,
        body_base64: (!exact).then(|| STANDARD.encode(&message.body)),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")?;
    Ok(())
}

#[derive(Debug, Serialize)]
struct JsonMessage<'a> {
    topic: &'a str,
    queue: u32,
    offset: u64,
    message_id: &'a str,
    tag: Option<&'a str>,
    keys: &'a [String],
    properties: std::collections::BTreeMap<String, String>,
    born_timestamp: i64,
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}
