//! Batch compression codecs: which ones exist, their attribute bits, and bounded decoding.
//!
//! Kafka compresses a batch's whole records region (everything after the 61-byte header) as
//! one blob; the header, records count included, stays plain. The codec lives in attribute
//! bits 0-2:
//!
//! ```text
//! bits  codec   here
//!    0  none    Compression::None
//!    1  gzip    rejected: BatchError::UnsupportedCompression(1)
//!    2  snappy  rejected: BatchError::UnsupportedCompression(2)
//!    3  lz4     Compression::Lz4   LZ4 *frame* format, independent 64 KiB blocks
//!    4  zstd    Compression::Zstd  zstd frames, level 3 (Kafka's default)
//! ```
//!
//! Decompressed size is attacker-controlled: a few kilobytes of zstd can claim gigabytes.
//! [`Compression::decompress`] therefore never trusts a frame's content-size field, reads the
//! output in bounded steps through `std::io::Read`, and fails with
//! [`BatchError::DecompressedTooLarge`] as soon as the output passes its limit. Its own buffer
//! never grows past `limit + 1` bytes. The codecs keep fixed working buffers on top of that:
//! lz4 at most two blocks (a block is at most 8 MiB in lz4_flex, 64 KiB as Kafka writes them),
//! zstd at most its window, capped at 64 MiB (`ZSTD_WINDOW_LOG_MAX`).

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use crate::error::BatchError;

/// zstd level used for every batch this crate writes: Kafka's default (KIP-390).
pub(crate) const ZSTD_LEVEL: i32 = 3;
/// log2 of the largest zstd window the decoder accepts, so the decoder allocates at most
/// 2^26 bytes = 64 MiB for its window however large a window a hostile frame declares. That
/// covers every level up to 21 when streaming; a level-22 stream declares 2^27 and is refused.
const ZSTD_WINDOW_LOG_MAX: u32 = 26;
/// Growth step of the decompression buffer before doubling takes over: small batches stay
/// small, large ones take a logarithmic number of reallocations.
const DECOMPRESS_CHUNK_BYTES: usize = 64 * 1024;

const CODEC_NONE: i16 = 0;
const CODEC_LZ4: i16 = 3;
const CODEC_ZSTD: i16 = 4;

/// Compression codec of a batch, in attribute bits 0-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec named by a batch's attributes. gzip, snappy and the unassigned ids 5-7 are
    /// refused rather than guessed at.
    pub fn from_attributes(attributes: i16) -> Result<Compression, BatchError> {
        match attributes & super::ATTR_COMPRESSION_MASK {
            CODEC_NONE => Ok(Compression::None),
            CODEC_LZ4 => Ok(Compression::Lz4),
            CODEC_ZSTD => Ok(Compression::Zstd),
            // The mask keeps three bits, so the id fits a u8.
            other => Err(BatchError::UnsupportedCompression(other as u8)),
        }
    }

    /// The attribute bits naming this codec.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => CODEC_NONE,
            Compression::Lz4 => CODEC_LZ4,
            Compression::Zstd => CODEC_ZSTD,
        }
    }

    /// Kafka's name for the codec, as in `compression.type`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Appends the compressed form of `input` to `out`.
    pub(crate) fn compress(self, input: &[u8], out: &mut Vec<u8>) -> Result<(), BatchError> {
        let result = match self {
            Compression::None => {
                out.extend_from_slice(input);
                Ok(())
            }
            Compression::Lz4 => compress_lz4(input, out),
            Compression::Zstd => compress_zstd(input, out),
        };
        result.map_err(|error| BatchError::Compression {
            codec: self.name(),
            reason: error.to_string(),
        })
    }

    /// Decompresses `input`, failing with [`BatchError::DecompressedTooLarge`] once the output
    /// passes `limit` bytes. Allocates at most `limit + 1` bytes for the output, whatever the
    /// input claims.
    pub(crate) fn decompress(self, input: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
        let codec = self.name();
        let decompression_error = |error: io::Error| BatchError::Decompression {
            codec,
            reason: error.to_string(),
        };
        match self {
            Compression::None => {
                if input.len() > limit {
                    return Err(BatchError::DecompressedTooLarge { limit });
                }
                Ok(input.to_vec())
            }
            Compression::Lz4 => decompress_lz4(input, limit, decompression_error),
            Compression::Zstd => {
                let mut decoder =
                    zstd::stream::read::Decoder::with_buffer(input).map_err(decompression_error)?;
                decoder
                    .window_log_max(ZSTD_WINDOW_LOG_MAX)
                    .map_err(decompression_error)?;
                // The decoder runs on through concatenated frames and fails on a frame cut short.
                read_bounded(&mut decoder, limit, decompression_error)
            }
        }
    }
}

fn compress_lz4(input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    // Kafka's reader (KafkaLZ4BlockInputStream) wants independent blocks of a size it knows;
    // 64 KiB is what Kafka's own producer writes.
    let frame = lz4_flex::frame::FrameInfo::new()
        .block_size(lz4_flex::frame::BlockSize::Max64KB)
        .block_mode(lz4_flex::frame::BlockMode::Independent);
    let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(frame, out);
    encoder.write_all(input)?;
    encoder.finish().map_err(io::Error::other)?;
    Ok(())
}

