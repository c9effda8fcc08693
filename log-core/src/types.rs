//! The numbers the log passes between modules, as types: an offset is not a position, and a
//! relative offset is only meaningful next to its segment's base offset.

use std::fmt;

/// The position of a record in a partition: 0 for the first record ever appended, counting up
/// by one per record. Offsets never move: retention and truncation remove records, they do not
/// renumber the rest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub u64);

impl Offset {
    pub const ZERO: Offset = Offset(0);

    /// The offset `n` records after this one.
    #[must_use]
    pub fn plus(self, n: u64) -> Offset {
        Offset(self.0 + n)
    }

    /// The offset relative to a segment's base offset, if it fits the 4-byte index field.
    pub fn relative_to(self, base: Offset) -> Option<RelativeOffset> {
        let delta = self.0.checked_sub(base.0)?;
        u32::try_from(delta)
            .ok()
            .filter(|d| *d <= RELATIVE_OFFSET_MAX)
            .map(RelativeOffset)
    }
}

/// The largest offset delta a segment may hold: Kafka stores relative offsets as a signed
/// 32-bit integer, so a segment covers at most `i32::MAX` offsets past its base.
pub const RELATIVE_OFFSET_MAX: u32 = i32::MAX as u32;

impl fmt::Debug for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Offset({})", self.0)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An offset minus its segment's base offset, as stored in `.index` and `.timeindex` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RelativeOffset(pub u32);

impl RelativeOffset {
    pub fn absolute(self, base: Offset) -> Offset {
        base.plus(u64::from(self.0))
    }
}

/// A byte position inside one segment's `.log` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FilePosition(pub u64);

/// The epoch of the leader that appended a batch; bumped on every leader change so followers
/// can find where their log diverged from the new leader's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LeaderEpoch(pub i32);

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Milliseconds since the Unix epoch, as in a record batch's timestamps. `-1` means "no
/// timestamp" in the batch format; the log treats it as older than every real time.
pub type TimestampMs = i64;

/// The timestamp value the batch format uses for "none".
pub const NO_TIMESTAMP: TimestampMs = -1;
