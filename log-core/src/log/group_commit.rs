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
            }),
            synced: Condvar::new(),
        }
    }

    pub(crate) fn durable(&self) -> Offset {
        self.state.lock().durable
    }

    /// Returns once every offset below `target` is durable. `sync` makes the log durable up to
    /// an end offset it reads before syncing and returns; `poisoned` builds the error for a
    /// failed log.
    pub(crate) fn wait_durable(
        &self,
        target: Offset,
        sync: impl Fn() -> Result<Offset>,
        poisoned: impl Fn() -> Error,
    ) -> Result<()> {
        let mut state = self.state.lock();
        loop {
            if state.failed {
                return Err(poisoned());
            }
            if state.durable >= target {
                return Ok(());
            }
            if state.syncing {
                self.synced.wait(&mut state);
                continue;
            }
            state.syncing = true;
            drop(state);
            let result = sync();
            state = self.state.lock();
            state.syncing = false;
            match result {
                Ok(covered) => state.durable = state.durable.max(covered),
                Err(error) => {
                    state.failed = true;
                    self.synced.notify_all();
                    return Err(error);
                }
            }
            self.synced.notify_all();
        }
    }

    /// Records durability reached another way (a full flush).
    pub(crate) fn mark_durable(&self, covered: Offset) {
        let mut state = self.state.lock();
        state.durable = state.durable.max(covered);
        self.synced.notify_all();
    }

    /// Lowers the durable offset after a truncation.
    pub(crate) fn truncate(&self, end: Offset) {
        let mut state = self.state.lock();
        state.durable = state.durable.min(end);
    }

    /// Fails every present and future waiter.
    pub(crate) fn fail(&self) {
        let mut state = self.state.lock();
        state.failed = true;
        self.synced.notify_all();
    }
}
