//! The few file-system calls the log makes that std does not wrap: preallocation, data sync,
//! directory sync, atomic small-file replacement and the data-directory lock.
//!
//! Everything that makes data durable goes through [`sync_data`], so tests can make it fail
//! (feature `fault-injection`) and check that a failed fsync poisons the log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Allocates disk blocks for `[offset, offset + len)` without changing the file's size, so
/// later writes into that range need no block allocation at writeback (ext4 and xfs allocate
/// lazily otherwise, which made buffered write + fsync 2.4× slower on this project's
/// machines). A file system without fallocate is not an error: the write path works without.
pub(crate) fn preallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Ok(());
    };
    // SAFETY: fallocate reads no memory of ours; the descriptor is owned by `file`.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => Ok(()),
        _ => Err(error),
    }
}

/// Tells the kernel a range will be read sequentially (recovery, verification), so it reads
/// ahead aggressively. Advice only: errors are ignored.
pub(crate) fn advise_sequential(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: posix_fadvise reads no memory of ours; the descriptor is owned by `file`.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_SEQUENTIAL);
    }
}

/// Starts reading a range into the page cache in the background. Advice only.
pub(crate) fn advise_will_need(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    if len == 0 {
        return;
    }
    // SAFETY: posix_fadvise reads no memory of ours; the descriptor is owned by `file`.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_WILLNEED);
    }
}

/// A small metadata file, read whole.
#[derive(Debug)]
pub(crate) enum SmallFile {
    Missing,
    /// Larger than the caller's bound: damaged, and not read further.
    TooLarge,
    Read(Vec<u8>),
}

/// Reads a whole metadata file (checkpoint, epoch cache, followed index) of at most `max`
/// bytes. A larger file, which only damage makes, is not read past `max`, so it cannot make
/// the log allocate what it claims.
pub(crate) fn read_small(path: &Path, max: u64) -> io::Result<SmallFile> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SmallFile::Missing),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() > max {
        return Ok(SmallFile::TooLarge);
    }
    // Bounded again while reading: the file may grow after the size was looked at.
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Ok(SmallFile::TooLarge);
    }
    Ok(SmallFile::Read(bytes))
}

/// Reads up to `len` bytes at `position` into `buf`'s spare capacity (which must hold
/// `len`), stopping early only at the end of the file; `buf`'s length grows by what was read.
/// Unlike `read_at` into a zeroed buffer, it never writes the memory twice: zeroing was 7 % of
/// a warm read.
pub(crate) fn read_at_into_spare(
    file: &File,
    buf: &mut bytes::BytesMut,
    len: usize,
    position: u64,
) -> io::Result<()> {
    assert!(
        buf.capacity() - buf.len() >= len,
        "the caller reserves the capacity"
    );
    let start = buf.len();
    let mut read = 0;
    while read < len {
        let Ok(at) = libc::off_t::try_from(position + read as u64) else {
            break;
        };
        let spare = buf.spare_capacity_mut();
        // SAFETY: `spare` has at least `len - read` bytes of writable (uninitialised) memory
        // past `read`; pread writes at most that many bytes into it and never reads it.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().add(read).cast::<libc::c_void>(),
                len - read,
                at,
            )
        };
        match n {
            0 => break,
            n if n > 0 => read += n as usize,
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    // SAFETY: pread initialised exactly `read` bytes after the old length.
    unsafe { buf.set_len(start + read) };
    Ok(())
}

/// `fdatasync`: the file's data, and the metadata needed to read it back, reach the disk.
pub(crate) fn sync_data(file: &File, path: &Path) -> Result<()> {
    #[cfg(any(test, feature = "fault-injection"))]
    if fault::sync_should_fail(path) {
        return Err(Error::Io {
            op: "fdatasync",
            path: path.to_path_buf(),
            cause: io::Error::from_raw_os_error(libc::EIO),
        });
    }
    file.sync_data()
        .map_err(|source| Error::io("fdatasync", path, source))
}

/// Makes a directory's entries (files created, renamed or removed in it) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let handle = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    sync_data(&handle, dir)
}

/// Replaces `path` with `contents` so that a crash leaves either the old or the new file:
/// write a temporary file, sync it, rename it over, sync the directory.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    file.write_all(contents)
        .map_err(|e| Error::io("write", &tmp, e))?;
    sync_data(&file, &tmp)?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// An exclusive advisory lock on a directory, held while the value lives. Two processes
/// writing one log would interleave batches; the lock turns that into a clear error.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) const FILE_NAME: &'static str = ".lock";

    pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(Self::FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open lock file", &path, e))?;
        // SAFETY: flock takes a descriptor we own and no memory.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            return Err(Error::io("lock", &path, error));
        }
        Ok(DirLock { _file: file })
    }
}

/// Test hooks: make `sync_data` fail for files under a directory.
#[cfg(any(test, feature = "fault-injection"))]
pub mod fault {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    static FAILING_DIRS: Mutex<Vec<(PathBuf, usize)>> = Mutex::new(Vec::new());

    /// Makes the next `count` fsyncs of files under `dir` fail with EIO.
    pub fn fail_syncs_under(dir: &Path, count: usize) {
        let mut dirs = FAILING_DIRS.lock().unwrap_or_else(|e| e.into_inner());
        dirs.push((dir.to_path_buf(), count));
    }

    pub(crate) fn sync_should_fail(path: &Path) -> bool {
        let mut dirs = FAILING_DIRS.lock().unwrap_or_else(|e| e.into_inner());
        for (dir, remaining) in dirs.iter_mut() {
            if *remaining > 0 && path.starts_with(dir) {
                *remaining -= 1;
                return true;
            }
        }
        false
    }
}

/// Gives back the blocks of `[offset, offset + len)` (preallocated past the data) without
/// changing the file's size.
pub(crate) fn release_after(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Ok(());
    };
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate reads no memory of ours; the descriptor is owned by `file`.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => Ok(()),
        _ => Err(error),
    }
}
