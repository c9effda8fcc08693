//! The partition log's behaviour through its public API, on real files.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use log_core::batch::{split_batches, DECOMPRESSED_BYTES_MAX};
use log_core::{
    BatchBuilder, BatchError, Compression, Error, FlushPolicy, LeaderEpoch, LogConfig, ManualClock,
    Offset, PartitionLog,
};

fn batch(values: &[&[u8]], timestamp: i64, compression: Compression) -> bytes::BytesMut {
    let mut builder = BatchBuilder::new(compression);
    for value in values {
        builder.append(timestamp, None, Some(value), &[]);
    }
    builder.build().unwrap()
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        preallocate_bytes: 8192,
        ..LogConfig::default()
    }
}

/// Every record value readable from `from`, in order, with its offset.
fn read_all(log: &PartitionLog, from: Offset) -> Vec<(u64, Vec<u8>)> {
    common::read_records(log, from)
}

#[test]
fn leader_append_assigns_offsets_and_epoch_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let first = log
        .append_as_leader(
            &mut batch(&[b"a", b"b"], 1000, Compression::None),
            LeaderEpoch(3),
        )
        .unwrap();
    assert_eq!(
        (first.first_offset, first.last_offset),
        (Offset(0), Offset(1))
    );
    let second = log
        .append_as_leader(&mut batch(&[b"c"], 1001, Compression::Zstd), LeaderEpoch(3))
        .unwrap();
    assert_eq!(second.first_offset, Offset(2));
    assert_eq!(log.log_end_offset(), Offset(3));
    let values: Vec<_> = read_all(&log, Offset(0))
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    let raw = log.read(Offset(2), 1 << 20, Offset(3)).unwrap().records;
    let stored = split_batches(raw).next().unwrap().unwrap();
    assert_eq!(stored.header().leader_epoch(), LeaderEpoch(3));
    assert_eq!(log.leader_epochs(), vec![(LeaderEpoch(3), Offset(0))]);
}

#[test]
fn reads_respect_upper_bound_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    for i in 0..5u8 {
        log.append_as_leader(&mut batch(&[&[i]], 1000, Compression::None), LeaderEpoch(0))
            .unwrap();
    }
    let bounded = log.read(Offset(0), 1 << 20, Offset(2)).unwrap();
    assert_eq!(split_batches(bounded.records).count(), 2);
    assert!(log
        .read(Offset(5), 1024, Offset(5))
        .unwrap()
        .records
        .is_empty());
    assert!(matches!(
        log.read(Offset(6), 1024, Offset(6)),
        Err(Error::OffsetOutOfRange { .. })
    ));
    // max_bytes smaller than one batch still returns that whole batch.
    let tiny = log.read(Offset(1), 1, Offset(5)).unwrap();
    assert_eq!(split_batches(tiny.records).count(), 1);
}

#[test]
fn oversize_and_corrupt_batches_are_rejected_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_batch_bytes: 1024,
        ..small_config()
    };
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let big = vec![7u8; 2000];
    let result = log.append_as_leader(&mut batch(&[&big], 1, Compression::None), LeaderEpoch(0));
    assert!(
        matches!(result, Err(Error::BatchTooLarge { max: 1024, .. })),
        "{result:?}"
    );
    let mut corrupt = batch(&[b"x"], 1, Compression::None);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;
    assert!(matches!(
        log.append_as_leader(&mut corrupt, LeaderEpoch(0)),
        Err(Error::InvalidBatch(_))
    ));
    assert_eq!(log.log_end_offset(), Offset(0));
}

