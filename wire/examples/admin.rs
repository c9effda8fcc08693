//! Administration: broker versions, topics, routes, groups, offsets.
//!
//! Start a broker on 127.0.0.1:10911 (`runnel broker`), then:
//!
//! ```text
//! cargo run -p wire --example admin
//! ```
//!
//! It creates `example-orders` (4 queues) unless it exists, describes it, and shows the
//! example groups with a dry-run offset reset. `RUNNEL_BOOTSTRAP` names another broker.

use wire::client::{Admin, Client, ClientConfig, OffsetSpec};
use wire::message::now_ms;
use wire::ErrorCode;

const TOPIC: &str = "example-orders";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap =
        std::env::var("RUNNEL_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:10911".to_owned());
    let client = Client::connect(ClientConfig::with_bootstrap([bootstrap])).await?;
    let admin = Admin::new(&client);

    let versions = admin.api_versions().await?;
    println!(
        "broker {} runs {} ({} APIs)",
        versions.broker_id,
        versions.server_version,
        versions.apis.len()
    );

    let config = vec![("retention.ms".to_owned(), "604800000".to_owned())];
    match admin.create_topic(TOPIC, 4, config).await {
        Ok(topic) => println!("created {} with {} queues", topic.name, topic.queues.len()),
        Err(error) if error.code() == Some(ErrorCode::TopicExists) => {
            println!("{TOPIC} exists")
        }
        Err(error) => return Err(error.into()),
    }

    for topic in admin.list_topics(true).await? {
        let internal = if topic.internal { " (internal)" } else { "" };
        println!("topic {}: {} queues{internal}", topic.name, topic.queues);
    }

    let description = admin.describe_topic(TOPIC).await?;
    for queue in &description.queues {
        println!(
            "  queue {} leader {} offsets {}..{} ({} bytes)",
            queue.queue,
            queue.leader,
            queue.log_start_offset,
            queue.log_end_offset,
            queue.size_bytes
        );
    }
    let route = admin.query_route(TOPIC).await?;
    for broker in &route.brokers {
        println!("  broker {} at {}", broker.broker_id, broker.address);
    }
    let hour_ago = now_ms() - 3_600_000;
    let offset = admin.offset_for_time(TOPIC, 0, hour_ago).await?;
    println!("  queue 0: first offset of the last hour is {offset}");

    for group in admin.list_groups().await? {
        println!(
            "group {}: {:?}, {} members",
            group.group, group.state, group.members
        );
        let description = admin.describe_group(&group.group).await?;
        for queue in &description.offsets {
            println!(
                "  {}:{} committed {:?} lag {} owner {:?}",
                queue.topic, queue.queue, queue.committed, queue.lag, queue.owner
            );
        }
        let committed = admin.fetch_offsets(&group.group, TOPIC, Vec::new()).await?;
        println!("  committed on {TOPIC}: {committed:?}");
        // A dry run: what resetting to the earliest offsets would do (execute = false).
        match admin
            .reset_offsets(&group.group, Some(TOPIC), OffsetSpec::Earliest, false)
            .await
        {
            Ok(plan) => {
                for entry in plan {
                    println!(
                        "  reset {}:{} {:?} -> {}",
                        entry.topic, entry.queue, entry.current, entry.new
                    );
                }
            }
            Err(error) => println!("  reset plan refused: {error}"),
        }
    }
    client.close();
    Ok(())
}
