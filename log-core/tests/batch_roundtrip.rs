//! Behaviour: a record batch survives build → bytes → read unchanged in every codec, matches
//! Kafka's byte layout exactly, and hostile bytes never make the reader panic or allocate
//! without bound.
//!
//! - `known_answer_*`: a batch written out byte by byte from the Kafka spec (internals §1.2)
//!   equals what the builder produces.
//! - `round_trip`: random records (null and non-null keys and values up to 4 KiB, up to three
//!   headers, any timestamps) come back equal, at offsets 0..n, for none, lz4 and zstd.
//! - `hostile_*`: random bytes, flipped bytes, truncations, and random records regions under a
//!   correct header and CRC only ever produce `Ok` or `Err`.
//! - `decompression_bombs_*`: a blob that expands past `DECOMPRESSED_BYTES_MAX` fails with
//!   `DecompressedTooLarge`, and the reading thread's heap never grows much past the limit
//!   (measured by a counting allocator; the zstd C library's own buffers are not counted).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use log_core::batch::{split_batches, DECOMPRESSED_BYTES_MAX};
use log_core::{BatchBuilder, BatchError, Compression, Offset, Record, RecordBatch};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Known answer

/// Two records, written out from the spec by hand:
/// record 0: timestamp 1_700_000_000_000, null key, value "hi", header "trace" = "ab";
/// record 1: timestamp 1_700_000_000_005, key "k1", null value, no headers.
fn known_answer_records() -> Vec<u8> {
    let mut records = Vec::new();
    // record 0, 17 bytes after its length
    records.extend_from_slice(&[
        0x22, // length 17, zig-zag
        0x00, // attributes
        0x00, // timestamp delta 0
        0x00, // offset delta 0
        0x01, // key length -1: null
        0x04, // value length 2
        b'h', b'i', //
        0x02, // headers count 1
        0x0a, // header key length 5
        b't', b'r', b'a', b'c', b'e', //
        0x04, // header value length 2
        b'a', b'b',
    ]);
    // record 1, 8 bytes after its length
    records.extend_from_slice(&[
        0x10, // length 8
        0x00, // attributes
        0x0a, // timestamp delta 5
        0x02, // offset delta 1
        0x04, // key length 2
        b'k', b'1', //
        0x01, // value length -1: null
        0x00, // headers count 0
    ]);
    records
}

/// A v2 batch header + records, with the CRC-32C computed over bytes 21..end.
fn assemble_batch(
    attributes: i16,
    records_count: i32,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    records: &[u8],
) -> Vec<u8> {
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // 0: base offset
    batch.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes()); // 8: length
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // 12: partition leader epoch
    batch.push(2); // 16: magic
    batch.extend_from_slice(&[0; 4]); // 17: CRC, filled below
    batch.extend_from_slice(&attributes.to_be_bytes()); // 21
    batch.extend_from_slice(&last_offset_delta.to_be_bytes()); // 23
    batch.extend_from_slice(&base_timestamp.to_be_bytes()); // 27
    batch.extend_from_slice(&max_timestamp.to_be_bytes()); // 35
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // 43: producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // 51: producer epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // 53: base sequence
    batch.extend_from_slice(&records_count.to_be_bytes()); // 57
    assert_eq!(batch.len(), 61);
    batch.extend_from_slice(records);
    reseal(&mut batch);
    batch
}

/// Rewrites the CRC field for the bytes as they are now.
fn reseal(batch: &mut [u8]) {
    if batch.len() >= 21 {
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

#[test]
fn known_answer_crc_is_castagnoli() {
    // The CRC-32C check value from RFC 3720 / the CRC catalogue: not CRC-32 (0xcbf43926).
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
}

#[test]
fn known_answer_builder_matches_the_spec_byte_for_byte() {
    let base = 1_700_000_000_000;
    let expected = assemble_batch(0, 2, 1, base, base + 5, &known_answer_records());
    assert_eq!(expected.len(), 61 + 27);

    let mut builder = BatchBuilder::new(Compression::None);
    builder.append(base, None, Some(b"hi"), &[("trace", Some(b"ab"))]);
    builder.append(base + 5, Some(b"k1"), None, &[]);
    let built = builder.build().unwrap();
    assert_eq!(&built[..], &expected[..]);

    let stored_crc = u32::from_be_bytes(built[17..21].try_into().unwrap());
    assert_eq!(stored_crc, crc32c::crc32c(&expected[21..]));

    let batch = RecordBatch::new(Bytes::from(expected)).unwrap();
    let records: Vec<Record> = batch.records().unwrap().map(Result::unwrap).collect();
    assert_eq!(records[0].offset, Offset(0));
    assert_eq!(records[0].key, None);
    assert_eq!(records[0].headers[0].key_str(), Some("trace"));
    assert_eq!(records[1].offset, Offset(1));
    assert_eq!(records[1].timestamp, base + 5);
    assert_eq!(records[1].value, None);
}

// ---------------------------------------------------------------------------------------------
// Round trip

#[derive(Clone, Debug)]
struct InputRecord {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

const FIELD_BYTES_MAX: usize = 4 * 1024;

fn codec() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Lz4),
        Just(Compression::Zstd)
    ]
}

