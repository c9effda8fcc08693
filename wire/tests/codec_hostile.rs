//! Hostile bytes through every decoder: truncated frames, lengths past the limits, huge list
//! counts in tiny frames, invalid UTF-8, unknown enum values, trailing bytes and random
//! garbage. Each must fail with a `DecodeError` — never a panic — and allocate no more than
//! the bytes it was given justify (a counting allocator measures it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use proptest::prelude::*;
use wire::codec::{self, Frame, LENGTH_PREFIX_BYTES};
use wire::protocol::*;
use wire::DecodeError;

/// Counts the bytes allocated by the current thread while a measurement is on.
struct CountingAllocator;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count(bytes: usize) {
    let _ = MEASURING.try_with(|measuring| {
        if measuring.get() {
            let _ = ALLOCATED.try_with(|allocated| allocated.set(allocated.get() + bytes));
        }
    });
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result with the bytes it allocated.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATED.with(|allocated| allocated.set(0));
    MEASURING.with(|measuring| measuring.set(true));
    let result = f();
    MEASURING.with(|measuring| measuring.set(false));
    (result, ALLOCATED.with(Cell::get))
}

/// What decoding `input` bytes may allocate at most: the lists' preallocation and growth
/// and the strings stay within a small multiple of the input.
fn allocation_budget(input: usize) -> usize {
    64 * input + (64 << 10)
}

/// Decodes a frame and, if it is a request or response, its body under every API key.
fn decode_everything(frame: Bytes) -> Vec<Result<(), DecodeError>> {
    let mut results = Vec::new();
    match codec::decode_frame(frame) {
        Err(error) => results.push(Err(error)),
        Ok(Frame::Request { header, body }) => {
            results.push(codec::decode_request(&header, body).map(drop));
        }
        Ok(Frame::Response { body, .. }) => {
            for key in ApiKey::ALL {
                results.push(codec::decode_response(key, 0, body.clone()).map(drop));
            }
        }
    }
    results
}

fn request_header_bytes(api_key: ApiKey, client_id: &[u8]) -> Vec<u8> {
    let mut frame = vec![FrameKind::Request as u8];
    frame.extend_from_slice(&api_key.as_u16().to_be_bytes());
    frame.extend_from_slice(&0u16.to_be_bytes());
    frame.extend_from_slice(&7u32.to_be_bytes());
    frame.push(0);
    frame.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    frame.extend_from_slice(client_id);
    frame
}

fn decode_request_bytes(frame: Vec<u8>) -> Result<Request, DecodeError> {
    match codec::decode_frame(Bytes::from(frame))? {
        Frame::Request { header, body } => codec::decode_request(&header, body),
        Frame::Response { .. } => panic!("expected a request frame"),
    }
}

/// A valid request of every API, as frames without their length prefix.
fn sample_requests() -> Vec<Bytes> {
    let requests = vec![
        Request::ApiVersions(ApiVersionsRequest {}),
        Request::Send(SendRequest {
            topic: "orders".into(),
            queue: 3,
            acks: Acks::All,
            timeout_ms: 500,
            batches: Bytes::from(vec![9u8; 5000]),
        }),
        Request::Pull(PullRequest {
            topic: "orders".into(),
            queue: 1,
            offset: 42,
            max_bytes: 1 << 20,
            max_wait_ms: 100,
        }),
        Request::CreateTopic(CreateTopicRequest {
            name: "t".into(),
            queues: 8,
            config: vec![("retention.ms".into(), "1000".into())],
        }),
        Request::Heartbeat(HeartbeatRequest {
            group: "g".into(),
            member_id: "m".into(),
            generation: Some(3),
            subscriptions: vec![Subscription {
                topic: "t".into(),
                expression: "*".into(),
            }],
            session_timeout_ms: 10_000,
            strategy: Default::default(),
        }),
        Request::CommitOffsets(CommitOffsetsRequest {
            group: "g".into(),
            member_id: "m".into(),
            generation: None,
            offsets: vec![OffsetCommit {
                topic: "t".into(),
                queue: 0,
                offset: 10,
            }],
        }),
        Request::ResetOffsets(ResetOffsetsRequest {
            group: "g".into(),
            topic: Some("t".into()),
            to: OffsetSpec::Timestamp(5),
            execute: true,
        }),
        Request::NotifyAssignment(NotifyAssignmentRequest {
            group: "g".into(),
            generation: 9,
        }),
    ];
    requests
        .into_iter()
        .map(|request| {
            let header = RequestHeader {
                api_key: request.api_key().as_u16(),
                api_version: 0,
                correlation_id: 1,
                flags: 0,
                client_id: "client".into(),
            };
            let frame = codec::encode_request(&header, &request).unwrap();
            frame.to_bytes().slice(LENGTH_PREFIX_BYTES..)
        })
        .collect()
}

