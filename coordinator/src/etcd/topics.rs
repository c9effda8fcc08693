//! Writing topics: create (placement, then one guarded transaction, or several for a topic
//! too large for one), delete, and the controller's guarded update of one queue's state; and
//! reading one the cache does not know yet (`read_through`).
//!
//! # Large topics
//!
//! etcd refuses a transaction of more than `--max-txn-ops` operations (128 by default), and
//! a topic may have up to 1024 queues. A topic whose partition keys fit (`TXN_OPS_MAX`, the
//! default, counting the topic key) is written in one transaction guarded by
//! `create_revision(topics/<topic>) == 0`, with `complete: true`. A larger one is written in
//! steps: the first transaction creates the topic key with `complete: false` under the same
//! guard plus the first chunk of partition keys; each later one writes a chunk guarded by the
//! topic key's create revision (so it cannot land in a topic deleted and re-created
//! meanwhile); the last sets `complete: true`. Readers ignore an incomplete topic, so nobody
//! sees a topic with missing queues, and `TopicCreated` fires once, on completion. If the
//! creator dies midway the incomplete topic stays: `create_topic` answers `TopicExists` for
//! it and `delete_topic` removes it.

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use super::cache::{Change, Snapshot};
use super::keys::{encode, Key, TopicRecord};
use super::rpc::within;
use super::{Election, Shared};
use crate::error::{Error, Result};
use crate::limits::check_topic_spec;
use crate::placement::place;
use crate::types::{BrokerId, QueueState, TopicMetadata, TopicSpec};

/// Most operations the coordinator puts in one etcd transaction: etcd's default
/// `--max-txn-ops`. A cluster configured lower needs it raised to at least this.
pub const TXN_OPS_MAX: usize = 128;

/// A topic the cache does not hold, read from etcd: its topic key and partition keys in one
/// transaction (so at one revision), decoded as the cache decodes them. So a topic whose
/// creation another broker acknowledged is known here at once, however far this instance's
/// watch lags (or while it pauses after an outage). `Unavailable` if etcd does not answer.
pub async fn read_through(shared: &Shared, name: &str) -> Result<Option<TopicMetadata>> {
    let keys = &shared.keys;
    let txn = Txn::new().and_then([
        TxnOp::get(keys.topic(name), None),
        TxnOp::get(keys.partitions(name), Some(GetOptions::new().with_prefix())),
    ]);
    let answer = shared.txn("read a topic", txn).await?;
    let mut snapshot = Snapshot::default();
    for response in answer.op_responses() {
        if let TxnOpResponse::Get(got) = response {
            for kv in got.kvs() {
                snapshot.apply(keys, Change::put(kv));
            }
        }
    }
    snapshot.topic(keys, name)
}

