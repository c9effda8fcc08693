//! When the controller broker dies, another broker takes over the controller role within the
//! broker lease's TTL, and producers and consumers of the queues the survivors lead carry on.
//!
//! Cluster: real etcd, three `runnel broker` processes.
//!
//! Fault: SIGKILL of the broker holding etcd's `controller` key (read from etcd:
//! `/runnel/<cluster>/controller`). Its key outlives it until its lease (TTL 10 s by default)
//! expires; then another broker's campaign wins.
//!
//! Workload: a topic with 12 queues (4 per broker); a group of two push consumers, each
//! knowing one survivor; a producer knowing both survivors, sending to chosen queues (a
//! selector reading the message's `q` property). Before the fault: one message per queue,
//! all delivered. From the kill until the survivors have a new controller and have dropped
//! the dead broker: one message per survivor-led queue every 10 ms. After that:
//! `AFTER_FAULT_PER_QUEUE` messages to each queue a survivor leads.
//!
//! Checks: the `controller` key names a surviving broker within TTL + margin (the time is
//! printed), and the survivors' `DescribeCluster` agree (before the fault too); the survivors
//! drop the dead broker from their live brokers; every send to a
//! survivor-led queue during and after the failover is acknowledged, and every one is
//! delivered, intact (lost: 0; duplicates counted and printed).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::etcd::BROKER_LEASE_TTL_DEFAULT;
use tests::cluster::Cluster;
use tests::ledger::{start_recording, Ledger};
use tests::wait::{self, REQUEST_TIMEOUT};
use wire::client::{
    Admin, Client, ConsumeFrom, Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
    QueueSelector,
};

