//! Where things live when the broker is one member of a cluster: which broker a client should
//! ask instead (`NotLeader` hints), which broker serves a group's offsets, and which broker
//! makes topic changes (the controller; others forward them to it, see `remote.rs`).
//!
//! A group's committed offsets live in one queue of `__consumer_offsets` (see `offsets/`), and
//! the broker that leads that queue serves the group's `CommitOffsets`, `FetchOffsets`,
//! `ResetOffsets` and `DescribeGroup`; any other broker answers them `NotLeader`, naming the
//! group's offsets broker (and its address when known). Membership (`Heartbeat`,
//! `LeaveGroup`) is answered by every broker: the coordinator is shared.
//!
//! The offsets topic is created on first use in a cluster — by the first heartbeat, commit,
//! fetch, reset or describe of any group — because a broker creating it at start-up, alone in
//! the cluster so far, would place every offsets queue on itself. A concurrent creation on
//! another broker (`TopicExists`) counts as success. Alone on the embedded coordinator the
//! broker creates it at open (`broker.rs`), as it always did.
//!
//! Addresses in hints come from a cache of the coordinator's live brokers, refreshed whenever
//! the broker reads them (routes, the periodic lag refresh, topic events): a hint is advice,
//! the client's route refresh is the authority.

use std::sync::Arc;
use std::time::Duration;

use coordinator::{Coordinator, TopicSpec};
use tokio::sync::broadcast;
use wire::{ErrorCode, RequestContext, ServiceError};

use crate::broker::{Broker, LocalTopic};
use crate::config::BrokerConfig;
use crate::error::{self, Result};
use crate::offsets::{queue_of, OFFSETS_TOPIC};
use crate::queue::QueueHandle;
use crate::remote::is_forwarded;

