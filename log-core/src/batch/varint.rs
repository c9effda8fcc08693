//! Zig-zag variable-length integers, the encoding of every number inside a v2 record.
//!
//! Kafka writes a record's lengths, counts and deltas as protobuf-style varints of the
//! zig-zag-mapped value (`(v << 1) ^ (v >> 31)`), so that small negative numbers such as the
//! `-1` of a null key stay one byte long. Seven payload bits go into each byte, least
//! significant group first; the high bit says "another byte follows":
//!
//! ```text
//!   value   zig-zag   bytes
//!       0         0   00
//!      -1         1   01
//!       1         2   02
//!     -64       127   7f
//!      64       128   80 01
//! i32::MIN  u32::MAX  ff ff ff ff 0f        (5 bytes: VARINT_BYTES_MAX)
//! i64::MIN  u64::MAX  ff ×9 01              (10 bytes: VARLONG_BYTES_MAX)
//! ```
//!
//! Decoding reads untrusted bytes, so it fails (never panics) on input that ends inside a
//! number or that carries more bits than the type holds: a fifth varint byte above `0x0f`, a
//! tenth varlong byte above `0x01`, or a continuation bit on the last allowed byte. Kafka's
//! Java reader silently drops such extra bits; rejecting them means a decoded value is always
//! the one the bytes spell out. Zero-padded encodings (`80 00` for 0) stay legal, as in Kafka.

use std::fmt;

/// Most bytes a 32-bit varint takes: ceil(32 / 7).
pub(crate) const VARINT_BYTES_MAX: usize = 5;
/// Most bytes a 64-bit varlong takes: ceil(64 / 7).
pub(crate) const VARLONG_BYTES_MAX: usize = 10;

const PAYLOAD_BITS_PER_BYTE: u32 = 7;
const CONTINUATION_BIT: u8 = 0x80;
const PAYLOAD_MASK: u8 = 0x7f;
/// The fifth varint byte holds bits 28..32: only its low 4 bits may be set.
const VARINT_LAST_BYTE_MAX: u8 = 0x0f;
/// The tenth varlong byte holds bit 63 alone.
const VARLONG_LAST_BYTE_MAX: u8 = 0x01;

/// Why a varint could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The input ended before the last byte of the number.
    Truncated,
    /// The number has more bytes, or more significant bits, than its type holds.
    Overlong,
}

impl VarintError {
    /// A fixed description, for [`crate::error::BatchError::MalformedRecord`].
    pub(crate) fn reason(self) -> &'static str {
        match self {
            VarintError::Truncated => "varint truncated",
            VarintError::Overlong => "varint overlong or out of range",
        }
    }
}

impl fmt::Display for VarintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

fn zigzag_encode_32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

fn zigzag_decode_32(raw: u32) -> i32 {
    ((raw >> 1) as i32) ^ -((raw & 1) as i32)
}

