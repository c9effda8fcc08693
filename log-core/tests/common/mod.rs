//! Helpers shared by the log-core integration tests.

use log_core::batch::split_batches;
use log_core::{Offset, PartitionLog};

/// Every record from `from` to the log end, in offset order, as (offset, value). Reads return
/// whole batches, so records below `from` in the first batch are skipped.
pub fn read_records(log: &PartitionLog, from: Offset) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let result = log
            .read(next, 256 << 10, log.log_end_offset())
            .expect("read");
        if result.records.is_empty() {
            return out;
        }
        for batch in split_batches(result.records) {
            let batch = batch.expect("batch read back is valid");
            for record in batch.records().expect("records decode") {
                let record = record.expect("record decodes");
                if record.offset >= next {
                    out.push((record.offset.0, record.value.expect("value").to_vec()));
                }
            }
            next = batch.header().next_offset();
        }
    }
}
