//! Recovery from damaged files: the log is written, stopped (cleanly or not), its files are
//! cut, flipped, deleted or overwritten, and it is opened again.
//!
//! Each test names its fault. The checks: records before the damage are intact (lost: 0),
//! damage in the unsynced tail is cut at the last whole batch and the log takes appends
//! there, damage below the recovery point is reported as `SegmentCorrupt` naming the file
//! and position (never a panic, never wrong records), and derived files (indexes,
//! checkpoints) are rebuilt or ignored without losing a record. Random choices come from a
//! seeded generator; the seed is printed and `RECOVERY_FAULTS_SEED` replays it.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use log_core::batch::{split_batches, BatchHeader};
use log_core::{
    BatchBuilder, Compression, Error, FlushPolicy, LeaderEpoch, LogConfig, Offset, PartitionLog,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Batches written by [`write_log`]: enough for several segments of [`config`]'s size.
const BATCHES: usize = 60;
/// The partition leader epoch field (bytes 12..16 of a batch) lies outside the CRC and no
/// check can tell a flipped epoch from a real one (as in Kafka), so flips skip it.
const LEADER_EPOCH_BYTES: std::ops::Range<usize> = 12..16;
/// Bytes of the fixed batch header; flips past it land in the CRC-covered records.
const HEADER_BYTES: usize = log_core::batch::BATCH_HEADER_BYTES;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        index_max_bytes: 4096,
        preallocate_bytes: 8192,
        flush: FlushPolicy::Os,
        ..LogConfig::default()
    }
}

fn rng(test: &str) -> StdRng {
    let seed = std::env::var("RECOVERY_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("{test}: seed {seed} (replay with RECOVERY_FAULTS_SEED={seed})");
    StdRng::seed_from_u64(seed)
}

/// One stored record, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    offset: u64,
    timestamp: i64,
    value: Bytes,
}

/// Appends [`BATCHES`] batches of 1-4 records with random sizes, codecs and timestamps
/// (mostly rising, sometimes not), in three leader epochs; returns every record.
fn write_log(log: &PartitionLog, rng: &mut StdRng) -> Vec<Stored> {
    let mut records = Vec::new();
    let mut clock = 1_700_000_000_000i64;
    for i in 0..BATCHES {
        let codec = [Compression::None, Compression::Lz4, Compression::Zstd][rng.gen_range(0..3)];
        let mut builder = BatchBuilder::new(codec);
        let mut values = Vec::new();
        for _ in 0..rng.gen_range(1..=4) {
            clock += rng.gen_range(-5..20);
            let value: Vec<u8> = (0..rng.gen_range(0..400)).map(|_| rng.gen()).collect();
            builder.append(clock, None, Some(&value), &[]);
            values.push((clock, Bytes::from(value)));
        }
        let info = log
            .append_as_leader(
                &mut builder.build().unwrap(),
                LeaderEpoch(1 + (i / 20) as i32),
            )
            .unwrap();
        for (i, (timestamp, value)) in values.into_iter().enumerate() {
            records.push(Stored {
                offset: info.first_offset.0 + i as u64,
                timestamp,
                value,
            });
        }
    }
    assert!(
        log.segments().len() >= 4,
        "the test needs several segments: {:?}",
        log.segments()
    );
    records
}

/// Every record from the log start to the log end.
fn read_all(log: &PartitionLog) -> Vec<Stored> {
    read_range(log, log.log_start_offset()).expect("the whole log reads")
}

/// Every record from `from` to the log end, or the first read error.
fn read_range(log: &PartitionLog, from: Offset) -> log_core::Result<Vec<Stored>> {
    let mut out = Vec::new();
    let mut next = from;
    while next < log.log_end_offset() {
        let result = log.read(next, 16 << 10, log.log_end_offset())?;
        assert!(
            !result.records.is_empty(),
            "a read below the log end returned nothing"
        );
        for batch in split_batches(result.records) {
            let batch = batch.expect("the log returns only valid batches");
            assert!(
                batch.header().base_offset() <= next,
                "a read skipped offset {next}"
            );
            for record in batch.records().expect("records decode") {
                let record = record.expect("record decodes");
                if record.offset >= next {
                    out.push(Stored {
                        offset: record.offset.0,
                        timestamp: record.timestamp,
                        value: record.value.expect("value"),
                    });
                }
            }
            next = batch.header().next_offset();
        }
    }
    Ok(out)
}

