//! Message bodies as a function of their message number, and body sizes from a seeded
//! distribution, so a consumer checks every body it gets against what must have been sent
//! without the producer remembering anything.
//!
//! A body is cut into 64-byte blocks; each block is either fresh bytes from a SplitMix64
//! generator seeded by the message number or, about half the time, a copy of the block before
//! it. The repeats give lz4 and zstd something to compress, so compressed batches really hold
//! compressed blocks (not stored ones) and their decoders are exercised; the fresh blocks keep
//! any two messages' bodies apart.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The message property carrying a message's number (decimal).
pub const NUMBER_PROPERTY: &str = "n";

/// Mixed into every body's generator; changing it changes every body.
const BODY_SEED: u64 = 0x5255_4E4E_454C_0001;
/// Bytes of one block: fresh or a copy of the previous one.
const BLOCK_BYTES: usize = 64;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast even in a debug build, and good enough to
/// tell bodies apart.
struct SplitMix64(u64);

impl SplitMix64 {
    fn for_message(number: u64) -> SplitMix64 {
        SplitMix64(BODY_SEED ^ number.wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The body of message `number`, `len` bytes long.
pub fn body(number: u64, len: usize) -> Vec<u8> {
    let mut generator = SplitMix64::for_message(number);
    let mut body = Vec::with_capacity(len);
    while body.len() < len {
        let start = body.len();
        let block = (len - start).min(BLOCK_BYTES);
        let repeat = start >= BLOCK_BYTES && generator.next() & 1 == 0;
        if repeat {
            body.extend_from_within(start - BLOCK_BYTES..start - BLOCK_BYTES + block);
            continue;
        }
        while body.len() < start + block {
            let word = generator.next().to_le_bytes();
            let take = (start + block - body.len()).min(word.len());
            body.extend_from_slice(&word[..take]);
        }
    }
    body
}

/// Whether `received` is exactly the body of message `number` at `len` bytes.
pub fn body_matches(number: u64, len: usize, received: &[u8]) -> bool {
    received.len() == len && received == body(number, len).as_slice()
}

/// `count` sizes in `1..=max`, log-uniform (each power of two about equally likely), from a
/// seeded generator; the first two are the extremes 1 and `max`, so both always occur.
///
/// The mean of a log-uniform size over `[1, max]` is about `max / ln(max)`: for 64 KiB, 5.9 KB.
pub fn log_uniform_sizes(count: usize, max: usize, seed: u64) -> Vec<usize> {
    assert!(max >= 1, "sizes need a positive maximum");
    let mut rng = StdRng::seed_from_u64(seed);
    let span = ((max + 1) as f64).ln();
    (0..count)
        .map(|i| match i {
            0 => 1,
            1 => max,
            _ => ((rng.gen::<f64>() * span).exp() as usize).clamp(1, max),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_deterministic_distinct_and_checkable() {
        let a = body(7, 1000);
        assert_eq!(a, body(7, 1000));
        assert_ne!(a, body(8, 1000));
        assert!(body_matches(7, 1000, &a));
        let mut flipped = a.clone();
        flipped[999] ^= 1;
        assert!(!body_matches(7, 1000, &flipped));
        assert!(
            !body_matches(7, 999, &a),
            "a body of the wrong length is not intact"
        );
        assert_eq!(body(3, 1).len(), 1);
        assert!(body(3, 0).is_empty());
    }

    #[test]
    fn sizes_cover_the_range_with_the_extremes() {
        let sizes = log_uniform_sizes(10_000, 65_536, 1);
        assert_eq!((sizes[0], sizes[1]), (1, 65_536));
        assert!(sizes.iter().all(|s| (1..=65_536).contains(s)));
        let small = sizes.iter().filter(|&&s| s < 256).count();
        let large = sizes.iter().filter(|&&s| s >= 256).count();
        // ln(256) / ln(65537) is about half: log-uniform, not uniform.
        assert!(
            small > 4_000 && large > 4_000,
            "{small} small, {large} large"
        );
    }
}