#[test]
fn follower_append_rejects_gaps_and_overlaps() {
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = PartitionLog::open(leader_dir.path(), small_config()).unwrap();
    for i in 0..3u8 {
        leader
            .append_as_leader(
                &mut batch(&[&[i], &[i]], 5, Compression::Lz4),
                LeaderEpoch(1),
            )
            .unwrap();
    }
    let all = leader.read(Offset(0), 1 << 20, Offset(6)).unwrap().records;
    let batches: Vec<Bytes> = split_batches(all)
        .map(|b| b.unwrap().bytes().clone())
        .collect();
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = PartitionLog::open(follower_dir.path(), small_config()).unwrap();
    assert!(matches!(
        follower.append_as_follower(&batches[1]),
        Err(Error::NonContiguousAppend {
            expected: Offset(0),
            found: Offset(2)
        })
    ));
    follower.append_as_follower(&batches[0]).unwrap();
    assert!(matches!(
        follower.append_as_follower(&batches[0]),
        Err(Error::NonContiguousAppend { .. })
    ));
    follower
        .append_as_follower(&[batches[1].as_ref(), batches[2].as_ref()].concat())
        .unwrap();
    assert_eq!(follower.log_end_offset(), Offset(6));
    assert_eq!(follower.leader_epochs(), vec![(LeaderEpoch(1), Offset(0))]);
}

#[test]
fn rolls_segments_and_survives_clean_and_unclean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let value = vec![1u8; 300];
    {
        let log = PartitionLog::open(dir.path(), small_config()).unwrap();
        for _ in 0..40 {
            log.append_as_leader(&mut batch(&[&value], 7, Compression::None), LeaderEpoch(0))
                .unwrap();
        }
        assert!(log.segments().len() > 3, "{:?}", log.segments());
        log.close().unwrap();
    }
    {
        let log = PartitionLog::open(dir.path(), small_config()).unwrap();
        assert_eq!(log.log_end_offset(), Offset(40));
        assert_eq!(read_all(&log, Offset(0)).len(), 40);
        assert_eq!(read_all(&log, Offset(17))[0].0, 17);
        for _ in 0..5 {
            log.append_as_leader(&mut batch(&[&value], 8, Compression::None), LeaderEpoch(1))
                .unwrap();
        }
        log.flush().unwrap();
        log.abandon();
    }
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), Offset(45));
    assert_eq!(read_all(&log, Offset(0)).len(), 45);
    assert!(log.verify().is_ok(), "{:?}", log.verify());
    assert_eq!(
        log.leader_epochs(),
        vec![(LeaderEpoch(0), Offset(0)), (LeaderEpoch(1), Offset(40))]
    );
}

#[test]
fn truncate_to_cuts_whole_batches_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let value = vec![2u8; 500];
    for i in 0..20 {
        log.append_as_leader(
            &mut batch(&[&value, &value], 10, Compression::None),
            LeaderEpoch(i / 10),
        )
        .unwrap();
    }
    log.set_high_watermark(Offset(40));
    log.truncate_to(Offset(13)).unwrap();
    // Offset 13 sits inside the batch 12..=13: the whole batch goes.
    assert_eq!(log.log_end_offset(), Offset(12));
    assert_eq!(log.high_watermark(), Offset(12));
    assert_eq!(log.leader_epochs(), vec![(LeaderEpoch(0), Offset(0))]);
    assert_eq!(read_all(&log, Offset(0)).len(), 12);
    let next = log
        .append_as_leader(&mut batch(&[b"new"], 11, Compression::None), LeaderEpoch(2))
        .unwrap();
    assert_eq!(next.first_offset, Offset(12));
    assert!(log.verify().is_ok(), "{:?}", log.verify());
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), Offset(13));
    assert_eq!(read_all(&log, Offset(0)).len(), 13);
}

#[test]
fn offset_for_timestamp_finds_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let value = vec![3u8; 200];
    for i in 0..50i64 {
        log.append_as_leader(
            &mut batch(&[&value, &value], 1000 + i * 10, Compression::None),
            LeaderEpoch(0),
        )
        .unwrap();
    }
    assert_eq!(
        log.offset_for_timestamp(0).unwrap(),
        Some((Offset(0), 1000))
    );
    assert_eq!(
        log.offset_for_timestamp(1255).unwrap(),
        Some((Offset(52), 1260))
    );
    assert_eq!(
        log.offset_for_timestamp(1260).unwrap(),
        Some((Offset(52), 1260))
    );
    assert_eq!(log.offset_for_timestamp(2000).unwrap(), None);
}

