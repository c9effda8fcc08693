//! The protocol's messages: request and response headers and every typed body.
//!
//! A frame is `length: u32` (bytes that follow, big-endian) then a one-byte frame kind, then a
//! header and a body. `docs/protocol.md` is the byte-level specification; this module is its
//! code. Bodies are encoded by hand over `bytes` (see `codec`): no schema compiler, no serde.
//!
//! Every request type names its API key and its response type through `ApiRequest`, so
//! `Connection::call(request)` returns the right response type or a typed error.
//!
//! Both ends may send requests: the client sends the APIs below `ApiKey::NotifyAssignment`;
//! the broker sends `NotifyAssignment` (and, later, transaction check-back) to a client over
//! the client's own connection.

pub mod group;
pub mod pull;
pub mod route;
pub mod send;
pub mod topic;

pub use group::*;
pub use pull::*;
pub use route::*;
pub use send::*;
pub use topic::*;

/// The largest frame either end accepts, length prefix excluded. A sender never builds a larger
/// one; a receiver closes the connection on a larger length prefix before reading the body.
pub const FRAME_BYTES_MAX: usize = 64 << 20;

/// The largest `max_bytes` a pull may ask for; larger requests are clamped to it.
pub const PULL_BYTES_MAX: u32 = 32 << 20;

/// The longest a pull may wait for data (`max_wait_ms`); longer requests are clamped to it.
pub const PULL_WAIT_MS_MAX: u32 = 60_000;

/// The longest client id, topic, group or member name, in bytes.
pub const NAME_BYTES_MAX: usize = 255;

/// The most elements any list in a body may hold; a decoder rejects a larger count before it
/// allocates.
pub const LIST_LEN_MAX: usize = 100_000;

/// The most elements all the lists of one body may hold together (nested lists included), so
/// that a frame of many short lists cannot make a decoder allocate far more than its size.
pub const BODY_ELEMENTS_MAX: usize = 2 * LIST_LEN_MAX;

/// What the byte after the length prefix says the frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Request = 0,
    Response = 1,
}

/// The APIs, by number. Numbers are permanent once released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum ApiKey {
    ApiVersions = 0,
    Send = 1,
    Pull = 2,
    CreateTopic = 3,
    DeleteTopic = 4,
    ListTopics = 5,
    DescribeTopic = 6,
    QueryRoute = 7,
    Heartbeat = 8,
    LeaveGroup = 9,
    CommitOffsets = 10,
    FetchOffsets = 11,
    ListGroups = 12,
    DescribeGroup = 13,
    ResetOffsets = 14,
    OffsetForTime = 15,
    DescribeCluster = 16,
    /// Broker → client, one-way: a group's assignment changed; heartbeat now to learn it.
    NotifyAssignment = 64,
}

impl ApiKey {
    pub const ALL: [ApiKey; 18] = [
        ApiKey::ApiVersions,
        ApiKey::Send,
        ApiKey::Pull,
        ApiKey::CreateTopic,
        ApiKey::DeleteTopic,
        ApiKey::ListTopics,
        ApiKey::DescribeTopic,
        ApiKey::QueryRoute,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::CommitOffsets,
        ApiKey::FetchOffsets,
        ApiKey::ListGroups,
        ApiKey::DescribeGroup,
        ApiKey::ResetOffsets,
        ApiKey::OffsetForTime,
        ApiKey::DescribeCluster,
        ApiKey::NotifyAssignment,
    ];

    pub fn from_u16(key: u16) -> Option<ApiKey> {
        ApiKey::ALL.iter().copied().find(|k| *k as u16 == key)
    }

    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The versions of this API this build speaks, lowest and highest.
    pub fn versions(self) -> (u16, u16) {
        (0, 0)
    }

    /// Whether this build speaks `version` of this API.
    pub fn supports_version(self, version: u16) -> bool {
        let (lowest, highest) = self.versions();
        (lowest..=highest).contains(&version)
    }
}

/// Bit 0 of `RequestHeader::flags`: the sender expects no response (one-way send,
/// notifications). The receiver never answers it, not even with an error.
pub const FLAG_ONE_WAY: u8 = 0x01;

/// Sent before every request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: u16,
    pub api_version: u16,
    /// Chosen by the sender, unique among its requests in flight on this connection; the
    /// response carries it back.
    pub correlation_id: u32,
    pub flags: u8,
    /// Free text naming the client application (logs, metrics, group descriptions).
    pub client_id: String,
}