fn field(bytes_max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    // Mostly compressible bytes (a repeated small alphabet) with some noise, so the codecs
    // see both kinds of input.
    prop::option::of(prop_oneof![
        prop::collection::vec(0u8..4, 0..=bytes_max),
        prop::collection::vec(any::<u8>(), 0..=bytes_max),
    ])
}

fn input_record() -> impl Strategy<Value = InputRecord> {
    let header = ("\\PC{0,12}", field(64));
    (
        any::<i64>(),
        field(FIELD_BYTES_MAX),
        field(FIELD_BYTES_MAX),
        prop::collection::vec(header, 0..=3),
    )
        .prop_map(|(timestamp, key, value, headers)| InputRecord {
            timestamp,
            key,
            value,
            headers,
        })
}

fn build(codec: Compression, records: &[InputRecord]) -> Bytes {
    let mut builder = BatchBuilder::new(codec);
    for record in records {
        let headers: Vec<(&str, Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_deref()))
            .collect();
        builder.append(
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &headers,
        );
    }
    builder.build().unwrap().freeze()
}

/// Feeds bytes through every reading entry point and drains everything: no input may panic,
/// and borrowed views must read exactly what the owned records do.
fn read_everything(bytes: Bytes) {
    if let Ok(batch) = RecordBatch::new(bytes.clone()) {
        if let Ok(records) = batch.records() {
            let owned: Vec<_> = records.collect();
            assert_eq!(owned, read_views(&batch), "views and records differ");
        }
    }
    for batch in split_batches(bytes) {
        if let Ok(records) = batch.and_then(|batch| batch.records()) {
            records.for_each(drop);
        }
    }
}

/// The batch's records read through `Records::next_view`, each view checked against its own
/// owned form and turned into it.
fn read_views(batch: &RecordBatch) -> Vec<Result<Record, BatchError>> {
    let mut records = batch.records().unwrap();
    let mut out = Vec::new();
    while let Some(item) = records.next_view() {
        out.push(item.map(|view| {
            let record = view.to_record();
            assert_eq!(view.key(), record.key.as_deref());
            assert_eq!(view.value(), record.value.as_deref());
            assert_eq!(view.header_count(), record.headers.len());
            let headers: Vec<_> = view.headers().collect();
            let owned: Vec<_> = record
                .headers
                .iter()
                .map(|h| (&h.key[..], h.value.as_deref()))
                .collect();
            assert_eq!(headers, owned);
            record
        }));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn round_trip(codec in codec(), input in prop::collection::vec(input_record(), 1..24)) {
        let bytes = build(codec, &input);
        let batch = RecordBatch::new(bytes.clone()).unwrap();
        prop_assert_eq!(batch.bytes(), &bytes);
        prop_assert_eq!(batch.header().compression(), codec);
        prop_assert_eq!(batch.header().records_count as usize, input.len());
        prop_assert_eq!(batch.header().max_timestamp, input.iter().map(|r| r.timestamp).max().unwrap());
        let output: Vec<Record> = batch.records().unwrap().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(output.len(), input.len());
        let viewed: Vec<Record> = read_views(&batch).into_iter().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(&viewed, &output);
        for (index, (read, written)) in output.iter().zip(&input).enumerate() {
            prop_assert_eq!(read.offset, Offset(index as u64));
            prop_assert_eq!(read.timestamp, written.timestamp);
            prop_assert_eq!(read.key.as_deref(), written.key.as_deref());
            prop_assert_eq!(read.value.as_deref(), written.value.as_deref());
            prop_assert_eq!(read.headers.len(), written.headers.len());
            for (read, (key, value)) in read.headers.iter().zip(&written.headers) {
                prop_assert_eq!(read.key_str(), Some(key.as_str()));
                prop_assert_eq!(read.value.as_deref(), value.as_deref());
            }
        }
    }

    #[test]
    fn hostile_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        read_everything(Bytes::from(bytes));
    }

    #[test]
    fn hostile_flips_and_truncations(
        codec in codec(),
        input in prop::collection::vec(input_record(), 1..6),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..6),
        cut in any::<prop::sample::Index>(),
        resealed in any::<bool>(),
    ) {
        let mut bytes = build(codec, &input).to_vec();
        for (position, mask) in flips {
            let position = position.index(bytes.len());
            bytes[position] ^= mask;
        }
        // Cutting at the full length keeps everything: flips alone are a case too.
        bytes.truncate(cut.index(bytes.len() + 1));
        // With a fixed-up CRC the damage gets past validation into the record decoder.
        if resealed {
            reseal(&mut bytes);
        }
        // A second copy behind the first exercises split_batches past a damaged batch.
        let mut twice = bytes.clone();
        twice.extend_from_slice(&bytes);
        read_everything(Bytes::from(bytes));
        read_everything(Bytes::from(twice));
    }

    #[test]
    fn hostile_records_under_a_valid_header(
        attributes in prop_oneof![Just(0i16), Just(3), Just(4), Just(8), any::<i16>()],
        records_count in prop_oneof![0i32..8, any::<i32>()],
        last_offset_delta in prop_oneof![0i32..8, any::<i32>()],
        region in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let batch = assemble_batch(attributes, records_count, last_offset_delta, 0, 0, &region);
        read_everything(Bytes::from(batch));
    }
}

