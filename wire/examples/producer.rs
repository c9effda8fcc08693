//! Sends messages with the native producer in each of its modes: synchronous, asynchronous
//! (many in flight), ordered by key, as one batch, and one-way.
//!
//! Start a broker on 127.0.0.1:10911 first (`runnel broker`), then:
//!
//! ```text
//! cargo run -p wire --example producer
//! RUNNEL_BOOTSTRAP=10.0.0.5:10911 cargo run -p wire --example producer
//! ```
//!
//! The example creates the topic `example-orders` (4 queues) if it does not exist. Run
//! `push_consumer` or `pull_consumer` alongside to see the messages arrive.

use std::time::Instant;

use wire::client::{
    Admin, Client, ClientConfig, Compression, Producer, ProducerConfig, QueueSelector,
};
use wire::{ErrorCode, Message};

const TOPIC: &str = "example-orders";
const ASYNC_MESSAGES: usize = 10_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap =
        std::env::var("RUNNEL_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:10911".to_owned());
    let client = Client::connect(ClientConfig::with_bootstrap([bootstrap])).await?;
    ensure_topic(&client).await?;

    // Synchronous: each send waits for its receipt.
    let producer = Producer::new(&client, ProducerConfig::default())?;
    for (n, tag) in ["TagA", "TagB", "TagC"].iter().enumerate() {
        let message = Message::new(TOPIC, format!("sync message {n}"))
            .with_tag(*tag)
            .with_key(format!("sync-{n}"));
        let receipt = producer.send(message).await?;
        println!(
            "sync   {tag}: queue {} offset {} id {}",
            receipt.queue, receipt.offset, receipt.message_id
        );
    }

    // Asynchronous: queue many, then await the receipts. Batches fill per queue.
    let started = Instant::now();
    let mut pending = Vec::with_capacity(ASYNC_MESSAGES);
    for n in 0..ASYNC_MESSAGES {
        let message = Message::new(TOPIC, format!("async message {n}")).with_tag("TagA");
        pending.push(producer.send_async(message).await?);
    }
    let mut stored = 0;
    for handle in pending {
        handle.await?;
        stored += 1;
    }
    println!("async: {stored} messages stored in {:?}", started.elapsed());

    // Ordered: one order's messages share a key, so they share a queue and keep their order.
    let ordered = Producer::new(
        &client,
        ProducerConfig {
            queue_selector: QueueSelector::KeyHash,
            max_in_flight_per_queue: 1,
            compression: Compression::Zstd,
            ..ProducerConfig::default()
        },
    )?;
    for step in ["created", "paid", "shipped"] {
        let message = Message::new(TOPIC, format!("order-42 {step}"))
            .with_tag("TagB")
            .with_key("order-42");
        let receipt = ordered.send(message).await?;
        println!(
            "order-42 {step}: queue {} offset {}",
            receipt.queue, receipt.offset
        );
    }

    // A batch: one request, one queue, consecutive offsets.
    let batch = (0..5)
        .map(|n| Message::new(TOPIC, format!("batch message {n}")).with_tag("TagA"))
        .collect();
    let receipts = ordered.send_batch(batch).await?;
    println!(
        "batch: queue {} offsets {}..={}",
        receipts[0].queue,
        receipts[0].offset,
        receipts[receipts.len() - 1].offset
    );

    // One-way: no answer, no retry (logs, metrics, anything that may be lost).
    for n in 0..10 {
        producer
            .send_one_way(Message::new(TOPIC, format!("one-way message {n}")).with_tag("TagC"))
            .await?;
    }
    println!("one-way: 10 messages sent");

    producer.close().await;
    ordered.close().await;
    client.close();
    Ok(())
}

/// Creates the example topic unless it exists.
async fn ensure_topic(client: &Client) -> Result<(), wire::Error> {
    match Admin::new(client).create_topic(TOPIC, 4, Vec::new()).await {
        Ok(_) => Ok(()),
        Err(error) if error.code() == Some(ErrorCode::TopicExists) => Ok(()),
        Err(error) => Err(error),
    }
}
