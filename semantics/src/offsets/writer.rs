//! One writer task per queue of the offsets topic: the only appender of that queue.
//!
//! Each wake-up takes the commits waiting (up to `OFFSETS_DRAIN_JOBS_MAX`), awaits each one's
//! fence in order, encodes the survivors (one batch per commit, split every
//! `RECORDS_PER_BATCH_MAX` records) and appends them together, so the commits of one wake-up
//! share one write and, under the every-write policy, one sync. Only after the append returns
//! (durable per the flush policy) does it update the map and acknowledge.
//!
//! Snapshots (compaction): when enough records were written since the last snapshot (see the
//! parent module), the writer appends every live offset of its groups, syncs the log, and
//! deletes the records before the snapshot with `delete_records_before`. It is safe at every
//! step: a snapshot only repeats values that are already the latest, so a crash before, during
//! or after it replays to the same map; the old records become unreadable only once the
//! snapshot is on disk. Because this task is the queue's only writer and the only one that
//! changes its groups' offsets, the snapshot it takes from the map is exact.

use std::sync::Arc;

use bytes::BytesMut;
use log_core::{BatchBuilder, Compression};
use tokio::sync::mpsc;
use wire::{ErrorCode, ServiceError};

use super::record::{encode_key, encode_value};
use super::{queue_of, Committed, OffsetEntry, WriteJob};
use crate::error;
use crate::queue::QueueHandle;

/// Commits one wake-up of a writer takes from its channel.
const OFFSETS_DRAIN_JOBS_MAX: usize = 64;
/// Records per batch: keeps a batch (each record at most ~530 bytes) far below the log's
/// batch limit.
const RECORDS_PER_BATCH_MAX: usize = 1000;
/// Bytes of one append; more is written in several.
const WRITE_BYTES_MAX: usize = 8 << 20;

pub(super) struct Writer {
    index: usize,
    count: usize,
    queue: Arc<QueueHandle>,
    committed: Arc<Committed>,
    /// Records written since the last snapshot before one may be taken.
    compact_records: u64,
    since_snapshot: u64,
    next_check: u64,
}

impl Writer {
    /// `replayed`: records already in the log (counted towards the next snapshot).
    pub fn new(
        index: usize,
        count: usize,
        queue: Arc<QueueHandle>,
        committed: Arc<Committed>,
        compact_records: u64,
        replayed: u64,
    ) -> Writer {
        Writer {
            index,
            count,
            queue,
            committed,
            compact_records,
            since_snapshot: replayed,
            next_check: compact_records,
        }
    }

    pub async fn run(mut self, mut receiver: mpsc::Receiver<WriteJob>) {
        let mut jobs = Vec::with_capacity(OFFSETS_DRAIN_JOBS_MAX);
        loop {
            self.maybe_snapshot().await;
            if receiver.recv_many(&mut jobs, OFFSETS_DRAIN_JOBS_MAX).await == 0 {
                return;
            }
            let accepted = pass_fences(jobs.drain(..)).await;
            let mut group = Vec::new();
            let mut group_bytes = 0;
            for (job, bytes) in accepted {
                if !group.is_empty() && group_bytes + bytes.len() > WRITE_BYTES_MAX {
                    self.write(std::mem::take(&mut group)).await;
                    group_bytes = 0;
                }
                group_bytes += bytes.len();
                group.push((job, bytes));
            }
            if !group.is_empty() {
                self.write(group).await;
            }
        }
    }

