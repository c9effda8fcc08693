//! One pull from one queue, as both consumers make it: the long-polling request, decoding the
//! batches that come back, and recovering from an offset out of range.
//!
//! A pull response starts with the batch that holds the requested offset, so records below it
//! are skipped. Messages the subscription's tag filter rejects are dropped here, but still
//! advance the next offset: filtering must not make a consumer read them again. Control
//! batches (transaction markers, later) carry no messages and are passed over the same way.
//!
//! Decoding is strict: a batch that fails its CRC or holds a malformed record fails the pull
//! (the consumer backs off and pulls the same offset again) rather than being skipped, so
//! nothing is lost silently. The one exception is a partial batch at the very end of the
//! response, which is what a byte limit can leave: it is read again by the next pull.

use std::time::Duration;

use bytes::Bytes;
use log_core::batch::split_batches;
use log_core::{BatchError, RecordBatch};

use super::cluster::Client;
use super::consume_from::{out_of_range_reset, queue_bounds};
use super::tag_filter::TagFilter;
use crate::error::{Error, ErrorCode, Result};
use crate::message::ReceivedMessage;
use crate::protocol::{PullRequest, QueueRef};

/// Added to a long poll's wait for the client-side timeout (RocketMQ waits 15 s at the
/// broker and 30 s in the client).
pub const PULL_TIMEOUT_MARGIN: Duration = Duration::from_secs(15);

/// The shortest long-poll wait a consumer accepts (shorter waits would spin on an idle
/// queue).
pub const PULL_WAIT_MIN: Duration = Duration::from_millis(100);

/// What one pull yielded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fetched {
    /// The messages at or after the requested offset that pass the filter, in offset order.
    pub(crate) messages: Vec<ReceivedMessage>,
    /// Where the next pull starts: past every record returned or filtered out.
    pub(crate) next_offset: u64,
    /// The queue's log end offset when the broker answered (0 when unknown).
    pub(crate) log_end_offset: u64,
}

/// How a consumer pulls.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PullSettings {
    pub(crate) max_bytes: u32,
    pub(crate) wait: Duration,
}

/// The smallest encoded record: length, attributes, two deltas, null key and value, no
/// headers, one byte each.
const RECORD_BYTES_MIN: usize = 7;

/// The most messages room is made for before decoding a pull (more still fit: the vector
/// grows).
const RESERVED_MESSAGES_MAX: usize = 16 * 1024;

/// How many bytes of records one pull may decode, as a multiple of the bytes it asked for.
/// Past it, decoding stops after the batch that crossed it, and the next pull starts at the
/// first batch left: a run of highly compressed batches cannot make a consumer hold more
/// than this (plus one batch) per pull.
const DECODED_BYTES_PER_PULLED_BYTE: usize = 32;

/// A pull's answer with its batches split and checked (CRC included) but no record decoded:
/// enough to know where the next pull starts before this one is decoded.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    batches: Vec<RecordBatch>,
    /// The most record bytes decoding may produce (see `DECODED_BYTES_PER_PULLED_BYTE`).
    decode_budget: usize,
    /// Where the next pull starts: past every whole batch returned.
    pub(crate) next_offset: u64,
    /// The queue's log end offset when the broker answered (0 when unknown).
    pub(crate) log_end_offset: u64,
}

/// Pulls `queue` from `offset`; after `OffsetOutOfRange` returns no messages and the offset
/// to go on from (see `consume_from`).
pub(crate) async fn pull(
    client: &Client,
    queue: &QueueRef,
    offset: u64,
    settings: PullSettings,
    filter: &TagFilter,
) -> Result<Fetched> {
    let checked = pull_checked(client, queue, offset, settings).await?;
    decode_checked(queue, offset, checked, filter)
}

/// `pull` up to the decoding of records: the batches checked, the next offset known.
pub(crate) async fn pull_checked(
    client: &Client,
    queue: &QueueRef,
    offset: u64,
    settings: PullSettings,
) -> Result<Checked> {
    let request = PullRequest {
        topic: queue.topic.clone(),
        queue: queue.queue,
        offset,
        max_bytes: settings.max_bytes,
        max_wait_ms: u32::try_from(settings.wait.as_millis()).unwrap_or(u32::MAX),
    };
    let timeout = settings.wait + PULL_TIMEOUT_MARGIN;
    match client
        .call_leader(&queue.topic, queue.queue, request, timeout)
        .await
    {
        Ok(response) => {
            let mut checked = check(offset, response.batches, decode_budget(settings))?;
            checked.log_end_offset = response.log_end_offset;
            Ok(checked)
        }
        Err(error) if error.code() == Some(ErrorCode::OffsetOutOfRange) => {
            let bounds = queue_bounds(client, queue).await?;
            let next_offset = out_of_range_reset(offset, bounds);
            tracing::warn!(
                topic = %queue.topic,
                queue = queue.queue,
                offset,
                log_start = bounds.start,
                log_end = bounds.end,
                next_offset,
                "offset out of range; moving on"
            );
            Ok(Checked {
                batches: Vec::new(),
                decode_budget: 0,
                next_offset,
                log_end_offset: bounds.end,
            })
        }
        Err(error) => Err(error),
    }
}

