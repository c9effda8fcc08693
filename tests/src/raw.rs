//! Request frames built by the codec, for tests that talk to a broker over a raw socket
//! (to send what no client would, or to leave responses unread).

use bytes::Bytes;
use wire::codec;
use wire::protocol::{Request, RequestHeader};

/// `request` as a whole frame (length prefix included), API version 0.
pub fn request_frame(request: &Request, correlation_id: u32, client_id: &str) -> Bytes {
    let header = RequestHeader {
        api_key: request.api_key().as_u16(),
        api_version: 0,
        correlation_id,
        flags: 0,
        client_id: client_id.to_owned(),
    };
    codec::encode_request(&header, request)
        .expect("a request the codec built encodes")
        .to_bytes()
}
