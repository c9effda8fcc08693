//! Consumes with a pull consumer: the application polls for messages and commits.
//!
//! Start a broker on 127.0.0.1:10911 (`runnel broker`) and send something with the
//! `producer` example, then either join a group (queues assigned by the broker):
//!
//! ```text
//! cargo run -p wire --example pull_consumer
//! ```
//!
//! or read queue 0 yourself from its first message, without a group:
//!
//! ```text
//! cargo run -p wire --example pull_consumer -- --assign
//! ```
//!
//! Stop it with Ctrl-C. `RUNNEL_BOOTSTRAP` names another broker.

use std::time::Duration;

use wire::client::{Client, ClientConfig, ConsumeFrom, PullConsumer, PullConsumerConfig, QueueRef};

const TOPIC: &str = "example-orders";
const GROUP: &str = "example-pull";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap =
        std::env::var("RUNNEL_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:10911".to_owned());
    let client = Client::connect(ClientConfig::with_bootstrap([bootstrap])).await?;
    let assign = std::env::args().any(|a| a == "--assign");

    let consumer = if assign {
        // No group: nothing is committed, and ConsumeFrom decides the start.
        let config = PullConsumerConfig {
            consume_from: ConsumeFrom::First,
            auto_commit_interval: None,
            ..PullConsumerConfig::new("")
        };
        let consumer = PullConsumer::new(&client, config)?;
        consumer
            .assign(vec![QueueRef {
                topic: TOPIC.to_owned(),
                queue: 0,
            }])
            .await?;
        consumer.seek_to_beginning(TOPIC, 0).await?;
        consumer
    } else {
        // Auto-commit off: this example commits after processing each poll.
        let config = PullConsumerConfig {
            consume_from: ConsumeFrom::First,
            auto_commit_interval: None,
            ..PullConsumerConfig::new(GROUP)
        };
        let consumer = PullConsumer::new(&client, config)?;
        consumer.subscribe(TOPIC, "*").await?;
        consumer
    };

    let mut total = 0u64;
    loop {
        let polled = tokio::select! {
            polled = consumer.poll(Duration::from_secs(1)) => polled?,
            _ = tokio::signal::ctrl_c() => break,
        };
        for message in &polled {
            total += 1;
            if total <= 20 || total.is_multiple_of(1000) {
                println!(
                    "#{total} queue {} offset {} tag {:?}: {}",
                    message.queue,
                    message.offset,
                    message.tag,
                    String::from_utf8_lossy(&message.body)
                );
            }
        }
        if !polled.is_empty() && !assign {
            consumer.commit().await?;
        }
    }
    consumer.close().await;
    println!("consumed {total} messages from {:?}", consumer.assignment());
    Ok(())
}