// ---------------------------------------------------------------------------------------------
// Decompression bombs

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
}

/// Counts heap bytes per thread, so a test can see the most its own thread held at once
/// while other tests run in parallel.
struct CountingAllocator;

impl CountingAllocator {
    fn record(delta: isize) {
        let _ = LIVE_BYTES.try_with(|live| {
            let now = live.get() + delta;
            live.set(now);
            let _ = PEAK_BYTES.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the bookkeeping only
// touches const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size() as isize);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size() as isize);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::record(-(layout.size() as isize));
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::record(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `work` and returns how many more heap bytes this thread held at its peak than before.
fn peak_heap_growth(work: impl FnOnce()) -> usize {
    let start = LIVE_BYTES.with(Cell::get);
    PEAK_BYTES.with(|peak| peak.set(start));
    work();
    (PEAK_BYTES.with(Cell::get) - start).max(0) as usize
}

/// Bytes the bombs expand to: past the limit by a margin.
const BOMB_BYTES: usize = DECOMPRESSED_BYTES_MAX + (4 << 20);
/// Heap a reader may use beyond the limit: its buffer's one spare byte plus codec buffers
/// (lz4 keeps two 64 KiB blocks; zstd's window lives in C and is not counted).
const HEAP_OVER_LIMIT_BYTES_MAX: usize = 1 << 20;

/// A zstd blob of BOMB_BYTES zeros: one 1 MiB frame repeated, since the decoder reads
/// concatenated frames. Cheap to make, unlike compressing 68 MiB.
fn zstd_bomb() -> Vec<u8> {
    let frame = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
    frame.repeat(BOMB_BYTES >> 20)
}

/// An lz4 frame of BOMB_BYTES zeros: one frame holding the same 64 KiB block many times.
/// The frame descriptor (magic, FLG, BD, header checksum) is 7 bytes when neither content
/// size nor dictionary is set, and the frame ends with a 4-byte zero end mark.
fn lz4_bomb() -> Vec<u8> {
    let info = lz4_flex::frame::FrameInfo::new()
        .block_size(lz4_flex::frame::BlockSize::Max64KB)
        .block_mode(lz4_flex::frame::BlockMode::Independent);
    let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
    std::io::Write::write_all(&mut encoder, &[0u8; 64 * 1024]).unwrap();
    let one = encoder.finish().unwrap();
    let (descriptor, rest) = one.split_at(7);
    let (block, end_mark) = rest.split_at(rest.len() - 4);
    assert_eq!(end_mark, [0; 4]);
    let mut frame = descriptor.to_vec();
    for _ in 0..BOMB_BYTES / (64 * 1024) {
        frame.extend_from_slice(block);
    }
    frame.extend_from_slice(end_mark);
    frame
}

fn check_bomb(codec: Compression, blob: Vec<u8>) {
    assert!(
        blob.len() < 1 << 20,
        "{codec} bomb is small: {}",
        blob.len()
    );
    let batch = assemble_batch(codec.attribute_bits(), 1, 0, 0, 0, &blob);
    let batch = RecordBatch::new(Bytes::from(batch)).unwrap();
    let mut result = None;
    let growth = peak_heap_growth(|| result = Some(batch.records().map(|_| ())));
    assert_eq!(
        result.unwrap(),
        Err(BatchError::DecompressedTooLarge {
            limit: DECOMPRESSED_BYTES_MAX
        })
    );
    assert!(
        growth <= DECOMPRESSED_BYTES_MAX + HEAP_OVER_LIMIT_BYTES_MAX,
        "{codec}: reader grew the heap by {growth} bytes"
    );
}

#[test]
fn decompression_bombs_zstd_stop_at_the_limit() {
    check_bomb(Compression::Zstd, zstd_bomb());
}

#[test]
fn decompression_bombs_lz4_stop_at_the_limit() {
    check_bomb(Compression::Lz4, lz4_bomb());
}

#[test]
fn empty_builder_is_an_error_not_a_batch() {
    assert_eq!(
        BatchBuilder::new(Compression::None).build().err(),
        Some(BatchError::Empty)
    );
}