    /// Appends the encoded jobs as one write, then applies and acknowledges them.
    async fn write(&mut self, jobs: Vec<(WriteJob, BytesMut)>) {
        let mut buffer = BytesMut::with_capacity(jobs.iter().map(|(_, b)| b.len()).sum());
        for (_, bytes) in &jobs {
            buffer.extend_from_slice(bytes);
        }
        let queue = Arc::clone(&self.queue);
        let appended =
            tokio::task::spawn_blocking(move || queue.append_blocking(&mut buffer)).await;
        let outcome = match appended {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(failure)) => Err(error::storage(
                &failure,
                &self.queue.topic,
                self.queue.queue,
            )),
            Err(failure) => Err(error::task_failed("offsets append", failure)),
        };
        for (job, _) in jobs {
            if outcome.is_ok() {
                for entry in &job.entries {
                    self.committed.apply(&job.group, entry);
                }
                self.since_snapshot += job.entries.len() as u64;
            }
            let _ = job.reply.send(outcome.clone());
        }
    }

    fn owns(&self) -> impl Fn(&str) -> bool + 'static {
        let (index, count) = (self.index, self.count);
        move |group| queue_of(group, count) == index
    }

    async fn maybe_snapshot(&mut self) {
        if self.since_snapshot < self.next_check {
            return;
        }
        let live = self.committed.count_of(self.owns());
        if self.since_snapshot <= 2 * live {
            self.next_check = 2 * live + 1;
            return;
        }
        let entries = self.committed.entries_of(self.owns());
        let queue = Arc::clone(&self.queue);
        let written = tokio::task::spawn_blocking(move || snapshot(&queue, &entries)).await;
        match written {
            Ok(Ok(())) => {
                tracing::info!(
                    topic = %self.queue.topic,
                    queue = self.queue.queue,
                    live,
                    replaced = self.since_snapshot,
                    log_start = self.queue.log_start().0,
                    "compacted consumer offsets by snapshot"
                );
                self.since_snapshot = 0;
                self.next_check = self.compact_records;
            }
            Ok(Err(failure)) => {
                tracing::warn!(topic = %self.queue.topic, queue = self.queue.queue, %failure, "offsets snapshot failed; will retry later");
                self.next_check = self.since_snapshot + self.compact_records;
            }
            Err(failure) => {
                tracing::warn!(topic = %self.queue.topic, queue = self.queue.queue, %failure, "offsets snapshot task failed");
                self.next_check = self.since_snapshot + self.compact_records;
            }
        }
    }
}

/// Awaits each job's fence in order; answers the refused and the empty at once and returns
/// the rest, encoded.
async fn pass_fences(jobs: impl Iterator<Item = WriteJob>) -> Vec<(WriteJob, BytesMut)> {
    let mut accepted = Vec::new();
    for mut job in jobs {
        if let Some(fence) = job.fence.take() {
            let verdict = fence
                .await
                .unwrap_or_else(|failure| Err(error::task_failed("offset commit check", failure)));
            if let Err(refused) = verdict {
                let _ = job.reply.send(Err(refused));
                continue;
            }
        }
        if job.entries.is_empty() {
            let _ = job.reply.send(Ok(()));
            continue;
        }
        match encode(&job.group, &job.entries) {
            Ok(bytes) => accepted.push((job, bytes)),
            Err(refused) => {
                let _ = job.reply.send(Err(refused));
            }
        }
    }
    accepted
}

/// One group's entries as batches of at most `RECORDS_PER_BATCH_MAX` records.
fn encode(group: &str, entries: &[OffsetEntry]) -> Result<BytesMut, ServiceError> {
    let now = wire::message::now_ms();
    let mut bytes = BytesMut::new();
    for chunk in entries.chunks(RECORDS_PER_BATCH_MAX) {
        let mut batch = BatchBuilder::new(Compression::None);
        for entry in chunk {
            let key = encode_key(group, &entry.topic, entry.queue);
            let value = entry.offset.map(encode_value);
            batch.append(now, Some(&key), value.as_ref().map(|v| &v[..]), &[]);
        }
        let built = batch.build().map_err(|e| {
            ServiceError::new(
                ErrorCode::Unknown,
                format!("encoding offsets of group {group}: {e}"),
            )
        })?;
        bytes.extend_from_slice(&built);
    }
    Ok(bytes)
}

/// Appends every live offset of the writer's groups, syncs, and drops what came before.
fn snapshot(queue: &QueueHandle, entries: &[(String, OffsetEntry)]) -> Result<(), String> {
    let first = queue.log.log_end_offset();
    let mut buffer = BytesMut::new();
    let mut start = 0;
    while start < entries.len() {
        // One batch per run of one group's entries, at most RECORDS_PER_BATCH_MAX long.
        let group = &entries[start].0;
        let run = entries[start..]
            .iter()
            .take(RECORDS_PER_BATCH_MAX)
            .take_while(|(g, _)| g == group)
            .count();
        let chunk: Vec<OffsetEntry> = entries[start..start + run]
            .iter()
            .map(|(_, e)| e.clone())
            .collect();
        let bytes = encode(group, &chunk).map_err(|e| e.message)?;
        if !buffer.is_empty() && buffer.len() + bytes.len() > WRITE_BYTES_MAX {
            queue
                .append_blocking(&mut buffer)
                .map_err(|e| e.to_string())?;
            buffer.clear();
        }
        buffer.extend_from_slice(&bytes);
        start += run;
    }
    if !buffer.is_empty() {
        queue
            .append_blocking(&mut buffer)
            .map_err(|e| e.to_string())?;
    }
    queue.log.flush().map_err(|e| e.to_string())?;
    queue
        .log
        .delete_records_before(first)
        .map_err(|e| e.to_string())?;
    Ok(())
}
