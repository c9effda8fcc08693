//! Fuzzes every decoder of the wire protocol: the stream splitter (`FrameReader`), the frame
//! and header decoder, and every request and response body. The failures it looks for are a
//! panic, an allocation the fuzzer's `-rss_limit_mb` / `-malloc_limit_mb` catches, and a
//! decoded request or response that does not survive encode → decode unchanged.
//!
//! The first input byte picks a mode, so random bytes reach past the header:
//! - 0 mod 3: the rest is a byte stream, fed to `FrameReader` in pieces whose sizes come from
//!   the input; every frame is decoded as far as it goes.
//! - 1 mod 3: the rest is one frame after its length prefix.
//! - 2 mod 3: the next two bytes are an API key, the rest a body: decoded as that API's
//!   request and as its response.

#![no_main]

use bytes::{BufMut, Bytes};
use libfuzzer_sys::fuzz_target;
use wire::codec::{self, Frame, FrameReader};
use wire::protocol::{ApiKey, RequestHeader};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => stream(rest),
        1 => frame(Bytes::copy_from_slice(rest)),
        _ => body(rest),
    }
});

fn stream(input: &[u8]) {
    let mut reader = FrameReader::new(input.first().is_some_and(|b| b % 2 == 0));
    let mut rest = input;
    while !rest.is_empty() {
        let piece = usize::from(rest[0]).max(1).min(rest.len());
        let (now, later) = rest.split_at(piece);
        reader.read_buffer().put_slice(now);
        rest = later;
        loop {
            match reader.next_frame() {
                Ok(Some(bytes)) => frame(bytes),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

fn frame(bytes: Bytes) {
    match codec::decode_frame(bytes) {
        Ok(Frame::Request { header, body }) => request(&header, body),
        Ok(Frame::Response { header, body }) => {
            if header.error_code == wire::ErrorCode::None {
                for api_key in ApiKey::ALL {
                    response(api_key, body.clone());
                }
            }
        }
        Err(_) => {}
    }
}

fn body(input: &[u8]) {
    let [high, low, body @ ..] = input else {
        return;
    };
    let api_key = u16::from_be_bytes([*high, *low]);
    let header = RequestHeader {
        api_key,
        api_version: 0,
        correlation_id: 1,
        flags: 0,
        client_id: String::from("fuzz"),
    };
    let body = Bytes::copy_from_slice(body);
    request(&header, body.clone());
    if let Some(api_key) = ApiKey::from_u16(api_key) {
        response(api_key, body);
    }
}

/// Decodes a request body; whatever decodes must re-encode to something that decodes the same.
fn request(header: &RequestHeader, body: Bytes) {
    let Ok(request) = codec::decode_request(header, body) else {
        return;
    };
    let encoded = codec::encode_request(header, &request).expect("a decoded request re-encodes");
    let bytes = encoded.to_bytes().slice(codec::LENGTH_PREFIX_BYTES..);
    let Ok(Frame::Request {
        header: again,
        body,
    }) = codec::decode_frame(bytes)
    else {
        panic!("a re-encoded request frame does not decode");
    };
    assert_eq!(&again, header);
    assert_eq!(codec::decode_request(&again, body).as_ref(), Ok(&request));
}

fn response(api_key: ApiKey, body: Bytes) {
    let Ok(response) = codec::decode_response(api_key, 0, body) else {
        return;
    };
    let encoded =
        codec::encode_response(9, api_key, &response).expect("a decoded response re-encodes");
    let bytes = encoded.to_bytes().slice(codec::LENGTH_PREFIX_BYTES..);
    let Ok(Frame::Response { body, .. }) = codec::decode_frame(bytes) else {
        panic!("a re-encoded response frame does not decode");
    };
    assert_eq!(
        codec::decode_response(api_key, 0, body).as_ref(),
        Ok(&response)
    );
}
