//! What the benchmarks write: 1 KiB records of semi-compressible text, packed into batches of
//! a target size, built ahead of time or on the fly.
//!
//! A record value is one JSON log line, exactly [`RECORD_VALUE_BYTES`] long: a timestamp, a
//! level, a service and host name, a 128-bit random trace id, a user id and a message of words
//! drawn from a small vocabulary. Like real application logs it repeats its keys and words but
//! not its ids, so lz4 and zstd find something to do without the data being trivially
//! compressible. The measured ratio is reported with each compressed scenario.

use bytes::BytesMut;
use log_core::{BatchBuilder, Compression};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Size of one record value.
pub const RECORD_VALUE_BYTES: usize = 1024;
/// Bytes a 1 KiB record takes in a batch beyond its value: attributes, varint deltas and
/// lengths, header count. Used to decide whether one more record still fits.
const RECORD_OVERHEAD_BYTES_MAX: usize = 16;
/// Distinct record values; a 1 MiB batch takes about 1 000 consecutive ones, so no batch
/// repeats a value.
const RECORD_POOL_COUNT: usize = 4096;
/// Timestamp of the first record: any fixed time, so runs are repeatable.
const TIMESTAMP_BASE_MS: i64 = 1_700_000_000_000;

const WORDS: &[&str] = &[
    "order",
    "payment",
    "accepted",
    "rejected",
    "customer",
    "session",
    "cart",
    "item",
    "shipped",
    "warehouse",
    "retry",
    "timeout",
    "latency",
    "upstream",
    "downstream",
    "cache",
    "miss",
    "hit",
    "inventory",
    "reserved",
    "released",
    "invoice",
    "refund",
    "account",
    "login",
    "logout",
    "token",
    "expired",
    "renewed",
    "checkout",
    "discount",
    "applied",
    "currency",
    "EUR",
    "USD",
    "quantity",
    "price",
    "total",
    "tax",
    "address",
    "validated",
    "queued",
    "delivered",
    "batch",
    "partition",
    "offset",
    "committed",
    "consumer",
    "producer",
    "request",
    "response",
    "status",
    "ok",
    "error",
    "warning",
    "user",
    "agent",
    "mobile",
    "web",
    "region",
    "eu-west",
    "us-east",
];
const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
const SERVICES: &[&str] = &["checkout", "payments", "inventory", "shipping", "accounts"];

/// Record values to draw from, generated once from a fixed seed.
#[derive(Debug)]
pub struct RecordPool {
    values: Vec<Vec<u8>>,
}

impl RecordPool {
    pub fn new() -> RecordPool {
        let mut rng = StdRng::seed_from_u64(0x5eed_1a7e);
        let values = (0..RECORD_POOL_COUNT)
            .map(|i| log_line(&mut rng, i as u64))
            .collect();
        RecordPool { values }
    }

    pub fn value(&self, index: usize) -> &[u8] {
        &self.values[index % self.values.len()]
    }
}

fn log_line(rng: &mut StdRng, sequence: u64) -> Vec<u8> {
    let trace: u128 = rng.gen();
    let mut line = format!(
        "{{\"ts\":{},\"level\":\"{}\",\"service\":\"{}-{}\",\"host\":\"ip-10-0-{}-{}\",\
         \"trace_id\":\"{trace:032x}\",\"user_id\":{},\"seq\":{sequence},\"msg\":\"",
        TIMESTAMP_BASE_MS + sequence as i64 * 3,
        LEVELS[rng.gen_range(0..LEVELS.len())],
        SERVICES[rng.gen_range(0..SERVICES.len())],
        rng.gen_range(0..8),
        rng.gen_range(0..16),
        rng.gen_range(1..255),
        rng.gen_range(100_000..1_000_000),
    );
    while line.len() < RECORD_VALUE_BYTES {
        line.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
        line.push(' ');
        if rng.gen_range(0..12) == 0 {
            line.push_str(&rng.gen_range(0..100_000).to_string());
            line.push(' ');
        }
    }
    let mut bytes = line.into_bytes();
    bytes.truncate(RECORD_VALUE_BYTES - 2);
    bytes.extend_from_slice(b"\"}");
    bytes
}

/// One finished batch and what it carries.
#[derive(Debug)]
pub struct Built {
    pub bytes: BytesMut,
    pub records: u64,
    /// Size of the batch uncompressed: what the producer handed over.
    pub logical_bytes: u64,
}

/// Builds one batch of whole 1 KiB records, as many as fit in `batch_bytes` uncompressed,
/// starting at record `first` of the pool.
pub fn build_batch(
    pool: &RecordPool,
    codec: Compression,
    batch_bytes: usize,
    first: usize,
) -> Built {
    let mut builder = BatchBuilder::with_capacity(codec, batch_bytes);
    let mut index = first;
    while builder.size_bytes() + RECORD_VALUE_BYTES + RECORD_OVERHEAD_BYTES_MAX <= batch_bytes {
        let timestamp = TIMESTAMP_BASE_MS + index as i64;
        builder.append(timestamp, None, Some(pool.value(index)), &[]);
        index += 1;
    }
    assert!(
        !builder.is_empty(),
        "a batch of {batch_bytes} bytes holds no 1 KiB record"
    );
    let records = builder.len() as u64;
    let logical_bytes = builder.size_bytes() as u64;
    let bytes = builder.build().expect("a non-empty batch builds");
    Built {
        bytes,
        records,
        logical_bytes,
    }
}

/// Records that fit in one batch of `batch_bytes`.
pub fn records_per_batch(batch_bytes: usize) -> usize {
    let pool = RecordPool {
        values: vec![vec![b'x'; RECORD_VALUE_BYTES]],
    };
    build_batch(&pool, Compression::None, batch_bytes, 0).records as usize
}

/// Pre-built batches for one writer: about `pool_bytes` of them (at least one), each starting
/// at a different record so that compressed batches differ.
pub fn prebuilt(
    pool: &RecordPool,
    codec: Compression,
    batch_bytes: usize,
    pool_bytes: usize,
    writer: usize,
) -> Vec<Built> {
    let count = (pool_bytes / batch_bytes).max(1);
    let per_batch = records_per_batch(batch_bytes);
    (0..count)
        .map(|i| build_batch(pool, codec, batch_bytes, (writer * count + i) * per_batch))
        .collect()
}