/// Creates the consumer-offsets topic unless it exists; answers whether this call created it.
pub(crate) async fn ensure_offsets_topic(
    coordinator: &dyn Coordinator,
    config: &BrokerConfig,
) -> Result<bool> {
    if coordinator.topic(OFFSETS_TOPIC).await?.is_some() {
        return Ok(false);
    }
    let spec = TopicSpec {
        name: OFFSETS_TOPIC.to_owned(),
        queues: config.offsets_queues,
        config: Default::default(),
        internal: true,
    };
    match coordinator.create_topic(spec).await {
        Ok(meta) => {
            let leaders: Vec<u32> = meta.queues.iter().map(|q| q.leader).collect();
            tracing::info!(
                queues = meta.queues.len(),
                ?leaders,
                "created {OFFSETS_TOPIC}"
            );
            Ok(true)
        }
        Err(coordinator::Error::TopicExists(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// How long a topic change waits for a controller to be elected before it is refused `Busy`.
const CONTROLLER_WAIT: Duration = Duration::from_secs(5);

/// The broker a topic change goes to when it is not this one.
pub(crate) struct Controller {
    pub id: u32,
    pub address: String,
}

impl Broker {
    /// The controller, when a topic change asked of this broker must go to it: `None` when
    /// this broker is the controller (alone on the embedded coordinator it always is). A
    /// change forwarded by another broker is not forwarded again: if the two disagree about
    /// who the controller is (for a moment, during a failover), it is refused `Busy`.
    pub(crate) async fn controller_elsewhere(
        &self,
        context: &RequestContext,
    ) -> Result<Option<Controller>, ServiceError> {
        let id = self.await_controller().await?;
        if id == self.config.broker_id {
            return Ok(None);
        }
        let busy = |why: String| ServiceError::new(ErrorCode::Busy, why);
        if is_forwarded(context) {
            return Err(busy(format!(
                "broker {} is not the controller (broker {id} is, as far as it knows); retry",
                self.config.broker_id
            )));
        }
        let known = self.addresses.read().get(&id).cloned();
        let address = match known {
            Some(address) => address,
            None => self
                .refresh_addresses()
                .await?
                .into_iter()
                .find(|b| b.id == id)
                .map(|b| b.address)
                .ok_or_else(|| busy(format!("the controller, broker {id}, is not live")))?,
        };
        Ok(Some(Controller { id, address }))
    }

    /// The controller's id, waiting up to `CONTROLLER_WAIT` for one to be elected.
    async fn await_controller(&self) -> Result<u32, ServiceError> {
        let mut events = self.coordinator.events();
        let wait = async {
            loop {
                let info = self
                    .coordinator
                    .cluster_info()
                    .await
                    .map_err(error::metadata)?;
                if let Some(controller) = info.controller {
                    return Ok(controller);
                }
                // Any event (or a lagging receiver) is a reason to look again.
                if let Err(broadcast::error::RecvError::Closed) = events.recv().await {
                    return Err(error::shutting_down());
                }
            }
        };
        tokio::time::timeout(CONTROLLER_WAIT, wait)
            .await
            .unwrap_or_else(|_| {
                Err(ServiceError::new(
                    ErrorCode::Busy,
                    format!("no controller was elected within {CONTROLLER_WAIT:?}; retry"),
                ))
            })
    }

    /// `broker N (at ADDRESS)`, the address when this broker knows it.
    pub(crate) fn describe_broker(&self, id: u32) -> String {
        match self.addresses.read().get(&id) {
            Some(address) => format!("broker {id} (at {address})"),
            None => format!("broker {id}"),
        }
    }

    /// Reads the live brokers from the coordinator and refreshes the address cache.
    pub(crate) async fn refresh_addresses(
        &self,
    ) -> Result<Vec<coordinator::BrokerInfo>, ServiceError> {
        let brokers = self.coordinator.brokers().await.map_err(error::metadata)?;
        *self.addresses.write() = brokers.iter().map(|b| (b.id, b.address.clone())).collect();
        Ok(brokers)
    }

    /// A `NotLeader` refusal made again (`again`) after refreshing the broker addresses, so
    /// its hint names the leader's address even if the leader joined after this broker last
    /// looked. Other failures pass through.
    pub(crate) async fn refreshed_refusal(
        &self,
        failure: ServiceError,
        again: impl FnOnce(&Broker) -> Option<ServiceError>,
    ) -> ServiceError {
        if failure.code != ErrorCode::NotLeader || self.refresh_addresses().await.is_err() {
            return failure;
        }
        again(self)
            .filter(|f| f.code == ErrorCode::NotLeader)
            .unwrap_or(failure)
    }

    /// The handle of a queue this broker leads, or why not (with a fresh leader hint). A topic
    /// this broker has not opened is looked up first (`served_topic`).
    pub(crate) async fn led_queue(
        &self,
        topic: &str,
        queue: u32,
    ) -> Result<Arc<QueueHandle>, ServiceError> {
        let failure = match self.queue(topic, queue) {
            Ok(handle) => return Ok(handle),
            Err(failure) if failure.code == ErrorCode::UnknownTopic => {
                self.served_topic(topic).await?;
                match self.queue(topic, queue) {
                    Ok(handle) => return Ok(handle),
                    Err(failure) => failure,
                }
            }
            Err(failure) => failure,
        };
        Err(self
            .refreshed_refusal(failure, |b| b.queue(topic, queue).err())
            .await)
    }

    /// The topic as this broker serves it. One it has not opened is looked up in the
    /// coordinator and opened if it exists: a broker learns of topics created elsewhere from
    /// coordinator events, and those can lag behind a client that another broker already told
    /// of the topic (right after its creation, or while this broker's etcd watch recovers).
    pub(crate) async fn served_topic(&self, name: &str) -> Result<Arc<LocalTopic>, ServiceError> {
        if let Some(local) = self.local_topic(name) {
            return Ok(local);
        }
        // Asked before taking the admin lock: with etcd unreachable the answer can take the
        // coordinator's whole request timeout.
        let exists = self
            .coordinator
            .topic(name)
            .await
            .map_err(error::metadata)?
            .is_some();
        if exists {
            self.adopt_topic(name).await?;
        }
        self.local_topic(name).ok_or_else(|| {
            if self.is_closing() {
                error::shutting_down()
            } else {
                error::unknown_topic(name)
            }
        })
    }

    /// The offsets topic as this broker serves it, creating it (in the coordinator) and
    /// opening it (here) first if needed.
    pub(crate) async fn offsets_topic(&self) -> Result<Arc<LocalTopic>, ServiceError> {
        if let Some(local) = self.local_topic(OFFSETS_TOPIC) {
            return Ok(local);
        }
        ensure_offsets_topic(self.coordinator.as_ref(), &self.config)
            .await
            .map_err(|e| match e {
                crate::Error::Coordinator(e) => error::metadata(e),
                other => ServiceError::new(ErrorCode::Unknown, other.to_string()),
            })?;
        // The coordinator event that opens it here may not have been handled yet.
        self.adopt_topic(OFFSETS_TOPIC).await?;
        // Best effort: the addresses only improve NotLeader hints.
        if let Err(failure) = self.refresh_addresses().await {
            tracing::debug!(%failure, "broker addresses not refreshed");
        }
        self.local_topic(OFFSETS_TOPIC).ok_or_else(|| {
            if self.is_closing() {
                error::shutting_down()
            } else {
                ServiceError::new(
                    ErrorCode::Busy,
                    format!("{OFFSETS_TOPIC} is being created; retry"),
                )
            }
        })
    }

    /// Succeeds if this broker serves `group`'s offsets (creating the offsets topic first if
    /// needed); `NotLeader` naming the broker that does otherwise.
    pub(crate) async fn serve_group_offsets(&self, group: &str) -> Result<(), ServiceError> {
        let local = self.offsets_topic().await?;
        match self.group_offsets_here(&local, group) {
            Ok(()) => Ok(()),
            Err(failure) => Err(self
                .refreshed_refusal(failure, |b| b.group_offsets_here(&local, group).err())
                .await),
        }
    }

    /// The same check on an opened offsets topic, without waiting: for the commit path,
    /// which must queue synchronously.
    pub(crate) fn group_offsets_here(
        &self,
        local: &LocalTopic,
        group: &str,
    ) -> Result<(), ServiceError> {
        let queue = queue_of(group, local.queues.len());
        match local.queues.get(queue) {
            Some(Some(_)) => Ok(()),
            _ => {
                let leader = local.meta.queues.get(queue).map_or_else(
                    || "another broker".to_owned(),
                    |q| self.describe_broker(q.leader),
                );
                Err(ServiceError::new(
                    ErrorCode::NotLeader,
                    format!(
                        "group {group}'s offsets are on {leader} ({OFFSETS_TOPIC}-{queue}); \
                         broker {} does not serve them",
                        self.config.broker_id
                    ),
                ))
            }
        }
    }

    /// Whether this broker serves `group`'s offsets, without creating anything (for the
    /// periodic lag refresh).
    pub(crate) fn serves_group_offsets(&self, group: &str) -> bool {
        self.local_topic(OFFSETS_TOPIC)
            .is_some_and(|local| self.group_offsets_here(&local, group).is_ok())
    }
}
