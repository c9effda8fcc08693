//! The sparse offset index (`.index`): which byte position of the `.log` to start scanning
//! from to find an offset.
//!
//! Entry (8 bytes, big-endian): relative offset u32, file position u32. When a batch is
//! written after more than `index_interval_bytes` were appended since the previous entry, an
//! entry is added naming that batch's base offset and the position it starts at. Lookup
//! finds the greatest entry whose offset is `<=` the target; the caller scans
//! batch headers forward from its position. Entries strictly increase in both fields.

use std::path::Path;

use super::index_file::IndexFile;
use super::Access;
use crate::error::{Error, Result};
use crate::types::{FilePosition, RelativeOffset};

pub(crate) const OFFSET_ENTRY_BYTES: usize = 8;

#[derive(Debug)]
pub(crate) struct OffsetIndex {
    file: IndexFile,
}

impl OffsetIndex {
    pub(crate) fn open(path: &Path, max_bytes: usize, access: Access) -> Result<OffsetIndex> {
        Ok(OffsetIndex {
            file: IndexFile::open(path, OFFSET_ENTRY_BYTES, max_bytes, access)?,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.file.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.file.is_full()
    }

    pub(crate) fn entry(&self, i: usize) -> (RelativeOffset, FilePosition) {
        let bytes = self.file.entry(i);
        let relative = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let position = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        (RelativeOffset(relative), FilePosition(u64::from(position)))
    }

    pub(crate) fn last(&self) -> Option<(RelativeOffset, FilePosition)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Checks that entries strictly increase and point inside a log of `log_size` bytes.
    pub(crate) fn check(&self, log_size: u64) -> Result<()> {
        let mut previous: Option<(RelativeOffset, FilePosition)> = None;
        for i in 0..self.len() {
            let (relative, position) = self.entry(i);
            let ordered = previous.is_none_or(|(r, p)| relative > r && position > p);
            if !ordered || position.0 >= log_size {
                return Err(Error::IndexCorrupt {
                    path: self.file.path().to_path_buf(),
                    reason: format!(
                        "entry {i} ({}, {}) is out of order or past the log's {log_size} bytes",
                        relative.0, position.0
                    ),
                });
            }
            previous = Some((relative, position));
        }
        Ok(())
    }

    /// Keeps the longest prefix of entries that strictly increase and point inside a log of
    /// `log_size` bytes (an index another process is still writing ends in zeros).
    pub(crate) fn keep_valid_prefix(&mut self, log_size: u64) {
        let mut previous: Option<(RelativeOffset, FilePosition)> = None;
        let mut keep = 0;
        for i in 0..self.len() {
            let (relative, position) = self.entry(i);
            let ordered = previous.is_none_or(|(r, p)| relative > r && position > p);
            if !ordered || position.0 >= log_size {
                break;
            }
            previous = Some((relative, position));
            keep = i + 1;
        }
        self.file.truncate_entries(keep);
    }

    /// Adds an entry; false if the index is full (the segment must roll).
    pub(crate) fn append(&mut self, relative: RelativeOffset, position: FilePosition) -> bool {
        debug_assert!(self
            .last()
            .is_none_or(|(r, p)| relative > r && position > p));
        let Ok(position) = u32::try_from(position.0) else {
            // Only a damaged or foreign file outgrows 4 GiB; its tail goes unindexed.
            return false;
        };
        let mut entry = [0u8; OFFSET_ENTRY_BYTES];
        entry[..4].copy_from_slice(&relative.0.to_be_bytes());
        entry[4..].copy_from_slice(&position.to_be_bytes());
        self.file.push(&entry)
    }

    /// The greatest entry with offset `<= target`, if any.
    pub(crate) fn lookup(&self, target: RelativeOffset) -> Option<(RelativeOffset, FilePosition)> {
        let count = self.partition_point(|relative, _| relative <= target);
        count.checked_sub(1).map(|i| self.entry(i))
    }

    /// Drops every entry whose position is at or past `position` (the log was cut there).
    pub(crate) fn truncate_to_position(&mut self, position: FilePosition) {
        let keep = self.partition_point(|_, p| p < position);
        self.file.truncate_entries(keep);
    }

    pub(crate) fn clear(&mut self) {
        self.file.truncate_entries(0);
    }

    fn partition_point(&self, pred: impl Fn(RelativeOffset, FilePosition) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            let (relative, position) = self.entry(mid);
            if pred(relative, position) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
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

    pub(crate) fn is_writable(&self) -> bool {
        self.file.is_writable()
    }
}
