//! Topic administration (`CreateTopic`, `DeleteTopic`, `ListTopics`, `DescribeTopic`) and
//! `QueryRoute`.
//!
//! The coordinator is the source of truth for which topics exist and who leads their queues;
//! this broker keeps a log (and an appender) for each queue it leads. Create asks the
//! coordinator first, then creates the logs (undoing the coordinator's entry if that fails);
//! delete asks the coordinator first, then stops serving and deletes the logs, and finally
//! deletes the group offsets committed on the topic. Both hold the broker's admin lock, which
//! the coordinator-event task takes too, so a topic is never opened and deleted at once.
//!
//! In a cluster, creates and deletes are the controller's: another broker forwards them to
//! it (`cluster.rs`, `remote.rs`) and answers with its answer. The controller places the
//! queues, and its writes are fenced by its election.
//!
//! Topic settings: none are accepted yet. `log-core`'s manager opens every log of a data
//! directory with one configuration at start-up, so a per-topic `retention.ms` or
//! `segment.bytes` could not be applied again after a restart; every key is refused with
//! `InvalidArgument` naming it rather than accepted and silently dropped.
//!
//! Names: `log-core`'s topic-name rule (it becomes a directory name); names starting with
//! `__` are reserved for internal topics, which the broker creates itself.

use coordinator::TopicSpec;
use wire::protocol::{
    BrokerAddress, BrokerDescription, CreateTopicRequest, DeleteTopicRequest,
    DescribeClusterResponse, ListTopicsRequest, ListTopicsResponse, QueryRouteRequest,
    QueryRouteResponse, QueueDescription, QueueRoute, TopicDescription, TopicSummary,
};
use wire::{ErrorCode, RequestContext, ServiceError};

use crate::broker::Broker;
use crate::error;

/// The most queues a topic may have.
pub const QUEUES_PER_TOPIC_MAX: u32 = 4096;
/// Prefix of internal topic names.
pub const INTERNAL_PREFIX: &str = "__";

impl Broker {
    pub(crate) async fn create_topic(
        &self,
        context: &RequestContext,
        request: CreateTopicRequest,
    ) -> Result<TopicDescription, ServiceError> {
        validate_topic_name(&request.name)?;
        if let Some(controller) = self.controller_elsewhere(context).await? {
            return self.forward_create_topic(&controller, request).await;
        }
        let name = request.name;
        if request.queues == 0 || request.queues > QUEUES_PER_TOPIC_MAX {
            return Err(error::invalid(format!(
                "topic {name}: queues must be in 1..={QUEUES_PER_TOPIC_MAX}, got {}",
                request.queues
            )));
        }
        if let Some((key, _)) = request.config.first() {
            return Err(error::invalid(format!(
                "topic {name}: setting {key:?} is not supported (this broker accepts no \
                 per-topic settings yet)"
            )));
        }
        let _admin = self.admin.lock().await;
        let spec = TopicSpec {
            name: name.clone(),
            queues: request.queues,
            config: Default::default(),
            internal: false,
        };
        let meta = self
            .coordinator
            .create_topic(spec)
            .await
            .map_err(error::metadata)?;
        if let Err(failure) = self.open_topic(meta, true).await {
            // Leave no topic behind that this broker cannot serve.
            if let Err(undo) = self.drop_topic(&name).await {
                tracing::warn!(topic = %name, %undo, "removing the logs of a failed create");
            }
            if let Err(undo) = self.coordinator.delete_topic(&name).await {
                tracing::warn!(topic = %name, %undo, "undoing a failed topic create");
            }
            return Err(failure);
        }
        tracing::info!(topic = %name, queues = request.queues, "created topic");
        self.describe_topic(&name).await
    }

