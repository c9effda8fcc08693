//! A file of fixed-size index entries, memory-mapped and preallocated while its segment is
//! active, trimmed to its entries when the segment is sealed.
//!
//! The file carries no header and no checksum: indexes are derived data. A file that fails
//! the typed checks of [`super::OffsetIndex`] or [`super::TimeIndex`] is rebuilt from the
//! segment's `.log`. A sealed segment's index is mapped read-only ([`Access::Read`]); an
//! index of a log followed while another process writes it ([`Access::Follow`]) is a private
//! copy of the file's valid prefix instead, because that writer may trim the file under a
//! mapping.
//!
//! The file is sparse: a page of it gets disk space when an entry is first written there,
//! through the mapping, where a full disk is a SIGBUS rather than an error. So writers
//! [`IndexFile::reserve`] space (with `fallocate`, in [`INDEX_RESERVE_BYTES`] chunks) before
//! they write the batches the entries describe, and a full disk fails the append instead.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use super::Access;

use crate::error::{Error, Result};
use crate::fsio::{self, SmallFile};
use crate::log::INDEX_MAX_BYTES_MAX;

/// Index bytes allocated per `fallocate` call: 64 KiB of offset index entries describe 32 MiB
/// of batches at the default index interval, so appends rarely pay for the call.
pub(crate) const INDEX_RESERVE_BYTES: usize = 64 << 10;

#[derive(Debug)]
enum Backing {
    /// An active segment's index: mapped for writing, preallocated.
    Mapped { file: File, map: MmapMut },
    /// A sealed segment's index in a log this process owns: mapped read-only, so retained
    /// data costs page cache, not heap.
    Sealed(Mmap),
    /// A private copy: for logs followed while another process writes them (it may trim the
    /// file under a mapping).
    Owned(Vec<u8>),
}

#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    entry_bytes: usize,
    max_entries: usize,
    entries: usize,
    /// Bytes from the start of the file whose disk space [`IndexFile::reserve`] allocated.
    reserved_bytes: usize,
    backing: Backing,
}

