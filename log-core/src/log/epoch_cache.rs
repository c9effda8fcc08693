//! The leader-epoch cache: for each leader epoch, the first offset appended in it.
//!
//! Replication uses it to truncate without trusting a possibly stale high watermark: a
//! follower asks the leader where its last epoch ended and cuts its log there (Kafka's
//! KIP-101). The cache changes only when an epoch starts, when the log is truncated, and when
//! its start moves, and each change is written atomically.
//!
//! File `leader-epoch-checkpoint`, text as Kafka writes it: a version line (`0`), a count
//! line, then `<epoch> <start_offset>` per entry, epochs and offsets strictly increasing.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsio::{self, SmallFile};
use crate::types::{LeaderEpoch, Offset};

pub(crate) const EPOCH_CACHE_FILE: &str = "leader-epoch-checkpoint";
/// More entries than any sane log has; bounds what a damaged file can make us allocate.
const ENTRIES_MAX: usize = 1 << 20;
/// The longest file of at most `ENTRIES_MAX` entries: two header lines, then per entry two
/// numbers of at most 20 digits (with sign), a space and a newline.
const FILE_BYTES_MAX: u64 = 64 + ENTRIES_MAX as u64 * (2 * 20 + 2);

#[derive(Debug, Clone)]
pub(crate) struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<(LeaderEpoch, Offset)>,
}

impl LeaderEpochCache {
    /// Loads the cache; a missing file is an empty cache.
    pub(crate) fn load(dir: &Path) -> Result<LeaderEpochCache> {
        let path = dir.join(EPOCH_CACHE_FILE);
        let corrupt = |path, reason: &str| Error::CheckpointCorrupt {
            path,
            reason: reason.into(),
        };
        let text = match fsio::read_small(&path, FILE_BYTES_MAX) {
            Ok(SmallFile::Missing) => String::new(),
            Ok(SmallFile::TooLarge) => return Err(corrupt(path, "larger than any cache")),
            Ok(SmallFile::Read(bytes)) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => return Err(corrupt(path, "not UTF-8")),
            },
            Err(e) => return Err(Error::io("read leader-epoch cache", &path, e)),
        };
        let entries = if text.is_empty() {
            Vec::new()
        } else {
            parse(&text).map_err(|reason| Error::CheckpointCorrupt {
                path: path.clone(),
                reason: reason.into(),
            })?
        };
        Ok(LeaderEpochCache { path, entries })
    }

    /// An empty cache that will be written at `dir` (used when the file was damaged and is
    /// rebuilt from the batches' epochs).
    pub(crate) fn empty(dir: &Path) -> LeaderEpochCache {
        LeaderEpochCache {
            path: dir.join(EPOCH_CACHE_FILE),
            entries: Vec::new(),
        }
    }

    pub(crate) fn entries(&self) -> &[(LeaderEpoch, Offset)] {
        &self.entries
    }

    pub(crate) fn latest(&self) -> Option<(LeaderEpoch, Offset)> {
        self.entries.last().copied()
    }

    /// Whether `epoch` would start a new entry.
    pub(crate) fn is_new(&self, epoch: LeaderEpoch) -> bool {
        epoch.0 >= 0 && self.latest().is_none_or(|(e, _)| epoch > e)
    }

    /// Records that `epoch` starts at `start`, if it is newer than the latest epoch. Returns
    /// whether the cache changed (the caller persists it).
    pub(crate) fn assign(&mut self, epoch: LeaderEpoch, start: Offset) -> bool {
        if epoch.0 < 0 || self.latest().is_some_and(|(e, _)| epoch <= e) {
            return false;
        }
        // An epoch that starts where a previous one did replaces it: that epoch appended nothing.
        self.entries.retain(|(_, s)| *s < start);
        self.entries.push((epoch, start));
        true
    }

    /// Drops epochs that start at or after `end` (the log was truncated there).
    pub(crate) fn truncate_from_end(&mut self, end: Offset) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(_, start)| *start < end);
        before != self.entries.len()
    }

    /// Drops epochs wholly below `start` and moves the oldest kept epoch's start up to it.
    pub(crate) fn truncate_from_start(&mut self, start: Offset) -> bool {
        let covering = self.entries.iter().rposition(|(_, s)| *s <= start);
        let Some(covering) = covering else {
            return false;
        };
        let changed = covering > 0 || self.entries[covering].1 != start;
        self.entries.drain(..covering);
        self.entries[0].1 = start;
        changed
    }

    /// For replication: the end offset of `epoch` in this log, as `(epoch, end)` where `epoch`
    /// is the largest epoch `<=` the one asked for. The end is the start of the next epoch, or
    /// `log_end` for the latest. `None` if the log holds no epoch that old.
    pub(crate) fn end_offset_for(
        &self,
        epoch: LeaderEpoch,
        log_end: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        let index = self.entries.iter().rposition(|(e, _)| *e <= epoch)?;
        let end = self.entries.get(index + 1).map_or(log_end, |(_, s)| *s);
        Some((self.entries[index].0, end))
    }

    pub(crate) fn persist(&self) -> Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for (epoch, start) in &self.entries {
            text.push_str(&format!("{epoch} {start}\n"));
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fsio::write_atomically(&dir.join(EPOCH_CACHE_FILE), text.as_bytes())
    }
}

fn parse(text: &str) -> std::result::Result<Vec<(LeaderEpoch, Offset)>, &'static str> {
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return Err("unknown version");
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or("bad count line")?;
    if count > ENTRIES_MAX {
        return Err("too many entries");
    }
    let mut entries: Vec<(LeaderEpoch, Offset)> = Vec::new();
    for line in lines.by_ref().take(count) {
        let (epoch, start) = line.split_once(' ').ok_or("bad entry")?;
        let epoch = LeaderEpoch(epoch.parse().map_err(|_| "bad epoch")?);
        let start = Offset(start.parse().map_err(|_| "bad offset")?);
        if epoch.0 < 0
            || entries
                .last()
                .is_some_and(|(e, s)| epoch <= *e || start <= *s)
        {
            return Err("entries out of order");
        }
        entries.push((epoch, start));
    }
    if entries.len() != count || lines.next().is_some() {
        return Err("count does not match entries");
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_truncate_and_end_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::empty(dir.path());
        assert!(cache.assign(LeaderEpoch(0), Offset(0)));
        assert!(!cache.assign(LeaderEpoch(0), Offset(5)));
        assert!(cache.assign(LeaderEpoch(2), Offset(10)));
        assert!(cache.assign(LeaderEpoch(3), Offset(20)));
        assert_eq!(
            cache.end_offset_for(LeaderEpoch(1), Offset(30)),
            Some((LeaderEpoch(0), Offset(10)))
        );
        assert_eq!(
            cache.end_offset_for(LeaderEpoch(3), Offset(30)),
            Some((LeaderEpoch(3), Offset(30)))
        );
        assert!(cache.truncate_from_end(Offset(20)));
        assert_eq!(cache.latest(), Some((LeaderEpoch(2), Offset(10))));
        assert!(cache.truncate_from_start(Offset(12)));
        assert_eq!(cache.entries(), &[(LeaderEpoch(2), Offset(12))]);
        cache.persist().unwrap();
        let loaded = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(loaded.entries(), cache.entries());
    }

    #[test]
    fn damaged_files_are_errors() {
        for text in [
            "1\n0\n",
            "0\n2\n1 5\n",
            "0\n2\n3 5\n2 9\n",
            "0\n99999999999\n",
            "0\n1\n-1 0\n",
        ] {
            assert!(parse(text).is_err(), "{text:?} parsed");
        }
    }
}
