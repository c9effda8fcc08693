//! A consumer group on a three-broker cluster rebalances when a member joins and when one
//! dies, without two members working a queue at once and without skipping a message; the
//! time each rebalance takes is printed.
//!
//! Cluster: real etcd, three `runnel broker` processes. Topic: 12 queues.
//!
//! Members are processes (the `group_member` binary: a push consumer printing what it
//! consumed), member `i` knowing only broker `i % 3`, with a 3 s session timeout, so the
//! fault is a real crash: SIGKILL, no leave, no final commit, heartbeats stop.
//!
//! Workload: three members join and the group settles (`Stable`, 3 members, 12 queues owned);
//! then one producer (knowing broker 2) sends numbered messages round robin, 12 every 10 ms,
//! for the rest of the test. Once every queue is being consumed: (1) a fourth member joins;
//! (2) once that rebalance is in effect, member 1 is SIGKILLed; (3) once that one is, the
//! producer stops and the test waits until every acknowledged message was delivered.
//!
//! Rebalance time (printed, not asserted), from the membership change (the fourth process
//! started / the SIGKILL) to: `stable` — `describe_group` shows `Stable` with exactly the live
//! members and every queue owned; `in effect` — every queue has been delivered by the member
//! that description names as its owner, after the change.
//!
//! Checks, after the producer stopped and everything was delivered:
//! - every queue has exactly one owner: the live members' assignments are disjoint, cover the
//!   12 queues, and agree with each queue's `owner`;
//! - no message skipped: every acknowledged message was delivered, at its receipt's
//!   queue and offset;
//! - no two members worked a queue at once. Deliveries carry no generation (the client does not
//!   expose it), so this is checked on offsets, which do not depend on when the test read
//!   each process's output: (a) each member delivers each queue's offsets in strictly
//!   increasing order (no member replays or interleaves a queue with itself); (b) walking a
//!   queue's offsets upwards, the member that first delivered each offset changes at most
//!   once per membership change after the group settled (2 here) — two owners at once would
//!   alternate; (c) a message delivered more than once was delivered by the killed member
//!   (its uncommitted tail, legitimately consumed again by the next owner) and by one other
//!   member: a duplicate without the killed member means a live hand-over overlapped.
//!   Duplicates are counted and printed.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tests::cluster::Cluster;
use tests::member::{MemberEvent, MemberProcess};
use tests::payload::NUMBER_PROPERTY;
use tests::wait::{self, REQUEST_TIMEOUT};
use wire::client::{Admin, Client, Producer, ProducerConfig, SendHandle};
use wire::protocol::{GroupDescription, GroupState};
use wire::Message;

const BROKERS: usize = 3;
const TOPIC: &str = "churn";
const GROUP: &str = "churn-readers";
const QUEUES: u32 = 12;
const FIRST_MEMBERS: usize = 3;
/// The member SIGKILLed in step 2 (one of the first three).
const KILLED: usize = 1;
/// Membership changes after the group settled: the join and the kill.
const MEMBERSHIP_CHANGES: usize = 2;
const SESSION_TIMEOUT: Duration = Duration::from_secs(3);
/// The producer sends one message per queue every `SEND_PERIOD`.
const SEND_PERIOD: Duration = Duration::from_millis(10);
/// Receipts the producer leaves unawaited before it awaits the oldest.
const RECEIPTS_IN_FLIGHT_MAX: usize = 1024;
/// Problems kept for the failure message.
const PROBLEMS_KEPT_MAX: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_hands_queues_over_cleanly_when_members_join_and_die() {
    tests::init_client_logs();
    let started = Instant::now();
    let cluster = Cluster::start(BROKERS).await;
    let admin_client = cluster.client(0, "admin").await;
    let admin = Admin::new(&admin_client);
    admin
        .create_topic(TOPIC, QUEUES, Vec::new())
        .await
        .expect("create the topic");

    let ledger = Arc::new(Ledger::default());
    let binary = Path::new(env!("CARGO_BIN_EXE_group_member"));
    let mut members: Vec<MemberProcess> = (0..FIRST_MEMBERS)
        .map(|index| start_member(&cluster, binary, index, &ledger))
        .collect();
    let settled = wait::group_stable(&admin, GROUP, FIRST_MEMBERS, QUEUES as usize).await;
    eprintln!(
        "{FIRST_MEMBERS} members stable in generation {} after {:?}",
        settled.generation,
        started.elapsed()
    );

    let producer_client = cluster.client(2, "producer").await;
    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn(produce(producer_client.clone(), stop.clone()));
    await_every_queue_consumed(&ledger).await;

    // 1. A member joins.
    let joined_at = Instant::now();
    members.push(start_member(&cluster, binary, FIRST_MEMBERS, &ledger));
    let live: Vec<usize> = (0..=FIRST_MEMBERS).collect();
    let after_join = await_rebalance("join", &admin, &members, &live, &ledger, joined_at).await;

    // 2. A member dies.
    let killed_at = Instant::now();
    members[KILLED].kill();
    ledger.killed.lock().expect("ledger lock").replace(KILLED);
    let live: Vec<usize> = (0..=FIRST_MEMBERS).filter(|&m| m != KILLED).collect();
    let after_kill = await_rebalance("kill", &admin, &members, &live, &ledger, killed_at).await;

    // 3. Everything sent is delivered.
    stop.store(true, Ordering::Release);
    let receipts = wait::within("the producer to stop", producer)
        .await
        .expect("the producer panicked");
    eprintln!("{} messages acknowledged", receipts.len());
    wait::until("every acknowledged message to be delivered", || async {
        let missing = ledger.missing(&receipts);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} not delivered, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            ))
        }
    })
    .await;

    let last = admin
        .describe_group(GROUP)
        .await
        .expect("describe the group");
    check_single_owners(&last, &members, &live);
    assert_eq!(
        last.generation, after_kill.generation,
        "the group rebalanced again after the kill"
    );
    let report = ledger.check(&receipts);
    eprintln!(
        "generations: settled {}, after join {}, after kill {}; {} deliveries of {} messages, \
         {} duplicate deliveries ({} messages), owner changes per queue {:?}; done in {:?}",
        settled.generation,
        after_join.generation,
        after_kill.generation,
        report.deliveries,
        receipts.len(),
        report.duplicates,
        report.redelivered,
        report.switches,
        started.elapsed()
    );
    assert!(report.problems.is_empty(), "{:#?}", report.problems);

    producer_client.close();
    admin_client.close();
}