const BROKERS: usize = 3;
const TOPIC: &str = "steady";
const GROUP: &str = "steady-readers";
const QUEUES: u32 = 12;
const AFTER_FAULT_PER_QUEUE: usize = 200;
/// The most messages sent while the controller is being replaced (a cap, not a target).
const DURING_FAILOVER_MAX: usize = 30_000;
/// While the controller is replaced, one message per survivor-led queue every this long.
const DURING_FAILOVER_PERIOD: Duration = Duration::from_millis(10);
/// The message property naming the queue a message is sent to.
const QUEUE_PROPERTY: &str = "q";
/// Body sizes up to this (log-uniform).
const BODY_BYTES_MAX: usize = 4 << 10;
/// Beyond the lease TTL: the time for the survivors to notice the expiry and campaign, on a
/// loaded machine.
const FAILOVER_MARGIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_controller_takes_over_and_survivors_keep_serving() {
    tests::init_client_logs();
    let started = Instant::now();
    let mut cluster = Cluster::start(BROKERS).await;
    let controller = wait::until("a controller to be elected", || async {
        cluster
            .controller()
            .await?
            .ok_or_else(|| "no controller".to_owned())
    })
    .await;
    await_reported_controller(&cluster, &[0, 1, 2], controller).await;
    let survivors: Vec<u32> = (0..BROKERS as u32).filter(|&b| b != controller).collect();
    eprintln!("broker {controller} is the controller; survivors {survivors:?}");

    let admin_client = cluster.client(survivors[0], "admin").await;
    let admin = Admin::new(&admin_client);
    admin
        .create_topic(TOPIC, QUEUES, Vec::new())
        .await
        .expect("create the topic");

    let total = QUEUES as usize * (1 + AFTER_FAULT_PER_QUEUE) + DURING_FAILOVER_MAX;
    let ledger = Arc::new(Ledger::new(tests::payload::log_uniform_sizes(
        total,
        BODY_BYTES_MAX,
        7,
    )));
    let mut consumers = Vec::new();
    for &id in &survivors {
        consumers.push(start_consumer(&cluster, id, &ledger).await);
    }
    wait::group_stable(&admin, GROUP, consumers.len(), QUEUES as usize).await;

    let producer_client = cluster.client_of(&survivors, "producer").await;
    let producer = Producer::new(
        &producer_client,
        ProducerConfig {
            request_timeout: REQUEST_TIMEOUT,
            queue_selector: QueueSelector::custom(|message, _queues| {
                message
                    .properties
                    .iter()
                    .find(|(name, _)| name == QUEUE_PROPERTY)
                    .and_then(|(_, queue)| queue.parse().ok())
                    .expect("every message names its queue")
            }),
            ..ProducerConfig::default()
        },
    )
    .expect("create a producer");

    // Before the fault: one message per queue, all delivered.
    let before: Vec<(usize, u32)> = (0..QUEUES).map(|q| (q as usize, q)).collect();
    let mut receipts = send_to_queues(&producer, &ledger, &before).await;
    wait::until(
        "the first message of every queue to be delivered",
        || async { ledger.delivered_all(0..QUEUES as usize) },
    )
    .await;

    let led_by_survivors: Vec<u32> = admin
        .describe_topic(TOPIC)
        .await
        .expect("describe the topic")
        .queues
        .iter()
        .filter(|q| q.leader != controller)
        .map(|q| q.queue)
        .collect();
    let killed_at = Instant::now();
    cluster.kill(controller);
    let stop = Arc::new(AtomicBool::new(false));
    let during = tokio::spawn(send_during_failover(
        producer.clone(),
        ledger.clone(),
        led_by_survivors,
        stop.clone(),
    ));
    let deadline = BROKER_LEASE_TTL_DEFAULT + FAILOVER_MARGIN;
    let successor = within_deadline(
        "a surviving broker to become controller",
        deadline,
        || async {
            match cluster.controller().await? {
                Some(id) if id != controller => Ok(id),
                other => Err(format!("controller {other:?}")),
            }
        },
    )
    .await;
    eprintln!(
        "controller failover: broker {successor} became controller {} ms after broker {controller} was killed",
        killed_at.elapsed().as_millis()
    );
    cluster.await_brokers(&survivors).await;
    await_reported_controller(&cluster, &survivors, successor).await;
    eprintln!(
        "the survivors dropped broker {controller} and report controller {successor} {} ms after the kill",
        killed_at.elapsed().as_millis()
    );
    stop.store(true, Ordering::Release);
    let sent_during = wait::within("the sends during the failover", during)
        .await
        .expect("a send during the failover failed");
    eprintln!(
        "{} messages to survivor-led queues acknowledged during the failover",
        sent_during.len()
    );
    let during_numbers: Vec<usize> = sent_during.iter().map(|&(n, _, _)| n).collect();
    receipts.extend(sent_during);

    let described = admin
        .describe_topic(TOPIC)
        .await
        .expect("describe the topic after the failover");
    let leaders: BTreeMap<u32, u32> = described
        .queues
        .iter()
        .map(|q| (q.queue, q.leader))
        .collect();
    eprintln!("leaders after the failover: {leaders:?}");
    let served: Vec<u32> = leaders
        .iter()
        .filter(|(_, leader)| survivors.contains(leader))
        .map(|(&queue, _)| queue)
        .collect();
    assert!(
        served.len() >= (QUEUES as usize / BROKERS) * survivors.len(),
        "the survivors lead fewer queues than before the fault: {leaders:?}"
    );

    let mut after = Vec::new();
    let mut next = QUEUES as usize + DURING_FAILOVER_MAX;
    for _ in 0..AFTER_FAULT_PER_QUEUE {
        for &queue in &served {
            after.push((next, queue));
            next += 1;
        }
    }
    let sending = Instant::now();
    receipts.extend(send_to_queues(&producer, &ledger, &after).await);
    eprintln!(
        "{} messages to {} survivor-led queues acknowledged in {:?}",
        after.len(),
        served.len(),
        sending.elapsed()
    );
    let after_numbers: Vec<usize> = after
        .iter()
        .map(|&(n, _)| n)
        .chain(during_numbers)
        .collect();
    wait::until(
        "every message sent after the fault to be delivered",
        || async { ledger.delivered_all(after_numbers.iter().copied()) },
    )
    .await;
    let report = ledger.report(&receipts);
    eprintln!(
        "after the failover: {} acknowledged, {} lost, {} duplicate deliveries; done in {:?}",
        receipts.len(),
        report.lost_count,
        report.duplicates,
        started.elapsed()
    );
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.lost_count, 0, "lost: {:?}", report.lost);

    wait::within("the producer to close", producer.close()).await;
    // Closing the clients is enough (their commits to the dead offsets leader would only
    // fail slowly).
    for (_consumer, client) in &consumers {
        client.close();
    }
    producer_client.close();
    admin_client.close();
}

