//! A group member's side of the hand-over protocol (`protocol::group`), as plain data: which
//! queues it consumes, which it is giving up, and which generation its heartbeats confirm.
//!
//! Each heartbeat response says the group's generation and the queues this member may consume
//! now. From it:
//!
//! - queues no longer listed are **revoked**: the member stops pulling them, waits for the
//!   messages already handed to the application, commits, and reports `on_revoked`;
//! - queues newly listed are **started** at once (the broker lists only queues their previous
//!   owner has released, so starting early never overlaps another consumer);
//! - the generation is **confirmed** (carried by the next heartbeats) only once no revocation
//!   is outstanding: confirming tells the broker this member holds nothing outside the new
//!   assignment, so it may hand the revoked queues on. A confirmation calls for a heartbeat
//!   right away, so hand-overs take one round trip rather than one interval.
//!
//! A queue listed again while its revocation is still running is not started twice: it is
//! started from the next response after the revocation ends (which asks for that heartbeat).
//!
//! When the broker answers a heartbeat with `UnknownMember` or `IllegalGeneration`, the
//! member's place in the group is gone (its session expired, or the group was rebuilt):
//! `on_fenced` drops every owned queue at once, without committing (another member may
//! already consume them), and the member rejoins with no generation. Revocations still
//! running stay tracked, so their queues are not restarted before they have stopped.
//!
//! Commits carry the newest generation seen, not the confirmed one: the broker fences
//! commits older than the group's generation, and a member revoking queues of generation
//! *g* commits them as a member of *g*.

use std::collections::BTreeSet;

use crate::protocol::QueueRef;

/// What a heartbeat response asks the member to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub(crate) start: Vec<QueueRef>,
    pub(crate) revoke: Vec<QueueRef>,
    /// The confirmed generation moved: heartbeat now.
    pub(crate) heartbeat_now: bool,
}

/// One member's assignment state; see the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Assignment {
    /// Being consumed.
    owned: BTreeSet<QueueRef>,
    /// Stopping: draining in-flight messages and committing.
    revoking: BTreeSet<QueueRef>,
    /// The queues the newest response listed.
    target: BTreeSet<QueueRef>,
    seen: Option<u64>,
    confirmed: Option<u64>,
}

impl Assignment {
    pub(crate) fn new() -> Assignment {
        Assignment::default()
    }

    /// The generation heartbeats carry: the last one fully taken up.
    pub(crate) fn heartbeat_generation(&self) -> Option<u64> {
        self.confirmed
    }

    /// The generation commits carry: the newest one the broker announced.
    pub(crate) fn commit_generation(&self) -> Option<u64> {
        self.seen
    }

    #[cfg(test)]
    pub(crate) fn owned(&self) -> impl Iterator<Item = &QueueRef> {
        self.owned.iter()
    }

    pub(crate) fn is_revoking(&self) -> bool {
        !self.revoking.is_empty()
    }

    /// Applies a heartbeat response.
    pub(crate) fn on_heartbeat(&mut self, generation: u64, assignment: &[QueueRef]) -> Changes {
        self.target = assignment.iter().cloned().collect();
        let revoke: Vec<QueueRef> = self.owned.difference(&self.target).cloned().collect();
        for queue in &revoke {
            self.owned.remove(queue);
            self.revoking.insert(queue.clone());
        }
        let start: Vec<QueueRef> = self
            .target
            .iter()
            .filter(|q| !self.owned.contains(*q) && !self.revoking.contains(*q))
            .cloned()
            .collect();
        self.owned.extend(start.iter().cloned());
        self.seen = Some(generation);
        Changes {
            start,
            revoke,
            heartbeat_now: self.try_confirm(),
        }
    }

    /// A revocation finished (the queue stopped and, if it could, committed). Returns whether
    /// to heartbeat now: the generation became confirmed, or the queue is assigned again.
    pub(crate) fn on_revoked(&mut self, queue: &QueueRef) -> bool {
        if !self.revoking.remove(queue) {
            return false;
        }
        let confirmed = self.try_confirm();
        confirmed || self.target.contains(queue)
    }

    /// The member lost its place in the group; returns the queues to drop at once.
    pub(crate) fn on_fenced(&mut self) -> Vec<QueueRef> {
        self.seen = None;
        self.confirmed = None;
        self.target.clear();
        std::mem::take(&mut self.owned).into_iter().collect()
    }

    /// Stops every owned queue for shutdown; returns them (to stop, drain and commit).
    pub(crate) fn release_all(&mut self) -> Vec<QueueRef> {
        let released: Vec<QueueRef> = std::mem::take(&mut self.owned).into_iter().collect();
        self.revoking.extend(released.iter().cloned());
        self.target.clear();
        released
    }