fn start_member(
    cluster: &Cluster,
    binary: &Path,
    index: usize,
    ledger: &Arc<Ledger>,
) -> MemberProcess {
    let ledger = ledger.clone();
    let broker = cluster.address((index % BROKERS) as u32);
    MemberProcess::start(
        binary,
        broker,
        GROUP,
        TOPIC,
        index,
        SESSION_TIMEOUT,
        Arc::new(move |member, event| ledger.record(member, event)),
    )
}

async fn await_every_queue_consumed(ledger: &Ledger) {
    wait::until("every queue to be consumed", || async {
        let queues: BTreeSet<u32> = ledger
            .deliveries
            .lock()
            .expect("ledger lock")
            .iter()
            .map(|d| d.queue)
            .collect();
        if queues.len() == QUEUES as usize {
            Ok(())
        } else {
            Err(format!("queues consumed so far: {queues:?}"))
        }
    })
    .await;
}

/// Waits until the group is `Stable` with exactly the members `live` (by index) owning every
/// queue, then until every queue was delivered by its owner after `since`; prints both times.
async fn await_rebalance(
    label: &str,
    admin: &Admin,
    members: &[MemberProcess],
    live: &[usize],
    ledger: &Ledger,
    since: Instant,
) -> GroupDescription {
    let what = format!("the group to be Stable with members {live:?} after the {label}");
    let description = wait::until(&what, || async {
        let ids: Option<BTreeSet<String>> = live.iter().map(|&m| members[m].member_id()).collect();
        let ids = ids.ok_or("a member has not printed its id yet")?;
        let description = admin
            .describe_group(GROUP)
            .await
            .map_err(|e| e.to_string())?;
        let present: BTreeSet<String> = description
            .members
            .iter()
            .map(|m| m.member_id.clone())
            .collect();
        let owned = description
            .offsets
            .iter()
            .filter(|q| q.owner.is_some())
            .count();
        if description.state == GroupState::Stable && present == ids && owned == QUEUES as usize {
            Ok(description)
        } else {
            Err(format!(
                "{:?}, generation {}, members {present:?} (want {ids:?}), {owned} queues owned",
                description.state, description.generation
            ))
        }
    })
    .await;
    let stable = since.elapsed();
    let owners = queue_owners(&description, members);
    let what = format!("every queue to be consumed by its owner after the {label}");
    wait::until(&what, || async {
        let deliveries = ledger.deliveries.lock().expect("ledger lock");
        let served: BTreeSet<u32> = deliveries
            .iter()
            .filter(|d| d.at >= since && owners.get(&d.queue) == Some(&d.member))
            .map(|d| d.queue)
            .collect();
        if served.len() == QUEUES as usize {
            Ok(())
        } else {
            Err(format!(
                "queues consumed by their owner {owners:?} so far: {served:?}"
            ))
        }
    })
    .await;
    eprintln!(
        "rebalance after {label}: {} ms to Stable (generation {}), {} ms until every queue was consumed by its new owner",
        stable.as_millis(),
        description.generation,
        since.elapsed().as_millis()
    );
    description
}

