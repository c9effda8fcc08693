//! The partition's small state files, each replaced atomically (write, sync, rename, sync
//! the directory).
//!
//! `partition.checkpoint` (32 bytes, big-endian):
//!
//! ```text
//! magic "RNLC" | version u16 = 1 | reserved u16 | log_start_offset u64
//! | recovery_point u64 | high_watermark u64 ... | crc32 (IEEE) of the preceding bytes u32
//! ```
//!
//! The recovery point is the offset below which data and indexes were synced; recovery
//! after an unclean stop scans from the segment holding it. `.clean-shutdown` is written last
//! by a clean close and removed (durably) by the next open before anything else happens; its
//! presence means no scan is needed.

use std::fs;
use std::io;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsio::{self, SmallFile};
use crate::types::Offset;

pub(crate) const CHECKPOINT_FILE: &str = "partition.checkpoint";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";

const MAGIC: &[u8; 4] = b"RNLC";
const VERSION: u16 = 1;
const CHECKPOINT_BYTES: usize = 4 + 2 + 2 + 8 * 3 + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Checkpoint {
    pub(crate) log_start: Offset,
    pub(crate) recovery_point: Offset,
    pub(crate) high_watermark: Offset,
}

impl Checkpoint {
    /// Reads the checkpoint; `Ok(None)` if there is none yet.
    pub(crate) fn read(dir: &Path) -> Result<Option<Checkpoint>> {
        let path = dir.join(CHECKPOINT_FILE);
        let corrupt = |reason: &str| Error::CheckpointCorrupt {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let bytes = match fsio::read_small(&path, CHECKPOINT_BYTES as u64) {
            Ok(SmallFile::Read(bytes)) if bytes.len() == CHECKPOINT_BYTES => bytes,
            Ok(SmallFile::Read(_) | SmallFile::TooLarge) => return Err(corrupt("wrong size")),
            Ok(SmallFile::Missing) => return Ok(None),
            Err(e) => return Err(Error::io("read checkpoint", &path, e)),
        };
        let (body, crc) = bytes.split_at(CHECKPOINT_BYTES - 4);
        if crc32fast::hash(body).to_be_bytes() != crc {
            return Err(corrupt("checksum mismatch"));
        }
        if &body[..4] != MAGIC || u16::from_be_bytes([body[4], body[5]]) != VERSION {
            return Err(corrupt("unknown magic or version"));
        }
        let at = |i: usize| {
            Offset(u64::from_be_bytes(
                body[i..i + 8].try_into().expect("8 bytes"),
            ))
        };
        let checkpoint = Checkpoint {
            log_start: at(8),
            recovery_point: at(16),
            high_watermark: at(24),
        };
        // Batches store offsets as i64: a larger one was never written by a log.
        let offsets = [
            checkpoint.log_start,
            checkpoint.recovery_point,
            checkpoint.high_watermark,
        ];
        if offsets.iter().any(|o| i64::try_from(o.0).is_err()) {
            return Err(corrupt("offset beyond the batch format's range"));
        }
        Ok(Some(checkpoint))
    }

    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let mut bytes = Vec::with_capacity(CHECKPOINT_BYTES);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        for offset in [self.log_start, self.recovery_point, self.high_watermark] {
            bytes.extend_from_slice(&offset.0.to_be_bytes());
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        fsio::write_atomically(&dir.join(CHECKPOINT_FILE), &bytes)
    }
}

/// Removes the clean-shutdown marker durably; returns whether it was there.
pub(crate) fn take_clean_shutdown_marker(dir: &Path) -> Result<bool> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    match fs::remove_file(&path) {
        Ok(()) => {
            fsio::sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove clean-shutdown marker", &path, e)),
    }
}

pub(crate) fn write_clean_shutdown_marker(dir: &Path, log_end: Offset) -> Result<()> {
    fsio::write_atomically(
        &dir.join(CLEAN_SHUTDOWN_FILE),
        format!("{log_end}\n").as_bytes(),
    )
}
