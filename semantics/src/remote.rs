//! What a broker asks of the other brokers of its cluster, through the native client: the
//! offsets of queues led elsewhere, which a group's `ResetOffsets` needs because the group's
//! offsets broker serves every queue of the group's topics but leads only some (and so does
//! the `runnel_group_lag` gauge); and topic creates and deletes, which it forwards to the
//! controller.
//!
//! The client is made on first use (never, on a single broker: it leads every queue) with the
//! live brokers as bootstrap, and follows routes like any client: `OffsetForTime` goes to
//! each queue's leader, with a route refresh on `NotLeader`. Each request is bounded by
//! `REMOTE_REQUEST_TIMEOUT`, so a broker that does not answer fails the reset, in bounded
//! time, instead of hanging it.
//!
//! A forwarded topic change goes over a connection of its own to the controller's address
//! (`FORWARD_TIMEOUT`: a create waits for the cluster to see it). Brokers name their clients
//! `runnel-broker-<id>`; a broker does not forward a request from such a client again.

use std::time::Duration;

use wire::client::{Admin, Client, ClientConfig};
use wire::protocol::{
    CreateTopicRequest, DeleteTopicRequest, GroupDescription, OffsetSpec, TopicDescription,
};
use wire::{ErrorCode, RequestContext, ServiceError};

use crate::broker::Broker;
use crate::cluster::Controller;

/// How long one request to another broker may take.
pub const REMOTE_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a topic change forwarded to the controller may take.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// The client id prefix of a broker's requests to other brokers.
const BROKER_CLIENT_PREFIX: &str = "runnel-broker-";

/// Whether a request came from another broker (which forwarded it).
pub(crate) fn is_forwarded(context: &RequestContext) -> bool {
    context.client_id.starts_with(BROKER_CLIENT_PREFIX)
}

impl Broker {
    /// The offset `spec` names in `topic`'s `queue`, asked of the queue's leader:
    /// `Earliest` its first stored offset, `Latest` its readable end, a time the first offset
    /// at or after it.
    pub(crate) async fn remote_offset(
        &self,
        topic: &str,
        queue: u32,
        spec: OffsetSpec,
    ) -> Result<u64, ServiceError> {
        let timestamp = match spec {
            // Before every message: the first offset stored.
            OffsetSpec::Earliest => i64::MIN,
            // After every message: the readable end.
            OffsetSpec::Latest => i64::MAX,
            OffsetSpec::Timestamp(at) => at,
        };
        let client = self.remote_client()?;
        Admin::new(&client)
            .offset_for_time(topic, queue, timestamp)
            .await
            .map_err(|failure| {
                // Not an answer (no connection, no reply in time): retriable.
                let code = failure.code().unwrap_or(ErrorCode::Busy);
                ServiceError::new(
                    code,
                    format!("asking the leader of {topic}-{queue} for its offsets: {failure}"),
                )
            })
    }

    /// `group`'s description as a client sees it: asked of its offsets broker (this one, when
    /// it serves the group), with every queue's end offset and lag from the queue's leader.
    pub(crate) async fn remote_group_description(
        &self,
        group: &str,
    ) -> Result<GroupDescription, ServiceError> {
        let client = self.remote_client()?;
        Admin::new(&client)
            .describe_group(group)
            .await
            .map_err(|failure| {
                let code = failure.code().unwrap_or(ErrorCode::Busy);
                ServiceError::new(code, format!("describing group {group}: {failure}"))
            })
    }

    /// Has the controller create the topic; answers with its answer.
    pub(crate) async fn forward_create_topic(
        &self,
        controller: &Controller,
        request: CreateTopicRequest,
    ) -> Result<TopicDescription, ServiceError> {
        let client = self.broker_client(vec![controller.address.clone()], FORWARD_TIMEOUT)?;
        let answer = Admin::new(&client)
            .create_topic(&request.name, request.queues, request.config)
            .await;
        client.close();
        answer.map_err(|failure| forward_failure(controller, &failure))
    }

    /// Has the controller delete the topic.
    pub(crate) async fn forward_delete_topic(
        &self,
        controller: &Controller,
        request: DeleteTopicRequest,
    ) -> Result<(), ServiceError> {
        let client = self.broker_client(vec![controller.address.clone()], FORWARD_TIMEOUT)?;
        let answer = Admin::new(&client).delete_topic(&request.name).await;
        client.close();
        answer.map_err(|failure| forward_failure(controller, &failure))
    }

    fn remote_client(&self) -> Result<Client, ServiceError> {
        if let Some(client) = self.remote.get() {
            return Ok(client.clone());
        }
        let mut bootstrap = vec![self.config.advertised().to_owned()];
        bootstrap.extend(self.addresses.read().values().cloned());
        bootstrap.dedup();
        let client = self.broker_client(bootstrap, REMOTE_REQUEST_TIMEOUT)?;
        Ok(self.remote.get_or_init(|| client).clone())
    }

    /// A client of this broker's to `bootstrap`, whose requests may take `timeout`.
    fn broker_client(
        &self,
        bootstrap: Vec<String>,
        timeout: Duration,
    ) -> Result<Client, ServiceError> {
        let mut config = ClientConfig::with_bootstrap(bootstrap);
        config.client_id = format!("{BROKER_CLIENT_PREFIX}{}", self.config.broker_id);
        config.request_timeout = timeout;
        config.connect_timeout = REMOTE_REQUEST_TIMEOUT;
        Client::new(config)
            .map_err(|e| ServiceError::new(ErrorCode::Unknown, format!("broker client: {e}")))
    }

    /// Closes the connections to other brokers (at close).
    pub(crate) fn close_remote(&self) {
        if let Some(client) = self.remote.get() {
            client.close();
        }
    }
}

/// The controller's refusal as it gave it; no answer at all (no connection, no reply in
/// time) is `Busy`, which clients retry.
fn forward_failure(controller: &Controller, failure: &wire::Error) -> ServiceError {
    match failure {
        wire::Error::Server(refusal) => refusal.clone(),
        other => ServiceError::new(
            ErrorCode::Busy,
            format!(
                "forwarding to the controller, broker {} at {}: {other}",
                controller.id, controller.address
            ),
        ),
    }
}