#[test]
fn delete_records_and_retention_remove_whole_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let config = LogConfig {
        retention_age: Some(Duration::from_secs(60)),
        retention_bytes: None,
        ..small_config()
    };
    let log = PartitionLog::open_with_clock(dir.path(), config, Arc::new(clock.clone())).unwrap();
    let value = vec![4u8; 1000];
    for i in 0..12i64 {
        log.append_as_leader(
            &mut batch(&[&value], 1_000_000 + i * 1000, Compression::None),
            LeaderEpoch(0),
        )
        .unwrap();
    }
    let segments_before = log.segments().len();
    assert!(segments_before >= 3);
    assert_eq!(log.apply_retention().unwrap().segments_deleted, 0);
    clock.advance_ms(60_000 + 5_500);
    let outcome = log.apply_retention().unwrap();
    assert!(outcome.segments_deleted >= 1, "{outcome:?}");
    assert!(log.log_start_offset() > Offset(0));
    assert!(log.segments().len() < segments_before);
    clock.advance_ms(3_600_000);
    log.apply_retention().unwrap();
    assert_eq!(log.segments().len(), 1, "the active segment stays");
    let start = log.log_start_offset();
    assert!(matches!(
        log.read(Offset(0), 1024, Offset(12)),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        read_all(&log, start).first().map(|(o, _)| *o),
        Some(start.0)
    );
    log.delete_records_before(Offset(11)).unwrap();
    assert_eq!(log.log_start_offset(), Offset(11));
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_start_offset(), Offset(11));
}

#[test]
fn every_write_policy_makes_appends_durable_with_shared_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush: FlushPolicy::EveryWrite,
        ..LogConfig::default()
    };
    let log = Arc::new(PartitionLog::open(dir.path(), config).unwrap());
    std::thread::scope(|scope| {
        for t in 0..4u8 {
            let log = Arc::clone(&log);
            scope.spawn(move || {
                for i in 0..50u8 {
                    let info = log
                        .append_as_leader(
                            &mut batch(&[&[t, i]], 1, Compression::None),
                            LeaderEpoch(0),
                        )
                        .unwrap();
                    assert!(log.durable_offset() > info.last_offset);
                }
            });
        }
    });
    assert_eq!(log.log_end_offset(), Offset(200));
    assert_eq!(log.durable_offset(), Offset(200));
}

#[test]
fn second_open_of_a_locked_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _log = PartitionLog::open(dir.path(), small_config()).unwrap();
    assert!(matches!(
        PartitionLog::open(dir.path(), small_config()),
        Err(Error::Locked { .. })
    ));
}

/// Appends `count` single-record uncompressed batches of `value` as leader.
fn append_values(log: &PartitionLog, count: usize, value: &[u8]) {
    for _ in 0..count {
        log.append_as_leader(&mut batch(&[value], 1, Compression::None), LeaderEpoch(0))
            .unwrap();
    }
}

#[test]
fn read_only_open_follows_a_live_writer() {
    let dir = tempfile::tempdir().unwrap();
    let writer = PartitionLog::open(dir.path(), small_config()).unwrap();
    let value = vec![5u8; 700];
    append_values(&writer, 10, &value);
    let reader = PartitionLog::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.log_end_offset(), Offset(10));
    assert_eq!(read_all(&reader, Offset(0)).len(), 10);
    for _ in 0..10 {
        writer
            .append_as_leader(&mut batch(&[&value], 2, Compression::Lz4), LeaderEpoch(0))
            .unwrap();
    }
    assert_eq!(
        reader.log_end_offset(),
        Offset(10),
        "a read-only log moves only on refresh"
    );
    reader.refresh().unwrap();
    assert_eq!(reader.log_end_offset(), Offset(20));
    assert_eq!(read_all(&reader, Offset(0)).len(), 20);
    assert!(reader.verify().is_ok(), "{:?}", reader.verify());
    assert!(reader
        .append_as_leader(&mut batch(&[b"x"], 1, Compression::None), LeaderEpoch(0))
        .is_err());
}