/// The answer `offset_for_timestamp` must give, from the records themselves.
fn expected_for_timestamp(records: &[Stored], target: i64) -> Option<(Offset, i64)> {
    records
        .iter()
        .find(|r| r.timestamp >= target)
        .map(|r| (Offset(r.offset), r.timestamp))
}

/// Checks offset lookups for every record and timestamp lookups around every timestamp.
fn assert_lookups_match(log: &PartitionLog, records: &[Stored]) {
    for record in records {
        let read = log
            .read(Offset(record.offset), 1, log.log_end_offset())
            .unwrap();
        let batch = split_batches(read.records)
            .next()
            .expect("one batch")
            .unwrap();
        let header = batch.header();
        assert!(header.base_offset().0 <= record.offset && record.offset <= header.last_offset().0);
    }
    let mut targets: Vec<i64> = records
        .iter()
        .flat_map(|r| [r.timestamp - 1, r.timestamp, r.timestamp + 1])
        .collect();
    targets.sort();
    targets.dedup();
    for target in targets {
        assert_eq!(
            log.offset_for_timestamp(target).unwrap(),
            expected_for_timestamp(records, target),
            "offset_for_timestamp({target})"
        );
    }
}

/// The `.log` files in `dir` by base offset.
fn segment_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| (p.file_stem().unwrap().to_str().unwrap().parse().unwrap(), p))
        .collect();
    files.sort();
    files
}

/// A batch in a segment file: where it starts, its size and its offsets.
#[derive(Debug, Clone, Copy)]
struct Placed {
    position: u64,
    size: usize,
    base: u64,
    last: u64,
}

fn batches_in(path: &Path) -> Vec<Placed> {
    let bytes = fs::read(path).unwrap();
    let mut at = 0;
    let mut placed = Vec::new();
    while at < bytes.len() {
        let prefix = BatchHeader::parse_prefix(&bytes[at..]).expect("an undamaged file");
        placed.push(Placed {
            position: at as u64,
            size: prefix.batch_size,
            base: prefix.base_offset().0,
            last: prefix.last_offset().0,
        });
        at += prefix.batch_size;
    }
    placed
}

fn flip_bit(path: &Path, position: u64, bit: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[position as usize] ^= 1 << bit;
    fs::write(path, bytes).unwrap();
}

/// A byte of the batch to flip: anywhere but the leader epoch field.
fn flip_position(rng: &mut StdRng, batch: &Placed) -> u64 {
    loop {
        let at = rng.gen_range(0..batch.size);
        if !LEADER_EPOCH_BYTES.contains(&at) {
            return batch.position + at as u64;
        }
    }
}

/// Stops the log cleanly or as a crash would.
fn stop(log: PartitionLog, clean: bool) {
    if clean {
        log.close().unwrap();
        drop(log);
    } else {
        log.abandon();
    }
}

/// After recovery cut the log at `end`: records below it intact, verify clean, and the log
/// takes appends right there and keeps them across a restart.
fn assert_recovered_to(dir: &Path, records: &[Stored], end: u64) {
    let log = PartitionLog::open(dir, config()).unwrap();
    assert_eq!(
        log.log_end_offset(),
        Offset(end),
        "recovery kept an invalid batch or lost a valid one"
    );
    let kept: Vec<Stored> = records.iter().filter(|r| r.offset < end).cloned().collect();
    assert_eq!(read_all(&log), kept);
    assert!(log.verify().is_ok(), "{:?}", log.verify());
    let mut builder = BatchBuilder::new(Compression::None);
    builder.append(1, None, Some(b"after recovery"), &[]);
    let appended = log
        .append_as_leader(&mut builder.build().unwrap(), LeaderEpoch(10))
        .unwrap();
    assert_eq!(appended.first_offset, Offset(end));
    drop(log);
    let log = PartitionLog::open(dir, config()).unwrap();
    assert_eq!(log.log_end_offset(), Offset(end + 1));
    assert_eq!(read_all(&log).len(), kept.len() + 1);
    assert!(log.verify().is_ok(), "{:?}", log.verify());
}