/// Decodes a pull response's batches; see the module docs.
#[cfg(test)]
pub(crate) fn decode(
    queue: &QueueRef,
    requested: u64,
    batches: Bytes,
    filter: &TagFilter,
) -> Result<Fetched> {
    let budget = decode_budget(PullSettings {
        max_bytes: 1 << 20,
        wait: Duration::ZERO,
    });
    decode_checked(queue, requested, check(requested, batches, budget)?, filter)
}

fn decode_budget(settings: PullSettings) -> usize {
    (settings.max_bytes as usize).saturating_mul(DECODED_BYTES_PER_PULLED_BYTE)
}

/// Splits and checks a pull response's batches, and finds where the next pull starts.
fn check(requested: u64, batches: Bytes, decode_budget: usize) -> Result<Checked> {
    let mut checked = Checked {
        batches: Vec::new(),
        decode_budget,
        next_offset: requested,
        log_end_offset: 0,
    };
    for (index, batch) in split_batches(batches).enumerate() {
        let batch = match batch {
            Ok(batch) => batch,
            Err(BatchError::Truncated { .. }) if index > 0 => break,
            Err(error) => return Err(invalid_batch(error)),
        };
        let header = batch.header();
        let batch_end = header.next_offset().0;
        checked.next_offset = checked.next_offset.max(batch_end);
        if batch_end > requested && !header.is_control() {
            checked.batches.push(batch);
        }
    }
    Ok(checked)
}

/// Decodes the records of checked batches at or after `requested` that pass `filter`.
pub(crate) fn decode_checked(
    queue: &QueueRef,
    requested: u64,
    checked: Checked,
    filter: &TagFilter,
) -> Result<Fetched> {
    let mut fetched = Fetched {
        messages: Vec::new(),
        next_offset: checked.next_offset,
        log_end_offset: checked.log_end_offset,
    };
    // Room for the records the batches declare, but never more than their bytes could hold
    // uncompressed, nor a fixed most: the count is the sender's word.
    let declared: usize = checked
        .batches
        .iter()
        .map(|b| {
            let count = usize::try_from(b.header().records_count).unwrap_or(0);
            count.min(b.bytes().len() / RECORD_BYTES_MIN)
        })
        .sum();
    fetched
        .messages
        .reserve(declared.min(RESERVED_MESSAGES_MAX));
    let mut decoded = 0usize;
    for (index, batch) in checked.batches.iter().enumerate() {
        if index > 0 && decoded >= checked.decode_budget {
            // The rest waits for the next pull (the first batch is always decoded).
            fetched.next_offset = requested.max(batch.header().base_offset().0);
            break;
        }
        let mut records = batch.records().map_err(invalid_batch)?;
        decoded = decoded.saturating_add(records.region_bytes());
        while let Some(record) = records.next_view() {
            let record = record.map_err(invalid_batch)?;
            if record.offset.0 < requested {
                continue;
            }
            let message = ReceivedMessage::from_view(&queue.topic, queue.queue, &record);
            if filter.matches(message.tag.as_deref()) {
                fetched.messages.push(message);
            }
        }
    }
    Ok(fetched)
}

