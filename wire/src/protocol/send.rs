//! `Send`: append record batches to one queue of a topic.
//!
//! The body carries one or more RecordBatch v2 batches exactly as the client built them; the
//! broker validates them (lengths, CRC) without decompressing, assigns offsets by rewriting the
//! base offset, and stores the bytes as they came.

use bytes::Bytes;

/// How much of the write the broker confirms before answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Acks {
    /// No confirmation: the request is sent one-way and never answered.
    None = 0,
    /// The leader appended the batch to its log (durable per the broker's flush policy).
    #[default]
    Leader = 1,
    /// Every in-sync replica has the batch (the high watermark passed it). On a single node
    /// this is the same as `Leader`.
    All = 2,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendRequest {
    pub topic: String,
    pub queue: u32,
    pub acks: Acks,
    /// How long the broker may take to meet `acks` before answering `Timeout`.
    pub timeout_ms: u32,
    /// One or more record batches, concatenated, as `log_core::BatchBuilder` builds them.
    pub batches: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendResponse {
    /// The offset of the first record of the first batch.
    pub base_offset: u64,
    /// The offset of the last record of the last batch.
    pub last_offset: u64,
    /// The queue's log start offset after the append.
    pub log_start_offset: u64,
    /// The time the broker stored the batches (ms since the Unix epoch).
    pub store_timestamp: i64,
}
