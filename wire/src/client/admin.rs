//! `Admin`: topic, group and offset administration, as thin typed calls.
//!
//! Each method is one request to a bootstrap broker (the one that answered last), except
//! `offset_for_time`, which asks the queue's leader, and the group-offsets calls
//! (`describe_group`, `reset_offsets`, `fetch_offsets`), which ask the broker keeping the
//! group's offsets. Broker refusals come back as
//! `Error::Server` with the broker's code (`TopicExists`, `UnknownTopic`, `GroupNotEmpty`, …).
//! The `runnel` CLI's admin commands are built on these.

use std::collections::{BTreeMap, BTreeSet};

use super::cluster::Client;
use crate::error::Result;
use crate::protocol::{
    ApiVersionsResponse, CreateTopicRequest, DeleteTopicRequest, DescribeClusterRequest,
    DescribeClusterResponse, DescribeGroupRequest, DescribeTopicRequest, FetchOffsetsRequest,
    GroupDescription, GroupSummary, ListGroupsRequest, ListTopicsRequest, OffsetForTimeRequest,
    OffsetResetEntry, OffsetSpec, QueryRouteRequest, QueryRouteResponse, QueueOffset,
    ResetOffsetsRequest, TopicConfig, TopicDescription, TopicSummary,
};

/// Administration through a `Client`'s connections; cheap to clone.
#[derive(Clone, Debug)]
pub struct Admin {
    client: Client,
}

impl Admin {
    pub fn new(client: &Client) -> Admin {
        Admin {
            client: client.clone(),
        }
    }

    /// Creates a topic with `queues` queues and settings by name (`retention.ms`, …).
    pub async fn create_topic(
        &self,
        name: &str,
        queues: u32,
        config: TopicConfig,
    ) -> Result<TopicDescription> {
        let request = CreateTopicRequest {
            name: name.to_owned(),
            queues,
            config,
        };
        self.client.call_any(request).await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let request = DeleteTopicRequest {
            name: name.to_owned(),
        };
        self.client.call_any(request).await
    }

