//! Encoding and decoding of frames, headers and every body; `docs/protocol.md` is the
//! byte-level specification this module implements.
//!
//! ```text
//! frame    = length:u32 kind:u8 header body       (length counts every byte after itself)
//! request  = api_key:u16 api_version:u16 correlation_id:u32 flags:u8 client_id:name
//! response = correlation_id:u32 error_code:u16 error_message:text
//! ```
//!
//! All integers are big-endian. A `name` is u16 length + UTF-8 (at most `NAME_BYTES_MAX`), a
//! `text` u16 length + UTF-8, a blob u32 length + bytes, a list u32 count + elements, an
//! `Option<u64>` an i64 with -1 for `None`, an optional name a presence byte then the name.
//! A response body follows only when `error_code` is 0; a response's API is the one of the
//! request it answers, so response bodies are decoded with the caller's API key.
//!
//! Decoding never panics and never allocates from an unchecked length (see `reader`).
//! Record batches (`SendRequest.batches`, `PullResponse.batches`) decode as slices of the
//! frame and encode as chunks of their own (see `writer`): the data path never copies them.

mod body;
mod data;
mod group;
mod reader;
mod stream;
mod writer;

use bytes::Bytes;

pub use stream::{FrameReader, READ_BUFFER_BYTES};
pub use writer::{EncodedFrame, BLOB_INLINE_BYTES_MAX, LENGTH_PREFIX_BYTES};

use crate::error::{DecodeError, ErrorCode, Result, ServiceError};
use crate::protocol::{
    ApiKey, FrameKind, Request, RequestHeader, Response, ResponseHeader, FRAME_BYTES_MAX,
};
use reader::Reader;
use writer::Writer;

/// A frame with its header decoded and its body still bytes: the body's layout depends on the
/// API (for a response, on the request it answers), which the header alone does not settle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Request {
        header: RequestHeader,
        body: Bytes,
    },
    /// `body` is empty unless `header.error_code` is `ErrorCode::None`.
    Response {
        header: ResponseHeader,
        body: Bytes,
    },
}

/// Reads a length prefix: the bytes of the frame that follow it. Fails on a length over
/// `FRAME_BYTES_MAX`, or too short to hold a frame kind, before anything is read or allocated.
pub fn frame_length(prefix: [u8; LENGTH_PREFIX_BYTES]) -> Result<usize, DecodeError> {
    let length = u32::from_be_bytes(prefix);
    let length = usize::try_from(length).unwrap_or(usize::MAX);
    if length > FRAME_BYTES_MAX {
        return Err(DecodeError::TooLong {
            field: "frame length",
            length,
            limit: FRAME_BYTES_MAX,
        });
    }
    if length == 0 {
        return Err(DecodeError::Truncated {
            field: "frame kind",
            needed: 1,
        });
    }
    Ok(length)
}

/// Decodes the kind and header of a frame (the bytes after the length prefix). The body is
/// returned as a slice of `frame`.
pub fn decode_frame(frame: Bytes) -> Result<Frame, DecodeError> {
    let mut r = Reader::new(frame);
    match r.u8("frame kind")? {
        kind if kind == FrameKind::Request as u8 => {
            let header = RequestHeader {
                api_key: r.u16("RequestHeader.api_key")?,
                api_version: r.u16("RequestHeader.api_version")?,
                correlation_id: r.u32("RequestHeader.correlation_id")?,
                flags: r.u8("RequestHeader.flags")?,
                client_id: r.name("RequestHeader.client_id")?,
            };
            Ok(Frame::Request {
                header,
                body: r.into_rest(),
            })
        }
        kind if kind == FrameKind::Response as u8 => {
            let correlation_id = r.u32("ResponseHeader.correlation_id")?;
            let code = r.u16("ResponseHeader.error_code")?;
            let mut error_message = r.text("ResponseHeader.error_message")?;
            // A code from a newer peer is reported as `Unknown` with its number kept in the
            // message, so an old client still fails the call instead of the connection.
            let error_code = ErrorCode::from_u16(code).unwrap_or_else(|| {
                error_message = format!("error code {code}: {error_message}");
                ErrorCode::Unknown
            });
            let header = ResponseHeader {
                correlation_id,
                error_code,
                error_message,
            };
            if header.error_code != ErrorCode::None {
                r.finish()?;
                return Ok(Frame::Response {
                    header,
                    body: Bytes::new(),
                });
            }
            Ok(Frame::Response {
                header,
                body: r.into_rest(),
            })
        }
        kind => Err(DecodeError::InvalidValue {
            field: "frame kind",
            value: i64::from(kind),
        }),
    }
}

