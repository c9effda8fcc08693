//! The `Body` trait every encodable body implements, list helpers, and the dispatch from an
//! API key to a `Request` or `Response` variant. The API key is not in a response: the
//! receiver knows it from the request it sent, so responses decode by the key the caller
//! passes in.

use super::reader::Reader;
use super::writer::Writer;
use crate::error::{DecodeError, Error, Result};
use crate::protocol::{
    ApiKey, ApiVersionRange, ApiVersionsRequest, ApiVersionsResponse, NotifyAssignmentRequest,
    Request, Response,
};

/// A body, or a part of one, with its wire layout.
pub(crate) trait Body: Sized {
    /// The fewest bytes a value encodes to: how list counts are checked against the bytes
    /// remaining before anything is allocated. Must never exceed the true minimum.
    const BYTES_MIN: usize;
    fn encode(&self, w: &mut Writer) -> Result<()>;
    fn decode(r: &mut Reader) -> Result<Self, DecodeError>;
}

pub(crate) fn encode_list<T: Body>(w: &mut Writer, field: &str, elements: &[T]) -> Result<()> {
    w.list(field, elements, |w, element| element.encode(w))
}

pub(crate) fn decode_list<T: Body>(
    r: &mut Reader,
    field: &'static str,
) -> Result<Vec<T>, DecodeError> {
    r.list(field, T::BYTES_MIN, T::decode)
}

impl Body for ApiVersionsRequest {
    const BYTES_MIN: usize = 0;
    fn encode(&self, _: &mut Writer) -> Result<()> {
        Ok(())
    }
    fn decode(_: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ApiVersionsRequest {})
    }
}

impl Body for ApiVersionsResponse {
    const BYTES_MIN: usize = 4 + 2 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.u32(self.broker_id);
        w.text("ApiVersionsResponse.server_version", &self.server_version)?;
        encode_list(w, "ApiVersionsResponse.apis", &self.apis)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ApiVersionsResponse {
            broker_id: r.u32("ApiVersionsResponse.broker_id")?,
            server_version: r.text("ApiVersionsResponse.server_version")?,
            apis: decode_list(r, "ApiVersionsResponse.apis")?,
        })
    }
}

impl Body for ApiVersionRange {
    const BYTES_MIN: usize = 2 * 3;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.u16(self.api_key);
        w.u16(self.min_version);
        w.u16(self.max_version);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ApiVersionRange {
            api_key: r.u16("ApiVersionRange.api_key")?,
            min_version: r.u16("ApiVersionRange.min_version")?,
            max_version: r.u16("ApiVersionRange.max_version")?,
        })
    }
}

impl Body for NotifyAssignmentRequest {
    const BYTES_MIN: usize = 2 + 8;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("NotifyAssignmentRequest.group", &self.group)?;
        w.u64(self.generation);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(NotifyAssignmentRequest {
            group: r.name("NotifyAssignmentRequest.group")?,
            generation: r.u64("NotifyAssignmentRequest.generation")?,
        })
    }
}

pub(crate) fn encode_request_body(w: &mut Writer, request: &Request) -> Result<()> {
    match request {
        Request::ApiVersions(r) => r.encode(w),
        Request::Send(r) => r.encode(w),
        Request::Pull(r) => r.encode(w),
        Request::CreateTopic(r) => r.encode(w),
        Request::DeleteTopic(r) => r.encode(w),
        Request::ListTopics(r) => r.encode(w),
        Request::DescribeTopic(r) => r.encode(w),
        Request::QueryRoute(r) => r.encode(w),
        Request::Heartbeat(r) => r.encode(w),
        Request::LeaveGroup(r) => r.encode(w),
        Request::CommitOffsets(r) => r.encode(w),
        Request::FetchOffsets(r) => r.encode(w),
        Request::ListGroups(r) => r.encode(w),
        Request::DescribeGroup(r) => r.encode(w),
        Request::ResetOffsets(r) => r.encode(w),
        Request::OffsetForTime(r) => r.encode(w),
        Request::DescribeCluster(r) => r.encode(w),
        Request::NotifyAssignment(r) => r.encode(w),
    }
}

