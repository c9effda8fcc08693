//! Embedding log-core as a durable local spool: append batches, read them back, close.
//!
//! `cargo run -p log-core --example embed [DIR]` (a temporary directory by default).

use std::time::{SystemTime, UNIX_EPOCH};

use log_core::batch::split_batches;
use log_core::{BatchBuilder, Compression, FlushPolicy, LeaderEpoch, LogConfig, PartitionLog};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| temp.path().to_path_buf(), Into::into);

    // EveryWrite: an append returns only once its batch is on disk (survives a power cut).
    let config = LogConfig {
        flush: FlushPolicy::EveryWrite,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(&dir, config)?; // creates the log, or recovers it after a crash

    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    for event in ["order placed", "order paid", "order shipped"] {
        let mut batch = BatchBuilder::new(Compression::Zstd);
        batch.append(
            now_ms,
            Some(b"order-42"),
            Some(event.as_bytes()),
            &[("source", Some(b"embed"))],
        );
        let info = log.append_as_leader(&mut batch.build()?, LeaderEpoch(0))?;
        println!("appended at offset {}", info.first_offset);
    }

    // Reads return whole batches; a batch may start before the offset asked for.
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let read = log.read(next, 1 << 20, log.log_end_offset())?;
        for batch in split_batches(read.records) {
            let batch = batch?;
            for record in batch.records()? {
                let record = record?;
                if record.offset >= next {
                    let value = record.value.unwrap_or_default();
                    println!("{}: {}", record.offset, String::from_utf8_lossy(&value));
                }
            }
            next = batch.header().next_offset();
        }
    }

    log.close()?; // syncs and marks a clean shutdown: the next open skips recovery
    Ok(())
}