impl IndexFile {
    /// Opens (creating if missing) an index for writing: the entries already in the file are
    /// kept (`len / entry_bytes` of them), and the file grows to `max_bytes` so appends land
    /// in the mapping. The caller validates the kept entries.
    pub(crate) fn open_writable(
        path: &Path,
        entry_bytes: usize,
        max_bytes: usize,
    ) -> Result<IndexFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("open index", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat index", path, e))?
            .len();
        let max_entries = (max_bytes / entry_bytes).max(1);
        let capacity = (max_entries * entry_bytes) as u64;
        if len % entry_bytes as u64 != 0 || len > capacity {
            // Not a file this code wrote and trimmed: start over; recovery rebuilds it.
            file.set_len(0)
                .map_err(|e| Error::io("truncate index", path, e))?;
        }
        let entries = (file
            .metadata()
            .map_err(|e| Error::io("stat index", path, e))?
            .len()
            / entry_bytes as u64) as usize;
        file.set_len(capacity)
            .map_err(|e| Error::io("extend index", path, e))?;
        // SAFETY: the file is ours alone while the log holds its directory lock; nothing
        // truncates it while mapped (trim unmaps first).
        let map =
            unsafe { MmapMut::map_mut(&file) }.map_err(|e| Error::io("mmap index", path, e))?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            entry_bytes,
            max_entries,
            entries,
            reserved_bytes: 0,
            backing: Backing::Mapped { file, map },
        })
    }

    /// Opens an index as `access` asks: [`Access::Write`] as in `open_writable`, otherwise
    /// without writing to it (a missing file reads as empty).
    pub(crate) fn open(
        path: &Path,
        entry_bytes: usize,
        max_bytes: usize,
        access: Access,
    ) -> Result<IndexFile> {
        match access {
            Access::Write => Self::open_writable(path, entry_bytes, max_bytes),
            Access::Read => Self::open_sealed(path, entry_bytes),
            Access::Follow => Self::open_copy(path, entry_bytes),
        }
    }

    fn open_sealed(path: &Path, entry_bytes: usize) -> Result<IndexFile> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::owned(path, entry_bytes, Vec::new()))
            }
            Err(e) => return Err(Error::io("open index", path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat index", path, e))?
            .len();
        if len == 0 {
            return Ok(Self::owned(path, entry_bytes, Vec::new()));
        }
        // SAFETY: the log holds its directory lock; a sealed index is never written or
        // shrunk again while mapped (truncation reopens the segment for writing first).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("mmap index", path, e))?;
        let entries = map.len() / entry_bytes;
        Ok(IndexFile {
            path: path.to_path_buf(),
            entry_bytes,
            max_entries: entries,
            entries,
            reserved_bytes: 0,
            backing: Backing::Sealed(map),
        })
    }

    fn open_copy(path: &Path, entry_bytes: usize) -> Result<IndexFile> {
        let mut bytes = match fsio::read_small(path, INDEX_MAX_BYTES_MAX as u64) {
            Ok(SmallFile::Read(bytes)) => bytes,
            Ok(SmallFile::Missing) => Vec::new(),
            // Larger than any writer makes: damaged. Without entries, reads of the segment
            // scan it from its start instead.
            Ok(SmallFile::TooLarge) => {
                tracing::warn!(path = %path.display(), "index larger than any log writes; ignored");
                Vec::new()
            }
            Err(e) => return Err(Error::io("read index", path, e)),
        };
        bytes.truncate(bytes.len() - bytes.len() % entry_bytes);
        Ok(Self::owned(path, entry_bytes, bytes))
    }

    fn owned(path: &Path, entry_bytes: usize, bytes: Vec<u8>) -> IndexFile {
        let entries = bytes.len() / entry_bytes;
        IndexFile {
            path: path.to_path_buf(),
            entry_bytes,
            max_entries: entries,
            entries,
            reserved_bytes: 0,
            backing: Backing::Owned(bytes),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries >= self.max_entries
    }

    pub(crate) fn is_writable(&self) -> bool {
        matches!(self.backing, Backing::Mapped { .. })
    }

    fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Mapped { map, .. } => map,
            Backing::Sealed(map) => map,
            Backing::Owned(bytes) => bytes,
        }
    }

    /// The bytes of entry `i`; `i < len()`.
    pub(crate) fn entry(&self, i: usize) -> &[u8] {
        let at = i * self.entry_bytes;
        &self.bytes()[at..at + self.entry_bytes]
    }

    /// Appends one entry. Returns false when the index is full or read-only.
    pub(crate) fn push(&mut self, entry: &[u8]) -> bool {
        debug_assert_eq!(entry.len(), self.entry_bytes);
        if self.is_full() {
            return false;
        }
        let at = self.entries * self.entry_bytes;
        match &mut self.backing {
            Backing::Mapped { map, .. } => map[at..at + self.entry_bytes].copy_from_slice(entry),
            Backing::Sealed(_) | Backing::Owned(_) => return false,
        }
        self.entries += 1;
        true
    }

    /// Allocates disk space for `additional` more entries, plus one for the entry a seal may
    /// add, so that writing them through the mapping cannot fault. Fails with
    /// `Error::DiskFull` when the file system is full; then nothing may be written that
    /// would need those entries.
    pub(crate) fn reserve(&mut self, additional: usize) -> Result<()> {
        let Backing::Mapped { file, .. } = &self.backing else {
            return Ok(());
        };
        let capacity = self.max_entries * self.entry_bytes;
        let needed = ((self.entries + additional + 1) * self.entry_bytes).min(capacity);
        if needed <= self.reserved_bytes {
            return Ok(());
        }
        let target = needed.next_multiple_of(INDEX_RESERVE_BYTES).min(capacity);
        let len = (target - self.reserved_bytes) as u64;
        fsio::preallocate(file, self.reserved_bytes as u64, len)
            .map_err(|e| Error::io("reserve index space", &self.path, e))?;
        self.reserved_bytes = target;
        Ok(())
    }

    /// Keeps only the first `n` entries.
    pub(crate) fn truncate_entries(&mut self, n: usize) {
        self.entries = self.entries.min(n);
    }

    /// Writes mapped changes to disk.
    pub(crate) fn flush(&self) -> Result<()> {
        if let Backing::Mapped { map, .. } = &self.backing {
            map.flush()
                .map_err(|e| Error::io("msync index", &self.path, e))?;
        }
        Ok(())
    }

    /// Shrinks the file to its entries and turns it read-only in memory: the segment was
    /// sealed and will take no more entries.
    pub(crate) fn trim(&mut self) -> Result<()> {
        let Backing::Mapped { file, .. } = &self.backing else {
            return Ok(());
        };
        let used = self.entries * self.entry_bytes;
        file.set_len(used as u64)
            .map_err(|e| Error::io("trim index", &self.path, e))?;
        // fdatasync also writes the mapping's dirty pages: they are the file's page cache.
        fsio::sync_data(file, &self.path)?;
        let sealed = if used == 0 {
            Backing::Owned(Vec::new())
        } else {
            // SAFETY: as in `open_sealed`: nothing writes or shrinks a sealed index.
            Backing::Sealed(
                unsafe { Mmap::map(file) }.map_err(|e| Error::io("mmap index", &self.path, e))?,
            )
        };
        self.max_entries = self.entries;
        self.backing = sealed;
        Ok(())
    }
}
