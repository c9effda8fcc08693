//! The appender: one per queue, it performs that queue's appends in the order `Send` requests
//! were dispatched, off the async worker threads.
//!
//! `Appender::submit` runs synchronously inside `Service::call`, which the server calls in
//! arrival order: it puts the request's batches on the queue's bounded channel and hands back
//! a receiver for the result. The appender task takes every job waiting (up to
//! `APPEND_DRAIN_REQUESTS_MAX`) per wake-up and performs them on one blocking thread in
//! channel order, so one connection's sends to one queue land in the order they arrived, and
//! a busy queue pays one thread hand-off per group of requests rather than per request.
//!
//! The batch bytes travel from the frame to the log without a copy: `Bytes::try_into_mut`
//! reclaims the frame's buffer when nothing else shares it (log-core rewrites the base offset
//! and leader epoch in place); a shared buffer is copied once.
//!
//! Under the every-write flush policy each append waits for an `fdatasync`, and one writer
//! per queue never overlaps two of them. So there, the jobs of one wake-up are appended
//! together as one contiguous buffer (one copy) and share one sync. If that combined append
//! is refused for a client fault (a corrupt or oversize batch in one request) nothing was
//! written, and the jobs are retried one by one so only the faulty request fails.
//!
//! Bounds: `APPEND_QUEUE_REQUESTS_MAX` requests and `APPEND_QUEUE_BYTES_MAX` bytes wait per
//! queue; past either, `submit` answers `Busy` (retriable) instead of blocking the
//! connection's dispatch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use log_core::batch::BatchHeader;
use log_core::AppendInfo;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wire::{ErrorCode, ServiceError};

use crate::error;
use crate::queue::QueueHandle;

/// Requests that may wait for one queue's appender.
pub const APPEND_QUEUE_REQUESTS_MAX: usize = 4096;
/// Batch bytes that may wait for one queue's appender: about 64 ms of writes at 1 GB/s.
pub const APPEND_QUEUE_BYTES_MAX: usize = 64 << 20;
/// Requests one wake-up of the appender takes from its channel.
pub const APPEND_DRAIN_REQUESTS_MAX: usize = 64;
/// Bytes appended as one combined write (and one sync) under the every-write policy.
pub const SYNC_GROUP_BYTES_MAX: usize = 16 << 20;

/// What an append stored, as `Send` answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Appended {
    pub base_offset: u64,
    pub last_offset: u64,
    pub log_start: u64,
    pub store_timestamp: i64,
}

pub(crate) type AppendResult = Result<Appended, ServiceError>;

struct AppendJob {
    records: Bytes,
    reply: oneshot::Sender<AppendResult>,
}

