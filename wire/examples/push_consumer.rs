//! Consumes with a push consumer: the broker assigns this member queues of
//! `example-orders`, and a listener is called with each queue's messages in order.
//!
//! Start a broker on 127.0.0.1:10911 (`runnel broker`) and send something with the
//! `producer` example, then:
//!
//! ```text
//! cargo run -p wire --example push_consumer
//! ```
//!
//! Stop it with Ctrl-C: it commits its positions and leaves the group. Start two at once to
//! watch the queues split between them (and move back when one stops). `RUNNEL_BOOTSTRAP`
//! names another broker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wire::client::{
    Client, ClientConfig, ConsumeFrom, ConsumeResult, PushConsumer, PushConsumerConfig,
};

const TOPIC: &str = "example-orders";
const GROUP: &str = "example-push";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap =
        std::env::var("RUNNEL_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:10911".to_owned());
    let client = Client::connect(ClientConfig::with_bootstrap([bootstrap])).await?;

    // A new group reads what is already stored; later runs go on from the committed offsets.
    let config = PushConsumerConfig::new(GROUP)
        .subscribe(TOPIC, "TagA || TagB")
        .consume_from(ConsumeFrom::First);
    let consumed = Arc::new(AtomicU64::new(0));
    let counter = consumed.clone();
    let consumer = PushConsumer::new(&client, config, move |messages| {
        for message in messages {
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            if n <= 20 || n.is_multiple_of(1000) {
                println!(
                    "#{n} queue {} offset {} tag {:?}: {}",
                    message.queue,
                    message.offset,
                    message.tag,
                    String::from_utf8_lossy(&message.body)
                );
            }
        }
        ConsumeResult::Success
    })?;
    consumer.start().await?;
    println!(
        "member {} consuming {TOPIC}; Ctrl-C to stop",
        consumer.member_id()
    );

    tokio::signal::ctrl_c().await?;
    consumer.shutdown().await;
    println!("consumed {} messages", consumed.load(Ordering::Relaxed));
    Ok(())
}
