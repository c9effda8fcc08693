//! `QueueHandle`: one queue this broker leads — its partition log, its leader epoch, and the
//! signal that long polls wait on.
//!
//! Every append to a queue goes through `QueueHandle::append_blocking`, from exactly one
//! writer (the queue's appender, or the offsets writer for the consumer-offsets topic). After
//! each append it moves the high watermark and publishes it on a `watch` channel, which is
//! what wakes waiting pulls. On one node the in-sync replica set is the leader alone, so the
//! high watermark follows the log end at once; with replication, the high watermark would move
//! when followers catch up and be published from there, and pulls would not change.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use log_core::{AppendInfo, LeaderEpoch, Offset, PartitionLog};
use tokio::sync::watch;

/// What a waiting pull needs to know: how far the queue is readable, and whether it is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Readable {
    pub end: Offset,
    /// The topic was deleted: waiting pulls end.
    pub gone: bool,
}

#[derive(Debug)]
pub(crate) struct QueueHandle {
    pub topic: Arc<str>,
    pub queue: u32,
    pub log: Arc<PartitionLog>,
    leader_epoch: AtomicU32,
    readable: watch::Sender<Readable>,
    gone: AtomicBool,
}

impl QueueHandle {
    /// Wraps a log this broker leads in `leader_epoch`. Everything already in the log counts
    /// as committed: on one node the leader is the whole in-sync replica set.
    pub fn new(
        topic: Arc<str>,
        queue: u32,
        log: Arc<PartitionLog>,
        leader_epoch: u32,
    ) -> QueueHandle {
        log.set_high_watermark(log.log_end_offset());
        let (readable, _) = watch::channel(Readable {
            end: log.high_watermark(),
            gone: false,
        });
        QueueHandle {
            topic,
            queue,
            log,
            leader_epoch: AtomicU32::new(leader_epoch),
            readable,
            gone: AtomicBool::new(false),
        }
    }

    pub fn leader_epoch(&self) -> u32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// The end of what consumers may read: the high watermark.
    pub fn readable_end(&self) -> Offset {
        self.log.high_watermark()
    }

    pub fn log_start(&self) -> Offset {
        self.log.log_start_offset()
    }

    /// A receiver whose `changed()` fires on every append (and on deletion) after this call.
    pub fn subscribe(&self) -> watch::Receiver<Readable> {
        self.readable.subscribe()
    }

    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// The topic was deleted: later appends are refused and waiting pulls wake up.
    pub fn mark_gone(&self) {
        self.gone.store(true, Ordering::Release);
        self.readable.send_modify(|r| r.gone = true);
    }

    /// Appends as the leader, then commits and publishes the new end. Blocks on disk I/O (and
    /// on `fdatasync` under the every-write policy): call it from a blocking thread.
    pub fn append_blocking(&self, records: &mut [u8]) -> Result<AppendInfo, log_core::Error> {
        let epoch = LeaderEpoch(i32::try_from(self.leader_epoch()).unwrap_or(i32::MAX));
        let info = self.log.append_as_leader(records, epoch)?;
        self.commit();
        Ok(info)
    }

    /// Single node: the high watermark follows the log end.
    fn commit(&self) {
        self.log.set_high_watermark(self.log.log_end_offset());
        let end = self.log.high_watermark();
        self.readable.send_modify(|r| r.end = end);
    }

    /// Bytes this queue holds on disk.
    pub fn size_bytes(&self) -> u64 {
        self.log.segments().iter().map(|(_, size, _)| size).sum()
    }
}