/// A log written and stopped once; each round damages a fresh copy of it (writing is most of
/// a round's cost: every roll and stop syncs).
struct Written {
    dir: tempfile::TempDir,
    records: Vec<Stored>,
    epochs: Vec<(LeaderEpoch, Offset)>,
}

impl Written {
    /// `flushed`: synced to the end before the stop, so a crash leaves every segment below
    /// the recovery point.
    fn new(rng: &mut StdRng, clean: bool, flushed: bool) -> Written {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        let records = write_log(&log, rng);
        if flushed {
            log.flush().unwrap();
        }
        let epochs = log.leader_epochs();
        stop(log, clean);
        Written {
            dir,
            records,
            epochs,
        }
    }

    /// Both stops: `[clean, crashed]`.
    fn both(rng: &mut StdRng, flushed: bool) -> [Written; 2] {
        [
            Self::new(rng, true, flushed),
            Self::new(rng, false, flushed),
        ]
    }

    fn end(&self) -> u64 {
        self.records.last().map_or(0, |r| r.offset + 1)
    }

    /// A fresh directory holding a copy of the log's files.
    fn copy(&self) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        for entry in fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
        }
        copy
    }
}

#[test]
fn torn_tail_is_cut_at_the_last_whole_batch() {
    let mut rng = rng("torn_tail_is_cut_at_the_last_whole_batch");
    let written = Written::both(&mut rng, false);
    for round in 0..8 {
        let Written { records, .. } = &written[round % 2];
        let dir = written[round % 2].copy();
        let (_, active) = segment_files(dir.path()).pop().unwrap();
        let last = *batches_in(&active).last().unwrap();
        let cut = last.position + rng.gen_range(1..last.size as u64);
        OpenOptions::new()
            .write(true)
            .open(&active)
            .unwrap()
            .set_len(cut)
            .unwrap();
        assert_recovered_to(dir.path(), records, last.base);
    }
}

#[test]
fn zeroed_or_garbage_tail_is_cut_and_nothing_is_lost() {
    let mut rng = rng("zeroed_or_garbage_tail_is_cut_and_nothing_is_lost");
    let written = Written::both(&mut rng, false);
    for round in 0..6 {
        let stopped = &written[usize::from(round % 3 != 0)];
        let dir = stopped.copy();
        let (_, active) = segment_files(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&active).unwrap();
        let tail_len = rng.gen_range(1..3000);
        if round % 2 == 0 {
            bytes.extend(std::iter::repeat_n(0u8, tail_len));
        } else {
            bytes.extend((0..tail_len).map(|_| rng.gen::<u8>()));
        }
        fs::write(&active, bytes).unwrap();
        assert_recovered_to(dir.path(), &stopped.records, stopped.end());
    }
}

#[test]
fn bit_flip_in_the_unsynced_tail_is_cut_from_the_damaged_batch() {
    let mut rng = rng("bit_flip_in_the_unsynced_tail_is_cut_from_the_damaged_batch");
    let crashed = Written::new(&mut rng, false, false);
    for _ in 0..12 {
        let dir = crashed.copy();
        let (_, active) = segment_files(dir.path()).pop().unwrap();
        let last = *batches_in(&active).last().unwrap();
        flip_bit(&active, flip_position(&mut rng, &last), rng.gen_range(0..8));
        assert_recovered_to(dir.path(), &crashed.records, last.base);
    }
}