/// The sending side of one queue's appender.
#[derive(Debug)]
pub(crate) struct Appender {
    jobs: Mutex<Option<mpsc::Sender<AppendJob>>>,
    queued_bytes: Arc<AtomicUsize>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Appender {
    /// Starts the appender task of `queue` on `runtime`. `combine` groups each wake-up's jobs
    /// into one write (for the every-write policy).
    pub fn start(
        queue: Arc<QueueHandle>,
        combine: bool,
        runtime: &tokio::runtime::Handle,
    ) -> Appender {
        let (sender, receiver) = mpsc::channel(APPEND_QUEUE_REQUESTS_MAX);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let task = runtime.spawn(run(queue, receiver, Arc::clone(&queued_bytes), combine));
        Appender {
            jobs: Mutex::new(Some(sender)),
            queued_bytes,
            task: Mutex::new(Some(task)),
        }
    }

    /// Queues `records` for appending, now, in the caller's order. `Busy` when the queue is
    /// full, `ShuttingDown` once the appender is stopped.
    pub fn submit(
        &self,
        queue: &QueueHandle,
        records: Bytes,
    ) -> Result<oneshot::Receiver<AppendResult>, ServiceError> {
        let jobs = self.jobs.lock();
        let Some(jobs) = jobs.as_ref() else {
            return Err(error::shutting_down());
        };
        let size = records.len();
        let before = self.queued_bytes.fetch_add(size, Ordering::AcqRel);
        // One request larger than the bound still goes through when nothing waits.
        if before > 0 && before + size > APPEND_QUEUE_BYTES_MAX {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return Err(busy(queue));
        }
        let (reply, result) = oneshot::channel();
        match jobs.try_send(AppendJob { records, reply }) {
            Ok(()) => Ok(result),
            Err(refused) => {
                self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                Err(match refused {
                    mpsc::error::TrySendError::Full(_) => busy(queue),
                    mpsc::error::TrySendError::Closed(_) => error::shutting_down(),
                })
            }
        }
    }

    /// Refuses further jobs; the task finishes those already queued. Returns the task to
    /// await.
    pub fn stop(&self) -> Option<JoinHandle<()>> {
        self.jobs.lock().take();
        self.task.lock().take()
    }
}

fn busy(queue: &QueueHandle) -> ServiceError {
    ServiceError::new(
        ErrorCode::Busy,
        format!(
            "{}-{}: too many sends are waiting to be appended; retry after a back-off",
            queue.topic, queue.queue
        ),
    )
}

async fn run(
    queue: Arc<QueueHandle>,
    mut receiver: mpsc::Receiver<AppendJob>,
    queued_bytes: Arc<AtomicUsize>,
    combine: bool,
) {
    let mut jobs = Vec::with_capacity(APPEND_DRAIN_REQUESTS_MAX);
    while receiver
        .recv_many(&mut jobs, APPEND_DRAIN_REQUESTS_MAX)
        .await
        > 0
    {
        let taken: usize = jobs.iter().map(|j| j.records.len()).sum();
        queued_bytes.fetch_sub(taken, Ordering::AcqRel);
        let batch = std::mem::replace(&mut jobs, Vec::with_capacity(APPEND_DRAIN_REQUESTS_MAX));
        let writer = Arc::clone(&queue);
        let appended = tokio::task::spawn_blocking(move || append_jobs(&writer, batch, combine));
        if let Err(failure) = appended.await {
            // The jobs' reply senders were dropped with the closure: their callers learn it.
            tracing::error!(topic = %queue.topic, queue = queue.queue, %failure, "append task failed");
        }
    }
}

fn append_jobs(queue: &QueueHandle, jobs: Vec<AppendJob>, combine: bool) {
    if queue.is_gone() {
        for job in jobs {
            let _ = job.reply.send(Err(error::unknown_topic(&queue.topic)));
        }
        return;
    }
    if !combine || jobs.len() == 1 {
        for job in jobs {
            let result = append_one(queue, job.records);
            let _ = job.reply.send(result);
        }
        return;
    }
    let mut group = Vec::new();
    let mut group_bytes = 0;
    for job in jobs {
        if !group.is_empty() && group_bytes + job.records.len() > SYNC_GROUP_BYTES_MAX {
            append_combined(queue, std::mem::take(&mut group));
            group_bytes = 0;
        }
        group_bytes += job.records.len();
        group.push(job);
    }
    if !group.is_empty() {
        append_combined(queue, group);
    }
}

fn append_one(queue: &QueueHandle, records: Bytes) -> AppendResult {
    let mut buffer = records
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    let info = queue
        .append_blocking(&mut buffer)
        .map_err(|e| error::storage(&e, &queue.topic, queue.queue))?;
    Ok(answer(
        queue,
        &info,
        info.first_offset.0,
        info.last_offset.0,
    ))
}

/// Appends several jobs as one write; see the module docs.
fn append_combined(queue: &QueueHandle, jobs: Vec<AppendJob>) {
    if jobs.len() == 1 {
        for job in jobs {
            let result = append_one(queue, job.records);
            let _ = job.reply.send(result);
        }
        return;
    }
    let total = jobs.iter().map(|j| j.records.len()).sum();
    let mut buffer = BytesMut::with_capacity(total);
    let mut starts = Vec::with_capacity(jobs.len());
    for job in &jobs {
        starts.push(buffer.len());
        buffer.extend_from_slice(&job.records);
    }
    match queue.append_blocking(&mut buffer) {
        Ok(info) => {
            // The log rewrote each batch's base offset in `buffer`: a job's first offset is
            // its first batch's, its last is one before the next job's first.
            let firsts: Vec<u64> = starts
                .iter()
                .map(|&at| {
                    BatchHeader::parse_prefix(&buffer[at..])
                        .map_or(info.first_offset.0, |p| p.base_offset().0)
                })
                .collect();
            for (i, job) in jobs.into_iter().enumerate() {
                let last = firsts
                    .get(i + 1)
                    .map_or(info.last_offset.0, |next| next.saturating_sub(1));
                let _ = job.reply.send(Ok(answer(queue, &info, firsts[i], last)));
            }
        }
        Err(log_core::Error::InvalidBatch(_) | log_core::Error::BatchTooLarge { .. }) => {
            // Nothing was written: find the faulty request by appending one at a time.
            for job in jobs {
                let result = append_one(queue, job.records);
                let _ = job.reply.send(result);
            }
        }
        Err(failure) => {
            let answer = error::storage(&failure, &queue.topic, queue.queue);
            for job in jobs {
                let _ = job.reply.send(Err(answer.clone()));
            }
        }
    }
}

fn answer(queue: &QueueHandle, info: &AppendInfo, first: u64, last: u64) -> Appended {
    let bytes = info.bytes as u64;
    if first == info.first_offset.0 {
        // Count a combined append once, with its first job.
        crate::metrics::appended(&queue.topic, info.last_offset.0 - first + 1, bytes);
    }
    Appended {
        base_offset: first,
        last_offset: last,
        log_start: queue.log_start().0,
        store_timestamp: wire::message::now_ms(),
    }
}
