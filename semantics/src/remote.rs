//! What a broker asks of the other brokers of its cluster, through the native client: today
//! the offsets of queues led elsewhere, which a group's `ResetOffsets` needs because the
//! group's offsets broker serves every queue of the group's topics but leads only some.
//!
//! The client is made on first use (never, on a single broker: it leads every queue) with the
//! live brokers as bootstrap, and follows routes like any client: `OffsetForTime` goes to
//! each queue's leader, with a route refresh on `NotLeader`. Each request is bounded by
//! `REMOTE_REQUEST_TIMEOUT`, so a broker that does not answer fails the reset, in bounded
//! time, instead of hanging it.

use std::time::Duration;

use wire::client::{Admin, Client, ClientConfig};
use wire::protocol::OffsetSpec;
use wire::{ErrorCode, ServiceError};

use crate::broker::Broker;

/// How long one request to another broker may take.
pub const REMOTE_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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

    fn remote_client(&self) -> Result<Client, ServiceError> {
        if let Some(client) = self.remote.get() {
            return Ok(client.clone());
        }
        let mut bootstrap = vec![self.config.advertised().to_owned()];
        bootstrap.extend(self.addresses.read().values().cloned());
        bootstrap.dedup();
        let mut config = ClientConfig::with_bootstrap(bootstrap);
        config.client_id = format!("runnel-broker-{}", self.config.broker_id);
        config.request_timeout = REMOTE_REQUEST_TIMEOUT;
        config.connect_timeout = REMOTE_REQUEST_TIMEOUT;
        let client = Client::new(config)
            .map_err(|e| ServiceError::new(ErrorCode::Unknown, format!("broker client: {e}")))?;
        Ok(self.remote.get_or_init(|| client).clone())
    }

    /// Closes the connections to other brokers (at close).
    pub(crate) fn close_remote(&self) {
        if let Some(client) = self.remote.get() {
            client.close();
        }
    }
}