/// A flip in a synced segment is not a torn write: the log does not cut it away (that would
/// lose acknowledged records after it) but reports it where it is read.
#[test]
fn bit_flip_in_a_synced_segment_is_reported_where_it_is_read() {
    let mut rng = rng("bit_flip_in_a_synced_segment_is_reported_where_it_is_read");
    let written = Written::both(&mut rng, true);
    for round in 0..24 {
        let clean = round % 2 == 0;
        let records = &written[round % 2].records;
        let dir = written[round % 2].copy();
        let files = segment_files(dir.path());
        // A sealed segment in the middle, below the recovery point.
        let (_, path) = &files[files.len() / 2 - 1];
        let placed = batches_in(path);
        let damaged = placed[placed.len() / 2];
        // Flip in the CRC-covered records, in the header (where offsets and sizes lie), or
        // anywhere.
        let position = match round % 4 {
            0 | 1 => damaged.position + rng.gen_range(HEADER_BYTES as u64..damaged.size as u64),
            2 => loop {
                let at = rng.gen_range(0..HEADER_BYTES);
                if !LEADER_EPOCH_BYTES.contains(&at) {
                    break damaged.position + at as u64;
                }
            },
            _ => flip_position(&mut rng, &damaged),
        };
        flip_bit(path, position, rng.gen_range(0..8));
        println!(
            "round {round}: clean stop {clean}, {damaged:?} flipped at byte {}",
            position - damaged.position
        );

        let log = PartitionLog::open(dir.path(), config()).unwrap();
        assert_eq!(
            log.log_end_offset().0,
            records.last().unwrap().offset + 1,
            "nothing was cut"
        );
        // Everything before the damaged batch reads back intact.
        let before: Vec<Stored> = records
            .iter()
            .filter(|r| r.offset < damaged.base)
            .cloned()
            .collect();
        let mut read_before = Vec::new();
        let mut next = log.log_start_offset();
        while next.0 < damaged.base {
            let result = log.read(next, 16 << 10, Offset(damaged.base)).unwrap();
            assert!(
                !result.records.is_empty(),
                "read({next}) before the damage returned nothing"
            );
            for batch in split_batches(result.records) {
                let batch = batch.unwrap();
                for record in batch.records().unwrap() {
                    let record = record.unwrap();
                    read_before.push(Stored {
                        offset: record.offset.0,
                        timestamp: record.timestamp,
                        value: record.value.unwrap(),
                    });
                }
                next = batch.header().next_offset();
            }
        }
        assert_eq!(read_before, before);
        // Reading the damaged batch is an error naming the file and the place.
        for offset in damaged.base..=damaged.last {
            match log.read(Offset(offset), 16 << 10, log.log_end_offset()) {
                Err(Error::SegmentCorrupt {
                    path: at,
                    position: p,
                    ..
                }) => {
                    assert_eq!(&at, path);
                    assert!(
                        damaged.position <= p && p <= damaged.position + damaged.size as u64,
                        "damage at {} reported at {p} (flipped byte {position})",
                        damaged.position
                    );
                }
                other => panic!(
                    "reading damaged offset {offset} (flipped byte {position}) gave {other:?}"
                ),
            }
        }
        // Later segments still read.
        let (next_base, _) = files[files.len() / 2];
        let after: Vec<Stored> = records
            .iter()
            .filter(|r| r.offset >= next_base)
            .cloned()
            .collect();
        assert_eq!(read_range(&log, Offset(next_base)).unwrap(), after);
        // verify names the segment, the position and the offset where the damage starts.
        let report = log.verify();
        let first = report
            .damage
            .first()
            .unwrap_or_else(|| panic!("verify missed the flip at byte {position}"));
        assert_eq!(
            (&first.path, first.position, first.offset),
            (path, damaged.position, Offset(damaged.base))
        );
        // The active segment is undamaged: the log still takes appends.
        let mut builder = BatchBuilder::new(Compression::None);
        builder.append(1, None, Some(b"still writable"), &[]);
        log.append_as_leader(&mut builder.build().unwrap(), LeaderEpoch(3))
            .unwrap();
    }
}