/// Decodes a request body for the API and version its header names. An unknown API fails with
/// `DecodeError::UnsupportedApi`, an unknown version with `UnsupportedVersion`; anything else
/// is a malformed body.
pub fn decode_request(header: &RequestHeader, body: Bytes) -> Result<Request, DecodeError> {
    let api_key = ApiKey::from_u16(header.api_key).ok_or(DecodeError::UnsupportedApi {
        api_key: header.api_key,
    })?;
    if !api_key.supports_version(header.api_version) {
        return Err(DecodeError::UnsupportedVersion {
            api_key: header.api_key,
            version: header.api_version,
        });
    }
    let mut r = Reader::new(body);
    let request = body::decode_request_body(api_key, &mut r)?;
    r.finish()?;
    Ok(request)
}

/// Decodes a successful response body to a request for `api_key` at `api_version`.
pub fn decode_response(
    api_key: ApiKey,
    api_version: u16,
    body: Bytes,
) -> Result<Response, DecodeError> {
    if !api_key.supports_version(api_version) {
        return Err(DecodeError::UnsupportedVersion {
            api_key: api_key.as_u16(),
            version: api_version,
        });
    }
    let mut r = Reader::new(body);
    let response = body::decode_response_body(api_key, &mut r)?;
    r.finish()?;
    Ok(response)
}

/// Encodes a request frame. Fails with `Error::InvalidArgument` when the header's API key is
/// not the request's, or a field or the frame exceeds its limit.
pub fn encode_request(header: &RequestHeader, request: &Request) -> Result<EncodedFrame> {
    if header.api_key != request.api_key().as_u16() {
        return Err(crate::Error::InvalidArgument(format!(
            "the header names API {} but the body is {:?}",
            header.api_key,
            request.api_key()
        )));
    }
    let inline = match request {
        Request::Send(send) if send.batches.len() <= BLOB_INLINE_BYTES_MAX => send.batches.len(),
        _ => 0,
    };
    let mut w = Writer::with_inline_bytes(header.client_id.len() + inline);
    w.u8(FrameKind::Request as u8);
    w.u16(header.api_key);
    w.u16(header.api_version);
    w.u32(header.correlation_id);
    w.u8(header.flags);
    w.name("RequestHeader.client_id", &header.client_id)?;
    body::encode_request_body(&mut w, request)?;
    w.finish()
}

/// Encodes a successful response to a request for `api_key`. Fails with
/// `Error::InvalidArgument` when `response` is not the kind that answers `api_key`, or a
/// field or the frame exceeds its limit.
pub fn encode_response(
    correlation_id: u32,
    api_key: ApiKey,
    response: &Response,
) -> Result<EncodedFrame> {
    let inline = match response {
        Response::Pull(pull) if pull.batches.len() <= BLOB_INLINE_BYTES_MAX => pull.batches.len(),
        _ => 0,
    };
    let mut w = Writer::with_inline_bytes(inline);
    w.u8(FrameKind::Response as u8);
    w.u32(correlation_id);
    w.u16(ErrorCode::None.as_u16());
    w.u16(0);
    body::encode_response_body(&mut w, api_key, response)?;
    w.finish()
}

/// Encodes an error response (header only). Never fails: a message too long for the header is
/// cut short, and `ErrorCode::None` (which would promise a body) is sent as `Unknown`.
pub fn encode_error_response(correlation_id: u32, error: &ServiceError) -> EncodedFrame {
    let code = match error.code {
        ErrorCode::None => ErrorCode::Unknown,
        code => code,
    };
    let mut w = Writer::with_inline_bytes(error.message.len());
    w.u8(FrameKind::Response as u8);
    w.u32(correlation_id);
    w.u16(code.as_u16());
    w.text_truncated(&error.message);
    match w.finish() {
        Ok(frame) => frame,
        // A header of at most 64 KiB is always far below FRAME_BYTES_MAX.
        Err(_) => unreachable!("an error response header exceeded FRAME_BYTES_MAX"),
    }
}

#[cfg(test)]
mod tests;