/// Each queue's owner, as the index of the member process.
fn queue_owners(description: &GroupDescription, members: &[MemberProcess]) -> HashMap<u32, usize> {
    let index: HashMap<String, usize> = members
        .iter()
        .filter_map(|m| Some((m.member_id()?, m.index)))
        .collect();
    description
        .offsets
        .iter()
        .filter(|q| q.topic == TOPIC)
        .filter_map(|q| Some((q.queue, *index.get(q.owner.as_ref()?)?)))
        .collect()
}

/// Every queue has exactly one owner: the live members' assignments are disjoint, cover
/// every queue, and agree with the per-queue owners.
fn check_single_owners(description: &GroupDescription, members: &[MemberProcess], live: &[usize]) {
    assert_eq!(description.state, GroupState::Stable, "{description:?}");
    let live_ids: BTreeSet<String> = live
        .iter()
        .filter_map(|&m| members[m].member_id())
        .collect();
    let mut assigned = BTreeMap::<u32, Vec<String>>::new();
    for member in &description.members {
        assert!(
            live_ids.contains(&member.member_id),
            "{} is not a live member",
            member.member_id
        );
        for queue in &member.assignment {
            assert_eq!(queue.topic, TOPIC);
            assigned
                .entry(queue.queue)
                .or_default()
                .push(member.member_id.clone());
        }
    }
    for queue in 0..QUEUES {
        let holders = assigned.get(&queue).cloned().unwrap_or_default();
        assert_eq!(holders.len(), 1, "queue {queue} is assigned to {holders:?}");
        let owner = description
            .offsets
            .iter()
            .find(|q| q.topic == TOPIC && q.queue == queue)
            .and_then(|q| q.owner.clone());
        assert_eq!(
            owner.as_ref(),
            Some(&holders[0]),
            "queue {queue}: owner and assignment disagree"
        );
    }
}

/// Sends numbered messages round robin, `QUEUES` every `SEND_PERIOD`, until `stop`; returns
/// every receipt as (number, queue, offset).
async fn produce(client: Client, stop: Arc<AtomicBool>) -> Vec<(u64, u32, u64)> {
    let config = ProducerConfig {
        request_timeout: REQUEST_TIMEOUT,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(&client, config).expect("create a producer");
    let mut pending: VecDeque<(u64, SendHandle)> = VecDeque::new();
    let mut receipts = Vec::new();
    let mut next = 0u64;
    // The interval paces the load; nothing waits on it for an event.
    let mut pace = tokio::time::interval(SEND_PERIOD);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Acquire) {
        pace.tick().await;
        for _ in 0..QUEUES {
            let message = Message::new(TOPIC, next.to_string())
                .with_property(NUMBER_PROPERTY, next.to_string());
            let handle = producer
                .send_async(message)
                .await
                .unwrap_or_else(|e| panic!("queueing message {next} failed: {e}"));
            pending.push_back((next, handle));
            next += 1;
        }
        while pending.len() > RECEIPTS_IN_FLIGHT_MAX {
            let (number, handle) = pending.pop_front().expect("a pending send");
            receipts.push(await_receipt(number, handle).await);
        }
    }
    for (number, handle) in pending {
        receipts.push(await_receipt(number, handle).await);
    }
    wait::within("the producer to close", producer.close()).await;
    receipts
}

async fn await_receipt(number: u64, handle: SendHandle) -> (u64, u32, u64) {
    let receipt = wait::within("a send receipt", handle)
        .await
        .unwrap_or_else(|e| panic!("sending message {number} failed: {e}"));
    (number, receipt.queue, receipt.offset)
}

/// One message delivered by one member.
#[derive(Clone, Copy, Debug)]
struct Delivery {
    member: usize,
    queue: u32,
    offset: u64,
    number: i64,
    /// When the test read it from the member's output.
    at: Instant,
}

/// Every delivery of every member, in the order each member printed them.
#[derive(Debug, Default)]
struct Ledger {
    deliveries: Mutex<Vec<Delivery>>,
    killed: Mutex<Option<usize>>,
    exits: Mutex<Vec<usize>>,
}

/// What `Ledger::check` found.
#[derive(Debug, Default)]
struct Report {
    problems: Vec<String>,
    deliveries: usize,
    /// Deliveries beyond each message's first.
    duplicates: usize,
    /// Messages delivered more than once.
    redelivered: usize,
    /// Per queue, how often the first-delivering member changed, walking offsets upwards.
    switches: BTreeMap<u32, usize>,
}