fn remove_files_with_extension(dir: &Path, extensions: &[&str]) -> usize {
    let mut removed = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .extension()
            .is_some_and(|e| extensions.iter().any(|x| e == *x))
        {
            fs::remove_file(path).unwrap();
            removed += 1;
        }
    }
    removed
}

#[test]
fn deleted_index_files_are_rebuilt() {
    let mut rng = rng("deleted_index_files_are_rebuilt");
    let written = Written::both(&mut rng, false);
    for (round, extensions) in [&["index", "timeindex"][..], &["index"], &["timeindex"]]
        .iter()
        .enumerate()
    {
        for stopped in &written {
            let records = &stopped.records;
            let dir = stopped.copy();
            let segments = segment_files(dir.path()).len();
            assert_eq!(
                remove_files_with_extension(dir.path(), extensions),
                segments * extensions.len()
            );

            let log = PartitionLog::open(dir.path(), config()).unwrap();
            for (base, _) in segment_files(dir.path()) {
                for extension in *extensions {
                    let index = dir.path().join(format!("{base:020}.{extension}"));
                    assert!(
                        index.exists(),
                        "round {round}: {} was not rebuilt",
                        index.display()
                    );
                }
            }
            assert_eq!(&read_all(&log), records);
            assert_lookups_match(&log, records);
            assert!(log.verify().is_ok(), "{:?}", log.verify());
            drop(log);
            // And the rebuilt files serve the next open.
            let log = PartitionLog::open(dir.path(), config()).unwrap();
            assert_lookups_match(&log, records);
            assert!(log.verify().is_ok(), "{:?}", log.verify());
        }
    }
}

#[test]
fn truncated_or_garbage_index_files_are_rebuilt() {
    let mut rng = rng("truncated_or_garbage_index_files_are_rebuilt");
    let written = Written::both(&mut rng, false);
    for round in 0..16 {
        let records = &written[round % 2].records;
        let dir = written[round % 2].copy();
        let extension = if round % 4 < 2 { "index" } else { "timeindex" };
        // Damage one sealed segment's index, or the active one's.
        let files = segment_files(dir.path());
        let (base, _) = if round % 8 < 4 {
            files[1].clone()
        } else {
            files.last().unwrap().clone()
        };
        let index = dir.path().join(format!("{base:020}.{extension}"));
        let mut bytes = fs::read(&index).unwrap();
        if bytes.len() < 2 {
            // An empty index (a segment smaller than one index interval): damage it by a
            // torn first entry or a few entries of noise.
            bytes = (0..if round % 16 < 8 { 3 } else { 24 })
                .map(|_| rng.gen())
                .collect();
        } else if round % 16 < 8 {
            // A torn write: not a whole number of entries (both entry sizes are multiples of 4).
            bytes.truncate(rng.gen_range(1..bytes.len()));
            if bytes.len().is_multiple_of(4) {
                bytes.pop();
            }
        } else {
            bytes.iter_mut().for_each(|b| *b = rng.gen());
        }
        fs::write(&index, bytes).unwrap();

        let log = PartitionLog::open(dir.path(), config()).unwrap();
        assert_eq!(&read_all(&log), records, "round {round}");
        assert_lookups_match(&log, records);
        assert!(
            log.verify().is_ok(),
            "round {round} ({extension} of {base}): {:?}",
            log.verify()
        );
    }
}

