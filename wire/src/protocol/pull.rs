//! `Pull`: read record batches from one queue, with long polling; `OffsetForTime`: the first
//! offset at or after a time.

use bytes::Bytes;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    pub topic: String,
    pub queue: u32,
    /// The first offset wanted. The response starts with the batch that holds it, so the
    /// client skips records below it.
    pub offset: u64,
    /// Upper bound on the batch bytes returned (clamped to `PULL_BYTES_MAX`); at least one
    /// whole batch is returned even when it is larger, so a consumer always progresses.
    pub max_bytes: u32,
    /// With nothing to return at `offset`, how long the broker may hold the request waiting
    /// for an append (clamped to `PULL_WAIT_MS_MAX`). 0 answers at once.
    pub max_wait_ms: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullResponse {
    /// The queue's first offset still stored.
    pub log_start_offset: u64,
    /// The offset the next append will get (the high watermark on a single node).
    pub log_end_offset: u64,
    /// Whole record batches as stored; empty when the wait ended with nothing new.
    pub batches: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetForTimeRequest {
    pub topic: String,
    pub queue: u32,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetForTimeResponse {
    /// The first offset whose timestamp is at or after the time asked for; the log end offset
    /// when every record is older.
    pub offset: u64,
}
