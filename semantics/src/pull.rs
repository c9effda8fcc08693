//! `Pull` with long polling, and `OffsetForTime`.
//!
//! A pull reads whole batches as stored, from the batch holding `offset` up to the high
//! watermark (on one node, the log end), on a blocking thread. With nothing to return and a
//! wait allowed, it long-polls: it waits on the queue's `watch` channel, which the queue's
//! single writer signals after every append (`QueueHandle::append_blocking`), until an append
//! lands, the wait expires, the topic is deleted or the broker closes. There is no sleep loop
//! and no lost wake-up: the pull subscribes to the channel before its first read, so an append
//! that lands between that read and the wait has already marked the channel changed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use log_core::Offset;
use tokio::sync::OwnedSemaphorePermit;
use wire::protocol::{
    OffsetForTimeRequest, OffsetForTimeResponse, PullRequest, PullResponse, PULL_BYTES_MAX,
    PULL_WAIT_MS_MAX,
};
use wire::{ErrorCode, ServiceError};

use crate::broker::Broker;
use crate::error;
use crate::metrics::{GaugeShare, LONG_POLLS_WAITING, PULLS_WAITING_FOR_MEMORY, PULL_MEMORY_HELD};
use crate::queue::QueueHandle;

impl Broker {
    pub(crate) async fn pull(&self, request: PullRequest) -> Result<PullResponse, ServiceError> {
        let queue = self.led_queue(&request.topic, request.queue).await?;
        let max_bytes = request.max_bytes.min(PULL_BYTES_MAX) as usize;
        let wait = Duration::from_millis(u64::from(request.max_wait_ms.min(PULL_WAIT_MS_MAX)));
        let from = Offset(request.offset);
        let deadline = tokio::time::Instant::now() + wait;
        let mut appended = queue.subscribe();
        let mut shutdown = self.shutdown.subscribe();
        let mut waiting: Option<GaugeShare> = None;
        loop {
            if queue.is_gone() {
                return Err(error::unknown_topic(&queue.topic));
            }
            let response = self.read(&queue, from, max_bytes, deadline).await?;
            if !response.batches.is_empty() {
                crate::metrics::pulled(&queue.topic, from, &response.batches);
                return Ok(response);
            }
            if wait.is_zero() || *shutdown.borrow() {
                return Ok(response);
            }
            waiting.get_or_insert_with(|| GaugeShare::add(LONG_POLLS_WAITING, 1.0));
            tokio::select! {
                changed = appended.changed() => {
                    if changed.is_err() {
                        return Ok(response);
                    }
                }
                _ = shutdown.changed() => return Ok(empty(&queue)),
                () = tokio::time::sleep_until(deadline) => return Ok(empty(&queue)),
            }
        }
    }

    pub(crate) async fn offset_for_time(
        &self,
        request: OffsetForTimeRequest,
    ) -> Result<OffsetForTimeResponse, ServiceError> {
        let queue = self.led_queue(&request.topic, request.queue).await?;
        let offset = self.time_lookup(&queue, request.timestamp).await?;
        Ok(OffsetForTimeResponse { offset: offset.0 })
    }

    /// The first offset at or after `timestamp` (from the time index), or the readable end
    /// when every message is older. At most `TIME_LOOKUPS_MAX` run at once.
    pub(crate) async fn time_lookup(
        &self,
        queue: &Arc<QueueHandle>,
        timestamp: i64,
    ) -> Result<Offset, ServiceError> {
        let _turn = self
            .time_lookups
            .acquire()
            .await
            .map_err(|_| error::shutting_down())?;
        offset_for_time(queue, timestamp).await
    }