impl RequestHeader {
    pub fn is_one_way(&self) -> bool {
        self.flags & FLAG_ONE_WAY != 0
    }
}

/// Sent before every response body. A body follows only when `error_code` is `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHeader {
    pub correlation_id: u32,
    pub error_code: crate::ErrorCode,
    /// Empty on success; a human-readable reason otherwise.
    pub error_message: String,
}

/// `ApiVersions`: which APIs and versions the broker speaks, and who it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiVersionsRequest {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiVersionsResponse {
    pub broker_id: u32,
    /// The broker's release, e.g. "0.1.0".
    pub server_version: String,
    pub apis: Vec<ApiVersionRange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiVersionRange {
    pub api_key: u16,
    pub min_version: u16,
    pub max_version: u16,
}

/// `NotifyAssignment` (broker → client, one-way): the group's generation moved on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyAssignmentRequest {
    pub group: String,
    pub generation: u64,
}

/// Every request body, tagged by API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    ApiVersions(ApiVersionsRequest),
    Send(SendRequest),
    Pull(PullRequest),
    CreateTopic(CreateTopicRequest),
    DeleteTopic(DeleteTopicRequest),
    ListTopics(ListTopicsRequest),
    DescribeTopic(DescribeTopicRequest),
    QueryRoute(QueryRouteRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    CommitOffsets(CommitOffsetsRequest),
    FetchOffsets(FetchOffsetsRequest),
    ListGroups(ListGroupsRequest),
    DescribeGroup(DescribeGroupRequest),
    ResetOffsets(ResetOffsetsRequest),
    OffsetForTime(OffsetForTimeRequest),
    DescribeCluster(DescribeClusterRequest),
    NotifyAssignment(NotifyAssignmentRequest),
}

/// Every response body, tagged by API. APIs whose success carries nothing answer `Empty`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Empty,
    ApiVersions(ApiVersionsResponse),
    Send(SendResponse),
    Pull(PullResponse),
    CreateTopic(TopicDescription),
    ListTopics(ListTopicsResponse),
    DescribeTopic(TopicDescription),
    QueryRoute(QueryRouteResponse),
    Heartbeat(HeartbeatResponse),
    FetchOffsets(FetchOffsetsResponse),
    ListGroups(ListGroupsResponse),
    DescribeGroup(GroupDescription),
    ResetOffsets(ResetOffsetsResponse),
    OffsetForTime(OffsetForTimeResponse),
    DescribeCluster(DescribeClusterResponse),
}

/// A request type with its API key and the response type it expects.
pub trait ApiRequest: Into<Request> {
    const API_KEY: ApiKey;
    type Response;
    /// Picks this API's body out of a decoded response; `None` if the broker sent another kind.
    fn response_from(response: Response) -> Option<Self::Response>;
}

macro_rules! api_request {
    ($request:ident, $key:ident, $response:ty, $pattern:pat => $value:expr) => {
        impl From<$request> for Request {
            fn from(request: $request) -> Request {
                Request::$key(request)
            }
        }

        impl ApiRequest for $request {
            const API_KEY: ApiKey = ApiKey::$key;
            type Response = $response;
            fn response_from(response: Response) -> Option<$response> {
                match response {
                    $pattern => Some($value),
                    _ => None,
                }
            }
        }
    };
}

api_request!(ApiVersionsRequest, ApiVersions, ApiVersionsResponse, Response::ApiVersions(r) => r);
api_request!(SendRequest, Send, SendResponse, Response::Send(r) => r);
api_request!(PullRequest, Pull, PullResponse, Response::Pull(r) => r);
api_request!(CreateTopicRequest, CreateTopic, TopicDescription, Response::CreateTopic(r) => r);
api_request!(DeleteTopicRequest, DeleteTopic, (), Response::Empty => ());
api_request!(ListTopicsRequest, ListTopics, ListTopicsResponse, Response::ListTopics(r) => r);
api_request!(DescribeTopicRequest, DescribeTopic, TopicDescription, Response::DescribeTopic(r) => r);
api_request!(QueryRouteRequest, QueryRoute, QueryRouteResponse, Response::QueryRoute(r) => r);
api_request!(HeartbeatRequest, Heartbeat, HeartbeatResponse, Response::Heartbeat(r) => r);
api_request!(LeaveGroupRequest, LeaveGroup, (), Response::Empty => ());
api_request!(CommitOffsetsRequest, CommitOffsets, (), Response::Empty => ());
api_request!(FetchOffsetsRequest, FetchOffsets, FetchOffsetsResponse, Response::FetchOffsets(r) => r);
api_request!(ListGroupsRequest, ListGroups, ListGroupsResponse, Response::ListGroups(r) => r);
api_request!(DescribeGroupRequest, DescribeGroup, GroupDescription, Response::DescribeGroup(r) => r);
api_request!(ResetOffsetsRequest, ResetOffsets, ResetOffsetsResponse, Response::ResetOffsets(r) => r);
api_request!(OffsetForTimeRequest, OffsetForTime, OffsetForTimeResponse, Response::OffsetForTime(r) => r);
api_request!(DescribeClusterRequest, DescribeCluster, DescribeClusterResponse, Response::DescribeCluster(r) => r);
api_request!(NotifyAssignmentRequest, NotifyAssignment, (), Response::Empty => ());