/// A followed log copies its sealed segments' indexes. One larger than any writer makes
/// (damage) is not read, and the segment is still read whole, by scanning.
#[test]
fn a_followed_log_ignores_an_index_larger_than_any_writer_makes() {
    let dir = tempfile::tempdir().unwrap();
    let writer = PartitionLog::open(dir.path(), small_config()).unwrap();
    let value = vec![5u8; 700];
    append_values(&writer, 20, &value);
    let mut indexes: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "index"))
        .collect();
    indexes.sort();
    assert!(indexes.len() >= 2, "the test needs a sealed segment");
    // Sparse: larger than INDEX_MAX_BYTES_MAX without taking the disk space.
    let oversize = log_core::log::INDEX_MAX_BYTES_MAX as u64 + 4096;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&indexes[0])
        .unwrap()
        .set_len(oversize)
        .unwrap();
    let reader = PartitionLog::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.log_end_offset(), Offset(20));
    let records = read_all(&reader, Offset(0));
    assert_eq!(records.len(), 20);
    assert!(records.iter().all(|(_, body)| body == &value));
    assert_eq!(
        read_all(&reader, Offset(3))[0].0,
        3,
        "an offset lookup scans"
    );
}

#[test]
fn one_append_that_overflows_the_indexes_survives_recovery_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 64 << 20,
        index_interval_bytes: 0,
        index_max_bytes: 4096,
        flush: FlushPolicy::EveryWrite,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let mut records = Vec::new();
    for i in 0..400 {
        records.extend_from_slice(&batch(&[&[7u8; 100]], 1000 + i, Compression::None));
    }
    log.append_as_leader(&mut records, LeaderEpoch(0)).unwrap();
    log.abandon();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), Offset(400));
    assert_eq!(read_all(&log, Offset(0)).len(), 400);
    assert_eq!(read_all(&log, Offset(399))[0].0, 399);
}

#[test]
fn a_leader_rejects_batches_whose_offset_span_disagrees_with_their_record_count() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let mut lying = batch(&[b"x"], 1, Compression::None);
    lying[23..27].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&lying[21..]);
    lying[17..21].copy_from_slice(&crc.to_be_bytes());
    let result = log.append_as_leader(&mut lying, LeaderEpoch(0));
    assert!(matches!(result, Err(Error::InvalidBatch(_))), "{result:?}");
    assert_eq!(log.log_end_offset(), Offset(0));
}

/// Rewrites the CRC of a batch edited after it was built, so only record decoding can find
/// the damage.
fn reseal(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn a_leader_refuses_batches_whose_records_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    let refused = |mut bytes: bytes::BytesMut| {
        let result = log.append_as_leader(&mut bytes, LeaderEpoch(0));
        match result {
            Err(Error::InvalidBatch(error)) => error,
            other => panic!("expected InvalidBatch, got {other:?}"),
        }
    };

    // A consistent header (1000 records, offset deltas 0..=999) over one record.
    let mut short = batch(&[b"only one"], 1, Compression::None);
    short[23..27].copy_from_slice(&999i32.to_be_bytes());
    short[57..61].copy_from_slice(&1000i32.to_be_bytes());
    reseal(&mut short);
    assert!(
        matches!(
            refused(short),
            BatchError::RecordsCountMismatch {
                declared: 1000,
                found: 1
            }
        ),
        "fewer records than declared"
    );

    // A record length that runs past the batch.
    let mut garbled = batch(&[b"abc", b"def"], 1, Compression::None);
    garbled[61] = 0x7e;
    reseal(&mut garbled);
    assert!(matches!(
        refused(garbled),
        BatchError::MalformedRecord { index: 0, .. }
    ));

    // A compressed batch of a few KiB that would decompress past the reader's limit.
    let huge = vec![0u8; DECOMPRESSED_BYTES_MAX + 1024];
    let bomb = batch(&[&huge], 1, Compression::Zstd);
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    assert!(matches!(
        refused(bomb),
        BatchError::DecompressedTooLarge { .. }
    ));

    // One bad batch refuses the whole append, good batches before it included.
    let mut both = batch(&[b"good"], 1, Compression::Lz4);
    let mut bad = batch(&[b"x"], 1, Compression::None);
    bad[57..61].copy_from_slice(&2i32.to_be_bytes());
    bad[23..27].copy_from_slice(&1i32.to_be_bytes());
    reseal(&mut bad);
    both.extend_from_slice(&bad);
    refused(both);
    assert_eq!(log.log_end_offset(), Offset(0), "nothing was appended");

    let mut fine = batch(&[b"a", b"b"], 1, Compression::Zstd);
    let info = log.append_as_leader(&mut fine, LeaderEpoch(0)).unwrap();
    assert_eq!(info.last_offset, Offset(1));
    assert_eq!(read_all(&log, Offset(0)).len(), 2);
}

