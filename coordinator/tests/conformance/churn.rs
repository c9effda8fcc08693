//! Conformance: the hand-over invariant under a seeded random sequence of joins, leaves,
//! expiries, subscription changes and heartbeats.

use std::collections::{BTreeMap, BTreeSet};

use coordinator::{GroupPhase, QueueId};

use super::*;

pub async fn handover_under_random_churn_seed_1<H: Harness>(harness: &H) {
    handover_under_random_churn(harness, 1, 300).await;
}

pub async fn handover_under_random_churn_seed_2<H: Harness>(harness: &H) {
    handover_under_random_churn(harness, 0x5eed2, 300).await;
}

pub async fn handover_under_random_churn_seed_3<H: Harness>(harness: &H) {
    handover_under_random_churn(harness, 0xdead_beef, 300).await;
}

/// A deterministic generator (splitmix64), so a failing seed reproduces.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One simulated consumer, honest as the protocol asks and otherwise as slow as allowed:
/// when it heartbeats it has applied its last answer (consumes nothing else) and reports that
/// answer's generation; between a heartbeat and the next it may still be stopping the queues
/// the new answer dropped, so it counts as consuming both answers. It stops consuming before
/// it leaves or goes silent.
#[derive(Clone, Debug, Default)]
struct Client {
    live: bool,
    topics: Vec<&'static str>,
    last_generation: Option<u64>,
    last_answer: BTreeSet<QueueId>,
    consuming: BTreeSet<QueueId>,
}

const CHURN_TOPICS: [(&str, u32); 3] = [("a", 5), ("b", 3), ("c", 1)];
const CHURN_CLIENTS: usize = 6;

struct Churn<'h, H: Harness> {
    harness: &'h H,
    c: Arc<H::C>,
    clients: Vec<Client>,
    random: Random,
    step: usize,
    /// What happened, so a run that exercised nothing fails instead of passing.
    seen: Seen,
}

#[derive(Debug, Default)]
struct Seen {
    leaves: usize,
    expiries: usize,
    /// Queues a client started consuming that another client consumed before.
    moves: usize,
    rebalancing: usize,
    last_consumer: BTreeMap<QueueId, usize>,
}

