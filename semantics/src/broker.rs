//! `Broker`: the state one broker process serves from — its logs, the coordinator, the
//! queues it leads, the consumer offsets — and its lifecycle (open, close).
//!
//! Open: the log managers recover on a blocking thread; the broker registers with the
//! coordinator (in a cluster, refusing to start if another live broker has its id), makes
//! sure the consumer-offsets topic exists (alone; in a cluster it is created on first use,
//! see `cluster.rs`), opens a log (and an appender) for every queue the coordinator says it
//! leads, replays the committed offsets of the offsets queues it leads, and starts its
//! background tasks (coordinator events, group-lag gauge).
//!
//! Close: new requests are answered `ShuttingDown`; waiting pulls are answered empty; the
//! appenders and offsets writers finish what was already queued; every log is flushed and
//! closed with its clean-shutdown marker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use coordinator::{BrokerInfo, Coordinator, TopicMetadata};
use log_core::LogManager;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wire::{ErrorCode, ServiceError};

use crate::appender::Appender;
use crate::config::{BrokerConfig, Flush};
use crate::error::{self, Error, Result};
use crate::groups::Peers;
use crate::offsets::{OffsetStore, OFFSETS_TOPIC};
use crate::queue::QueueHandle;

/// A topic as this broker serves it: its metadata, and a handle for each queue it leads.
#[derive(Debug)]
pub(crate) struct LocalTopic {
    pub meta: TopicMetadata,
    /// Indexed by queue number; `None` where another broker leads.
    pub queues: Vec<Option<LocalQueue>>,
}

#[derive(Debug)]
pub(crate) struct LocalQueue {
    pub handle: Arc<QueueHandle>,
    /// `None` for internal topics: clients may not send to them.
    pub appender: Option<Appender>,
}

