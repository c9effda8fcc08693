//! The limits the bench measures itself, in the same run as the log (memory copy, and the
//! batch CRC-32C as the cost every append and read pays per byte), and the file-system
//! helpers the scenarios need: syncing and evicting a log's files from the page cache,
//! checking that the bench directory is on a disk.

use std::fs::{self, File};
use std::hint::black_box;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::report::Measurement;

/// `statfs` magic of tmpfs: a bench there would measure memory, not the disk.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Single-threaded memory copy between two buffers of `buffer_bytes` (larger than the caches,
/// so this is DRAM bandwidth), repeated for at least `duration`. Counts bytes copied.
pub fn memcpy(buffer_bytes: usize, duration: Duration) -> Measurement {
    let source: Vec<u8> = (0..buffer_bytes).map(|i| (i * 31) as u8).collect();
    let mut target = vec![0u8; buffer_bytes];
    target.copy_from_slice(&source); // fault the pages in before timing
    let started = Instant::now();
    let mut copied = 0u64;
    while copied == 0 || started.elapsed() < duration {
        target.copy_from_slice(black_box(&source));
        black_box(&mut target);
        copied += buffer_bytes as u64;
    }
    let mut m = Measurement::new("limit/memcpy".into(), "limit");
    m.seconds = started.elapsed().as_secs_f64();
    m.stored_bytes = copied;
    m.detail("buffer_bytes", buffer_bytes as u64);
    m
}

/// First touch of fresh anonymous memory: what writing into pages the kernel has not used
/// recently costs. On a virtual machine whose host takes back free guest memory (free page
/// reporting), every first touch is a fault in the host as well, and page-cache writes into
/// such pages run at this rate rather than at memcpy's.
pub fn first_touch(bytes: usize) -> Measurement {
    const PAGE_BYTES: usize = 4096;
    let started = Instant::now();
    // SAFETY: an anonymous private mapping of `bytes`, unmapped below; no file, no aliasing.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    let mut m = Measurement::new("limit/first-touch".into(), "limit");
    if map == libc::MAP_FAILED {
        return m;
    }
    let base = map.cast::<u8>();
    for offset in (0..bytes).step_by(PAGE_BYTES) {
        // SAFETY: `offset < bytes`, inside the mapping.
        unsafe { base.add(offset).write_volatile(1) };
    }
    m.seconds = started.elapsed().as_secs_f64();
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(map, bytes) };
    m.stored_bytes = bytes as u64;
    m
}

/// Writes `bytes` to a scratch file in `dir` and deletes it before writeback, so that the
/// page cache of the write that follows lands in memory the host has just backed (see
/// [`first_touch`]). Without it, whichever scenario first writes after a quiet spell pays the
/// host's faults, and ratios between scenarios measure the hypervisor. A page-cache write warms
/// better than touching anonymous memory, which measurably did not help here.
pub fn warm_memory(dir: &Path, bytes: u64) -> io::Result<()> {
    const BLOCK_BYTES: usize = 1 << 20;
    let path = dir.join("warm-up.dat");
    let file = File::create(&path)?;
    let block = vec![0x5au8; BLOCK_BYTES];
    let mut written = 0u64;
    while written < bytes {
        file.write_all_at(&block, written)?;
        written += BLOCK_BYTES as u64;
    }
    drop(file);
    fs::remove_file(&path)
}

/// The batch checksum as log-core computes it ([`log_core::batch::checksum`]: CRC-32C with
/// `crc-fast`, VPCLMULQDQ where the CPU has it) over a buffer of `buffer_bytes` (larger than
/// the caches, so from DRAM), repeated for `duration`: the per-byte cost every append, read
/// and recovery scan pays.
pub fn batch_crc(buffer_bytes: usize, duration: Duration) -> Measurement {
    let mut m = crc_rate(buffer_bytes, duration, log_core::batch::checksum);
    m.name = "component/batch-crc".into();
    m
}

/// The same over the `crc32c` crate (SSE4.2 `crc32` instruction), which computed the batch
/// checksum before `crc-fast` and which the tests still check it against: the yardstick for
/// what the change of implementation gained, measured in the same run.
pub fn crc32c_crate(buffer_bytes: usize, duration: Duration) -> Measurement {
    let mut m = crc_rate(buffer_bytes, duration, crc32c::crc32c);
    m.name = "component/crc32c-crate".into();
    m
}

fn crc_rate(buffer_bytes: usize, duration: Duration, crc: fn(&[u8]) -> u32) -> Measurement {
    let buffer: Vec<u8> = (0..buffer_bytes).map(|i| (i * 7) as u8).collect();
    let started = Instant::now();
    let mut summed = 0u64;
    let mut folded = 0u32;
    while summed == 0 || started.elapsed() < duration {
        folded ^= crc(black_box(&buffer));
        summed += buffer_bytes as u64;
    }
    black_box(folded);
    let mut m = Measurement::new(String::new(), "component");
    m.seconds = started.elapsed().as_secs_f64();
    m.stored_bytes = summed;
    m
}

/// Fails if `dir` is on tmpfs.
pub fn check_on_disk(dir: &Path) -> io::Result<()> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `stat` is a plain C struct that statfs fills; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if stat.f_type as i64 == TMPFS_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is on tmpfs: set RUNNEL_BENCH_DIR to a directory on the disk",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Syncs every file in `dir` (what the log would have synced had it closed cleanly), so that
/// a recovery measures scanning, not writeback.
pub fn sync_files(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            File::open(&path)?.sync_data()?;
        }
    }
    Ok(())
}

/// Drops `dir`'s (clean) files from the page cache, as fio's `--invalidate=1` does, so the
/// next read comes from the disk.
pub fn evict_files(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            let file = File::open(&path)?;
            // SAFETY: fadvise takes a descriptor we own and no memory.
            let rc =
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
        }
    }
    Ok(())
}

/// Total size of the files in `dir` whose names end in `suffix`.
pub fn bytes_of(dir: &Path, suffix: &str) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(suffix) {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Removes a scenario's directory, if it exists.
pub fn remove_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The calling thread's CPU time so far, user and system, in seconds (0 if the clock is
/// unavailable).
pub fn thread_cpu_seconds() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return 0.0;
    }
    now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
}

/// Lets the file system settle after a scenario (freed blocks, discards, anything dirty), so
/// that the next scenario does not pay for this one.
pub fn settle() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// The 1-, 5- and 15-minute load averages: other work on the machine skews every figure.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
