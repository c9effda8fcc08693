//! A failed fsync poisons the partition: the append that needed it fails, no later append is
//! acknowledged until the log is reopened, reads keep working, and reopening recovers.
//!
//! Fault: `fsync` of files under the log's directory returns EIO (feature `fault-injection`,
//! turned on for this crate's tests by its dev-dependency on itself). Workload: appends with
//! `EveryWrite`, single-threaded and from several threads. Check: acknowledged records lost
//! (0), acknowledgements past the last successful sync (0), appends accepted while poisoned (0).

mod common;

use std::sync::Arc;

use log_core::fault::fail_syncs_under;
use log_core::{
    BatchBuilder, Compression, Error, FlushPolicy, LeaderEpoch, LogConfig, Offset, PartitionLog,
};

fn every_write_config() -> LogConfig {
    LogConfig {
        segment_bytes: 8192,
        index_interval_bytes: 512,
        flush: FlushPolicy::EveryWrite,
        ..LogConfig::default()
    }
}

fn batch(value: &[u8]) -> bytes::BytesMut {
    let mut builder = BatchBuilder::new(Compression::None);
    builder.append(1_700_000_000_000, None, Some(value), &[]);
    builder.build().expect("a one-record batch builds")
}

/// Every record value from the log start, in offset order.
fn read_values(log: &PartitionLog) -> Vec<(u64, Vec<u8>)> {
    common::read_records(log, log.log_start_offset())
}

#[test]
fn failed_fsync_fails_the_append_and_poisons_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), every_write_config()).unwrap();
    // The first append of an epoch also syncs the leader-epoch file: get that out of the way
    // so the injected failure hits the data sync.
    for i in 0..3u8 {
        log.append_as_leader(&mut batch(&[i; 100]), LeaderEpoch(0))
            .unwrap();
    }
    let durable_before = log.durable_offset();
    assert_eq!(durable_before, Offset(3));

    fail_syncs_under(dir.path(), 1);
    let failed = log.append_as_leader(&mut batch(b"never acknowledged"), LeaderEpoch(0));
    assert!(
        matches!(
            failed,
            Err(Error::Io {
                op: "fdatasync",
                ..
            })
        ),
        "{failed:?}"
    );
    assert!(log.is_poisoned());
    assert_eq!(
        log.durable_offset(),
        durable_before,
        "a failed sync makes nothing durable"
    );

    // The injected fault is used up; the poison stays.
    for _ in 0..3 {
        let result = log.append_as_leader(&mut batch(b"after the fault"), LeaderEpoch(0));
        assert!(matches!(result, Err(Error::Poisoned { .. })), "{result:?}");
    }
    assert!(matches!(log.flush(), Err(Error::Poisoned { .. })));
    assert!(matches!(
        log.truncate_to(Offset(1)),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(
        log.delete_records_before(Offset(1)),
        Err(Error::Poisoned { .. })
    ));

    // Reads still work and show the acknowledged records.
    let values = read_values(&log);
    assert_eq!(
        &values[..3],
        &[(0, vec![0; 100]), (1, vec![1; 100]), (2, vec![2; 100])]
    );

    // A poisoned log closes without the clean-shutdown marker, so the next open recovers.
    assert!(matches!(log.close(), Err(Error::Poisoned { .. })));
    drop(log);
    let log = PartitionLog::open(dir.path(), every_write_config()).unwrap();
    assert!(!log.is_poisoned());
    let values = read_values(&log);
    assert_eq!(
        &values[..3],
        &[(0, vec![0; 100]), (1, vec![1; 100]), (2, vec![2; 100])]
    );
    // The unacknowledged append reached the page cache, so it may survive; nothing else may.
    assert!(log.log_end_offset() == Offset(3) || log.log_end_offset() == Offset(4));
    let end = log.log_end_offset();
    let appended = log
        .append_as_leader(&mut batch(b"after reopen"), LeaderEpoch(0))
        .unwrap();
    assert_eq!(appended.first_offset, end);
    assert!(log.verify().is_ok(), "{:?}", log.verify());
}