pub(crate) fn decode_request_body(api_key: ApiKey, r: &mut Reader) -> Result<Request, DecodeError> {
    Ok(match api_key {
        ApiKey::ApiVersions => Request::ApiVersions(Body::decode(r)?),
        ApiKey::Send => Request::Send(Body::decode(r)?),
        ApiKey::Pull => Request::Pull(Body::decode(r)?),
        ApiKey::CreateTopic => Request::CreateTopic(Body::decode(r)?),
        ApiKey::DeleteTopic => Request::DeleteTopic(Body::decode(r)?),
        ApiKey::ListTopics => Request::ListTopics(Body::decode(r)?),
        ApiKey::DescribeTopic => Request::DescribeTopic(Body::decode(r)?),
        ApiKey::QueryRoute => Request::QueryRoute(Body::decode(r)?),
        ApiKey::Heartbeat => Request::Heartbeat(Body::decode(r)?),
        ApiKey::LeaveGroup => Request::LeaveGroup(Body::decode(r)?),
        ApiKey::CommitOffsets => Request::CommitOffsets(Body::decode(r)?),
        ApiKey::FetchOffsets => Request::FetchOffsets(Body::decode(r)?),
        ApiKey::ListGroups => Request::ListGroups(Body::decode(r)?),
        ApiKey::DescribeGroup => Request::DescribeGroup(Body::decode(r)?),
        ApiKey::ResetOffsets => Request::ResetOffsets(Body::decode(r)?),
        ApiKey::OffsetForTime => Request::OffsetForTime(Body::decode(r)?),
        ApiKey::DescribeCluster => Request::DescribeCluster(Body::decode(r)?),
        ApiKey::NotifyAssignment => Request::NotifyAssignment(Body::decode(r)?),
    })
}

/// Encodes a successful response to an `api_key` request; refuses a variant that does not
/// answer that API (a service bug the receiver could not otherwise detect).
pub(crate) fn encode_response_body(
    w: &mut Writer,
    api_key: ApiKey,
    response: &Response,
) -> Result<()> {
    if !response.answers(api_key) {
        return Err(Error::InvalidArgument(format!(
            "a {} response does not answer API {api_key:?}",
            response.kind()
        )));
    }
    match response {
        Response::Empty => Ok(()),
        Response::ApiVersions(r) => r.encode(w),
        Response::Send(r) => r.encode(w),
        Response::Pull(r) => r.encode(w),
        Response::CreateTopic(r) | Response::DescribeTopic(r) => r.encode(w),
        Response::ListTopics(r) => r.encode(w),
        Response::QueryRoute(r) => r.encode(w),
        Response::Heartbeat(r) => r.encode(w),
        Response::FetchOffsets(r) => r.encode(w),
        Response::ListGroups(r) => r.encode(w),
        Response::DescribeGroup(r) => r.encode(w),
        Response::ResetOffsets(r) => r.encode(w),
        Response::OffsetForTime(r) => r.encode(w),
        Response::DescribeCluster(r) => r.encode(w),
    }
}

pub(crate) fn decode_response_body(
    api_key: ApiKey,
    r: &mut Reader,
) -> Result<Response, DecodeError> {
    Ok(match api_key {
        ApiKey::DeleteTopic
        | ApiKey::LeaveGroup
        | ApiKey::CommitOffsets
        | ApiKey::NotifyAssignment => Response::Empty,
        ApiKey::ApiVersions => Response::ApiVersions(Body::decode(r)?),
        ApiKey::Send => Response::Send(Body::decode(r)?),
        ApiKey::Pull => Response::Pull(Body::decode(r)?),
        ApiKey::CreateTopic => Response::CreateTopic(Body::decode(r)?),
        ApiKey::ListTopics => Response::ListTopics(Body::decode(r)?),
        ApiKey::DescribeTopic => Response::DescribeTopic(Body::decode(r)?),
        ApiKey::QueryRoute => Response::QueryRoute(Body::decode(r)?),
        ApiKey::Heartbeat => Response::Heartbeat(Body::decode(r)?),
        ApiKey::FetchOffsets => Response::FetchOffsets(Body::decode(r)?),
        ApiKey::ListGroups => Response::ListGroups(Body::decode(r)?),
        ApiKey::DescribeGroup => Response::DescribeGroup(Body::decode(r)?),
        ApiKey::ResetOffsets => Response::ResetOffsets(Body::decode(r)?),
        ApiKey::OffsetForTime => Response::OffsetForTime(Body::decode(r)?),
        ApiKey::DescribeCluster => Response::DescribeCluster(Body::decode(r)?),
    })
}