#[test]
fn every_truncation_of_a_valid_request_fails_cleanly() {
    for frame in sample_requests() {
        for cut in 0..frame.len() {
            let truncated = frame.slice(..cut);
            let (results, allocated) = allocated_by(|| decode_everything(truncated));
            assert!(
                results.iter().all(Result::is_err),
                "a frame cut to {cut} of {} bytes decoded",
                frame.len()
            );
            assert!(
                allocated <= allocation_budget(cut),
                "{allocated} bytes for {cut}"
            );
        }
    }
}

#[test]
fn a_trailing_byte_after_a_valid_body_is_rejected() {
    for frame in sample_requests() {
        let mut extended = frame.to_vec();
        extended.push(0);
        let results = decode_everything(Bytes::from(extended));
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(DecodeError::TrailingBytes { trailing: 1 }))),
            "{results:?}"
        );
    }
}

#[test]
fn length_prefixes_past_the_limit_are_refused() {
    for length in [u32::MAX, FRAME_BYTES_MAX as u32 + 1] {
        assert!(matches!(
            codec::frame_length(length.to_be_bytes()),
            Err(DecodeError::TooLong { .. })
        ));
    }
    assert!(codec::frame_length(0u32.to_be_bytes()).is_err());
    assert_eq!(
        codec::frame_length((FRAME_BYTES_MAX as u32).to_be_bytes()),
        Ok(FRAME_BYTES_MAX)
    );
}

#[test]
fn a_list_count_of_u32_max_in_a_tiny_frame_allocates_nothing_big() {
    let mut frame = request_header_bytes(ApiKey::FetchOffsets, b"c");
    frame.extend_from_slice(&[0, 1, b'g', 0, 1, b't']);
    frame.extend_from_slice(&u32::MAX.to_be_bytes());
    frame.extend_from_slice(&[0; 8]);
    let input = frame.len();
    let (result, allocated) = allocated_by(|| decode_request_bytes(frame));
    assert!(
        matches!(result, Err(DecodeError::TooLong { .. })),
        "{result:?}"
    );
    assert!(
        allocated < 1024,
        "{allocated} bytes allocated for {input} input bytes"
    );

    // Just under LIST_LEN_MAX, still far more than the bytes present.
    let mut frame = request_header_bytes(ApiKey::FetchOffsets, b"c");
    frame.extend_from_slice(&[0, 1, b'g', 0, 1, b't']);
    frame.extend_from_slice(&(LIST_LEN_MAX as u32).to_be_bytes());
    frame.extend_from_slice(&[0; 8]);
    let (result, allocated) = allocated_by(|| decode_request_bytes(frame));
    assert!(
        matches!(result, Err(DecodeError::Truncated { .. })),
        "{result:?}"
    );
    assert!(allocated < 1024, "{allocated} bytes allocated");
}