#[test]
fn one_append_decompresses_at_most_the_readers_limit_in_all() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small_config()).unwrap();
    // Each batch decompresses to a little over 3/5 of the limit: one fits, two do not.
    let value = vec![0u8; DECOMPRESSED_BYTES_MAX / 5 * 3];
    let one = batch(&[&value], 1, Compression::Zstd);
    let mut two = one.clone();
    two.extend_from_slice(&one);
    let result = log.append_as_leader(&mut two, LeaderEpoch(0));
    assert!(
        matches!(
            result,
            Err(Error::InvalidBatch(BatchError::DecompressedTooLarge { .. }))
        ),
        "{result:?}"
    );
    assert_eq!(log.log_end_offset(), Offset(0));
    for _ in 0..2 {
        log.append_as_leader(&mut one.clone(), LeaderEpoch(0))
            .expect("each batch alone is within the limit");
    }
    assert_eq!(log.log_end_offset(), Offset(2));
}

#[test]
fn a_log_told_not_to_check_records_stores_what_its_header_and_crc_allow() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        check_records: false,
        ..small_config()
    };
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let mut garbled = batch(&[b"abc"], 1, Compression::None);
    garbled[61] = 0x7e;
    reseal(&mut garbled);
    let info = log.append_as_leader(&mut garbled, LeaderEpoch(0)).unwrap();
    assert_eq!(
        info.last_offset,
        Offset(0),
        "stored: the caller vouched for it"
    );
}

#[test]
fn rebuilding_a_sealed_segments_index_never_cuts_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 16 << 10,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for i in 0..100 {
        log.append_as_leader(
            &mut batch(&[&[8u8; 500]], 1000 + i, Compression::None),
            LeaderEpoch(0),
        )
        .unwrap();
    }
    log.close().unwrap();
    drop(log);
    let segment = dir.path().join("00000000000000000000.log");
    let length = std::fs::metadata(&segment).unwrap().len();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[1400] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();
    std::fs::remove_file(dir.path().join("00000000000000000000.index")).unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        length,
        "intact data was cut"
    );
    assert_eq!(log.log_end_offset(), Offset(100));
    assert!(matches!(
        log.read(Offset(2), 1 << 20, Offset(100)),
        Err(Error::SegmentCorrupt { .. })
    ));
    assert_eq!(
        read_all(&log, Offset(50)).len(),
        50,
        "data after the damage stays readable"
    );
    assert!(!log.verify().is_ok());
}

#[test]
fn segment_names_beyond_the_offset_range_are_not_segments() {
    assert_eq!(
        log_core::segment::parse_file_name("18446744073709551615.log", "log"),
        None
    );
    assert_eq!(
        log_core::segment::parse_file_name("09223372036854775807.log", "log"),
        Some(Offset(i64::MAX as u64))
    );
}

#[test]
fn rolls_when_the_active_segment_is_older_than_segment_age() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_age: Some(Duration::from_secs(60)),
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let start = 1_700_000_000_000;
    log.append_as_leader(
        &mut batch(&[b"a"], start, Compression::None),
        LeaderEpoch(0),
    )
    .unwrap();
    log.append_as_leader(
        &mut batch(&[b"b"], start + 59_000, Compression::None),
        LeaderEpoch(0),
    )
    .unwrap();
    assert_eq!(log.segments().len(), 1, "younger than segment_age: no roll");
    log.append_as_leader(
        &mut batch(&[b"c"], start + 61_000, Compression::None),
        LeaderEpoch(0),
    )
    .unwrap();
    let segments = log.segments();
    assert_eq!(segments.len(), 2, "{segments:?}");
    assert_eq!(
        segments[1].0,
        Offset(2),
        "the new segment starts at the appended batch"
    );
    assert_eq!(read_all(&log, Offset(0)).len(), 3);
}