fn zigzag_encode_64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn zigzag_decode_64(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// Encodes `raw` into `buffer`, returning the number of bytes used. `buffer` is sized for the
/// longest varlong so both widths share this one loop.
/// Writes `raw` as a varint at the start of `buffer`; returns the bytes written.
///
/// # Panics
/// If `buffer` is shorter than the encoding (`VARLONG_BYTES_MAX` always suffices).
fn encode_unsigned(mut raw: u64, buffer: &mut [u8]) -> usize {
    let mut used = 0;
    while raw >= u64::from(CONTINUATION_BIT) {
        buffer[used] = (raw as u8 & PAYLOAD_MASK) | CONTINUATION_BIT;
        raw >>= PAYLOAD_BITS_PER_BYTE;
        used += 1;
    }
    buffer[used] = raw as u8;
    used + 1
}

/// Appends the zig-zag varint of `value` to `out` (the tests' way to spell records).
#[cfg(test)]
pub(crate) fn put_varint(out: &mut impl bytes::BufMut, value: i32) {
    let mut buffer = [0u8; VARLONG_BYTES_MAX];
    let used = write_varint(value, &mut buffer);
    out.put_slice(&buffer[..used]);
}

/// Appends the zig-zag varlong of `value` to `out`.
#[cfg(test)]
pub(crate) fn put_varlong(out: &mut impl bytes::BufMut, value: i64) {
    let mut buffer = [0u8; VARLONG_BYTES_MAX];
    let used = write_varlong(value, &mut buffer);
    out.put_slice(&buffer[..used]);
}

/// Writes the zig-zag varint of `value` at the start of `buffer`, which must have room for
/// [`VARINT_BYTES_MAX`] bytes; returns the bytes written.
pub(crate) fn write_varint(value: i32, buffer: &mut [u8]) -> usize {
    encode_unsigned(u64::from(zigzag_encode_32(value)), buffer)
}

/// Writes the zig-zag varlong of `value` at the start of `buffer`, which must have room for
/// [`VARLONG_BYTES_MAX`] bytes; returns the bytes written.
pub(crate) fn write_varlong(value: i64, buffer: &mut [u8]) -> usize {
    encode_unsigned(zigzag_encode_64(value), buffer)
}

/// Bytes [`write_varint`] writes for `value`.
pub(crate) fn varint_size(value: i32) -> usize {
    unsigned_size(u64::from(zigzag_encode_32(value)))
}

/// Bytes [`write_varlong`] writes for `value`.
pub(crate) fn varlong_size(value: i64) -> usize {
    unsigned_size(zigzag_encode_64(value))
}

fn unsigned_size(raw: u64) -> usize {
    // Significant bits, at least one (zero still takes a byte), rounded up to 7-bit groups.
    let bits = (u64::BITS - raw.leading_zeros()).max(1);
    bits.div_ceil(PAYLOAD_BITS_PER_BYTE) as usize
}

/// Decodes a zig-zag varint from the front of `cursor` and advances it past the number.
/// On error the cursor is left where it was.
#[inline]
pub(crate) fn read_varint(cursor: &mut &[u8]) -> Result<i32, VarintError> {
    let raw = read_unsigned(cursor, VARINT_BYTES_MAX, VARINT_LAST_BYTE_MAX)?;
    // read_unsigned admits at most 32 significant bits for this width.
    Ok(zigzag_decode_32(raw as u32))
}

/// Decodes a zig-zag varlong from the front of `cursor` and advances it past the number.
/// On error the cursor is left where it was.
#[inline]
pub(crate) fn read_varlong(cursor: &mut &[u8]) -> Result<i64, VarintError> {
    let raw = read_unsigned(cursor, VARLONG_BYTES_MAX, VARLONG_LAST_BYTE_MAX)?;
    Ok(zigzag_decode_64(raw))
}

/// Inlined where records are decoded (every record of every appended batch is): most numbers
/// in a record (attributes aside) are below 64, one byte, and take no call and no loop.
#[inline]
fn read_unsigned(
    cursor: &mut &[u8],
    bytes_max: usize,
    last_byte_max: u8,
) -> Result<u64, VarintError> {
    if let Some((&first, rest)) = cursor.split_first() {
        if first & CONTINUATION_BIT == 0 {
            *cursor = rest;
            return Ok(u64::from(first));
        }
    }
    read_unsigned_multibyte(cursor, bytes_max, last_byte_max)
}

fn read_unsigned_multibyte(
    cursor: &mut &[u8],
    bytes_max: usize,
    last_byte_max: u8,
) -> Result<u64, VarintError> {
    let input = *cursor;
    let mut raw: u64 = 0;
    for (index, &byte) in input.iter().enumerate().take(bytes_max) {
        let is_last_allowed = index + 1 == bytes_max;
        if is_last_allowed && byte > last_byte_max {
            return Err(VarintError::Overlong);
        }
        raw |= u64::from(byte & PAYLOAD_MASK) << (PAYLOAD_BITS_PER_BYTE * index as u32);
        if byte & CONTINUATION_BIT == 0 {
            *cursor = &input[index + 1..];
            return Ok(raw);
        }
    }
    // The loop returns on any input of `bytes_max` bytes or more (a continuation bit on the
    // last allowed byte puts it above `last_byte_max`), so only a short input gets here.
    Err(VarintError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode32(value: i32) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        out
    }

    fn encode64(value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varlong(&mut out, value);
        out
    }

    fn decode32(bytes: &[u8]) -> Result<(i32, usize), VarintError> {
        let mut cursor = bytes;
        let value = read_varint(&mut cursor)?;
        Ok((value, bytes.len() - cursor.len()))
    }

    fn decode64(bytes: &[u8]) -> Result<(i64, usize), VarintError> {
        let mut cursor = bytes;
        let value = read_varlong(&mut cursor)?;
        Ok((value, bytes.len() - cursor.len()))
    }

    #[test]
    fn known_encodings_match_kafka() {
        assert_eq!(encode32(0), [0x00]);
        assert_eq!(encode32(-1), [0x01]);
        assert_eq!(encode32(1), [0x02]);
        assert_eq!(encode32(-64), [0x7f]);
        assert_eq!(encode32(64), [0x80, 0x01]);
        assert_eq!(encode32(300), [0xd8, 0x04]);
        assert_eq!(encode32(i32::MAX), [0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(encode32(i32::MIN), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(
            encode64(i64::MAX),
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(
            encode64(i64::MIN),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn extremes_round_trip_with_matching_sizes() {
        let values32 = [
            0,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            8191,
            8192,
            i32::MAX,
            i32::MIN,
            i32::MIN + 1,
        ];
        for value in values32 {
            let bytes = encode32(value);
            assert_eq!(bytes.len(), varint_size(value), "{value}");
            assert!(bytes.len() <= VARINT_BYTES_MAX);
            assert_eq!(decode32(&bytes), Ok((value, bytes.len())), "{value}");
        }
        let values64 = [
            0,
            1,
            -1,
            i64::from(i32::MAX) + 1,
            i64::from(i32::MIN) - 1,
            i64::MAX,
            i64::MIN,
        ];
        for value in values64 {
            let bytes = encode64(value);
            assert_eq!(bytes.len(), varlong_size(value), "{value}");
            assert!(bytes.len() <= VARLONG_BYTES_MAX);
            assert_eq!(decode64(&bytes), Ok((value, bytes.len())), "{value}");
        }
    }

    #[test]
    fn every_size_boundary_round_trips() {
        for shift in 0..63 {
            for value in [
                (1i64 << shift) - 1,
                1i64 << shift,
                -(1i64 << shift),
                -(1i64 << shift) - 1,
            ] {
                let bytes = encode64(value);
                assert_eq!(bytes.len(), varlong_size(value));
                assert_eq!(decode64(&bytes), Ok((value, bytes.len())));
                if let Ok(narrow) = i32::try_from(value) {
                    let bytes = encode32(narrow);
                    assert_eq!(bytes.len(), varint_size(narrow));
                    assert_eq!(decode32(&bytes), Ok((narrow, bytes.len())));
                }
            }
        }
    }

    #[test]
    fn decoding_stops_at_the_end_of_the_number() {
        let bytes = [0x80, 0x01, 0xaa, 0xbb];
        assert_eq!(decode32(&bytes), Ok((64, 2)));
        assert_eq!(decode64(&bytes), Ok((64, 2)));
    }

    #[test]
    fn truncated_input_fails_and_leaves_the_cursor() {
        for bytes in [&[][..], &[0x80], &[0xff, 0xff], &[0xff, 0xff, 0xff, 0xff]] {
            let mut cursor = bytes;
            assert_eq!(read_varint(&mut cursor), Err(VarintError::Truncated));
            assert_eq!(cursor.len(), bytes.len());
            assert_eq!(read_varlong(&mut cursor), Err(VarintError::Truncated));
        }
        assert_eq!(decode64(&[0xff; 9]), Err(VarintError::Truncated));
    }

    #[test]
    fn overlong_input_fails() {
        // A continuation bit on the fifth byte: a sixth byte would follow.
        assert_eq!(
            decode32(&[0xff, 0xff, 0xff, 0xff, 0x8f, 0x00]),
            Err(VarintError::Overlong)
        );
        // Bits above 32 in the fifth byte.
        assert_eq!(
            decode32(&[0xff, 0xff, 0xff, 0xff, 0x1f]),
            Err(VarintError::Overlong)
        );
        // Ten bytes are fine for a varlong, eleven are not; bits above 64 are not.
        let mut eleven = [0xff; 11];
        eleven[10] = 0x00;
        assert_eq!(decode64(&eleven), Err(VarintError::Overlong));
        let mut too_big = [0xff; 10];
        too_big[9] = 0x02;
        assert_eq!(decode64(&too_big), Err(VarintError::Overlong));
        // A padded but in-range encoding of 0 still decodes: Kafka accepts it too.
        assert_eq!(decode32(&[0x80, 0x80, 0x00]), Ok((0, 3)));
    }

    #[test]
    fn sizes_of_small_values_are_one_byte() {
        assert_eq!(varint_size(0), 1);
        assert_eq!(varint_size(-1), 1);
        assert_eq!(varint_size(-64), 1);
        assert_eq!(varint_size(64), 2);
        assert_eq!(varlong_size(0), 1);
        assert_eq!(varlong_size(i64::MIN), VARLONG_BYTES_MAX);
        assert_eq!(varint_size(i32::MIN), VARINT_BYTES_MAX);
    }
}