fn compress_zstd(input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let mut encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
    // A pledged size lets zstd shrink its window to the input, so readers of small batches
    // need small windows; the size also lands in the frame header (readers here ignore it).
    encoder.set_pledged_src_size(Some(input.len() as u64))?;
    encoder.include_contentsize(true)?;
    encoder.write_all(input)?;
    encoder.finish()?;
    Ok(())
}

fn decompress_lz4(
    input: &[u8],
    limit: usize,
    decompression_error: impl Fn(io::Error) -> BatchError,
) -> Result<Vec<u8>, BatchError> {
    let mut decoder = lz4_flex::frame::FrameDecoder::new(input);
    let mut output = Vec::new();
    // lz4_flex's reader reports the end of each frame as end of input; carry on while input
    // remains so concatenated frames decode whole and trailing garbage fails as a bad frame.
    // Every pass consumes at least a frame header; the check makes sure the loop ends anyway.
    loop {
        let remaining_before = decoder.get_ref().len();
        output = read_bounded_into(&mut decoder, output, limit, &decompression_error)?;
        let remaining = decoder.get_ref().len();
        if remaining == 0 {
            return Ok(output);
        }
        if remaining == remaining_before {
            return Err(decompression_error(io::Error::new(
                io::ErrorKind::InvalidData,
                "lz4 decoder stopped before the end of its input",
            )));
        }
    }
}

/// Reads all of `reader`, keeping at most `limit` bytes; see [`read_bounded_into`].
fn read_bounded(
    reader: &mut impl Read,
    limit: usize,
    decompression_error: impl Fn(io::Error) -> BatchError,
) -> Result<Vec<u8>, BatchError> {
    read_bounded_into(reader, Vec::new(), limit, &decompression_error)
}

/// Appends everything `reader` yields to `output`, failing once the total passes `limit`.
///
/// The buffer doubles from [`DECOMPRESS_CHUNK_BYTES`] but never past `limit + 1` (one byte
/// beyond the limit tells "exactly at the limit" from "over it"), with `reserve_exact` so the
/// allocation is what we asked for. It is zeroed once per growth, not per read: `read` needs
/// an initialised slice, and safe code cannot hand it spare capacity.
fn read_bounded_into(
    reader: &mut impl Read,
    mut output: Vec<u8>,
    limit: usize,
    decompression_error: &impl Fn(io::Error) -> BatchError,
) -> Result<Vec<u8>, BatchError> {
    let cap = limit.saturating_add(1);
    let mut filled = output.len();
    loop {
        if filled == output.len() {
            if filled >= cap {
                return Err(BatchError::DecompressedTooLarge { limit });
            }
            let grown = filled
                .saturating_mul(2)
                .max(DECOMPRESS_CHUNK_BYTES)
                .min(cap);
            output.reserve_exact(grown - filled);
            output.resize(grown, 0);
        }
        match reader.read(&mut output[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(decompression_error(error)),
        }
    }
    if filled > limit {
        return Err(BatchError::DecompressedTooLarge { limit });
    }
    output.truncate(filled);
    Ok(output)
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A codec name [`Compression::from_str`] does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownCompression(pub String);

impl fmt::Display for UnknownCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown or unsupported compression {:?} (expected none, lz4 or zstd)",
            self.0
        )
    }
}

impl std::error::Error for UnknownCompression {}

impl FromStr for Compression {
    type Err = UnknownCompression;

    /// Parses Kafka's codec names, ignoring case. gzip and snappy are refused here too.
    fn from_str(name: &str) -> Result<Compression, UnknownCompression> {
        [Compression::None, Compression::Lz4, Compression::Zstd]
            .into_iter()
            .find(|codec| codec.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownCompression(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::Zstd];

    /// Compressible, non-trivial input: a repeated counter.
    fn sample(bytes: usize) -> Vec<u8> {
        (0..bytes).map(|i| (i % 251) as u8).collect()
    }

    fn compressed(codec: Compression, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        codec.compress(input, &mut out).unwrap();
        out
    }

    /// A blob of `bytes` zeros, compressed by streaming so the test never holds the zeros.
    fn zero_bomb(codec: Compression, bytes: usize) -> Vec<u8> {
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0;
        let mut out = Vec::new();
        match codec {
            Compression::Lz4 => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(&mut out);
                while written < bytes {
                    let step = chunk.len().min(bytes - written);
                    encoder.write_all(&chunk[..step]).unwrap();
                    written += step;
                }
                encoder.finish().unwrap();
            }
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(&mut out, 1).unwrap();
                while written < bytes {
                    let step = chunk.len().min(bytes - written);
                    encoder.write_all(&chunk[..step]).unwrap();
                    written += step;
                }
                encoder.finish().unwrap();
            }
            Compression::None => unreachable!("no bomb without a codec"),
        }
        out
    }