    fn try_confirm(&mut self) -> bool {
        if self.revoking.is_empty() && self.confirmed != self.seen {
            self.confirmed = self.seen;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(queue: u32) -> QueueRef {
        QueueRef {
            topic: "orders".into(),
            queue,
        }
    }

    fn owned(assignment: &Assignment) -> Vec<u32> {
        assignment.owned().map(|q| q.queue).collect()
    }

    #[test]
    fn joining_starts_the_assignment_and_confirms_at_once() {
        let mut a = Assignment::new();
        assert_eq!(a.heartbeat_generation(), None);
        let changes = a.on_heartbeat(1, &[q(0), q(1)]);
        assert_eq!(changes.start, vec![q(0), q(1)]);
        assert!(changes.revoke.is_empty());
        assert!(changes.heartbeat_now);
        assert_eq!(a.heartbeat_generation(), Some(1));
        let again = a.on_heartbeat(1, &[q(0), q(1)]);
        assert_eq!(again, Changes::default(), "a steady state changes nothing");
    }

    #[test]
    fn a_revoked_queue_is_confirmed_only_after_it_stops() {
        let mut a = Assignment::new();
        a.on_heartbeat(1, &[q(0), q(1), q(2)]);
        let changes = a.on_heartbeat(2, &[q(0)]);
        assert_eq!(changes.revoke, vec![q(1), q(2)]);
        assert!(changes.start.is_empty());
        assert!(!changes.heartbeat_now);
        assert_eq!(
            a.heartbeat_generation(),
            Some(1),
            "still holding queues 1 and 2"
        );
        assert_eq!(a.commit_generation(), Some(2));
        assert_eq!(owned(&a), [0]);

        // Heartbeats in between keep the old generation and repeat nothing.
        assert_eq!(a.on_heartbeat(2, &[q(0)]), Changes::default());
        assert!(!a.on_revoked(&q(1)));
        assert_eq!(a.heartbeat_generation(), Some(1));
        assert!(a.on_revoked(&q(2)), "the last revocation confirms");
        assert_eq!(a.heartbeat_generation(), Some(2));
        assert!(!a.is_revoking());
        assert!(!a.on_revoked(&q(2)), "a repeated report is ignored");
    }

    #[test]
    fn an_assignment_grows_within_a_generation() {
        let mut a = Assignment::new();
        a.on_heartbeat(3, &[q(0)]);
        let changes = a.on_heartbeat(3, &[q(0), q(5)]);
        assert_eq!(changes.start, vec![q(5)]);
        assert!(!changes.heartbeat_now, "generation 3 was already confirmed");
        assert_eq!(owned(&a), [0, 5]);
    }

    #[test]
    fn a_queue_given_back_while_revoking_restarts_after_it_stops() {
        let mut a = Assignment::new();
        a.on_heartbeat(1, &[q(0), q(1)]);
        a.on_heartbeat(2, &[q(0)]);
        let back = a.on_heartbeat(3, &[q(0), q(1)]);
        assert!(back.start.is_empty(), "queue 1 is still stopping");
        assert!(a.on_revoked(&q(1)), "confirm and restart it now");
        assert_eq!(a.heartbeat_generation(), Some(3));
        let restart = a.on_heartbeat(3, &[q(0), q(1)]);
        assert_eq!(restart.start, vec![q(1)]);
    }

    #[test]
    fn fencing_drops_everything_and_rejoins_without_a_generation() {
        let mut a = Assignment::new();
        a.on_heartbeat(4, &[q(0), q(1), q(2)]);
        a.on_heartbeat(5, &[q(0), q(1)]);
        let mut lost = a.on_fenced();
        lost.sort();
        assert_eq!(lost, vec![q(0), q(1)]);
        assert_eq!(a.heartbeat_generation(), None);
        assert_eq!(a.commit_generation(), None);
        assert!(a.is_revoking(), "queue 2 is still stopping");
        let rejoin = a.on_heartbeat(9, &[q(2), q(3)]);
        assert_eq!(rejoin.start, vec![q(3)], "queue 2 waits for its revocation");
        assert!(!rejoin.heartbeat_now);
        assert!(a.on_revoked(&q(2)));
        assert_eq!(a.heartbeat_generation(), Some(9));
        assert_eq!(a.on_heartbeat(9, &[q(2), q(3)]).start, vec![q(2)]);
    }

    #[test]
    fn release_all_revokes_every_owned_queue() {
        let mut a = Assignment::new();
        a.on_heartbeat(1, &[q(0), q(1)]);
        assert_eq!(a.release_all(), vec![q(0), q(1)]);
        assert!(a.is_revoking());
        assert_eq!(owned(&a), Vec::<u32>::new());
        a.on_revoked(&q(0));
        a.on_revoked(&q(1));
        assert!(!a.is_revoking());
    }
}
