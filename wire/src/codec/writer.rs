//! `Writer` builds one frame; `EncodedFrame` is the result, ready for the socket.
//!
//! Small fields are written into one growing buffer. A byte blob larger than
//! `BLOB_INLINE_BYTES_MAX` (the record batches of a send or a pull) is not copied: the buffer
//! so far is cut off and the blob's own `Bytes` becomes the next chunk, so the frame leaves as
//! a short list of chunks that the connection's writer hands to vectored I/O. The length
//! prefix is patched into the first chunk last, when the size is known.
//!
//! Encoding refuses what a decoder would reject (a name longer than `NAME_BYTES_MAX`, a list
//! longer than `LIST_LEN_MAX`, a frame larger than `FRAME_BYTES_MAX`), so a sender finds out
//! locally with `Error::InvalidArgument` instead of from a `MalformedRequest` answer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::protocol::{BODY_ELEMENTS_MAX, FRAME_BYTES_MAX, LIST_LEN_MAX, NAME_BYTES_MAX};

/// Blobs up to this size are copied into the frame buffer: below it, one more chunk (an
/// iovec, a reference count) costs more than the copy.
pub const BLOB_INLINE_BYTES_MAX: usize = 4 << 10;

/// Room a new frame buffer starts with: headers plus the fixed fields of any body.
const FRAME_BUFFER_BYTES_INITIAL: usize = 128;

/// Bytes of the length prefix that opens every frame.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// One encoded frame, length prefix included: the first chunk, then any further chunks (large
/// blobs shared with the caller's `Bytes`, and the fields after them).
#[derive(Debug)]
pub struct EncodedFrame {
    head: BytesMut,
    rest: Vec<Bytes>,
}

impl EncodedFrame {
    /// Total bytes on the wire, the length prefix included.
    pub fn len(&self) -> usize {
        self.head.len() + self.rest.iter().map(Bytes::len).sum::<usize>()
    }

    /// Never true: a frame holds at least its length prefix and kind.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunks in order; written back to back they are the frame.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&self.head[..]).chain(self.rest.iter().map(|chunk| &chunk[..]))
    }

    /// The whole frame in one buffer (a copy when there is more than one chunk).
    pub fn to_bytes(&self) -> Bytes {
        if self.rest.is_empty() {
            return Bytes::copy_from_slice(&self.head);
        }
        let mut frame = BytesMut::with_capacity(self.len());
        for chunk in self.chunks() {
            frame.extend_from_slice(chunk);
        }
        frame.freeze()
    }

    /// The chunks as owned `Bytes`, for the connection's writer.
    pub(crate) fn into_chunks(self) -> impl Iterator<Item = Bytes> {
        std::iter::once(self.head.freeze()).chain(self.rest)
    }
}

/// Builds one frame.
#[derive(Debug)]
pub(crate) struct Writer {
    /// The chunk holding the length prefix; set aside (unfrozen, so the prefix can be patched)
    /// when the first large blob is appended.
    head: Option<BytesMut>,
    /// Chunks after the head: large blobs and the buffers between them.
    rest: Vec<Bytes>,
    /// Where fields are written now.
    buffer: BytesMut,
    /// List elements written so far, against `BODY_ELEMENTS_MAX`.
    elements: usize,
}

impl Writer {
    /// A writer whose buffer already holds a zeroed length prefix.
    #[cfg(test)]
    pub(crate) fn new() -> Writer {
        Writer::with_inline_bytes(0)
    }

    /// A writer with room for the headers and fixed fields plus `inline` bytes of strings or
    /// small blobs, so a typical frame is built in one allocation.
    pub(crate) fn with_inline_bytes(inline: usize) -> Writer {
        let capacity = FRAME_BUFFER_BYTES_INITIAL + inline.min(BLOB_INLINE_BYTES_MAX);
        let mut buffer = BytesMut::with_capacity(capacity);
        buffer.put_u32(0);
        Writer {
            head: None,
            rest: Vec::new(),
            buffer,
            elements: 0,
        }
    }

    fn len(&self) -> usize {
        self.head.as_ref().map_or(0, BytesMut::len)
            + self.rest.iter().map(Bytes::len).sum::<usize>()
            + self.buffer.len()
    }