#[test]
fn failed_fsync_of_a_flush_poisons_an_os_policy_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush: FlushPolicy::Os,
        ..every_write_config()
    };
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    log.append_as_leader(&mut batch(b"one"), LeaderEpoch(0))
        .unwrap();
    fail_syncs_under(dir.path(), 1);
    assert!(log.flush().is_err());
    assert!(log.is_poisoned());
    let result = log.append_as_leader(&mut batch(b"two"), LeaderEpoch(0));
    assert!(matches!(result, Err(Error::Poisoned { .. })), "{result:?}");
    assert_eq!(read_values(&log), vec![(0, b"one".to_vec())]);
    drop(log);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(
        log.append_as_leader(&mut batch(b"two"), LeaderEpoch(0))
            .unwrap()
            .first_offset,
        Offset(1)
    );
    assert_eq!(
        read_values(&log),
        vec![(0, b"one".to_vec()), (1, b"two".to_vec())]
    );
}

#[test]
fn failed_fsync_at_a_roll_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush: FlushPolicy::Os,
        ..every_write_config()
    };
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let value = [7u8; 1000];
    let batch_bytes = batch(&value).len() as u64;
    while log.segments()[0].1 + batch_bytes <= config.segment_bytes {
        log.append_as_leader(&mut batch(&value), LeaderEpoch(0))
            .unwrap();
    }
    let end = log.log_end_offset();
    // The next append rolls: sealing syncs the trimmed indexes, and the new segment's
    // directory entry is synced too. The first of those syncs fails.
    fail_syncs_under(dir.path(), 1);
    let result = log.append_as_leader(&mut batch(&value), LeaderEpoch(0));
    assert!(result.is_err(), "{result:?}");
    assert!(log.is_poisoned());
    assert_eq!(log.log_end_offset(), end);
    let result = log.append_as_leader(&mut batch(&value), LeaderEpoch(0));
    assert!(matches!(result, Err(Error::Poisoned { .. })), "{result:?}");
    drop(log);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_values(&log).len() as u64, end.0);
    assert_eq!(
        log.append_as_leader(&mut batch(&value), LeaderEpoch(0))
            .unwrap()
            .first_offset,
        end
    );
    assert!(log.verify().is_ok(), "{:?}", log.verify());
}

/// Concurrent appenders share group-commit syncs. When one sync fails, every waiter fails
/// with it, and no append is acknowledged past the last sync that succeeded.
#[test]
fn concurrent_appenders_never_get_an_ack_past_a_failed_sync() {
    const THREADS: u8 = 4;
    const APPENDS_BEFORE_FAULT: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(PartitionLog::open(dir.path(), every_write_config()).unwrap());
    log.append_as_leader(&mut batch(b"epoch"), LeaderEpoch(0))
        .unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(usize::from(THREADS) + 1));
    let acked: Vec<Vec<(Offset, Vec<u8>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let log = Arc::clone(&log);
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0u32.. {
                        if i as usize == APPENDS_BEFORE_FAULT {
                            barrier.wait();
                        }
                        let value = format!("t{t}-{i}").into_bytes();
                        match log.append_as_leader(&mut batch(&value), LeaderEpoch(0)) {
                            Ok(info) => {
                                // Acknowledged means durable: the sync covered this record.
                                assert!(log.durable_offset() > info.last_offset);
                                acked.push((info.first_offset, value));
                            }
                            Err(Error::Poisoned { .. }) | Err(Error::Io { .. }) => break,
                            Err(other) => panic!("unexpected error {other:?}"),
                        }
                    }
                    // Once an append failed, every later one fails too.
                    let later = log.append_as_leader(&mut batch(b"late"), LeaderEpoch(0));
                    assert!(matches!(later, Err(Error::Poisoned { .. })), "{later:?}");
                    acked
                })
            })
            .collect();
        barrier.wait();
        fail_syncs_under(dir.path(), 1);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(log.is_poisoned());
    let durable = log.durable_offset();
    let mut all: Vec<(Offset, Vec<u8>)> = acked.into_iter().flatten().collect();
    all.sort();
    assert!(all.len() >= usize::from(THREADS) * APPENDS_BEFORE_FAULT);
    assert!(
        all.iter().all(|(offset, _)| *offset < durable),
        "ack past the durable offset {durable}"
    );
    drop(log);

    let log = PartitionLog::open(dir.path(), every_write_config()).unwrap();
    let stored: std::collections::HashMap<u64, Vec<u8>> = read_values(&log).into_iter().collect();
    for (offset, value) in &all {
        assert_eq!(
            stored.get(&offset.0),
            Some(value),
            "acknowledged record at {offset} lost or changed"
        );
    }
    let end = log.log_end_offset();
    assert_eq!(
        log.append_as_leader(&mut batch(b"again"), LeaderEpoch(0))
            .unwrap()
            .first_offset,
        end
    );
}
