//! A full disk: appends fail cleanly with `Error::DiskFull`, nothing half-written becomes
//! visible, and appends resume once space is freed.
//!
//! Fault: a size-limited tmpfs, mounted by the test (it needs root, which this project's
//! test machines give; without it the test fails and says why), filled to the last byte by a
//! ballast file. Workload: single-threaded appends of varied sizes until one fails, then
//! again after the ballast is deleted, then a clean restart. Check: the failed append is
//! `DiskFull` and retriable, the log end does not move, every file holds only whole batches,
//! acknowledged records lost (0), and `verify` finds nothing.

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use log_core::{
    BatchBuilder, Compression, Error, FlushPolicy, LeaderEpoch, LogConfig, Offset, PartitionLog,
};

/// Size of each test's file system: small enough to fill in a moment.
const TMPFS_BYTES: u64 = 4 << 20;
/// Caps every fill loop: a file system this size fills long before.
const APPENDS_MAX: usize = 100_000;
const BALLAST_CHUNK_BYTES: usize = 64 << 10;

/// A tmpfs of a fixed size mounted on a fresh temporary directory, unmounted on drop.
///
/// Tests holding one run one at a time: `mount` and `umount` are child processes, and a
/// child forked while another test drops a log holds a copy of the log's lock descriptor
/// until it execs, so an immediate reopen could find the directory locked (`flock` locks
/// belong to the open file, which the fork shares).
struct Tmpfs {
    dir: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

static SERIAL: Mutex<()> = Mutex::new(());

impl Tmpfs {
    fn mount(options: &str) -> Tmpfs {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("create a mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "runnel-full-disk"])
            .arg(dir.path())
            .output()
            .expect("run mount(8)");
        assert!(
            output.status.success(),
            "this test needs to mount a size-limited tmpfs (run it as root): `mount -t tmpfs -o {options}` \
             failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Tmpfs {
            dir,
            _serial: serial,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(self.dir.path()).status();
        if !matches!(status, Ok(s) if s.success()) {
            // Still busy (a test failed with files open): detach it so nothing leaks.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Fills the file system to its last byte; returns the ballast's path.
fn fill_with_ballast(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut file = File::create(&path).expect("create ballast");
    let chunk = vec![0xA5u8; BALLAST_CHUNK_BYTES];
    let chunks_max = TMPFS_BYTES as usize / BALLAST_CHUNK_BYTES + 2;
    for _ in 0..chunks_max * 2 {
        match file.write(&chunk) {
            Ok(0) => return path,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return path,
            Err(e) => panic!("writing ballast: {e}"),
        }
    }
    panic!("the {TMPFS_BYTES}-byte file system never filled");
}

/// A deterministic record value: its length and bytes follow from `id`.
fn value(id: u64) -> Vec<u8> {
    let mut state = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let len = 50 + (state % 1500) as usize;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn batch_of(id: u64) -> bytes::BytesMut {
    let mut builder = BatchBuilder::new(Compression::None);
    builder.append(1_700_000_000_000 + id as i64, None, Some(&value(id)), &[]);
    builder.build().expect("batch builds")
}

/// Every record value from the log start, in offset order.
fn read_values(log: &PartitionLog) -> Vec<Vec<u8>> {
    common::read_records(log, log.log_start_offset())
        .into_iter()
        .map(|(_, value)| value)
        .collect()
}

/// The appends a test made and what they must read back as.
#[derive(Default)]
struct Acked {
    values: Vec<Vec<u8>>,
    next_id: u64,
}

impl Acked {
    /// Appends the next batch; on success remembers its value. A failed batch is the one
    /// tried again next time, as a producer retries.
    fn append(&mut self, log: &PartitionLog) -> log_core::Result<()> {
        let id = self.next_id;
        let info = log.append_as_leader(&mut batch_of(id), LeaderEpoch(0))?;
        assert_eq!(info.first_offset, Offset(self.values.len() as u64));
        self.values.push(value(id));
        self.next_id += 1;
        Ok(())
    }

    /// Appends one record of `value`, outside the id sequence.
    fn append_value(&mut self, log: &PartitionLog, value: &[u8]) -> log_core::Result<()> {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.append(1_700_000_000_000, None, Some(value), &[]);
        let info =
            log.append_as_leader(&mut builder.build().expect("batch builds"), LeaderEpoch(0))?;
        assert_eq!(info.first_offset, Offset(self.values.len() as u64));
        self.values.push(value.to_vec());
        Ok(())
    }

    /// Appends until an append fails; returns that error.
    fn append_until_error(&mut self, log: &PartitionLog) -> Error {
        for _ in 0..APPENDS_MAX {
            if let Err(error) = self.append(log) {
                return error;
            }
        }
        panic!("{APPENDS_MAX} appends succeeded on a full {TMPFS_BYTES}-byte file system");
    }
}

/// Every segment file holds exactly its committed bytes: no half-written batch stayed.
fn assert_files_hold_whole_batches(log: &PartitionLog) {
    for (base, size, _) in log.segments() {
        let path = log.dir().join(format!("{:020}.log", base.0));
        let on_disk = std::fs::metadata(&path).expect("segment file").len();
        assert_eq!(
            on_disk,
            size,
            "{} holds bytes past its last whole batch",
            path.display()
        );
    }
    assert!(log.verify().is_ok(), "{:?}", log.verify());
}

/// Asserts that `error` is a full disk and that the log is exactly as before the append.
fn assert_clean_disk_full(log: &PartitionLog, error: &Error, acked: &Acked) {
    assert!(
        matches!(error, Error::DiskFull { .. }),
        "expected DiskFull, got {error:?}"
    );
    assert!(error.is_retriable());
    assert!(!log.is_poisoned(), "a full disk must not poison the log");
    assert_eq!(
        log.log_end_offset(),
        Offset(acked.values.len() as u64),
        "a failed append moved the log end"
    );
    assert_files_hold_whole_batches(log);
    assert!(
        read_values(log) == acked.values,
        "acknowledged records changed on a full disk"
    );
}

/// Fill, fail, free, resume, restart: the whole scenario for one configuration.
fn full_then_freed(config: LogConfig) {
    let tmpfs = Tmpfs::mount(&format!("size={TMPFS_BYTES}"));
    let log_dir = tmpfs.path().join("log");
    let mut acked = Acked::default();
    let log = PartitionLog::open(&log_dir, config.clone()).unwrap();
    for _ in 0..20 {
        acked.append(&log).unwrap();
    }
    let ballast = fill_with_ballast(tmpfs.path());
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // A reader races the appends that fail: it must never see part of a batch.
        let reader = scope.spawn(|| {
            let mut passes = 0u64;
            while !stop.load(Ordering::Acquire) || passes == 0 {
                read_values(&log);
                passes += 1;
            }
        });
        let error = acked.append_until_error(&log);
        assert_clean_disk_full(&log, &error, &acked);
        // Still full: the retried append keeps failing the same clean way.
        for _ in 0..3 {
            let error = acked.append(&log).expect_err("the disk is still full");
            assert_clean_disk_full(&log, &error, &acked);
        }

        std::fs::remove_file(&ballast).unwrap();
        for _ in 0..200 {
            acked
                .append(&log)
                .expect("appends resume once space is freed");
        }
        stop.store(true, Ordering::Release);
        reader
            .join()
            .expect("the reader saw only whole, valid batches");
    });
    assert!(read_values(&log) == acked.values);
    log.close().unwrap();
    drop(log);

    let log = PartitionLog::open(&log_dir, config).unwrap();
    assert_eq!(log.log_end_offset(), Offset(acked.values.len() as u64));
    assert!(
        read_values(&log) == acked.values,
        "acknowledged records lost across restart"
    );
    assert!(log.verify().is_ok(), "{:?}", log.verify());
    acked.append(&log).unwrap();
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 10,
        index_interval_bytes: 1024,
        index_max_bytes: 64 << 10,
        ..LogConfig::default()
    }
}

#[test]
fn full_disk_with_preallocation_fails_cleanly_and_resumes() {
    full_then_freed(small_segments());
}

#[test]
fn full_disk_without_preallocation_fails_cleanly_and_resumes() {
    full_then_freed(LogConfig {
        preallocate_bytes: 0,
        flush: FlushPolicy::EveryWrite,
        ..small_segments()
    });
}

/// The disk fills exactly when the active segment is full: the append that rolls fails.
#[test]
fn full_disk_at_a_segment_roll_fails_cleanly_and_resumes() {
    let tmpfs = Tmpfs::mount(&format!("size={TMPFS_BYTES}"));
    let log_dir = tmpfs.path().join("log");
    let config = LogConfig {
        segment_bytes: 64 << 10,
        preallocate_bytes: 0,
        ..small_segments()
    };
    let log = PartitionLog::open(&log_dir, config.clone()).unwrap();
    let mut acked = Acked::default();
    // Fill the active segment until the next batch must roll.
    loop {
        let (_, size, _) = *log.segments().last().unwrap();
        if size + batch_of(acked.next_id).len() as u64 > config.segment_bytes {
            break;
        }
        acked.append(&log).unwrap();
    }
    let segments = log.segments().len();
    let ballast = fill_with_ballast(tmpfs.path());
    let error = acked
        .append(&log)
        .expect_err("the rolling append needs space");
    assert_clean_disk_full(&log, &error, &acked);
    assert!(log.segments().len() <= segments + 1);
    let error = acked.append(&log).expect_err("the disk is still full");
    assert_clean_disk_full(&log, &error, &acked);

    std::fs::remove_file(ballast).unwrap();
    for _ in 0..100 {
        acked
            .append(&log)
            .expect("appends resume once space is freed");
    }
    assert!(
        log.segments().len() > segments,
        "the log rolled after space came back"
    );
    assert!(read_values(&log) == acked.values);
    drop(log);
    let log = PartitionLog::open(&log_dir, config).unwrap();
    assert!(
        read_values(&log) == acked.values,
        "acknowledged records lost across restart"
    );
    assert!(log.verify().is_ok(), "{:?}", log.verify());
}

/// The file system has space for data but no inode for a new segment's files: the roll
/// fails, and the log keeps working once files can be created again.
#[test]
fn no_room_for_a_new_segment_file_fails_cleanly_and_resumes() {
    // tmpfs counts the root directory as one inode; the log directory, its lock, checkpoint,
    // epoch file and the first segment's three files take the rest, plus room for the
    // atomic-write temporaries.
    let tmpfs = Tmpfs::mount(&format!("size={TMPFS_BYTES},nr_inodes=16"));
    let log_dir = tmpfs.path().join("log");
    let config = LogConfig {
        segment_bytes: 16 << 10,
        ..small_segments()
    };
    let log = PartitionLog::open(&log_dir, config.clone()).unwrap();
    let mut acked = Acked::default();
    acked.append(&log).unwrap();
    // Use up the inodes left with empty files.
    let mut fillers = Vec::new();
    for i in 0.. {
        let path = tmpfs.path().join(format!("filler-{i}"));
        match File::create(&path) {
            Ok(_) => fillers.push(path),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("creating {}: {e}", path.display()),
        }
        assert!(i < 64, "nr_inodes did not limit file creation");
    }
    let error = acked.append_until_error(&log);
    assert_clean_disk_full(&log, &error, &acked);
    assert_eq!(
        log.segments().len(),
        1,
        "the first roll failed and left no new segment"
    );
    let error = acked.append(&log).expect_err("still no inode");
    assert_clean_disk_full(&log, &error, &acked);
    // A batch small enough for the room left in the active segment may go there or wait
    // for the roll too; either way cleanly.
    if let Err(error) = acked.append_value(&log, b"tiny") {
        assert_clean_disk_full(&log, &error, &acked);
    }

    for path in fillers {
        std::fs::remove_file(path).unwrap();
    }
    for _ in 0..30 {
        acked
            .append(&log)
            .expect("appends resume once files can be created");
    }
    assert!(read_values(&log) == acked.values);
    assert!(log.verify().is_ok(), "{:?}", log.verify());
    drop(log);
    let log = PartitionLog::open(&log_dir, config).unwrap();
    assert!(
        read_values(&log) == acked.values,
        "acknowledged records lost across restart"
    );
    assert!(log.verify().is_ok(), "{:?}", log.verify());
}

/// The data of an append fits in a page the segment already has, but the index entry it
/// adds needs a new page of the (memory-mapped) index file. That too must fail as a clean
/// `DiskFull`, not kill the process.
#[test]
fn index_entry_on_a_full_disk_fails_cleanly() {
    let tmpfs = Tmpfs::mount(&format!("size={TMPFS_BYTES}"));
    let log_dir = tmpfs.path().join("log");
    let config = LogConfig {
        preallocate_bytes: 0,
        // An index entry before every batch but the first.
        index_interval_bytes: 0,
        ..small_segments()
    };
    let log = PartitionLog::open(&log_dir, config.clone()).unwrap();
    let mut batch_id = 0;
    let mut append_small = |log: &PartitionLog| -> log_core::Result<()> {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.append(1_700_000_000_000 + batch_id, None, Some(b"tiny"), &[]);
        batch_id += 1;
        log.append_as_leader(&mut builder.build().unwrap(), LeaderEpoch(0))
            .map(|_| ())
    };
    append_small(&log).unwrap();
    let ballast = fill_with_ballast(tmpfs.path());
    // The segment's first page has room for dozens of such batches.
    let mut acked = 1u64;
    let error = loop {
        match append_small(&log) {
            Ok(()) => acked += 1,
            Err(error) => break error,
        }
        assert!(acked < APPENDS_MAX as u64);
    };
    assert!(matches!(error, Error::DiskFull { .. }), "{error:?}");
    assert_eq!(log.log_end_offset(), Offset(acked));
    assert!(log.verify().is_ok(), "{:?}", log.verify());
    std::fs::remove_file(ballast).unwrap();
    append_small(&log).unwrap();
    assert!(log.verify().is_ok(), "{:?}", log.verify());
    log.close().unwrap();
    drop(log);
    let log = PartitionLog::open(&log_dir, config).unwrap();
    assert_eq!(log.log_end_offset(), Offset(acked + 1));
    assert!(log.verify().is_ok(), "{:?}", log.verify());
}

/// Recovery on a full disk rebuilds indexes (here: deleted ones). Writing the rebuilt entries
/// needs space too: the open fails cleanly (or succeeds), and succeeds once space is freed.
#[test]
fn recovery_on_a_full_disk_fails_cleanly_and_succeeds_after_space_is_freed() {
    let tmpfs = Tmpfs::mount(&format!("size={TMPFS_BYTES}"));
    let log_dir = tmpfs.path().join("log");
    let config = LogConfig {
        preallocate_bytes: 0,
        ..small_segments()
    };
    let mut acked = Acked::default();
    let log = PartitionLog::open(&log_dir, config.clone()).unwrap();
    for _ in 0..100 {
        acked.append(&log).unwrap();
    }
    log.abandon();
    for entry in std::fs::read_dir(&log_dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .extension()
            .is_some_and(|e| e == "index" || e == "timeindex")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let ballast = fill_with_ballast(tmpfs.path());
    match PartitionLog::open(&log_dir, config.clone()) {
        Ok(log) => assert!(read_values(&log) == acked.values),
        Err(error) => assert!(matches!(error, Error::DiskFull { .. }), "{error:?}"),
    }
    std::fs::remove_file(ballast).unwrap();
    let log = PartitionLog::open(&log_dir, config).unwrap();
    assert!(
        read_values(&log) == acked.values,
        "acknowledged records lost"
    );
    assert!(log.verify().is_ok(), "{:?}", log.verify());
    acked.append(&log).unwrap();
}