impl<H: Harness> Churn<'_, H> {
    fn id(i: usize) -> String {
        format!("m{i}")
    }

    async fn heartbeat(&mut self, i: usize) {
        let client = &mut self.clients[i];
        client.consuming = client.last_answer.clone();
        let client = &self.clients[i];
        let spec = member(&Self::id(i), &client.topics);
        let answer = heartbeat(&*self.c, "churn", &spec, client.last_generation).await;
        for q in &answer.queues {
            if let Some(before) = self.seen.last_consumer.insert(q.clone(), i) {
                self.seen.moves += usize::from(before != i);
            }
        }
        let client = &mut self.clients[i];
        client.live = true;
        client.last_generation = Some(answer.generation);
        client.last_answer = answer.queues.into_iter().collect();
        client.consuming.extend(client.last_answer.iter().cloned());
        self.check("heartbeat").await;
    }

    /// No queue owned twice; every live client consumes only queues it owns.
    async fn check(&mut self, what: &str) {
        self.step += 1;
        let context = format!("step {} ({what})", self.step);
        let group = describe(&*self.c, "churn").await;
        assert_disjoint(&group, &context);
        self.seen.rebalancing += usize::from(group.phase == GroupPhase::Rebalancing);
        let mut consumed: BTreeMap<&QueueId, usize> = BTreeMap::new();
        for (i, client) in self.clients.iter().enumerate() {
            for q in &client.consuming {
                if let Some(other) = consumed.insert(q, i) {
                    panic!("{context}: m{other} and m{i} both consume {q:?}");
                }
            }
            if client.consuming.is_empty() {
                continue;
            }
            let owned = owned_by(&group, &Self::id(i));
            for q in &client.consuming {
                assert!(
                    owned.contains(q),
                    "{context}: m{i} consumes {q:?} but owns {owned:?}"
                );
            }
        }
    }

    /// Every live client heartbeats twice (taking up, then confirming, the current
    /// generation); then every subscribed queue must be owned exactly once, by a member
    /// subscribed to its topic.
    async fn converge(&mut self) {
        for _ in 0..2 {
            for i in 0..CHURN_CLIENTS {
                if self.clients[i].live {
                    self.heartbeat(i).await;
                }
            }
        }
        let group = describe(&*self.c, "churn").await;
        let context = format!("step {} (converged)", self.step);
        let live = self.clients.iter().filter(|c| c.live).count();
        assert_eq!(group.members.len(), live, "{context}");
        if live == 0 {
            assert_eq!(group.phase, GroupPhase::Empty, "{context}");
            return;
        }
        assert_eq!(group.phase, GroupPhase::Stable, "{context}: {group:?}");
        let subscribed: BTreeSet<&str> = self
            .clients
            .iter()
            .filter(|c| c.live)
            .flat_map(|c| c.topics.iter().copied())
            .collect();
        let mut want: Vec<QueueId> = CHURN_TOPICS
            .iter()
            .filter(|(t, _)| subscribed.contains(t))
            .flat_map(|(t, n)| queues(t, *n))
            .collect();
        want.sort();
        let mut owned: Vec<QueueId> = Vec::new();
        for m in &group.members {
            assert_eq!(m.owned, m.target, "{context}: {}", m.spec.member_id);
            for q in &m.owned {
                assert!(m.spec.subscriptions.contains_key(&q.topic), "{context}");
            }
            owned.extend(m.owned.clone());
        }
        owned.sort();
        assert_eq!(
            owned, want,
            "{context}: not every queue is owned exactly once"
        );
        // One more round: every client's answer is now its whole target.
        for i in 0..CHURN_CLIENTS {
            if self.clients[i].live {
                self.heartbeat(i).await;
            }
        }
        let consumed: usize = self.clients.iter().map(|c| c.last_answer.len()).sum();
        assert_eq!(
            consumed,
            want.len(),
            "{context}: some queue is not consumed"
        );
    }

    fn random_topics(&mut self) -> Vec<&'static str> {
        let mut topics: Vec<&'static str> = CHURN_TOPICS
            .iter()
            .map(|(t, _)| *t)
            .filter(|_| self.random.below(2) == 0)
            .collect();
        if topics.is_empty() {
            topics.push(CHURN_TOPICS[0].0);
        }
        topics
    }

    fn random_live(&mut self) -> Option<usize> {
        let live: Vec<usize> = (0..CHURN_CLIENTS)
            .filter(|i| self.clients[*i].live)
            .collect();
        (!live.is_empty()).then(|| live[self.random.below(live.len())])
    }

    async fn run_step(&mut self) {
        match self.random.below(10) {
            // Heartbeats are the common case; a client not in the group joins afresh.
            0..=5 => {
                let i = self.random.below(CHURN_CLIENTS);
                if !self.clients[i].live {
                    let topics = self.random_topics();
                    self.clients[i] = Client {
                        topics,
                        ..Client::default()
                    };
                }
                self.heartbeat(i).await;
            }
            6 => {
                if let Some(i) = self.random_live() {
                    self.clients[i].topics = self.random_topics();
                    self.heartbeat(i).await;
                }
            }
            7 => {
                if let Some(i) = self.random_live() {
                    self.clients[i].consuming.clear();
                    self.c
                        .leave_group("churn", &Self::id(i))
                        .await
                        .expect("leave");
                    self.clients[i] = Client::default();
                    self.seen.leaves += 1;
                    self.check("leave").await;
                }
            }
            8 => {
                // A client goes silent (and, honest, stops consuming); the others keep
                // heartbeating across its session timeout.
                if let Some(i) = self.random_live() {
                    self.clients[i] = Client::default();
                    for j in 0..CHURN_CLIENTS {
                        if self.clients[j].live {
                            self.heartbeat(j).await;
                        }
                    }
                    self.harness.advance(&self.c, SESSION / 2).await;
                    self.check("half a timeout").await;
                    for j in 0..CHURN_CLIENTS {
                        if self.clients[j].live {
                            self.heartbeat(j).await;
                        }
                    }
                    self.harness.advance(&self.c, SESSION / 2 + MARGIN).await;
                    self.seen.expiries += 1;
                    self.check("expiry").await;
                }
            }
            _ => self.converge().await,
        }
    }
}

pub async fn handover_under_random_churn<H: Harness>(harness: &H, seed: u64, steps: usize) {
    let c = with_topics(harness, &CHURN_TOPICS).await;
    let mut churn = Churn {
        harness,
        c,
        clients: vec![Client::default(); CHURN_CLIENTS],
        random: Random(seed),
        step: 0,
        seen: Seen::default(),
    };
    for _ in 0..steps {
        churn.run_step().await;
    }
    churn.converge().await;
    let seen = &churn.seen;
    assert!(
        seen.leaves > 0 && seen.expiries > 0 && seen.moves > 0 && seen.rebalancing > 0,
        "seed {seed} exercised too little: {} leaves, {} expiries, {} moves, {} checks \
         while rebalancing",
        seen.leaves,
        seen.expiries,
        seen.moves,
        seen.rebalancing
    );
}