fn invalid_batch(error: BatchError) -> Error {
    Error::Batch(log_core::Error::InvalidBatch(error))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use log_core::{BatchBuilder, Compression, Offset, RecordBatch};

    use super::*;
    use crate::message::{Message, MessageId};

    fn queue() -> QueueRef {
        QueueRef {
            topic: "orders".into(),
            queue: 2,
        }
    }

    /// A stored batch at `base`: tags cycle through A, B and none.
    fn stored_batch(base: u64, count: usize, codec: Compression) -> BytesMut {
        let mut builder = BatchBuilder::new(codec);
        for n in 0..count {
            let offset = base + n as u64;
            let mut message = Message::new("orders", format!("m{offset}"));
            match offset % 3 {
                0 => message = message.with_tag("A"),
                1 => message = message.with_tag("B"),
                _ => {}
            }
            message.append_to(&mut builder, &MessageId::generate());
        }
        let mut bytes = builder.build().unwrap();
        log_core::batch::set_base_offset(&mut bytes, Offset(base));
        bytes
    }

    fn response(batches: &[BytesMut]) -> Bytes {
        let mut all = BytesMut::new();
        for batch in batches {
            all.extend_from_slice(batch);
        }
        all.freeze()
    }

    fn offsets(fetched: &Fetched) -> Vec<u64> {
        fetched.messages.iter().map(|m| m.offset).collect()
    }

    #[test]
    fn records_below_the_requested_offset_are_skipped() {
        for codec in [Compression::None, Compression::Zstd] {
            let bytes = response(&[stored_batch(10, 5, codec), stored_batch(15, 5, codec)]);
            let fetched = decode(&queue(), 13, bytes, &TagFilter::all()).unwrap();
            assert_eq!(offsets(&fetched), (13..20).collect::<Vec<_>>(), "{codec:?}");
            assert_eq!(fetched.next_offset, 20);
            let first = &fetched.messages[0];
            assert_eq!(first.body, "m13");
            assert_eq!((first.topic.as_str(), first.queue), ("orders", 2));
        }
    }

    #[test]
    fn filtered_messages_still_advance_the_offset() {
        let bytes = response(&[stored_batch(0, 9, Compression::None)]);
        let filter = TagFilter::parse("A").unwrap();
        let fetched = decode(&queue(), 0, bytes.clone(), &filter).unwrap();
        assert_eq!(offsets(&fetched), [0, 3, 6]);
        assert_eq!(fetched.next_offset, 9);
        let none = decode(&queue(), 0, bytes, &TagFilter::parse("C").unwrap()).unwrap();
        assert!(none.messages.is_empty());
        assert_eq!(none.next_offset, 9, "an all-filtered pull moves on");
    }

    #[test]
    fn an_empty_response_keeps_the_offset() {
        let fetched = decode(&queue(), 42, Bytes::new(), &TagFilter::all()).unwrap();
        assert_eq!(
            fetched,
            Fetched {
                next_offset: 42,
                ..Fetched::default()
            }
        );
    }

    #[test]
    fn a_trailing_partial_batch_is_left_for_the_next_pull() {
        let whole = stored_batch(0, 3, Compression::None);
        let partial = stored_batch(3, 3, Compression::None);
        let mut bytes = BytesMut::from(&response(&[whole])[..]);
        bytes.extend_from_slice(&partial[..partial.len() / 2]);
        let fetched = decode(&queue(), 0, bytes.freeze(), &TagFilter::all()).unwrap();
        assert_eq!(offsets(&fetched), [0, 1, 2]);
        assert_eq!(fetched.next_offset, 3);
    }

    #[test]
    fn decoding_stops_at_the_budget_and_the_rest_is_pulled_again() {
        let batches = [
            stored_batch(0, 10, Compression::Zstd),
            stored_batch(10, 10, Compression::Lz4),
            stored_batch(20, 10, Compression::Zstd),
        ];
        let region = |b: &BytesMut| {
            let batch = RecordBatch::new(Bytes::copy_from_slice(b)).unwrap();
            batch.records().unwrap().region_bytes()
        };
        // Room for the first batch and part of the second: two are decoded.
        let budget = region(&batches[0]) + 1;
        let checked = check(3, response(&batches), budget).unwrap();
        let fetched = decode_checked(&queue(), 3, checked, &TagFilter::all()).unwrap();
        assert_eq!(offsets(&fetched), (3..20).collect::<Vec<_>>());
        assert_eq!(
            fetched.next_offset, 20,
            "the next pull starts at the batch left"
        );
        // No budget still decodes the first batch, from the requested offset.
        let checked = check(3, response(&batches), 0).unwrap();
        let fetched = decode_checked(&queue(), 3, checked, &TagFilter::all()).unwrap();
        assert_eq!(offsets(&fetched), (3..10).collect::<Vec<_>>());
        assert_eq!(fetched.next_offset, 10);
    }

    #[test]
    fn corrupt_batches_fail_the_pull_instead_of_being_skipped() {
        let mut corrupt = stored_batch(0, 3, Compression::None);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let error = decode(&queue(), 0, response(&[corrupt.clone()]), &TagFilter::all());
        assert!(matches!(error, Err(Error::Batch(_))), "{error:?}");
        let after_good = response(&[stored_batch(0, 3, Compression::None), {
            let mut later = corrupt;
            log_core::batch::set_base_offset(&mut later, Offset(3));
            later
        }]);
        assert!(decode(&queue(), 0, after_good, &TagFilter::all()).is_err());
        let truncated_alone = stored_batch(0, 3, Compression::None);
        let half = Bytes::copy_from_slice(&truncated_alone[..20]);
        assert!(decode(&queue(), 0, half, &TagFilter::all()).is_err());
    }
}