    #[test]
    fn attributes_map_to_codecs() {
        for codec in CODECS {
            assert_eq!(
                Compression::from_attributes(codec.attribute_bits()),
                Ok(codec)
            );
            // Bits above 0-2 (timestamp type, transactional, control) do not matter.
            let with_flags = codec.attribute_bits() | 0b111000;
            assert_eq!(Compression::from_attributes(with_flags), Ok(codec));
        }
        for id in [1, 2, 5, 6, 7] {
            assert_eq!(
                Compression::from_attributes(id),
                Err(BatchError::UnsupportedCompression(id as u8))
            );
        }
        assert_eq!(
            Compression::from_attributes(-1),
            Err(BatchError::UnsupportedCompression(7))
        );
    }

    #[test]
    fn names_parse_back_ignoring_case() {
        for codec in CODECS {
            assert_eq!(codec.name().parse(), Ok(codec));
            assert_eq!(codec.name().to_uppercase().parse(), Ok(codec));
            assert_eq!(codec.to_string(), codec.name());
        }
        assert_eq!(
            "gzip".parse::<Compression>(),
            Err(UnknownCompression("gzip".into()))
        );
        assert!("".parse::<Compression>().is_err());
    }

    #[test]
    fn every_codec_round_trips() {
        for codec in CODECS {
            for size in [0, 1, 100, 64 * 1024, 64 * 1024 + 1, 300_000] {
                let input = sample(size);
                let blob = compressed(codec, &input);
                let output = codec.decompress(&blob, size).unwrap();
                assert_eq!(output, input, "{codec} {size}");
            }
        }
    }

    #[test]
    fn compress_appends() {
        for codec in CODECS {
            let mut out = b"prefix".to_vec();
            codec.compress(b"payload", &mut out).unwrap();
            assert!(out.starts_with(b"prefix"));
            assert_eq!(codec.decompress(&out[6..], 100).unwrap(), b"payload");
        }
    }

    #[test]
    fn output_exactly_at_the_limit_is_accepted_and_one_more_byte_is_not() {
        for codec in CODECS {
            let input = sample(70_000);
            let blob = compressed(codec, &input);
            assert_eq!(codec.decompress(&blob, input.len()).unwrap(), input);
            assert_eq!(
                codec.decompress(&blob, input.len() - 1),
                Err(BatchError::DecompressedTooLarge {
                    limit: input.len() - 1
                })
            );
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        const LIMIT_BYTES: usize = 1 << 20;
        for codec in [Compression::Lz4, Compression::Zstd] {
            let blob = zero_bomb(codec, 64 << 20);
            // lz4 tops out near 255:1, zstd far above: both blobs are smaller than the limit.
            assert!(blob.len() < LIMIT_BYTES, "{codec}: {}", blob.len());
            assert_eq!(
                codec.decompress(&blob, LIMIT_BYTES),
                Err(BatchError::DecompressedTooLarge { limit: LIMIT_BYTES })
            );
        }
    }

    #[test]
    fn output_buffer_never_grows_past_the_limit() {
        let mut zeros = io::repeat(0).take(10 << 20);
        let error = |e: io::Error| BatchError::Decompression {
            codec: "test",
            reason: e.to_string(),
        };
        let limit = 200_000;
        // Stop one byte short of failing to look at the buffer: capacity is limit + 1 at most.
        let output = read_bounded(&mut (&mut zeros).take(limit as u64), limit, error).unwrap();
        assert_eq!(output.len(), limit);
        assert!(output.capacity() <= limit + 1, "{}", output.capacity());
        assert_eq!(
            read_bounded(&mut zeros, limit, error),
            Err(BatchError::DecompressedTooLarge { limit })
        );
    }

    #[test]
    fn concatenated_frames_decode_whole() {
        for codec in [Compression::Lz4, Compression::Zstd] {
            let mut blob = compressed(codec, b"first ");
            blob.extend(compressed(codec, b"second"));
            assert_eq!(codec.decompress(&blob, 100).unwrap(), b"first second");
        }
    }

    #[test]
    fn damaged_frames_fail_without_panicking() {
        for codec in [Compression::Lz4, Compression::Zstd] {
            let input = sample(200_000);
            let blob = compressed(codec, &input);
            // Trailing garbage and every truncation of the header and the tail.
            let mut trailing = blob.clone();
            trailing.extend_from_slice(b"garbage!");
            assert!(
                codec.decompress(&trailing, 1 << 20).is_err(),
                "{codec} trailing"
            );
            for cut in (0..blob.len())
                .step_by(97)
                .chain(blob.len() - 8..blob.len())
            {
                let result = codec.decompress(&blob[..cut], 1 << 20);
                if let Ok(output) = result {
                    // lz4 frames without an end mark read as complete: the output is then a
                    // prefix, which the record parser rejects by the records count.
                    assert!(input.starts_with(&output), "{codec} cut {cut}");
                }
            }
            for position in (0..blob.len()).step_by(13) {
                let mut flipped = blob.clone();
                flipped[position] ^= 0x5a;
                let _ = codec.decompress(&flipped, 1 << 20);
            }
        }
    }
}