    pub(crate) async fn delete_topic(
        &self,
        context: &RequestContext,
        request: DeleteTopicRequest,
    ) -> Result<(), ServiceError> {
        if let Some(controller) = self.controller_elsewhere(context).await? {
            return self.forward_delete_topic(&controller, request).await;
        }
        let name = request.name;
        let _admin = self.admin.lock().await;
        let meta = self
            .coordinator
            .topic(&name)
            .await
            .map_err(error::metadata)?
            .ok_or_else(|| error::unknown_topic(&name))?;
        if meta.internal {
            return Err(error::invalid(format!(
                "topic {name} is internal and cannot be deleted"
            )));
        }
        self.coordinator
            .delete_topic(&name)
            .await
            .map_err(error::metadata)?;
        self.drop_topic(&name).await?;
        for acknowledgement in self.offsets.forget_topic(&name) {
            match acknowledgement.await {
                Ok(Ok(())) => {}
                Ok(Err(failure)) => {
                    tracing::warn!(topic = %name, %failure, "could not delete the offsets of a deleted topic")
                }
                Err(_) => tracing::warn!(topic = %name, "offsets writer stopped"),
            }
        }
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    pub(crate) async fn list_topics(
        &self,
        request: ListTopicsRequest,
    ) -> Result<ListTopicsResponse, ServiceError> {
        let topics = self.coordinator.topics().await.map_err(error::metadata)?;
        Ok(ListTopicsResponse {
            topics: topics
                .into_iter()
                .filter(|t| request.include_internal || !t.internal)
                .map(|t| TopicSummary {
                    queues: t.queues.len() as u32,
                    name: t.name,
                    internal: t.internal,
                })
                .collect(),
        })
    }

    /// Each queue's leader and epoch (coordinator) and, for queues led here, its log's
    /// offsets and size. Queues led elsewhere report zeros: ask their leader.
    pub(crate) async fn describe_topic(
        &self,
        name: &str,
    ) -> Result<TopicDescription, ServiceError> {
        let meta = self
            .coordinator
            .topic(name)
            .await
            .map_err(error::metadata)?
            .ok_or_else(|| error::unknown_topic(name))?;
        let local = self.local_topic(name);
        let queues = meta
            .queues
            .iter()
            .map(|state| {
                let mut description = QueueDescription {
                    queue: state.queue,
                    leader: state.leader,
                    leader_epoch: state.leader_epoch,
                    log_start_offset: 0,
                    log_end_offset: 0,
                    high_watermark: 0,
                    size_bytes: 0,
                };
                let handle = local
                    .as_ref()
                    .and_then(|l| l.queues.get(state.queue as usize))
                    .and_then(Option::as_ref);
                if let Some(queue) = handle {
                    let log = &queue.handle.log;
                    description.log_start_offset = log.log_start_offset().0;
                    description.log_end_offset = log.log_end_offset().0;
                    description.high_watermark = log.high_watermark().0;
                    description.size_bytes = queue.handle.size_bytes();
                }
                description
            })
            .collect();
        Ok(TopicDescription {
            name: meta.name,
            internal: meta.internal,
            config: meta.config.into_iter().collect(),
            queues,
        })
    }

    pub(crate) async fn query_route(
        &self,
        request: QueryRouteRequest,
    ) -> Result<QueryRouteResponse, ServiceError> {
        let meta = self
            .coordinator
            .topic(&request.topic)
            .await
            .map_err(error::metadata)?
            .ok_or_else(|| error::unknown_topic(&request.topic))?;
        // Every live broker, whether or not it leads a queue here; a queue whose leader is not
        // live keeps its leader id, with no address for it: the client waits for a new one.
        let brokers = self.refresh_addresses().await?;
        Ok(QueryRouteResponse {
            brokers: brokers
                .into_iter()
                .map(|b| BrokerAddress {
                    broker_id: b.id,
                    address: b.address,
                })
                .collect(),
            queues: meta
                .queues
                .iter()
                .map(|q| QueueRoute {
                    queue: q.queue,
                    leader: q.leader,
                    leader_epoch: q.leader_epoch,
                })
                .collect(),
        })
    }

    /// The live brokers and the controller, as the coordinator sees them now.
    pub(crate) async fn describe_cluster(&self) -> Result<DescribeClusterResponse, ServiceError> {
        let info = self
            .coordinator
            .cluster_info()
            .await
            .map_err(error::metadata)?;
        let mut brokers = self.coordinator.brokers().await.map_err(error::metadata)?;
        brokers.sort_by_key(|b| b.id);
        Ok(DescribeClusterResponse {
            coordinator: info.kind.as_str().to_owned(),
            cluster: info.name,
            controller: info.controller,
            brokers: brokers
                .into_iter()
                .map(|b| BrokerDescription {
                    broker_id: b.id,
                    address: b.address,
                    started_at_ms: b.started_at_ms,
                })
                .collect(),
        })
    }

    /// Starts serving a topic another broker created (a coordinator event); no-op if served.
    pub(crate) async fn adopt_topic(&self, name: &str) -> Result<(), ServiceError> {
        let _admin = self.admin.lock().await;
        if self.local_topic(name).is_some() || self.is_closing() {
            return Ok(());
        }
        let Some(meta) = self
            .coordinator
            .topic(name)
            .await
            .map_err(error::metadata)?
        else {
            return Ok(());
        };
        self.open_topic(meta, true).await?;
        tracing::info!(topic = %name, "serving a topic created elsewhere");
        Ok(())
    }

    /// Stops serving a topic another broker deleted (a coordinator event); no-op if gone.
    pub(crate) async fn abandon_topic(&self, name: &str) -> Result<(), ServiceError> {
        let _admin = self.admin.lock().await;
        if self.local_topic(name).is_none() || self.is_closing() {
            return Ok(());
        }
        if self
            .coordinator
            .topic(name)
            .await
            .map_err(error::metadata)?
            .is_some()
        {
            return Ok(()); // deleted and created again meanwhile
        }
        self.drop_topic(name).await?;
        tracing::info!(topic = %name, "stopped serving a topic deleted elsewhere");
        Ok(())
    }
}

fn validate_topic_name(name: &str) -> Result<(), ServiceError> {
    log_core::manager::validate_topic_name(name)
        .map_err(|e| ServiceError::new(ErrorCode::InvalidName, e.to_string()))?;
    if name.starts_with(INTERNAL_PREFIX) {
        return Err(ServiceError::new(
            ErrorCode::InvalidName,
            format!("topic name {name:?}: names starting with {INTERNAL_PREFIX} are reserved for internal topics"),
        ));
    }
    Ok(())
}
