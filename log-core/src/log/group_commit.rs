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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    fn poisoned() -> Error {
        Error::InvalidArgument("poisoned".into())
    }

    #[test]
    fn a_sync_that_raced_a_truncation_publishes_nothing() {
        let commit = GroupCommit::new(Offset(100));
        let generation = commit.generation();
        commit.truncate(Offset(80), || {});
        assert!(!commit.publish(generation, Offset(120), || panic!("must not run")));
        assert_eq!(commit.durable(), Offset(80));
        assert!(commit.publish(commit.generation(), Offset(90), || {}));
        assert_eq!(commit.durable(), Offset(90));
    }

    #[test]
    fn a_waiting_syncer_does_not_publish_across_a_truncation() {
        let commit = Arc::new(GroupCommit::new(Offset(0)));
        let in_sync = Arc::new(Barrier::new(2));
        let truncated = Arc::new(Barrier::new(2));
        let syncer = {
            let (commit, in_sync, truncated) = (commit.clone(), in_sync.clone(), truncated.clone());
            std::thread::spawn(move || {
                commit.wait_durable(
                    Offset(50),
                    || {
                        in_sync.wait();
                        truncated.wait();
                        Ok(Offset(50))
                    },
                    poisoned,
                )
            })
        };
        in_sync.wait();
        commit.truncate(Offset(10), || {});
        truncated.wait();
        let result = syncer.join().unwrap();
        assert!(
            matches!(
                result,
                Err(Error::TruncatedBeforeSync { offset: Offset(50) })
            ),
            "{result:?}"
        );
        assert_eq!(
            commit.durable(),
            Offset(0),
            "the stale end was not published"
        );
    }

    #[test]
    fn a_failed_sync_fails_every_later_waiter() {
        let commit = GroupCommit::new(Offset(0));
        let failed = commit.wait_durable(Offset(5), || Err(poisoned()), poisoned);
        assert!(failed.is_err());
        let later = commit.wait_durable(Offset(5), || Ok(Offset(5)), poisoned);
        assert!(
            later.is_err(),
            "no sync may vouch for data after a failed one"
        );
    }
}
