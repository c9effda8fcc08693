//! `FrameReader`: cuts a byte stream into frames, in one reused buffer.
//!
//! Bytes read from the socket are appended to the buffer; each complete frame is split off as
//! a frozen `Bytes` (no copy), so record batches in it reach the service or the caller as
//! slices of the very memory the socket filled. A length prefix over `FRAME_BYTES_MAX` fails
//! before any of the frame is read.
//!
//! How much room a frame announces is reserved for depends on who sent it. A server trusts a
//! prefix only as far as the bytes behind it: it grows the buffer with the bytes that actually
//! arrive (doubling, from `READ_BUFFER_BYTES`) until an eighth of the frame is in, and then
//! reserves the rest at once. A client announcing 64 MiB and sending nothing therefore costs
//! nothing, what is reserved is never more than eight times what was received, and a large
//! frame is copied while it grows for its first eighth only (doubling all the way would copy
//! about all of it once more). A client trusts its broker and reserves the whole frame at
//! once, so a 32 MiB pull response lands in one allocation without being copied while it
//! grows.

use bytes::{Buf, BytesMut};

use super::{frame_length, LENGTH_PREFIX_BYTES};
use crate::error::DecodeError;

/// The room a read is offered at least; the buffer is refilled to it when less is spare.
pub const READ_BUFFER_BYTES: usize = 64 << 10;

/// Below this much spare room, the buffer is refilled to `READ_BUFFER_BYTES` before a read.
const READ_SPARE_BYTES_MIN: usize = 4 << 10;

/// A server reserves the rest of a frame once `1 / UNTRUSTED_RESERVE_RATIO` of it is in.
const UNTRUSTED_RESERVE_RATIO: usize = 8;

/// Splits frames out of the bytes read from one connection.
#[derive(Debug)]
pub struct FrameReader {
    buffer: BytesMut,
    /// Whether to reserve a whole frame as soon as its length prefix is in.
    trust_lengths: bool,
}

impl FrameReader {
    /// `trust_lengths`: reserve the whole of a frame as soon as its prefix arrives (a client
    /// reading its broker) rather than growing with the bytes received (a server).
    pub fn new(trust_lengths: bool) -> FrameReader {
        FrameReader {
            buffer: BytesMut::with_capacity(READ_BUFFER_BYTES),
            trust_lengths,
        }
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete frame (the bytes after its length prefix), if one is buffered. An
    /// error means the stream cannot be trusted any further: close the connection.
    pub fn next_frame(&mut self) -> Result<Option<bytes::Bytes>, DecodeError> {
        let Some(length) = self.pending_length()? else {
            return Ok(None);
        };
        if self.buffer.len() < LENGTH_PREFIX_BYTES + length {
            return Ok(None);
        }
        self.buffer.advance(LENGTH_PREFIX_BYTES);
        Ok(Some(self.buffer.split_to(length).freeze()))
    }

    /// The length of the frame at the front of the buffer, once its prefix is in.
    fn pending_length(&self) -> Result<Option<usize>, DecodeError> {
        let Some(prefix) = self.buffer.get(..LENGTH_PREFIX_BYTES) else {
            return Ok(None);
        };
        let prefix = [prefix[0], prefix[1], prefix[2], prefix[3]];
        frame_length(prefix).map(Some)
    }

    /// The buffer to read into next, with room reserved per the policy in the module docs.
    /// Call after `next_frame` returned `None`.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        let spare = self.buffer.capacity() - self.buffer.len();
        let wanted = match self.pending_length() {
            Ok(Some(length)) => {
                let whole = LENGTH_PREFIX_BYTES + length;
                let missing = whole.saturating_sub(self.buffer.len());
                if self.trust_lengths
                    || self.buffer.len().saturating_mul(UNTRUSTED_RESERVE_RATIO) >= whole
                {
                    missing
                } else {
                    missing.min(self.buffer.len().max(READ_BUFFER_BYTES))
                }
            }
            Ok(None) if spare < READ_SPARE_BYTES_MIN => READ_BUFFER_BYTES,
            // Nothing to reserve for: a prefix is still arriving, or it was refused.
            Ok(None) | Err(_) => 0,
        };
        if spare < wanted {
            self.buffer.reserve(wanted);
        }
        &mut self.buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn frames_split_across_reads_come_out_whole_and_in_order() {
        let mut stream = Vec::new();
        for payload in [&b"\x01abc"[..], b"\x00", b"\x01xyzzy"] {
            stream.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            stream.extend_from_slice(payload);
        }
        let mut reader = FrameReader::new(false);
        let mut frames = Vec::new();
        for byte in stream {
            reader.read_buffer().put_u8(byte);
            while let Some(frame) = reader.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames, vec![&b"\x01abc"[..], b"\x00", b"\x01xyzzy"]);
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn an_oversize_prefix_fails_before_the_body_and_reserves_nothing() {
        let mut reader = FrameReader::new(true);
        reader
            .read_buffer()
            .put_u32(u32::try_from(crate::protocol::FRAME_BYTES_MAX + 1).unwrap());
        assert!(matches!(
            reader.next_frame(),
            Err(DecodeError::TooLong { .. })
        ));
        assert!(reader.read_buffer().capacity() <= READ_BUFFER_BYTES);
    }

    #[test]
    fn an_untrusted_prefix_grows_the_buffer_only_with_the_bytes_received() {
        let mut reader = FrameReader::new(false);
        reader.read_buffer().put_u32(32 << 20);
        assert_eq!(reader.next_frame(), Ok(None));
        assert!(reader.read_buffer().capacity() <= 2 * READ_BUFFER_BYTES + 8);

        // Once an eighth of the frame is in, the rest is reserved in one step.
        let frame = 1 << 20;
        let mut reader = FrameReader::new(false);
        reader.read_buffer().put_u32(frame as u32);
        let mut received = 0;
        while (LENGTH_PREFIX_BYTES + received) * UNTRUSTED_RESERVE_RATIO
            < LENGTH_PREFIX_BYTES + frame
        {
            let buffer = reader.read_buffer();
            assert!(
                buffer.capacity() <= 2 * (buffer.len() + READ_BUFFER_BYTES),
                "{} reserved for {} received",
                buffer.capacity(),
                buffer.len()
            );
            let room = buffer.capacity() - buffer.len();
            buffer.put_bytes(0, room);
            received += room;
        }
        assert!(reader.read_buffer().capacity() >= LENGTH_PREFIX_BYTES + frame);

        let mut trusting = FrameReader::new(true);
        trusting.read_buffer().put_u32(32 << 20);
        assert_eq!(trusting.next_frame(), Ok(None));
        assert!(trusting.read_buffer().capacity() >= 32 << 20);
    }
}
