//! Many partitions under one data directory: create, reopen, delete, background flush and
//! retention.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log_core::manager::dir_name;
use log_core::{
    BatchBuilder, Compression, Error, FlushPolicy, LeaderEpoch, LogConfig, LogManager,
    ManagerConfig, ManualClock, Offset,
};

fn append(log: &log_core::PartitionLog, value: &[u8], timestamp: i64) {
    let mut builder = BatchBuilder::new(Compression::None);
    builder.append(timestamp, None, Some(value), &[]);
    log.append_as_leader(&mut builder.build().unwrap(), LeaderEpoch(0))
        .unwrap();
}

/// Polls `condition` until it holds, failing loudly after a generous deadline.
fn await_condition(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn partitions_are_created_reopened_in_parallel_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let manager = LogManager::open(dir.path(), ManagerConfig::default()).unwrap();
        for partition in 0..8 {
            let log = manager.create("orders", partition, None).unwrap();
            for i in 0..=partition {
                append(&log, format!("{partition}-{i}").as_bytes(), 1);
            }
        }
        manager.create("%RETRY%billing", 0, None).unwrap();
        assert!(matches!(
            manager.create("orders", 3, None),
            Err(Error::PartitionExists { .. })
        ));
        assert!(matches!(
            manager.create("../etc", 0, None),
            Err(Error::InvalidTopicName { .. })
        ));
        assert!(matches!(
            LogManager::open(dir.path(), ManagerConfig::default()),
            Err(Error::Locked { .. })
        ));
        manager.close().unwrap();
    }
    let manager = LogManager::open(dir.path(), ManagerConfig::default()).unwrap();
    assert_eq!(manager.partitions().len(), 9);
    for partition in 0..8u32 {
        let log = manager.get("orders", partition).unwrap();
        assert_eq!(log.log_end_offset(), Offset(u64::from(partition) + 1));
    }
    manager.delete("orders", 5).unwrap();
    assert!(manager.get("orders", 5).is_none());
    assert!(!dir.path().join(dir_name("orders", 5)).exists());
    assert!(matches!(
        manager.delete("orders", 5),
        Err(Error::UnknownPartition { .. })
    ));
    manager.close().unwrap();
    let manager = LogManager::open(dir.path(), ManagerConfig::default()).unwrap();
    assert_eq!(manager.partitions().len(), 8);
}

#[test]
fn background_flusher_advances_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let config = ManagerConfig {
        default_log: LogConfig {
            flush: FlushPolicy::Interval(Duration::from_millis(10)),
            ..LogConfig::default()
        },
        flush_check_interval: Duration::from_millis(5),
        ..ManagerConfig::default()
    };
    let manager = LogManager::open(dir.path(), config).unwrap();
    let log = manager.create("events", 0, None).unwrap();
    append(&log, b"one", 1);
    append(&log, b"two", 1);
    await_condition("the flusher to sync both records", || {
        log.recovery_point() == Offset(2)
    });
    assert_eq!(log.durable_offset(), Offset(2));
    manager.close().unwrap();
}

#[test]
fn retention_runs_across_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10_000_000);
    let config = ManagerConfig {
        default_log: LogConfig {
            segment_bytes: 2048,
            retention_age: Some(Duration::from_secs(60)),
            ..LogConfig::default()
        },
        ..ManagerConfig::default()
    };
    let manager = LogManager::open_with_clock(dir.path(), config, Arc::new(clock.clone())).unwrap();
    let value = vec![9u8; 900];
    for partition in 0..3 {
        let log = manager.create("metrics", partition, None).unwrap();
        for _ in 0..10 {
            append(&log, &value, 10_000_000);
        }
    }
    assert_eq!(manager.apply_retention(), 0);
    clock.advance_ms(61_000);
    let deleted = manager.apply_retention();
    assert!(deleted >= 3, "deleted {deleted}");
    for partition in 0..3 {
        let log = manager.get("metrics", partition).unwrap();
        assert_eq!(log.segments().len(), 1, "only the active segment is left");
        assert!(log.log_start_offset() > Offset(0));
    }
    manager.close().unwrap();
}
