//! Fuzzes the batch reader: arbitrary bytes through `split_batches`, `RecordBatch::new` and
//! `records()`, drained to the end. The only failure is a panic (or an allocation the
//! fuzzer's `-rss_limit_mb` catches).
//!
//! Random bytes almost never carry a correct CRC-32C, so a fuzzer feeding them raw would stop
//! at validation. Half the inputs (first byte even) are therefore used as the fields and
//! records region of a batch whose header this target completes and seals with a correct CRC,
//! which takes the fuzzer into decompression and record decoding.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use log_core::batch::split_batches;
use log_core::RecordBatch;

/// attributes (2) + last_offset_delta (4) + records_count (4) taken from the input.
const SEALED_FIELDS_BYTES: usize = 10;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Some(batch) = sealed_batch(rest) {
            read_everything(Bytes::from(batch));
        }
    } else {
        read_everything(Bytes::copy_from_slice(rest));
    }
});

/// A v2 batch with the input's attributes, last offset delta, records count and records
/// region, and a correct length and CRC.
fn sealed_batch(input: &[u8]) -> Option<Vec<u8>> {
    if input.len() < SEALED_FIELDS_BYTES {
        return None;
    }
    let (fields, region) = input.split_at(SEALED_FIELDS_BYTES);
    let length = i32::try_from(49 + region.len()).ok()?;
    let mut batch = Vec::with_capacity(61 + region.len());
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&length.to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&[0; 4]); // CRC, below
    batch.extend_from_slice(&fields[0..2]); // attributes
    batch.extend_from_slice(&fields[2..6]); // last offset delta
    batch.extend_from_slice(&0i64.to_be_bytes()); // base timestamp
    batch.extend_from_slice(&0i64.to_be_bytes()); // max timestamp
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&fields[6..10]); // records count
    batch.extend_from_slice(region);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    Some(batch)
}

fn read_everything(bytes: Bytes) {
    if let Ok(batch) = RecordBatch::new(bytes.clone()) {
        if let Ok(records) = batch.records() {
            records.for_each(drop);
        }
        // The borrowed path: every view read in place and turned into its owned form.
        if let Ok(mut records) = batch.records() {
            while let Some(Ok(view)) = records.next_view() {
                let _ = (view.key(), view.value(), view.headers().count());
                drop(view.to_record());
            }
        }
    }
    for batch in split_batches(bytes) {
        if let Ok(records) = batch.and_then(|batch| batch.records()) {
            records.for_each(drop);
        }
    }
}
