//! Group commit: appends that must be durable wait here, and one of them runs the
//! `fdatasync` for all.
//!
//! One fdatasync costs about 0.25 ms on this project's machines, so a sync per append would
//! cap a partition near 4 000 appends per second. Instead, the first waiter that finds no sync
//! running becomes the syncer: it notes the log end offset, syncs, and publishes that offset as
//! durable. Appends that finished writing meanwhile wait for the running sync; if it does not
//! cover them, one of them starts the next. A failed sync is remembered for good: the kernel
//! may already have dropped the dirty pages, so no later sync can vouch for them.

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::types::Offset;

#[derive(Debug)]
struct State {
    durable: Offset,
    syncing: bool,
    failed: bool,
    /// Bumped by every truncation: a sync that started before one must not publish its end,
    /// because offsets below that end may since have been cut and written again.
    generation: u64,
}

#[derive(Debug)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    synced: Condvar,
}

impl GroupCommit {
    pub(crate) fn new(durable: Offset) -> Self {
        GroupCommit {
            state: Mutex::new(State {
                durable,
                syncing: false,
                failed: false,
                generation: 0,
            }),
            synced: Condvar::new(),
        }
    }

    pub(crate) fn durable(&self) -> Offset {
        self.state.lock().durable
    }

    /// The truncation generation; capture it before reading the end offset a sync will cover.
    pub(crate) fn generation(&self) -> u64 {
        self.state.lock().generation
    }

    /// Returns once every offset below `target` is durable. `sync` makes the log durable up to
    /// an end offset it reads before syncing and returns; `poisoned` builds the error for a
    /// failed log. Fails if the log is truncated below `target` meanwhile.
    pub(crate) fn wait_durable(
        &self,
        target: Offset,
        sync: impl Fn() -> Result<Offset>,
        poisoned: impl Fn() -> Error,
    ) -> Result<()> {
        let mut state = self.state.lock();
        let generation = state.generation;
        loop {
            if state.failed {
                return Err(poisoned());
            }
            if state.generation != generation {
                return Err(Error::TruncatedBeforeSync { offset: target });
            }
            if state.durable >= target {
                return Ok(());
            }
            if state.syncing {
                self.synced.wait(&mut state);
                continue;
            }
            state.syncing = true;
            let sync_generation = state.generation;
            drop(state);
            let result = sync();
            state = self.state.lock();
            state.syncing = false;
            match result {
                Ok(covered) if state.generation == sync_generation => {
                    state.durable = state.durable.max(covered);
                }
                Ok(_) => {}
                Err(error) => {
                    state.failed = true;
                    self.synced.notify_all();
                    return Err(error);
                }
            }
            self.synced.notify_all();
        }
    }

    /// Records durability reached another way (a flush that read its end after capturing
    /// `generation`), and runs `also` under the same lock, unless a truncation happened since.
    /// Returns whether it published.
    pub(crate) fn publish(&self, generation: u64, covered: Offset, also: impl FnOnce()) -> bool {
        let mut state = self.state.lock();
        if state.generation != generation {
            return false;
        }
        state.durable = state.durable.max(covered);
        also();
        self.synced.notify_all();
        true
    }

    /// Lowers the durable offset after a truncation to `end` and runs `also` (lowering other
    /// marks) under the same lock, so no sync that started earlier can raise them again.
    pub(crate) fn truncate(&self, end: Offset, also: impl FnOnce()) {
        let mut state = self.state.lock();
        state.generation += 1;
        state.durable = state.durable.min(end);
        also();
        self.synced.notify_all();
    }

    /// Fails every present and future waiter.
    pub(crate) fn fail(&self) {
        let mut state = self.state.lock();
        state.failed = true;
        self.synced.notify_all();
    }
}