#[test]
fn damaged_checkpoint_means_full_recovery_and_nothing_lost() {
    let mut rng = rng("damaged_checkpoint_means_full_recovery_and_nothing_lost");
    let damages: [fn(&mut Vec<u8>, &mut StdRng); 6] = [
        |bytes, _| bytes.clear(),
        |bytes, _| bytes.extend_from_slice(&[0; 64]),
        // A well-formed checkpoint whose log start no log could have written.
        |bytes, _| {
            bytes[8..16].copy_from_slice(&(u64::MAX - 3).to_be_bytes());
            let body = bytes.len() - 4;
            let crc = crc32fast::hash(&bytes[..body]);
            bytes[body..].copy_from_slice(&crc.to_be_bytes());
        },
        |bytes, rng| bytes.truncate(rng.gen_range(0..bytes.len())),
        |bytes, rng| {
            let at = rng.gen_range(0..bytes.len());
            bytes[at] ^= 1 << rng.gen_range(0..8);
        },
        |bytes, rng| bytes.iter_mut().for_each(|b| *b = rng.gen()),
    ];
    let written = Written::both(&mut rng, true);
    for (round, damage) in damages.iter().enumerate() {
        for stopped in &written {
            let (records, end) = (&stopped.records, stopped.end());
            let dir = stopped.copy();
            // Give the full recovery something to do: a torn tail after the recovery point.
            let (_, active) = segment_files(dir.path()).pop().unwrap();
            let mut tail = fs::read(&active).unwrap();
            tail.extend_from_slice(&[0xEE; 40]);
            fs::write(&active, tail).unwrap();
            let checkpoint = dir.path().join("partition.checkpoint");
            let mut bytes = fs::read(&checkpoint).unwrap();
            damage(&mut bytes, &mut rng);
            fs::write(&checkpoint, bytes).unwrap();

            let log = PartitionLog::open(dir.path(), config()).unwrap_or_else(|e| {
                panic!("round {round}: open with a damaged checkpoint failed: {e}")
            });
            assert_eq!(log.log_end_offset().0, end, "round {round}");
            assert_eq!(&read_all(&log), records, "round {round}");
            assert_lookups_match(&log, records);
            assert!(log.verify().is_ok(), "{:?}", log.verify());
            drop(log);
            assert_recovered_to(dir.path(), records, end);
        }
    }
}

/// The leader-epoch cache is not derived only: replication truncates by it. A damaged or
/// deleted file is rebuilt from the epochs stamped in the batches.
#[test]
fn damaged_or_deleted_leader_epoch_file_is_rebuilt() {
    let mut rng = rng("damaged_or_deleted_leader_epoch_file_is_rebuilt");
    let written = Written::both(&mut rng, false);
    for damage in ["garbage", "truncated", "oversize", "deleted"] {
        for (stopped, clean) in written.iter().zip([true, false]) {
            let (records, end, epochs) = (&stopped.records, stopped.end(), &stopped.epochs);
            assert_eq!(epochs.len(), 3);
            let dir = stopped.copy();
            let file = dir.path().join("leader-epoch-checkpoint");
            let mut bytes = fs::read(&file).unwrap();
            match damage {
                "garbage" => bytes.iter_mut().for_each(|b| *b = rng.gen()),
                "truncated" => bytes.truncate(bytes.len() / 2),
                "oversize" => {}
                _ => bytes.clear(),
            }
            if bytes.is_empty() {
                fs::remove_file(&file).unwrap();
            } else {
                fs::write(&file, bytes).unwrap();
            }
            if damage == "oversize" {
                // Sparse, 4 GiB: a file this size must be refused, not read into memory.
                let handle = fs::OpenOptions::new().write(true).open(&file).unwrap();
                handle.set_len(4 << 30).unwrap();
            }

            let log = PartitionLog::open(dir.path(), config())
                .unwrap_or_else(|e| panic!("{damage} epoch file: open failed: {e}"));
            assert_eq!(log.log_end_offset().0, end);
            assert_eq!(&read_all(&log), records);
            assert_eq!(
                &log.leader_epochs(),
                epochs,
                "{damage} epoch file, clean stop {clean}"
            );
            assert!(log.verify().is_ok(), "{:?}", log.verify());
            drop(log);
            assert_recovered_to(dir.path(), records, end);
        }
    }
}