    /// Every topic; internal ones (consumer offsets, later retry and schedule topics) only
    /// when asked.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicSummary>> {
        let request = ListTopicsRequest { include_internal };
        Ok(self.client.call_any(request).await?.topics)
    }

    /// A topic's settings and each queue's leader, offsets and size. A broker knows the
    /// offsets and sizes of the queues it leads only, so in a cluster each leader is asked
    /// for its own; a queue whose leader cannot be reached keeps zeros (its `leader` says
    /// which broker to look at).
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let request = DescribeTopicRequest {
            name: name.to_owned(),
        };
        let mut description = self.client.call_any(request.clone()).await?;
        let route = self.query_route(name).await?;
        if route.brokers.len() <= 1 {
            return Ok(description);
        }
        let leaders: BTreeSet<u32> = description.queues.iter().map(|q| q.leader).collect();
        for leader in leaders {
            let Some(broker) = route.brokers.iter().find(|b| b.broker_id == leader) else {
                continue;
            };
            let theirs = match self.client.call_at(&broker.address, request.clone()).await {
                Ok(theirs) => theirs,
                Err(error) => {
                    tracing::warn!(topic = name, leader, %error, "could not describe the queues of a leader");
                    continue;
                }
            };
            for queue in description.queues.iter_mut().filter(|q| q.leader == leader) {
                if let Some(own) = theirs
                    .queues
                    .iter()
                    .find(|t| t.queue == queue.queue && t.leader == leader)
                {
                    *queue = own.clone();
                }
            }
        }
        Ok(description)
    }

    /// Which broker leads each queue of `topic`.
    pub async fn query_route(&self, topic: &str) -> Result<QueryRouteResponse> {
        let request = QueryRouteRequest {
            topic: topic.to_owned(),
        };
        self.client.call_any(request).await
    }

    /// Every group: those with members (any broker knows them, from the coordinator) and
    /// those with committed offsets only, which only the broker keeping their offsets knows;
    /// so in a cluster every live broker is asked, as Kafka's admin client does. A broker
    /// that cannot be reached is skipped with a warning.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let first = self.client.call_any(ListGroupsRequest {}).await?.groups;
        let cluster = self.describe_cluster().await?;
        if cluster.brokers.len() <= 1 {
            return Ok(first);
        }
        let mut groups: BTreeMap<String, GroupSummary> =
            first.into_iter().map(|g| (g.group.clone(), g)).collect();
        for broker in &cluster.brokers {
            match self
                .client
                .call_at(&broker.address, ListGroupsRequest {})
                .await
            {
                Ok(theirs) => {
                    for group in theirs.groups {
                        groups.entry(group.group.clone()).or_insert(group);
                    }
                }
                Err(error) => {
                    tracing::warn!(broker = broker.broker_id, %error, "could not list the groups of a broker");
                }
            }
        }
        Ok(groups.into_values().collect())
    }

    /// A group's state, members with their assignments, and per-queue offsets and lag. The
    /// broker keeping the group's offsets knows the end offsets of the queues it leads only;
    /// the others' end offsets (and so their lag) come from their leaders.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let request = DescribeGroupRequest {
            group: group.to_owned(),
        };
        let mut description = self.client.call_group(group, request).await?;
        let topics: BTreeSet<String> = description
            .offsets
            .iter()
            .map(|o| o.topic.clone())
            .collect();
        for topic in topics {
            let Ok(queues) = self.describe_topic(&topic).await else {
                continue;
            };
            for entry in description.offsets.iter_mut().filter(|o| o.topic == topic) {
                if let Some(queue) = queues.queues.iter().find(|q| q.queue == entry.queue) {
                    if queue.log_end_offset > entry.log_end_offset {
                        entry.log_end_offset = queue.log_end_offset;
                        entry.lag = match entry.committed {
                            Some(committed) => queue.log_end_offset.saturating_sub(committed),
                            None => {
                                queue.log_end_offset
                                    - queue.log_start_offset.min(queue.log_end_offset)
                            }
                        };
                    }
                }
            }
        }
        Ok(description)
    }

    /// Moves a group's offsets (of `topic`, or of every topic it has offsets for) to `to`.
    /// With `execute` false nothing changes: the plan is only computed (a dry run, as
    /// `kafka-consumer-groups --reset-offsets` without `--execute`). The group must have no
    /// live members, or the broker answers `GroupNotEmpty`.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: Option<&str>,
        to: OffsetSpec,
        execute: bool,
    ) -> Result<Vec<OffsetResetEntry>> {
        let request = ResetOffsetsRequest {
            group: group.to_owned(),
            topic: topic.map(str::to_owned),
            to,
            execute,
        };
        Ok(self.client.call_group(group, request).await?.plan)
    }

    /// The first offset of `topic`'s `queue` stored at or after `timestamp` (ms since the
    /// Unix epoch); the log end offset when every message is older.
    pub async fn offset_for_time(&self, topic: &str, queue: u32, timestamp: i64) -> Result<u64> {
        let request = OffsetForTimeRequest {
            topic: topic.to_owned(),
            queue,
            timestamp,
        };
        let timeout = self.client.config().request_timeout;
        let response = self
            .client
            .call_leader(topic, queue, request, timeout)
            .await?;
        Ok(response.offset)
    }

    /// A group's committed offsets for `topic` (`queues` empty: every queue).
    pub async fn fetch_offsets(
        &self,
        group: &str,
        topic: &str,
        queues: Vec<u32>,
    ) -> Result<Vec<QueueOffset>> {
        let request = FetchOffsetsRequest {
            group: group.to_owned(),
            topic: topic.to_owned(),
            queues,
        };
        Ok(self.client.call_group(group, request).await?.offsets)
    }

    /// The live brokers, the controller, and the kind of coordinator.
    pub async fn describe_cluster(&self) -> Result<DescribeClusterResponse> {
        self.client.call_any(DescribeClusterRequest {}).await
    }

    /// The APIs and versions the broker speaks, and its release.
    pub async fn api_versions(&self) -> Result<ApiVersionsResponse> {
        self.client.api_versions().await
    }
}