impl Request {
    pub fn api_key(&self) -> ApiKey {
        match self {
            Request::ApiVersions(_) => ApiKey::ApiVersions,
            Request::Send(_) => ApiKey::Send,
            Request::Pull(_) => ApiKey::Pull,
            Request::CreateTopic(_) => ApiKey::CreateTopic,
            Request::DeleteTopic(_) => ApiKey::DeleteTopic,
            Request::ListTopics(_) => ApiKey::ListTopics,
            Request::DescribeTopic(_) => ApiKey::DescribeTopic,
            Request::QueryRoute(_) => ApiKey::QueryRoute,
            Request::Heartbeat(_) => ApiKey::Heartbeat,
            Request::LeaveGroup(_) => ApiKey::LeaveGroup,
            Request::CommitOffsets(_) => ApiKey::CommitOffsets,
            Request::FetchOffsets(_) => ApiKey::FetchOffsets,
            Request::ListGroups(_) => ApiKey::ListGroups,
            Request::DescribeGroup(_) => ApiKey::DescribeGroup,
            Request::ResetOffsets(_) => ApiKey::ResetOffsets,
            Request::OffsetForTime(_) => ApiKey::OffsetForTime,
            Request::DescribeCluster(_) => ApiKey::DescribeCluster,
            Request::NotifyAssignment(_) => ApiKey::NotifyAssignment,
        }
    }
}

impl Response {
    /// Whether this response is the kind that answers a request for `api_key`.
    pub fn answers(&self, api_key: ApiKey) -> bool {
        matches!(
            (api_key, self),
            (
                ApiKey::DeleteTopic
                    | ApiKey::LeaveGroup
                    | ApiKey::CommitOffsets
                    | ApiKey::NotifyAssignment,
                Response::Empty
            ) | (ApiKey::ApiVersions, Response::ApiVersions(_))
                | (ApiKey::Send, Response::Send(_))
                | (ApiKey::Pull, Response::Pull(_))
                | (ApiKey::CreateTopic, Response::CreateTopic(_))
                | (ApiKey::ListTopics, Response::ListTopics(_))
                | (ApiKey::DescribeTopic, Response::DescribeTopic(_))
                | (ApiKey::QueryRoute, Response::QueryRoute(_))
                | (ApiKey::Heartbeat, Response::Heartbeat(_))
                | (ApiKey::FetchOffsets, Response::FetchOffsets(_))
                | (ApiKey::ListGroups, Response::ListGroups(_))
                | (ApiKey::DescribeGroup, Response::DescribeGroup(_))
                | (ApiKey::ResetOffsets, Response::ResetOffsets(_))
                | (ApiKey::OffsetForTime, Response::OffsetForTime(_))
                | (ApiKey::DescribeCluster, Response::DescribeCluster(_))
        )
    }

    /// The variant's name, for logs and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Empty => "Empty",
            Response::ApiVersions(_) => "ApiVersions",
            Response::Send(_) => "Send",
            Response::Pull(_) => "Pull",
            Response::CreateTopic(_) => "CreateTopic",
            Response::ListTopics(_) => "ListTopics",
            Response::DescribeTopic(_) => "DescribeTopic",
            Response::QueryRoute(_) => "QueryRoute",
            Response::Heartbeat(_) => "Heartbeat",
            Response::FetchOffsets(_) => "FetchOffsets",
            Response::ListGroups(_) => "ListGroups",
            Response::DescribeGroup(_) => "DescribeGroup",
            Response::ResetOffsets(_) => "ResetOffsets",
            Response::OffsetForTime(_) => "OffsetForTime",
            Response::DescribeCluster(_) => "DescribeCluster",
        }
    }
}