pub async fn create(shared: &Shared, spec: TopicSpec) -> Result<TopicMetadata> {
    check_topic_spec(&spec)?;
    let (exists, load) = shared
        .cache
        .read(|s| (s.topics.contains_key(&spec.name), s.leader_load()));
    // Known to exist: no need to place it (the transaction's guard decides otherwise).
    if exists {
        return Err(Error::TopicExists(spec.name));
    }
    let brokers = live_brokers(shared).await?;
    let queues = place(spec.queues, &brokers, &load);
    if queues.is_empty() {
        return Err(Error::Unavailable(
            "no live broker to place queues on".into(),
        ));
    }
    let keys = &shared.keys;
    let topic_key = keys.topic(&spec.name);
    let mut record = TopicRecord {
        config: spec.config.clone(),
        internal: spec.internal,
        queues: spec.queues,
        complete: queues.len() < TXN_OPS_MAX,
    };
    let partition_put = |state: &QueueState| {
        TxnOp::put(keys.partition(&spec.name, state.queue), encode(state), None)
    };
    let mut chunks = queues.chunks(TXN_OPS_MAX - 1);
    let first: Vec<TxnOp> = std::iter::once(TxnOp::put(topic_key.as_str(), encode(&record), None))
        .chain(chunks.next().unwrap_or_default().iter().map(partition_put))
        .collect();
    let election = shared.election();
    let created = Txn::new()
        .when(with_election(
            shared,
            election,
            Compare::create_revision(topic_key.as_str(), CompareOp::Equal, 0),
        ))
        .and_then(first)
        .or_else([TxnOp::get(keys.controller(), None)]);
    let answer = shared.txn("create the topic", created).await?;
    if !answer.succeeded() {
        return Err(refusal(election, &answer, Error::TopicExists(spec.name)));
    }
    let created_revision = answer.header().map_or(0, |h| h.revision());
    let mut revision = created_revision;
    let guard = || Compare::create_revision(topic_key.as_str(), CompareOp::Equal, created_revision);
    for chunk in chunks {
        let txn = Txn::new()
            .when([guard()])
            .and_then(chunk.iter().map(partition_put).collect::<Vec<_>>());
        revision = guarded(shared, &spec.name, "write the topic's queues", txn).await?;
    }
    if !record.complete {
        record.complete = true;
        let txn = Txn::new().when([guard()]).and_then([TxnOp::put(
            topic_key.as_str(),
            encode(&record),
            None,
        )]);
        revision = guarded(shared, &spec.name, "complete the topic", txn).await?;
    }
    shared.caught_up(revision).await?;
    await_subscribers(shared, &spec.name, revision).await;
    Ok(TopicMetadata {
        name: spec.name,
        config: spec.config,
        internal: spec.internal,
        queues,
    })
}

/// The ids of the live brokers, read from etcd rather than the cache: queues are placed over
/// every broker registered before the create, however far this instance's watch lags.
async fn live_brokers(shared: &Shared) -> Result<Vec<BrokerId>> {
    let keys = &shared.keys;
    let mut kv = shared.client.kv_client();
    let options = GetOptions::new().with_prefix().with_keys_only();
    let listed = within(
        shared.config.request_timeout,
        "list the live brokers",
        kv.get(keys.brokers(), Some(options)),
    )
    .await?;
    Ok(listed
        .kvs()
        .iter()
        .filter_map(|kv| match keys.parse(kv.key()) {
            Some(Key::Broker(id)) => Some(id),
            _ => None,
        })
        .collect())
}

/// `guard`, plus, when this instance is the controller, that its election still stands: a
/// controller's topic changes are fenced by its election revision, like its queue updates.
fn with_election(shared: &Shared, election: Option<Election>, guard: Compare) -> Vec<Compare> {
    let mut guards = vec![guard];
    if let Some(election) = election {
        guards.push(Compare::create_revision(
            shared.keys.controller(),
            CompareOp::Equal,
            election.revision,
        ));
    }
    guards
}

/// Why a transaction built by `with_election` failed, from its `or_else` read of the
/// controller key: `Fenced` if the election it was guarded by no longer stands, else
/// `otherwise` (the topic guard failed).
fn refusal(election: Option<Election>, answer: &TxnResponse, otherwise: Error) -> Error {
    let Some(election) = election else {
        return otherwise;
    };
    let current = answer
        .op_responses()
        .into_iter()
        .find_map(|response| match response {
            TxnOpResponse::Get(got) => Some(got.kvs().first().map(|kv| kv.create_revision())),
            _ => None,
        });
    match current {
        Some(Some(revision)) if revision == election.revision => otherwise,
        _ => Error::Fenced(format!(
            "broker {} is no longer the controller elected at revision {}",
            election.broker, election.revision
        )),
    }
}

/// One later step of a large create; fails with `UnknownTopic` if the topic was deleted
/// (or deleted and re-created) meanwhile.
async fn guarded(shared: &Shared, name: &str, what: &str, txn: Txn) -> Result<i64> {
    let answer = shared.txn(what, txn).await?;
    if !answer.succeeded() {
        return Err(Error::UnknownTopic(name.to_owned()));
    }
    Ok(answer.header().map_or(0, |h| h.revision()))
}

