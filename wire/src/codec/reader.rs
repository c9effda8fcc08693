//! `Reader`: a bounds-checked cursor over one frame's bytes, the only way bodies are decoded.
//!
//! Every read checks the bytes remaining first and fails with a `DecodeError` naming the field;
//! nothing here can panic on hostile input. Lengths and counts are checked against the bytes
//! remaining and against their limit before anything is allocated, and the elements of all
//! lists in one body share a budget (`BODY_ELEMENTS_MAX`), so a small frame can never make the
//! decoder allocate much more than its own size. Byte blobs come out as slices of the frame's
//! `Bytes` (a reference count, no copy).

use bytes::{Buf, Bytes};

use crate::error::DecodeError;
use crate::protocol::{BODY_ELEMENTS_MAX, LIST_LEN_MAX, NAME_BYTES_MAX};

/// The most elements a list preallocates room for; longer lists grow as elements decode.
const LIST_PREALLOCATE_MAX: usize = 1024;

/// A cursor over the bytes of one frame (or one part of it).
#[derive(Debug)]
pub(crate) struct Reader {
    bytes: Bytes,
    /// List elements this body may still declare (`BODY_ELEMENTS_MAX` in all).
    elements_left: usize,
}

impl Reader {
    pub(crate) fn new(bytes: Bytes) -> Reader {
        Reader {
            bytes,
            elements_left: BODY_ELEMENTS_MAX,
        }
    }

    /// What is left, consuming the reader (the body after a header).
    pub(crate) fn into_rest(self) -> Bytes {
        self.bytes
    }

