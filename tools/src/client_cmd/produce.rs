//! `runnel produce TOPIC`: send stdin lines (one message each) or `--count N --size B`
//! generated messages, with optional tag, keys, properties and compression.
//!
//! Sends are pipelined (`send_async`) with a bounded window of receipts awaited in order, so
//! a large file goes at the producer's batching speed. With `--json`, each receipt is printed
//! as one line (`{"queue":..,"offset":..,"message_id":..}`); otherwise a summary goes to
//! stderr. Any failed send makes the command fail after the rest were tried.

use std::collections::VecDeque;
use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use log_core::Compression;
use wire::client::{Producer, ProducerConfig, QueueSelector, SendHandle};
use wire::Message;

use super::{block_on, print_json, ConnectArgs};

/// Receipts awaited at most this far behind the newest send.
const RECEIPTS_IN_FLIGHT_MAX: usize = 16_384;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    topic: String,
    /// Tag of every message (RocketMQ tags; consumers filter on them).
    #[arg(long = "tags", short = 't')]
    tag: Option<String>,
    /// Business keys of every message, comma-separated; with --order-by-key the first key
    /// picks the queue, so messages with one key stay in order.
    #[arg(long, short = 'k', value_delimiter = ',')]
    keys: Vec<String>,
    /// Property NAME=VALUE on every message (repeatable).
    #[arg(long = "property", short = 'p', value_parser = parse_property)]
    properties: Vec<(String, String)>,
    /// Send each message to the queue its first key hashes to (ordered messages).
    #[arg(long)]
    order_by_key: bool,
    /// Compress batches larger than 4 KiB: none, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: Compression,
    /// Send N generated messages instead of reading stdin.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Body size in bytes of generated messages.
    #[arg(long, short = 's', default_value_t = 100, requires = "count")]
    size: usize,
    /// Print each receipt as a JSON line on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))?;
    Ok((name.to_owned(), value.to_owned()))
}

pub fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    block_on(produce(args))?
}

async fn produce(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client("runnel-produce").await?;
    let config = ProducerConfig {
        compression: args.compression,
        queue_selector: if args.order_by_key {
            QueueSelector::KeyHash
        } else {
            QueueSelector::RoundRobin
        },
        ..ProducerConfig::default()
    };
    let producer = Producer::new(&client, config)?;
    let mut window = Window {
        pending: VecDeque::new(),
        sent: 0,
        failed: 0,
        json: args.json,
    };
    let template = |body: Bytes| {
        let mut message = Message::new(args.topic.clone(), body);
        message.tag = args.tag.clone();
        message.keys = args.keys.clone();
        message.properties = args.properties.clone();
        message
    };
    match args.count {
        Some(count) => {
            for i in 0..count {
                window
                    .push(
                        producer
                            .send_async(template(generated_body(i, args.size)))
                            .await,
                    )
                    .await?;
            }
        }
        None => {
            // Blocking stdin reads go to a thread; lines come over a bounded channel.
            let (lines_tx, mut lines_rx) =
                tokio::sync::mpsc::channel::<std::io::Result<String>>(1024);
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    if lines_tx.blocking_send(line).is_err() {
                        break;
                    }
                }
            });
            while let Some(line) = lines_rx.recv().await {
                let line = line.context("reading stdin")?;
                window
                    .push(producer.send_async(template(Bytes::from(line))).await)
                    .await?;
            }
        }
    }
    window.drain().await?;
    producer.close().await;
    client.close();
    eprintln!(
        "produced {} messages to {}{}",
        window.sent,
        args.topic,
        if window.failed > 0 {
            format!(", {} failed", window.failed)
        } else {
            String::new()
        }
    );
    if window.failed > 0 {
        anyhow::bail!(
            "{} of {} messages were not sent",
            window.failed,
            window.sent + window.failed
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Bodies for generated messages: the message number, then filler up to `size` bytes.
fn generated_body(i: u64, size: usize) -> Bytes {
    let mut body = format!("message-{i} ").into_bytes();
    body.resize(size.max(1), b'x');
    body.truncate(size);
    Bytes::from(body)
}

/// Receipts not yet awaited, oldest first.
struct Window {
    pending: VecDeque<SendHandle>,
    sent: u64,
    failed: u64,
    json: bool,
}

impl Window {
    async fn push(&mut self, handle: wire::Result<SendHandle>) -> anyhow::Result<()> {
        match handle {
            Ok(handle) => self.pending.push_back(handle),
            Err(error) => {
                eprintln!("error: {error}");
                self.failed += 1;
            }
        }
        while self.pending.len() > RECEIPTS_IN_FLIGHT_MAX {
            self.await_oldest().await?;
        }
        Ok(())
    }

    async fn await_oldest(&mut self) -> anyhow::Result<()> {
        let Some(handle) = self.pending.pop_front() else {
            return Ok(());
        };
        match handle.await {
            Ok(receipt) => {
                self.sent += 1;
                if self.json {
                    print_json(&serde_json::json!({
                        "topic": &*receipt.topic, "queue": receipt.queue, "offset": receipt.offset,
                        "message_id": receipt.message_id.to_string(),
                    }))?;
                }
            }
            Err(error) => {
                eprintln!("error: {error}");
                self.failed += 1;
            }
        }
        Ok(())
    }

    async fn drain(&mut self) -> anyhow::Result<()> {
        while !self.pending.is_empty() {
            self.await_oldest().await?;
        }
        Ok(())
    }
}
