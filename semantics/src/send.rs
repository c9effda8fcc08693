//! `Send`: checks what can be checked without touching the bytes (topic, queue, size), puts
//! the batches on the queue's appender synchronously (arrival order), and answers when the
//! append lands.
//!
//! The batches themselves (bounds, CRC, record counts) are validated by `log-core`'s leader
//! append, on the appender's blocking thread, without decompressing them. `acks`: `Leader`
//! and `All` both answer after the append, which on one node is also when the high watermark
//! passes it; `None` is processed the same and the server drops the answer. `timeout_ms`
//! bounds the wait for the append (0: no bound); a timed-out append may still land. A topic
//! the broker has not opened is looked up in the coordinator first (`served_topic`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use wire::protocol::{Response, SendRequest, SendResponse};
use wire::{ErrorCode, ServiceError};

use crate::appender::AppendResult;
use crate::broker::Broker;
use crate::error;
use crate::service::{ready, Answer};

impl Broker {
    pub(crate) fn send(self: &Arc<Self>, request: SendRequest) -> Answer {
        let SendRequest {
            topic,
            queue,
            timeout_ms,
            batches,
            ..
        } = request;
        let appended = match self.submit_send(&topic, queue, &batches) {
            Ok(appended) => appended,
            Err(refused) if refused.code == ErrorCode::NotLeader => {
                let broker = Arc::clone(self);
                return Box::pin(async move {
                    let again = |b: &Broker| b.queue(&topic, queue).err();
                    Err(broker.refreshed_refusal(refused, again).await)
                });
            }
            Err(refused) if refused.code == ErrorCode::UnknownTopic => {
                // Perhaps created elsewhere moments ago: look it up, then submit. This send
                // is not ordered with later ones of its connection, which cannot have
                // reached the topic before it either.
                let broker = Arc::clone(self);
                return Box::pin(async move {
                    broker.served_topic(&topic).await?;
                    let appended = broker.submit_send(&topic, queue, &batches)?;
                    await_append(appended, &topic, queue, timeout_ms).await
                });
            }
            Err(refused) => return ready(Err(refused)),
        };
        Box::pin(async move { await_append(appended, &topic, queue, timeout_ms).await })
    }

    /// Checks a send and puts its batches on the queue's appender.
    fn submit_send(
        &self,
        topic: &str,
        queue: u32,
        batches: &Bytes,
    ) -> Result<oneshot::Receiver<AppendResult>, ServiceError> {
        let max = self.config.max_message_bytes as usize;
        self.with_queue(topic, queue, |local, target| {
            if local.meta.internal {
                return Err(error::invalid(format!(
                    "topic {topic} is internal: clients may read it but not send to it"
                )));
            }
            if batches.is_empty() {
                return Err(error::invalid(format!(
                    "send to {topic}-{queue} carries no batches"
                )));
            }
            if batches.len() > max {
                return Err(ServiceError::new(
                    ErrorCode::MessageTooLarge,
                    format!(
                        "send to {topic}-{queue} carries {} bytes; the broker accepts at most {max}",
                        batches.len()
                    ),
                ));
            }
            let appender = target.appender.as_ref().ok_or_else(error::shutting_down)?;
            appender.submit(&target.handle, batches.clone())
        })
    }
}

/// Waits for a submitted append (up to `timeout_ms`, 0: no bound) and answers the send.
async fn await_append(
    appended: oneshot::Receiver<AppendResult>,
    topic: &str,
    queue: u32,
    timeout_ms: u32,
) -> Result<Response, ServiceError> {
    let outcome = match timeout_ms {
        0 => appended.await,
        _ => tokio::time::timeout(Duration::from_millis(u64::from(timeout_ms)), appended)
            .await
            .map_err(|_| {
                ServiceError::new(
                    ErrorCode::Timeout,
                    format!(
                        "the append to {topic}-{queue} did not finish within {timeout_ms} ms; \
                         it may still land"
                    ),
                )
            })?,
    };
    let appended = outcome.map_err(|_| {
        ServiceError::new(
            ErrorCode::Unknown,
            format!("the append to {topic}-{queue} was abandoned"),
        )
    })??;
    Ok(Response::Send(SendResponse {
        base_offset: appended.base_offset,
        last_offset: appended.last_offset,
        log_start_offset: appended.log_start,
        store_timestamp: appended.store_timestamp,
    }))
}