    /// Reads what is readable at `from`: an offset outside `[log start, log end]` is
    /// `OffsetOutOfRange`; at the readable end the answer is empty without touching the
    /// disk.
    ///
    /// A read first takes its share of the pull memory budget: the most its buffer can
    /// be, `max(max_bytes, max_message_bytes)` (the first batch is returned whole, however
    /// small `max_bytes` is). Once read, it keeps `max(bytes returned, max_bytes)`, still
    /// a bound on its buffer, and its batches hold that until they are dropped, after they
    /// are written to the socket. A pull that cannot get its share by its deadline (at
    /// least `PULL_MEMORY_WAIT_MIN`) is answered `Busy`, and clients retry after a pause.
    async fn read(
        &self,
        queue: &Arc<QueueHandle>,
        from: Offset,
        max_bytes: usize,
        deadline: tokio::time::Instant,
    ) -> Result<PullResponse, ServiceError> {
        check_range(queue, from)?;
        if from >= queue.readable_end() {
            return Ok(empty(queue));
        }
        // validate() keeps the budget at least this large, so a whole share always fits.
        let most = max_bytes.max(self.config.max_message_bytes as usize);
        let share = u32::try_from(most.max(1)).unwrap_or(u32::MAX);
        let mut permit = {
            let _waiting = GaugeShare::add(PULLS_WAITING_FOR_MEMORY, 1.0);
            let mut shutdown = self.shutdown.subscribe();
            let give_up = deadline.max(tokio::time::Instant::now() + PULL_MEMORY_WAIT_MIN);
            tokio::select! {
                permit = Arc::clone(&self.pull_memory).acquire_many_owned(share) => {
                    permit.map_err(|_| error::shutting_down())?
                }
                _ = shutdown.wait_for(|closing| *closing) => return Err(error::shutting_down()),
                () = tokio::time::sleep_until(give_up) => {
                    return Err(ServiceError::new(
                        ErrorCode::Busy,
                        "the broker's pull memory is all held by responses not yet sent; retry",
                    ))
                }
            }
        };
        let mut response = read(queue, from, max_bytes).await?;
        if response.batches.is_empty() {
            return Ok(response);
        }
        let kept = u32::try_from(response.batches.len().max(max_bytes))
            .unwrap_or(u32::MAX)
            .min(share);
        drop(permit.split((share - kept) as usize));
        response.batches = Bytes::from_owner(HeldBatches {
            bytes: response.batches,
            _permit: permit,
            _counted: GaugeShare::add(PULL_MEMORY_HELD, f64::from(kept)),
        });
        Ok(response)
    }
}

/// The least a pull waits for its share of the pull memory budget before it is answered
/// `Busy`, even one that asked not to wait.
const PULL_MEMORY_WAIT_MIN: Duration = Duration::from_secs(1);

/// A pull's batches with the share of the budget they hold, counted in
/// `runnel_pull_memory_held_bytes`.
struct HeldBatches {
    bytes: Bytes,
    _permit: OwnedSemaphorePermit,
    _counted: GaugeShare,
}

impl AsRef<[u8]> for HeldBatches {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Time-index lookups one broker runs at once: each may decompress a batch of up to 64 MiB.
pub(crate) const TIME_LOOKUPS_MAX: usize = 4;

async fn offset_for_time(queue: &Arc<QueueHandle>, timestamp: i64) -> Result<Offset, ServiceError> {
    let reader = Arc::clone(queue);
    let found = tokio::task::spawn_blocking(move || reader.log.offset_for_timestamp(timestamp))
        .await
        .map_err(|e| error::task_failed("time index lookup", e))?
        .map_err(|e| error::storage(&e, &queue.topic, queue.queue))?;
    let end = queue.readable_end();
    Ok(found.map_or(end, |(offset, _)| offset.min(end)))
}

/// `OffsetOutOfRange` for an offset outside `[log start, log end]`.
fn check_range(queue: &QueueHandle, from: Offset) -> Result<(), ServiceError> {
    let (start, end) = (queue.log_start(), queue.log.log_end_offset());
    if from < start || from > end {
        return Err(ServiceError::new(
            ErrorCode::OffsetOutOfRange,
            format!(
                "offset {from} of {}-{} is outside the stored range [{start}, {end}]",
                queue.topic, queue.queue
            ),
        ));
    }
    Ok(())
}

/// The read itself, on a blocking thread; see `Broker::read`.
async fn read(
    queue: &Arc<QueueHandle>,
    from: Offset,
    max_bytes: usize,
) -> Result<PullResponse, ServiceError> {
    let reader = Arc::clone(queue);
    let read = tokio::task::spawn_blocking(move || {
        reader.log.read(from, max_bytes, reader.readable_end())
    })
    .await
    .map_err(|e| error::task_failed("pull", e))?
    .map_err(|e| error::storage(&e, &queue.topic, queue.queue))?;
    Ok(PullResponse {
        log_start_offset: read.log_start.0,
        log_end_offset: read.high_watermark.0,
        batches: read.records,
    })
}

fn empty(queue: &QueueHandle) -> PullResponse {
    PullResponse {
        log_start_offset: queue.log_start().0,
        log_end_offset: queue.readable_end().0,
        batches: bytes::Bytes::new(),
    }
}