    /// Patches the length prefix and hands the frame over; fails if it exceeds
    /// `FRAME_BYTES_MAX`.
    pub(crate) fn finish(mut self) -> Result<EncodedFrame> {
        let length = self.len() - LENGTH_PREFIX_BYTES;
        if length > FRAME_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "the frame would be {length} bytes, more than FRAME_BYTES_MAX ({FRAME_BYTES_MAX})"
            )));
        }
        let prefix = u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes();
        let mut head = match self.head.take() {
            Some(head) => {
                if !self.buffer.is_empty() {
                    self.rest.push(self.buffer.freeze());
                }
                head
            }
            None => self.buffer,
        };
        head[..LENGTH_PREFIX_BYTES].copy_from_slice(&prefix);
        Ok(EncodedFrame {
            head,
            rest: self.rest,
        })
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.buffer.put_u8(value);
    }

    pub(crate) fn u16(&mut self, value: u16) {
        self.buffer.put_u16(value);
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.buffer.put_u32(value);
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.buffer.put_u64(value);
    }

    pub(crate) fn i64(&mut self, value: i64) {
        self.buffer.put_i64(value);
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.buffer.put_u8(u8::from(value));
    }

    /// `None` as -1; a value above `i64::MAX` cannot be represented and is refused.
    pub(crate) fn option_u64(&mut self, field: &str, value: Option<u64>) -> Result<()> {
        let encoded = match value {
            None => -1,
            Some(value) => i64::try_from(value).map_err(|_| {
                Error::InvalidArgument(format!("{field}: {value} is larger than i64::MAX"))
            })?,
        };
        self.buffer.put_i64(encoded);
        Ok(())
    }

    pub(crate) fn name(&mut self, field: &str, value: &str) -> Result<()> {
        self.string(field, value, NAME_BYTES_MAX)
    }

    pub(crate) fn text(&mut self, field: &str, value: &str) -> Result<()> {
        self.string(field, value, usize::from(u16::MAX))
    }

    /// Free text cut at a character boundary to fit the u16 length: for error messages,
    /// which must always be sendable.
    pub(crate) fn text_truncated(&mut self, value: &str) {
        let mut end = value.len().min(usize::from(u16::MAX));
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        self.buffer.put_u16(u16::try_from(end).unwrap_or(u16::MAX));
        self.buffer.put_slice(&value.as_bytes()[..end]);
    }

    pub(crate) fn option_name(&mut self, field: &str, value: Option<&str>) -> Result<()> {
        self.bool(value.is_some());
        match value {
            Some(value) => self.name(field, value),
            None => Ok(()),
        }
    }

    fn string(&mut self, field: &str, value: &str, limit: usize) -> Result<()> {
        if value.len() > limit {
            return Err(Error::InvalidArgument(format!(
                "{field}: {} bytes, more than the limit of {limit}",
                value.len()
            )));
        }
        self.buffer
            .put_u16(u16::try_from(value.len()).unwrap_or(u16::MAX));
        self.buffer.put_slice(value.as_bytes());
        Ok(())
    }

    /// A u32 length and the bytes; large blobs become their own chunk instead of a copy.
    pub(crate) fn blob(&mut self, field: &str, value: &Bytes) -> Result<()> {
        if value.len() > FRAME_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "{field}: {} bytes, more than FRAME_BYTES_MAX ({FRAME_BYTES_MAX})",
                value.len()
            )));
        }
        self.buffer
            .put_u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
        if value.len() <= BLOB_INLINE_BYTES_MAX {
            self.buffer.put_slice(value);
            return Ok(());
        }
        let before = self.buffer.split();
        match self.head {
            None => self.head = Some(before),
            Some(_) => self.rest.push(before.freeze()),
        }
        self.rest.push(value.clone());
        Ok(())
    }

    /// A u32 count and each element.
    pub(crate) fn list<T>(
        &mut self,
        field: &str,
        elements: &[T],
        mut element: impl FnMut(&mut Writer, &T) -> Result<()>,
    ) -> Result<()> {
        if elements.len() > LIST_LEN_MAX {
            return Err(Error::InvalidArgument(format!(
                "{field}: {} elements, more than LIST_LEN_MAX ({LIST_LEN_MAX})",
                elements.len()
            )));
        }
        self.elements += elements.len();
        if self.elements > BODY_ELEMENTS_MAX {
            return Err(Error::InvalidArgument(format!(
                "{field}: the body's lists hold more than BODY_ELEMENTS_MAX ({BODY_ELEMENTS_MAX}) elements"
            )));
        }
        self.buffer
            .put_u32(u32::try_from(elements.len()).unwrap_or(u32::MAX));
        for value in elements {
            element(self, value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_blob_is_shared_not_copied_and_the_prefix_counts_every_chunk() {
        let blob = Bytes::from(vec![7u8; BLOB_INLINE_BYTES_MAX + 1]);
        let mut writer = Writer::new();
        writer.u8(1);
        writer.blob("batches", &blob).unwrap();
        writer.u16(9);
        let frame = writer.finish().unwrap();
        let chunks: Vec<&[u8]> = frame.chunks().collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), blob.as_ptr());
        let bytes = frame.to_bytes();
        assert_eq!(bytes.len(), frame.len());
        let prefix = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        assert_eq!(prefix as usize, frame.len() - LENGTH_PREFIX_BYTES);
        assert_eq!(&bytes[bytes.len() - 2..], &[0, 9]);
    }

    #[test]
    fn two_large_blobs_keep_their_order() {
        let first = Bytes::from(vec![1u8; BLOB_INLINE_BYTES_MAX + 1]);
        let second = Bytes::from(vec![2u8; BLOB_INLINE_BYTES_MAX + 1]);
        let mut writer = Writer::new();
        writer.blob("a", &first).unwrap();
        writer.u8(5);
        writer.blob("b", &second).unwrap();
        let frame = writer.finish().unwrap();
        let bytes = frame.to_bytes();
        let mut expected = vec![0u8; 4];
        expected.extend_from_slice(&(first.len() as u32).to_be_bytes());
        expected.extend_from_slice(&first);
        expected.push(5);
        expected.extend_from_slice(&(second.len() as u32).to_be_bytes());
        expected.extend_from_slice(&second);
        let length = (expected.len() - 4) as u32;
        expected[..4].copy_from_slice(&length.to_be_bytes());
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn error_text_is_cut_at_a_character_boundary() {
        let text = "é".repeat(40_000);
        let mut writer = Writer::new();
        writer.text_truncated(&text);
        let bytes = writer.finish().unwrap().to_bytes();
        let length = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
        assert_eq!(length % 2, 0);
        assert!(std::str::from_utf8(&bytes[6..6 + length]).is_ok());
    }

    #[test]
    fn names_past_the_limit_are_refused() {
        let mut writer = Writer::new();
        assert!(writer
            .name("topic", &"t".repeat(NAME_BYTES_MAX + 1))
            .is_err());
        assert!(writer.name("topic", &"t".repeat(NAME_BYTES_MAX)).is_ok());
    }
}