    /// Fails unless every byte was consumed: trailing bytes mean the sender and receiver
    /// disagree about the layout, which must not pass silently.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.bytes.remaining() {
            0 => Ok(()),
            trailing => Err(DecodeError::TrailingBytes { trailing }),
        }
    }

    fn need(&self, field: &'static str, bytes: usize) -> Result<(), DecodeError> {
        let remaining = self.bytes.remaining();
        if remaining < bytes {
            return Err(DecodeError::Truncated {
                field,
                needed: bytes - remaining,
            });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.need(field, 1)?;
        Ok(self.bytes.get_u8())
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.need(field, 2)?;
        Ok(self.bytes.get_u16())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.need(field, 4)?;
        Ok(self.bytes.get_u32())
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.need(field, 8)?;
        Ok(self.bytes.get_u64())
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        self.need(field, 8)?;
        Ok(self.bytes.get_i64())
    }

    /// One byte, 0 or 1; anything else is rejected rather than read as true.
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::InvalidValue {
                field,
                value: i64::from(value),
            }),
        }
    }

    /// An `Option<u64>` as an i64: -1 is `None`, other negative values are invalid.
    pub(crate) fn option_u64(&mut self, field: &'static str) -> Result<Option<u64>, DecodeError> {
        let value = self.i64(field)?;
        match value {
            -1 => Ok(None),
            _ => u64::try_from(value)
                .map(Some)
                .map_err(|_| DecodeError::InvalidValue { field, value }),
        }
    }

    /// A name (client id, topic, group, member): u16 length, at most `NAME_BYTES_MAX`, UTF-8.
    pub(crate) fn name(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.string(field, NAME_BYTES_MAX)
    }

    /// Free text (messages, expressions, settings, addresses): u16 length, UTF-8.
    pub(crate) fn text(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.string(field, usize::from(u16::MAX))
    }

    /// An optional name: a presence byte (0 or 1), then the name when present.
    pub(crate) fn option_name(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, DecodeError> {
        match self.bool(field)? {
            true => self.name(field).map(Some),
            false => Ok(None),
        }
    }

    fn string(&mut self, field: &'static str, limit: usize) -> Result<String, DecodeError> {
        let length = usize::from(self.u16(field)?);
        if length > limit {
            return Err(DecodeError::TooLong {
                field,
                length,
                limit,
            });
        }
        self.need(field, length)?;
        let text = std::str::from_utf8(&self.bytes[..length])
            .map_err(|_| DecodeError::InvalidUtf8 { field })?
            .to_owned();
        self.bytes.advance(length);
        Ok(text)
    }

    /// A byte blob: u32 length, then the bytes, returned as a slice of the frame (no copy).
    pub(crate) fn blob(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let length = self.u32(field)?;
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        self.need(field, length)?;
        Ok(self.bytes.split_to(length))
    }

    /// A list: u32 count, then `count` elements each decoded by `element`. `element_bytes_min`
    /// is the fewest bytes one element can encode to; the count is checked against the bytes
    /// remaining with it, against `LIST_LEN_MAX`, and against the body's element budget before
    /// any room is allocated.
    pub(crate) fn list<T>(
        &mut self,
        field: &'static str,
        element_bytes_min: usize,
        mut element: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.u32(field)?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count > LIST_LEN_MAX {
            return Err(DecodeError::TooLong {
                field,
                length: count,
                limit: LIST_LEN_MAX,
            });
        }
        if count > self.elements_left {
            return Err(DecodeError::TooLong {
                field,
                length: count,
                limit: self.elements_left,
            });
        }
        self.need(field, count.saturating_mul(element_bytes_min))?;
        self.elements_left -= count;
        let mut elements = Vec::with_capacity(count.min(LIST_PREALLOCATE_MAX));
        for _ in 0..count {
            elements.push(element(self)?);
        }
        Ok(elements)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_count_past_the_bytes_remaining_fails_before_decoding() {
        let mut bytes = vec![0xff, 0xff, 0xff, 0xff];
        bytes.extend_from_slice(&[0; 16]);
        let mut reader = Reader::new(Bytes::from(bytes));
        let result = reader.list("items", 4, |r| r.u32("item"));
        assert!(
            matches!(result, Err(DecodeError::TooLong { .. })),
            "{result:?}"
        );

        let mut reader = Reader::new(Bytes::from_static(&[0, 0, 0, 5, 0, 0, 0, 1]));
        let result = reader.list("items", 4, |r| r.u32("item"));
        assert_eq!(
            result,
            Err(DecodeError::Truncated {
                field: "items",
                needed: 16
            })
        );
    }

    #[test]
    fn the_element_budget_is_shared_by_every_list_of_a_body() {
        let count = u32::try_from(LIST_LEN_MAX).unwrap();
        let mut bytes = Vec::new();
        let lists = BODY_ELEMENTS_MAX / LIST_LEN_MAX + 1;
        for _ in 0..lists {
            bytes.extend_from_slice(&count.to_be_bytes());
            bytes.resize(bytes.len() + LIST_LEN_MAX, 0);
        }
        let mut reader = Reader::new(Bytes::from(bytes));
        for list in 0..lists {
            let result = reader.list("items", 1, |r| r.u8("item"));
            assert_eq!(result.is_ok(), list + 1 < lists, "list {list}");
        }
    }

    #[test]
    fn option_u64_rejects_negative_values_other_than_minus_one() {
        let mut reader = Reader::new(Bytes::copy_from_slice(&(-2i64).to_be_bytes()));
        assert!(reader.option_u64("offset").is_err());
        let mut reader = Reader::new(Bytes::copy_from_slice(&(-1i64).to_be_bytes()));
        assert_eq!(reader.option_u64("offset"), Ok(None));
    }

    #[test]
    fn blobs_are_slices_of_the_frame() {
        let frame = Bytes::from_static(&[0, 0, 0, 3, 7, 8, 9, 1]);
        let mut reader = Reader::new(frame.clone());
        let blob = reader.blob("batches").unwrap();
        assert_eq!(&blob[..], &[7, 8, 9]);
        assert_eq!(blob.as_ptr(), frame[4..].as_ptr());
        assert_eq!(
            reader.finish(),
            Err(DecodeError::TrailingBytes { trailing: 1 })
        );
    }
}