#[test]
fn nested_lists_share_one_element_budget() {
    // A DescribeGroup response whose members each hold one subscription and one queue: every
    // list is within LIST_LEN_MAX, but together they exceed BODY_ELEMENTS_MAX.
    let members = LIST_LEN_MAX as u32;
    const { assert!(3 * LIST_LEN_MAX > BODY_ELEMENTS_MAX) };
    let mut body = vec![0, 1, b'g', 2];
    body.extend_from_slice(&1u64.to_be_bytes());
    body.extend_from_slice(&members.to_be_bytes());
    for _ in 0..members {
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // member_id, client_id, host
        body.extend_from_slice(&1u32.to_be_bytes()); // one subscription
        body.extend_from_slice(&[0, 0, 0, 0]);
        body.extend_from_slice(&1u32.to_be_bytes()); // one queue
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    body.extend_from_slice(&0u32.to_be_bytes());
    let result = codec::decode_response(ApiKey::DescribeGroup, 0, Bytes::from(body));
    assert!(
        matches!(result, Err(DecodeError::TooLong { .. })),
        "decoded: {:?}",
        result.map(|_| "a response")
    );
}

#[test]
fn invalid_utf8_is_refused() {
    let frame = request_header_bytes(ApiKey::ApiVersions, &[0xff, 0xfe]);
    assert!(matches!(
        decode_request_bytes(frame),
        Err(DecodeError::InvalidUtf8 { .. })
    ));
    let mut frame = request_header_bytes(ApiKey::DeleteTopic, b"c");
    frame.extend_from_slice(&[0, 2, 0xc3, 0x28]);
    assert!(matches!(
        decode_request_bytes(frame),
        Err(DecodeError::InvalidUtf8 { .. })
    ));
}

#[test]
fn names_over_the_limit_are_refused_before_reading_them() {
    let mut frame = request_header_bytes(ApiKey::DeleteTopic, b"c");
    frame.extend_from_slice(&(NAME_BYTES_MAX as u16 + 1).to_be_bytes());
    frame.extend(std::iter::repeat_n(b'a', NAME_BYTES_MAX + 1));
    assert!(matches!(
        decode_request_bytes(frame),
        Err(DecodeError::TooLong { .. })
    ));
}

#[test]
fn unknown_enum_values_are_refused() {
    // acks = 3
    let mut frame = request_header_bytes(ApiKey::Send, b"c");
    frame.extend_from_slice(&[0, 1, b't', 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(
        decode_request_bytes(frame),
        Err(DecodeError::InvalidValue { .. })
    ));
    // include_internal = 2
    let mut frame = request_header_bytes(ApiKey::ListTopics, b"c");
    frame.push(2);
    assert!(matches!(
        decode_request_bytes(frame),
        Err(DecodeError::InvalidValue { .. })
    ));
    // OffsetSpec tag 7
    let mut frame = request_header_bytes(ApiKey::ResetOffsets, b"c");
    frame.extend_from_slice(&[0, 1, b'g', 0, 7, 1]);
    assert!(matches!(
        decode_request_bytes(frame),
        Err(DecodeError::InvalidValue { .. })
    ));
    // generation = -5
    let mut frame = request_header_bytes(ApiKey::CommitOffsets, b"c");
    frame.extend_from_slice(&[0, 1, b'g', 0, 1, b'm']);
    frame.extend_from_slice(&(-5i64).to_be_bytes());
    frame.extend_from_slice(&0u32.to_be_bytes());
    assert!(matches!(
        decode_request_bytes(frame),
        Err(DecodeError::InvalidValue { .. })
    ));
    // group state 9 in a ListGroups response
    let mut body = 1u32.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 1, b'g', 9, 0, 0, 0, 1]);
    assert!(matches!(
        codec::decode_response(ApiKey::ListGroups, 0, Bytes::from(body)),
        Err(DecodeError::InvalidValue { .. })
    ));
    // frame kind 2
    assert!(matches!(
        codec::decode_frame(Bytes::from_static(&[2, 0, 0])),
        Err(DecodeError::InvalidValue { .. })
    ));
}

#[test]
fn unknown_apis_and_versions_are_named() {
    let mut frame = request_header_bytes(ApiKey::ApiVersions, b"c");
    frame[1..3].copy_from_slice(&999u16.to_be_bytes());
    assert_eq!(
        decode_request_bytes(frame),
        Err(DecodeError::UnsupportedApi { api_key: 999 })
    );
    let mut frame = request_header_bytes(ApiKey::ApiVersions, b"c");
    frame[3..5].copy_from_slice(&5u16.to_be_bytes());
    assert_eq!(
        decode_request_bytes(frame),
        Err(DecodeError::UnsupportedVersion {
            api_key: 0,
            version: 5
        })
    );
}

#[test]
fn an_error_response_with_a_body_is_refused() {
    let mut frame = vec![FrameKind::Response as u8, 0, 0, 0, 1, 0, 5, 0, 0];
    frame.push(1);
    assert!(matches!(
        codec::decode_frame(Bytes::from(frame)),
        Err(DecodeError::TrailingBytes { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic_or_allocate_big(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let length = input.len();
        let (_, allocated) = allocated_by(|| decode_everything(Bytes::from(input)));
        prop_assert!(allocated <= allocation_budget(length), "{} bytes for {}", allocated, length);
    }

    #[test]
    fn random_bodies_under_a_valid_header_never_panic(
        api_key in proptest::sample::select(ApiKey::ALL.to_vec()),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut frame = request_header_bytes(api_key, b"c");
        frame.extend_from_slice(&body);
        let length = frame.len();
        let (_, allocated) = allocated_by(|| {
            let _ = decode_request_bytes(frame);
            let _ = codec::decode_response(api_key, 0, Bytes::from(body));
        });
        prop_assert!(allocated <= allocation_budget(length));
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        which in 0usize..8,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let frames = sample_requests();
        let mut frame = frames[which % frames.len()].to_vec();
        for (index, byte) in flips {
            let at = index.index(frame.len());
            frame[at] = byte;
        }
        let length = frame.len();
        let (_, allocated) = allocated_by(|| decode_everything(Bytes::from(frame)));
        prop_assert!(allocated <= allocation_budget(length));
    }
}