/// Waits until every broker of `ids` answers `DescribeCluster` naming `controller`.
async fn await_reported_controller(cluster: &Cluster, ids: &[u32], controller: u32) {
    let what = format!("brokers {ids:?} to report broker {controller} as the controller");
    wait::until(&what, || async {
        let mut views = Vec::new();
        for &id in ids {
            let client = cluster.client(id, "describer").await;
            let view = Admin::new(&client).describe_cluster().await;
            client.close();
            views.push(view.map_err(|e| e.to_string())?.controller);
        }
        if views.iter().all(|&c| c == Some(controller)) {
            Ok(())
        } else {
            Err(format!("controllers seen: {views:?}"))
        }
    })
    .await;
}

/// Sends one message to each of `queues` every `DURING_FAILOVER_PERIOD` until `stop` (or
/// `DURING_FAILOVER_MAX` messages); every send must be acknowledged.
async fn send_during_failover(
    producer: Producer,
    ledger: Arc<Ledger>,
    queues: Vec<u32>,
    stop: Arc<AtomicBool>,
) -> Vec<(usize, u32, u64)> {
    let mut receipts = Vec::new();
    let mut next = QUEUES as usize;
    let end = next + DURING_FAILOVER_MAX;
    // The interval paces the load; nothing waits on it for an event.
    let mut pace = tokio::time::interval(DURING_FAILOVER_PERIOD);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Acquire) && next + queues.len() <= end {
        pace.tick().await;
        let round: Vec<(usize, u32)> = queues
            .iter()
            .enumerate()
            .map(|(i, &queue)| (next + i, queue))
            .collect();
        next += queues.len();
        receipts.extend(send_to_queues(&producer, &ledger, &round).await);
    }
    receipts
}

/// Sends message `number` to `queue` for each pair; every send must be acknowledged.
async fn send_to_queues(
    producer: &Producer,
    ledger: &Ledger,
    sends: &[(usize, u32)],
) -> Vec<(usize, u32, u64)> {
    let mut receipts = Vec::with_capacity(sends.len());
    let mut pending = Vec::new();
    for &(number, queue) in sends {
        let message = ledger
            .message(TOPIC, number)
            .with_property(QUEUE_PROPERTY, queue.to_string());
        let handle = producer
            .send_async(message)
            .await
            .unwrap_or_else(|e| panic!("queueing message {number} for queue {queue} failed: {e}"));
        pending.push((number, queue, handle));
    }
    for (number, queue, handle) in pending {
        let receipt = wait::within("a send receipt", handle)
            .await
            .unwrap_or_else(|e| panic!("sending message {number} to queue {queue} failed: {e}"));
        assert_eq!(
            receipt.queue, queue,
            "message {number} went to another queue"
        );
        receipts.push((number, receipt.queue, receipt.offset));
    }
    receipts
}

async fn start_consumer(
    cluster: &Cluster,
    id: u32,
    ledger: &Arc<Ledger>,
) -> (PushConsumer, Client) {
    let client = cluster.client(id, &format!("consumer-{id}")).await;
    let config = PushConsumerConfig {
        consume_batch_size: 32,
        ..PushConsumerConfig::new(GROUP)
            .subscribe(TOPIC, "*")
            .consume_from(ConsumeFrom::First)
    };
    let consumer = start_recording(&client, config, ledger.clone()).await;
    (consumer, client)
}

/// `wait::until` with a deadline of its own: checks `check` until it answers `Ok`, failing
/// (naming `what` and the last answer) once `deadline` has passed since the call.
async fn within_deadline<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let until = tokio::time::Instant::now() + deadline;
    let mut seen = String::from("nothing yet");
    loop {
        match tokio::time::timeout_at(until, check()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(now)) => seen = now,
            Err(_) => {}
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{what} did not happen within {deadline:?}; last seen: {seen}"
        );
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    }
}