/// One broker: implements `wire::Service` (see `service.rs`) over `log-core` and a
/// `Coordinator`.
#[derive(Debug)]
pub struct Broker {
    me: Weak<Broker>,
    pub(crate) config: BrokerConfig,
    pub(crate) coordinator: Arc<dyn Coordinator>,
    pub(crate) runtime: tokio::runtime::Handle,
    logs: Arc<LogManager>,
    internal_logs: Arc<LogManager>,
    pub(crate) topics: RwLock<HashMap<String, Arc<LocalTopic>>>,
    /// Serialises topic creation, deletion and adoption (from coordinator events).
    pub(crate) admin: tokio::sync::Mutex<()>,
    pub(crate) offsets: OffsetStore,
    pub(crate) peers: Peers,
    /// A client of the other brokers, made on first use (`remote.rs`).
    pub(crate) remote: std::sync::OnceLock<wire::client::Client>,
    /// Bumped whenever a topic starts or stops being served here.
    topics_changed: watch::Sender<()>,
    /// Live brokers' addresses as last read from the coordinator, for `NotLeader` hints.
    pub(crate) addresses: RwLock<HashMap<u32, String>>,
    closing: AtomicBool,
    /// Becomes true at close: waiting pulls answer empty.
    pub(crate) shutdown: watch::Sender<bool>,
    /// Bytes pulls may hold (`BrokerConfig::pull_memory_bytes`); see `pull.rs`.
    pub(crate) pull_memory: Arc<tokio::sync::Semaphore>,
    /// Time-index lookups running at once (each may decompress a batch).
    pub(crate) time_lookups: tokio::sync::Semaphore,
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl Broker {
    /// Opens the broker's logs under `config.data_dir` and joins the cluster `coordinator`
    /// describes. Must be called within a tokio runtime (multi-threaded: recovery and appends
    /// run on its blocking pool).
    pub async fn open(
        config: BrokerConfig,
        coordinator: Arc<dyn Coordinator>,
    ) -> Result<Arc<Broker>> {
        config.validate()?;
        crate::metrics::describe();
        let runtime = tokio::runtime::Handle::current();
        // Subscribe before reading topics, so no topic created meanwhile goes unseen.
        let events = coordinator.events();
        let (logs, internal_logs) = {
            let config = config.clone();
            blocking("opening the logs", move || {
                let logs = LogManager::open(config.logs_dir(), config.manager_config())?;
                let internal =
                    LogManager::open(config.internal_dir(), config.internal_manager_config())?;
                Ok((logs, internal))
            })
            .await?
        };
        // In a cluster, registering fails if a live broker at another address has the id.
        coordinator
            .register_broker(BrokerInfo {
                id: config.broker_id,
                address: config.advertised().to_owned(),
                started_at_ms: wire::message::now_ms(),
            })
            .await
            .map_err(|e| match e {
                coordinator::Error::BrokerIdTaken { id, address } => {
                    Error::BrokerIdTaken { id, address }
                }
                other => other.into(),
            })?;
        // Alone, the broker creates the offsets topic now (it leads every queue of it); in a
        // cluster the first broker up would place every offsets queue on itself, so the topic
        // is created on first use instead, when the cluster has its brokers.
        let offsets_created = !config.clustered()
            && crate::cluster::ensure_offsets_topic(coordinator.as_ref(), &config).await?;
        let addresses = coordinator
            .brokers()
            .await?
            .into_iter()
            .map(|b| (b.id, b.address))
            .collect();
        let metadata = coordinator.topics().await?;
        let (topics, offsets) = {
            let (config, logs, internal) = (
                config.clone(),
                Arc::clone(&logs),
                Arc::clone(&internal_logs),
            );
            let runtime = runtime.clone();
            blocking("opening the queues", move || {
                open_local_topics(
                    &config,
                    &logs,
                    &internal,
                    metadata,
                    offsets_created,
                    &runtime,
                )
            })
            .await?
        };
        // validate() kept it within u32, which a usize holds.
        let pull_memory = usize::try_from(config.pull_memory_bytes).unwrap_or(usize::MAX);
        let pull_memory = Arc::new(tokio::sync::Semaphore::new(pull_memory));
        let broker = Arc::new_cyclic(|me| Broker {
            me: me.clone(),
            config,
            coordinator,
            runtime,
            logs,
            internal_logs,
            topics: RwLock::new(topics),
            admin: tokio::sync::Mutex::new(()),
            offsets,
            peers: Peers::default(),
            addresses: RwLock::new(addresses),
            topics_changed: watch::channel(()).0,
            remote: std::sync::OnceLock::new(),
            closing: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
            pull_memory,
            time_lookups: tokio::sync::Semaphore::new(crate::pull::TIME_LOOKUPS_MAX),
            background: Mutex::new(Vec::new()),
        });
        let tasks = vec![
            broker
                .runtime
                .spawn(crate::events::run(Arc::downgrade(&broker), events)),
            broker
                .runtime
                .spawn(crate::groups::refresh_lag_periodically(
                    Arc::downgrade(&broker),
                    broker.config.group_lag_interval,
                )),
            broker
                .runtime
                .spawn(watch_coordinator(Arc::downgrade(&broker))),
        ];
        *broker.background.lock() = tasks;
        broker.warn_about_orphan_logs();
        tracing::info!(
            broker_id = broker.config.broker_id,
            address = broker.config.advertised(),
            data_dir = %broker.config.data_dir.display(),
            topics = broker.topics.read().len(),
            flush = %broker.config.flush,
            "opened broker"
        );
        Ok(broker)
    }

    /// Stops serving: see the module docs. Later calls return at once.
    pub async fn close(&self) -> Result<()> {
        if self.closing.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.shutdown.send_replace(true);
        // Let a topic create or delete in progress finish, so no log opens after this.
        let _admin = self.admin.lock().await;
        for task in std::mem::take(&mut *self.background.lock()) {
            task.abort();
        }
        self.close_remote();
        let topics = std::mem::take(&mut *self.topics.write());
        let mut writers: Vec<JoinHandle<()>> = topics
            .values()
            .flat_map(|t| t.queues.iter().flatten())
            .filter_map(|q| q.appender.as_ref().and_then(Appender::stop))
            .collect();
        writers.extend(self.offsets.stop());
        for writer in writers {
            let _ = writer.await;
        }
        drop(topics);
        let (logs, internal) = (Arc::clone(&self.logs), Arc::clone(&self.internal_logs));
        blocking("closing the logs", move || {
            let messages = logs.close();
            let internal = internal.close();
            messages.and(internal).map_err(Error::from)
        })
        .await?;
        tracing::info!(broker_id = self.config.broker_id, "closed broker");
        Ok(())
    }

    /// Answers every waiting long poll now (empty) and makes later pulls answer without
    /// waiting, so a server draining its connections before `close` is not held up for a
    /// whole `max_wait` by parked pulls. Everything else keeps working until `close`.
    pub fn end_long_polls(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn broker_id(&self) -> u32 {
        self.config.broker_id
    }

    /// Whether this broker serves `topic` now (it knows the topic and opened the queues of it
    /// it leads).
    pub fn serves_topic(&self, topic: &str) -> bool {
        self.topics.read().contains_key(topic)
    }

    /// Waits until this broker serves `topic` (`serving`), or no longer does: a topic created
    /// or deleted on another broker is taken up here when its coordinator event is handled.
    /// Bound it with a timeout.
    pub async fn await_topic(&self, topic: &str, serving: bool) {
        let mut changed = self.topics_changed.subscribe();
        while self.serves_topic(topic) != serving {
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    /// The leader of `topic`'s `queue` as this broker knows it.
    pub fn queue_leader(&self, topic: &str, queue: u32) -> Option<u32> {
        let topics = self.topics.read();
        let state = topics.get(topic)?.meta.queues.get(queue as usize)?;
        Some(state.leader)
    }

    /// True from the moment `close` starts.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The broker as an owned handle, for futures that outlive the call that made them.
    pub(crate) fn handle(&self) -> Option<Arc<Broker>> {
        self.me.upgrade()
    }

    /// Runs `f` with the queue `topic`/`queue` if this broker leads it.
    pub(crate) fn with_queue<R>(
        &self,
        topic: &str,
        queue: u32,
        f: impl FnOnce(&LocalTopic, &LocalQueue) -> Result<R, ServiceError>,
    ) -> Result<R, ServiceError> {
        let topics = self.topics.read();
        let Some(local) = topics.get(topic) else {
            return Err(if self.is_closing() {
                error::shutting_down()
            } else {
                error::unknown_topic(topic)
            });
        };
        match local.queues.get(queue as usize) {
            None => Err(error::unknown_queue(topic, queue, local.queues.len())),
            Some(None) => Err(self.not_leader(&local.meta, queue)),
            Some(Some(handle)) => f(local, handle),
        }
    }

    /// The handle of a queue this broker leads.
    pub(crate) fn queue(&self, topic: &str, queue: u32) -> Result<Arc<QueueHandle>, ServiceError> {
        self.with_queue(topic, queue, |_, q| Ok(Arc::clone(&q.handle)))
    }

    pub(crate) fn local_topic(&self, topic: &str) -> Option<Arc<LocalTopic>> {
        self.topics.read().get(topic).cloned()
    }

    fn not_leader(&self, meta: &TopicMetadata, queue: u32) -> ServiceError {
        let leader = meta.queues.get(queue as usize).map_or_else(
            || "another broker".to_owned(),
            |q| self.describe_broker(q.leader),
        );
        ServiceError::new(
            ErrorCode::NotLeader,
            format!(
                "broker {} does not lead {}-{queue}; {leader} does",
                self.config.broker_id, meta.name
            ),
        )
    }

    /// Opens logs for the queues of `meta` this broker leads and starts serving them.
    /// `fresh`: the topic was just created, so a log left under its name by an earlier topic
    /// is deleted rather than served.
    pub(crate) async fn open_topic(
        &self,
        meta: TopicMetadata,
        fresh: bool,
    ) -> Result<Arc<LocalTopic>, ServiceError> {
        let manager = Arc::clone(self.manager_for(meta.internal));
        let combine = self.config.flush == Flush::EveryWrite;
        let broker_id = self.config.broker_id;
        let runtime = self.runtime.clone();
        let name = meta.name.clone();
        let local = tokio::task::spawn_blocking(move || {
            open_topic_blocking(&manager, meta, broker_id, combine, fresh, true, &runtime)
        })
        .await
        .map_err(|e| error::task_failed("opening a topic", e))?
        .map_err(|(e, queue)| error::storage(&e, &name, queue))?;
        let local = Arc::new(local);
        if local.meta.name == OFFSETS_TOPIC {
            self.attach_offsets(&local).await?;
        }
        self.topics
            .write()
            .insert(local.meta.name.clone(), Arc::clone(&local));
        self.topics_changed.send_replace(());
        Ok(local)
    }

    /// Stops serving `topic` and deletes its logs: pending sends fail with `UnknownTopic`,
    /// waiting pulls wake and answer `UnknownTopic`.
    pub(crate) async fn drop_topic(&self, topic: &str) -> Result<(), ServiceError> {
        let Some(local) = self.topics.write().remove(topic) else {
            return Ok(());
        };
        self.topics_changed.send_replace(());
        let mut appenders = Vec::new();
        for queue in local.queues.iter().flatten() {
            queue.handle.mark_gone();
            appenders.extend(queue.appender.as_ref().and_then(Appender::stop));
        }
        for appender in appenders {
            let _ = appender.await;
        }
        let manager = Arc::clone(self.manager_for(local.meta.internal));
        let queues: Vec<u32> = local
            .queues
            .iter()
            .flatten()
            .map(|q| q.handle.queue)
            .collect();
        drop(local);
        let name = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            for queue in queues {
                match manager.delete(&name, queue) {
                    Ok(()) | Err(log_core::Error::UnknownPartition { .. }) => {}
                    Err(e) => return Err(error::storage(&e, &name, queue)),
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| error::task_failed("deleting a topic's logs", e))?
    }

    /// Starts serving the offsets queues of `local` (the offsets topic) this broker leads.
    async fn attach_offsets(&self, local: &LocalTopic) -> Result<(), ServiceError> {
        let (count, led) = offsets_queues(local);
        let broker = self.handle().ok_or_else(error::shutting_down)?;
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || broker.offsets.attach(count, led, &runtime))
            .await
            .map_err(|e| error::task_failed("opening consumer offsets", e))?
            .map_err(|e| ServiceError::new(ErrorCode::StorageError, e.to_string()))
    }

    fn manager_for(&self, internal: bool) -> &Arc<LogManager> {
        if internal {
            &self.internal_logs
        } else {
            &self.logs
        }
    }

    /// Logs left in the data directory by topics the coordinator no longer knows are kept
    /// (never deleted on a guess: the coordinator's state may be what was lost) but not served.
    fn warn_about_orphan_logs(&self) {
        let topics = self.topics.read();
        let orphans: Vec<String> = self
            .logs
            .partitions()
            .into_iter()
            .filter(|(topic, _)| !topics.contains_key(topic))
            .map(|(topic, queue)| format!("{topic}-{queue}"))
            .collect();
        if !orphans.is_empty() {
            tracing::warn!(
                logs = ?orphans,
                "logs of topics the coordinator does not know are kept but not served"
            );
        }
    }
}

/// The queue count of the offsets topic `local` and the handles of the queues led here.
fn offsets_queues(local: &LocalTopic) -> (usize, Vec<Arc<QueueHandle>>) {
    let led = local
        .queues
        .iter()
        .flatten()
        .map(|q| Arc::clone(&q.handle))
        .collect();
    (local.queues.len(), led)
}

type OpenedTopics = (HashMap<String, Arc<LocalTopic>>, OffsetStore);

/// Opens every topic the broker leads queues of, then the offsets store (blocking).
fn open_local_topics(
    config: &BrokerConfig,
    logs: &Arc<LogManager>,
    internal: &Arc<LogManager>,
    metadata: Vec<TopicMetadata>,
    offsets_created: bool,
    runtime: &tokio::runtime::Handle,
) -> Result<OpenedTopics> {
    let combine = config.flush == Flush::EveryWrite;
    let mut topics = HashMap::new();
    for meta in metadata {
        let manager = if meta.internal { internal } else { logs };
        let name = meta.name.clone();
        // A just-created offsets topic has no logs yet: that is expected, not damage.
        let expect_logs = !(offsets_created && name == OFFSETS_TOPIC);
        let local = open_topic_blocking(
            manager,
            meta,
            config.broker_id,
            combine,
            false,
            expect_logs,
            runtime,
        )
        .map_err(|(e, _)| Error::Log(e))?;
        topics.insert(name, Arc::new(local));
    }
    let offsets = OffsetStore::new(config.offsets_compact_records);
    if let Some(local) = topics.get(OFFSETS_TOPIC) {
        let (count, led) = offsets_queues(local);
        offsets.attach(count, led, runtime)?;
    }
    Ok((topics, offsets))
}

/// Opens (or creates) the logs of the queues of `meta` that `broker_id` leads.
fn open_topic_blocking(
    manager: &LogManager,
    meta: TopicMetadata,
    broker_id: u32,
    combine: bool,
    fresh: bool,
    expect_logs: bool,
    runtime: &tokio::runtime::Handle,
) -> Result<LocalTopic, (log_core::Error, u32)> {
    let name: Arc<str> = Arc::from(meta.name.as_str());
    let mut queues = Vec::with_capacity(meta.queues.len());
    for state in &meta.queues {
        if state.leader != broker_id {
            queues.push(None);
            continue;
        }
        let existing = manager.get(&name, state.queue);
        if existing.is_some() && fresh {
            tracing::warn!(topic = %name, queue = state.queue, "deleting a log left by an earlier topic of the same name");
            manager
                .delete(&name, state.queue)
                .map_err(|e| (e, state.queue))?;
        } else if existing.is_none() && !fresh && expect_logs {
            tracing::warn!(topic = %name, queue = state.queue, "the log of a known queue is missing; starting it empty");
        }
        let log = manager
            .get_or_create(&name, state.queue)
            .map_err(|e| (e, state.queue))?;
        let handle = Arc::new(QueueHandle::new(
            Arc::clone(&name),
            state.queue,
            log,
            state.leader_epoch,
        ));
        let appender =
            (!meta.internal).then(|| Appender::start(Arc::clone(&handle), combine, runtime));
        queues.push(Some(LocalQueue { handle, appender }));
    }
    Ok(LocalTopic { meta, queues })
}

/// Runs blocking work (recovery, fsyncs, file deletion) on the runtime's blocking pool.
async fn blocking<T: Send + 'static>(
    op: &'static str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Task {
            op,
            reason: e.to_string(),
        })?
}

/// How often the broker looks at whether its coordinator reaches the metadata store.
const COORDINATOR_CHECK_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Publishes `runnel_coordinator_connected` and logs each change: while etcd is unreachable
/// the broker keeps serving the queues it leads from what it last saw, and says so.
async fn watch_coordinator(broker: Weak<Broker>) {
    let mut ticks = tokio::time::interval(COORDINATOR_CHECK_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        ticks.tick().await;
        let Some(broker) = broker.upgrade() else {
            return;
        };
        let connected = broker.coordinator.is_connected();
        crate::metrics::coordinator_connected(connected);
        match (last, connected) {
            (Some(true), false) => tracing::warn!(
                "the metadata store is unreachable; serving the queues this broker leads from \
                 the metadata last seen"
            ),
            (Some(false), true) => tracing::info!("the metadata store is reachable again"),
            _ => {}
        }
        last = Some(connected);
    }
}