pub async fn delete(shared: &Shared, name: &str) -> Result<()> {
    let keys = &shared.keys;
    let topic_key = keys.topic(name);
    let election = shared.election();
    let txn = Txn::new()
        .when(with_election(
            shared,
            election,
            Compare::create_revision(topic_key.as_str(), CompareOp::Greater, 0),
        ))
        .and_then([
            TxnOp::delete(topic_key.as_str(), None),
            TxnOp::delete(
                keys.partitions(name),
                Some(DeleteOptions::new().with_prefix()),
            ),
        ])
        .or_else([TxnOp::get(keys.controller(), None)]);
    let answer = shared.txn("delete the topic", txn).await?;
    if !answer.succeeded() {
        return Err(refusal(
            election,
            &answer,
            Error::UnknownTopic(name.to_owned()),
        ));
    }
    let revision = answer.header().map_or(0, |h| h.revision());
    shared.caught_up(revision).await?;
    await_subscribers(shared, name, revision).await;
    Ok(())
}

/// After `topic` changed at `revision`, waits until every group subscribed to it has an
/// assignment reflecting the change, so a caller that looks at a group next sees the
/// rebalance (as with the embedded coordinator). Best effort: the topic change stands
/// whatever happens, so a controller that does not answer within the cache wait is logged,
/// not reported.
async fn await_subscribers(shared: &Shared, topic: &str, revision: i64) {
    let keys = &shared.keys;
    let subscribers: Vec<String> = shared.cache.read(|s| {
        s.members
            .iter()
            .filter(|(_, members)| {
                members
                    .values()
                    .any(|m| m.value.subscriptions.contains_key(topic))
            })
            .map(|(group, _)| group.clone())
            .collect()
    });
    if subscribers.is_empty() {
        return;
    }
    let waited = shared
        .cache
        .wait_until(
            shared.config.cache_wait,
            "the rebalance of subscribed groups",
            |s| {
                subscribers.iter().all(|group| {
                matches!(s.assignment(keys, group), Ok(Some(a)) if a.revision >= revision)
            })
            },
        )
        .await;
    if let Err(error) = waited {
        tracing::warn!(topic, %error, "groups subscribed to a changed topic were not rebalanced in time");
    }
}

/// A controller's compare-and-swap of one queue's state; see `EtcdCoordinator::update_queue`.
pub async fn update_queue(
    shared: &Shared,
    election_revision: i64,
    topic: &str,
    state: QueueState,
) -> Result<QueueState> {
    let key = shared.keys.partition(topic, state.queue);
    let Some(stored) = shared.cache.read(|s| {
        s.partitions
            .get(topic)
            .and_then(|p| p.get(&state.queue))
            .cloned()
    }) else {
        return Err(Error::UnknownTopic(topic.to_owned()));
    };
    if stored.value.version != state.version {
        return Err(Error::Fenced(format!(
            "{key} is at version {}, not {}",
            stored.value.version, state.version
        )));
    }
    let next = QueueState {
        version: state.version + 1,
        ..state
    };
    let txn = Txn::new()
        .when([
            Compare::create_revision(
                shared.keys.controller(),
                CompareOp::Equal,
                election_revision,
            ),
            Compare::mod_revision(key.as_str(), CompareOp::Equal, stored.mod_revision),
        ])
        .and_then([TxnOp::put(key.as_str(), encode(&next), None)]);
    let answer = shared.txn("update the queue state", txn).await?;
    if !answer.succeeded() {
        return Err(Error::Fenced(format!(
            "{key}: the controller elected at revision {election_revision} is deposed, or the \
             queue changed meanwhile"
        )));
    }
    shared
        .caught_up(answer.header().map_or(0, |h| h.revision()))
        .await?;
    Ok(next)
}
