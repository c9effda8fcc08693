//! The sparse time index (`.timeindex`): where to start looking for the first record at or
//! after a timestamp.
//!
//! Entry (12 bytes, big-endian): timestamp i64, relative offset u32. An entry `(T, O)` says
//! "the greatest timestamp among the records at offsets `<= O` is `T`", so every record with a
//! timestamp above `T` lies after `O`. Entries are added beside offset-index entries (and once
//! more when the segment is sealed) and only when `T` grows, so both fields strictly increase.
//! The last entry of a sealed segment carries the segment's largest timestamp, which retention
//! judges by.

use std::path::Path;

use super::index_file::IndexFile;
use super::Access;
use crate::error::{Error, Result};
use crate::types::{RelativeOffset, TimestampMs};

pub(crate) const TIME_ENTRY_BYTES: usize = 12;

#[derive(Debug)]
pub(crate) struct TimeIndex {
    file: IndexFile,
}

impl TimeIndex {
    pub(crate) fn open(path: &Path, max_bytes: usize, access: Access) -> Result<TimeIndex> {
        Ok(TimeIndex {
            file: IndexFile::open(path, TIME_ENTRY_BYTES, max_bytes, access)?,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.file.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.file.is_full()
    }

    pub(crate) fn entry(&self, i: usize) -> (TimestampMs, RelativeOffset) {
        let bytes = self.file.entry(i);
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&bytes[..8]);
        let relative = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        (i64::from_be_bytes(timestamp), RelativeOffset(relative))
    }

    pub(crate) fn last(&self) -> Option<(TimestampMs, RelativeOffset)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Checks that entries strictly increase and stay below `next_relative` (the segment's
    /// next offset, relative).
    pub(crate) fn check(&self, next_relative: Option<RelativeOffset>) -> Result<()> {
        let mut previous: Option<(TimestampMs, RelativeOffset)> = None;
        for i in 0..self.len() {
            let (timestamp, relative) = self.entry(i);
            let ordered = previous.is_none_or(|(t, r)| timestamp > t && relative >= r);
            let inside = next_relative.is_none_or(|next| relative < next);
            if !ordered || !inside {
                return Err(Error::IndexCorrupt {
                    path: self.file.path().to_path_buf(),
                    reason: format!(
                        "entry {i} ({timestamp}, {}) is out of order or past the log",
                        relative.0
                    ),
                });
            }
            previous = Some((timestamp, relative));
        }
        Ok(())
    }

    /// Keeps the longest prefix of entries that strictly increase.
    pub(crate) fn keep_valid_prefix(&mut self) {
        let mut keep = 0;
        for i in 0..self.len() {
            let (timestamp, relative) = self.entry(i);
            if i > 0 {
                let (t, r) = self.entry(i - 1);
                if timestamp <= t || relative < r {
                    break;
                }
            }
            keep = i + 1;
        }
        self.file.truncate_entries(keep);
    }

    /// Adds `(timestamp, relative)` if the timestamp grew. False only if the index is full.
    pub(crate) fn maybe_append(
        &mut self,
        timestamp: TimestampMs,
        relative: RelativeOffset,
    ) -> bool {
        if self
            .last()
            .is_some_and(|(t, r)| timestamp <= t || relative < r)
        {
            return true;
        }
        let mut entry = [0u8; TIME_ENTRY_BYTES];
        entry[..8].copy_from_slice(&timestamp.to_be_bytes());
        entry[8..].copy_from_slice(&relative.0.to_be_bytes());
        self.file.push(&entry)
    }

    /// The greatest entry with timestamp strictly below `target`: every record at or after
    /// `target` lies after its offset.
    pub(crate) fn lookup_before(
        &self,
        target: TimestampMs,
    ) -> Option<(TimestampMs, RelativeOffset)> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            if self.entry(mid).0 < target {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low.checked_sub(1).map(|i| self.entry(i))
    }

    /// Drops entries at or past `relative` (the log was cut there).
    pub(crate) fn truncate_to(&mut self, relative: RelativeOffset) {
        let keep = (0..self.len())
            .rev()
            .find(|&i| self.entry(i).1 < relative)
            .map_or(0, |i| i + 1);
        self.file.truncate_entries(keep);
    }

    pub(crate) fn clear(&mut self) {
        self.file.truncate_entries(0);
    }

    /// Allocates disk space for `additional` more entries (see [`IndexFile::reserve`]).
    pub(crate) fn reserve(&mut self, additional: usize) -> Result<()> {
        self.file.reserve(additional)
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.file.flush()
    }

    pub(crate) fn trim(&mut self) -> Result<()> {
        self.file.trim()
    }
}