impl Ledger {
    fn record(&self, member: usize, event: MemberEvent) {
        match event {
            MemberEvent::Joined { .. } => {}
            MemberEvent::Delivered {
                queue,
                offset,
                number,
            } => self.deliveries.lock().expect("ledger lock").push(Delivery {
                member,
                queue,
                offset,
                number,
                at: Instant::now(),
            }),
            MemberEvent::Exited => self.exits.lock().expect("ledger lock").push(member),
        }
    }

    /// Acknowledged messages (by number) not delivered yet.
    fn missing(&self, receipts: &[(u64, u32, u64)]) -> Vec<u64> {
        let delivered: BTreeSet<i64> = self
            .deliveries
            .lock()
            .expect("ledger lock")
            .iter()
            .map(|d| d.number)
            .collect();
        receipts
            .iter()
            .map(|&(number, _, _)| number)
            .filter(|&n| !delivered.contains(&(n as i64)))
            .collect()
    }

    fn check(&self, receipts: &[(u64, u32, u64)]) -> Report {
        let deliveries = self.deliveries.lock().expect("ledger lock").clone();
        let killed = *self.killed.lock().expect("ledger lock");
        let mut report = Report {
            deliveries: deliveries.len(),
            ..Report::default()
        };
        let mut problems = Vec::new();
        let mut problem = |text: String| {
            if problems.len() < PROBLEMS_KEPT_MAX {
                problems.push(text);
            }
        };
        for member in self.exits.lock().expect("ledger lock").iter() {
            if Some(*member) != killed {
                problem(format!("member {member} exited on its own"));
            }
        }
        let placed: HashMap<u64, (u32, u64)> =
            receipts.iter().map(|&(n, q, o)| (n, (q, o))).collect();
        let mut by_number = BTreeMap::<i64, Vec<Delivery>>::new();
        let mut last_offset = HashMap::<(usize, u32), u64>::new();
        for delivery in &deliveries {
            by_number
                .entry(delivery.number)
                .or_default()
                .push(*delivery);
            match placed.get(&(delivery.number as u64)) {
                Some(&at) if at == (delivery.queue, delivery.offset) => {}
                Some(at) => problem(format!(
                    "message {} delivered at {}:{}, its receipt says {at:?}",
                    delivery.number, delivery.queue, delivery.offset
                )),
                // Sent but not acknowledged before the producer stopped: cannot happen, the
                // producer awaits every receipt.
                None => problem(format!("{delivery:?} has no receipt")),
            }
            // (a) each member moves forward through each queue.
            let key = (delivery.member, delivery.queue);
            if let Some(&previous) = last_offset.get(&key) {
                if delivery.offset <= previous {
                    problem(format!(
                        "member {} delivered queue {} offset {} after offset {previous}",
                        delivery.member, delivery.queue, delivery.offset
                    ));
                }
            }
            last_offset.insert(key, delivery.offset);
        }
        for &(number, queue, offset) in receipts {
            if !by_number.contains_key(&(number as i64)) {
                problem(format!(
                    "acknowledged message {number} at {queue}:{offset} was skipped"
                ));
            }
        }
        // (b) owner switches along each queue's offsets.
        let mut first_by_offset = BTreeMap::<(u32, u64), usize>::new();
        for delivery in &deliveries {
            first_by_offset
                .entry((delivery.queue, delivery.offset))
                .or_insert(delivery.member);
        }
        let mut previous: Option<(u32, usize)> = None;
        for (&(queue, _), &member) in &first_by_offset {
            report.switches.entry(queue).or_insert(0);
            if let Some((q, m)) = previous {
                if q == queue && m != member {
                    *report.switches.entry(queue).or_insert(0) += 1;
                }
            }
            previous = Some((queue, member));
        }
        for (queue, &switches) in &report.switches {
            if switches > MEMBERSHIP_CHANGES {
                problem(format!(
                    "queue {queue} changed hands {switches} times in offset order for \
                     {MEMBERSHIP_CHANGES} membership changes: two members worked it at once"
                ));
            }
        }
        // (c) duplicates come from the killed member's uncommitted tail only.
        for (number, deliveries) in &by_number {
            if deliveries.len() < 2 {
                continue;
            }
            report.redelivered += 1;
            report.duplicates += deliveries.len() - 1;
            let by_killed = deliveries
                .iter()
                .filter(|d| Some(d.member) == killed)
                .count();
            if by_killed != 1 || deliveries.len() != 2 {
                problem(format!(
                    "message {number} delivered {} times, not once by the killed member and \
                     once by its successor: {deliveries:?}",
                    deliveries.len()
                ));
            }
        }
        report.problems = problems;
        report
    }
}
