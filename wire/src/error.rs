//! Errors: the codes a broker puts in a response header, and the client-side `Error` type.
//!
//! Error codes are part of the protocol (`docs/protocol.md` lists them); their numbers never
//! change once released. `ErrorCode::is_retriable` is the one place that decides whether a
//! client may retry a request that failed with a code.

use std::fmt;

/// The outcome carried in every response header. `None` means success and is the only code
/// followed by a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    None = 0,
    /// The broker failed in a way it did not expect; the message says how.
    Unknown = 1,
    /// The request body (or header) could not be decoded.
    MalformedRequest = 2,
    /// The API key is not one this broker serves.
    UnsupportedApi = 3,
    /// The API is known but not in this version.
    UnsupportedVersion = 4,
    UnknownTopic = 5,
    UnknownQueue = 6,
    TopicExists = 7,
    /// A topic or group name with characters or a length the broker does not accept.
    InvalidName = 8,
    /// A batch, or a message inside it, exceeds the broker's size limit.
    MessageTooLarge = 9,
    /// A record batch failed validation (CRC, lengths, offsets).
    CorruptBatch = 10,
    /// A pull asked for an offset outside `[log_start, log_end]`.
    OffsetOutOfRange = 11,
    /// This broker does not lead the queue; refresh the route and retry elsewhere.
    NotLeader = 12,
    UnknownGroup = 13,
    /// The member is not (or no longer) in the group: its session expired or it left.
    UnknownMember = 14,
    /// An offset commit or heartbeat carried a generation older than the group's.
    IllegalGeneration = 15,
    /// The operation needs a group with no live members (offset reset).
    GroupNotEmpty = 16,
    /// A field had a value outside what the API accepts; the message names it.
    InvalidArgument = 17,
    /// The broker's disk is full; the write was not applied. Retriable once space is freed.
    DiskFull = 18,
    /// The storage layer failed (I/O error, poisoned partition); the write was not acknowledged.
    StorageError = 19,
    /// The broker is shutting down; retry on a fresh connection.
    ShuttingDown = 20,
    /// The broker could not finish in the time the request allowed.
    Timeout = 21,
    /// The broker refuses work for now (a limit was reached); retry after a back-off.
    Busy = 22,
}

impl ErrorCode {
    /// Every code, in numeric order (for tests and documentation).
    pub const ALL: [ErrorCode; 23] = [
        ErrorCode::None,
        ErrorCode::Unknown,
        ErrorCode::MalformedRequest,
        ErrorCode::UnsupportedApi,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownTopic,
        ErrorCode::UnknownQueue,
        ErrorCode::TopicExists,
        ErrorCode::InvalidName,
        ErrorCode::MessageTooLarge,
        ErrorCode::CorruptBatch,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::NotLeader,
        ErrorCode::UnknownGroup,
        ErrorCode::UnknownMember,
        ErrorCode::IllegalGeneration,
        ErrorCode::GroupNotEmpty,
        ErrorCode::InvalidArgument,
        ErrorCode::DiskFull,
        ErrorCode::StorageError,
        ErrorCode::ShuttingDown,
        ErrorCode::Timeout,
        ErrorCode::Busy,
    ];

    pub fn from_u16(code: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.get(usize::from(code)).copied()
    }

    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// Whether a client may send the same request again (after a back-off or a route refresh)
    /// and expect it to succeed.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader
                | ErrorCode::DiskFull
                | ErrorCode::ShuttingDown
                | ErrorCode::Timeout
                | ErrorCode::Busy
        )
    }

    /// The name used in `docs/protocol.md`, logs and `--json` output.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::None => "NONE",
            ErrorCode::Unknown => "UNKNOWN",
            ErrorCode::MalformedRequest => "MALFORMED_REQUEST",
            ErrorCode::UnsupportedApi => "UNSUPPORTED_API",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::UnknownTopic => "UNKNOWN_TOPIC",
            ErrorCode::UnknownQueue => "UNKNOWN_QUEUE",
            ErrorCode::TopicExists => "TOPIC_EXISTS",
            ErrorCode::InvalidName => "INVALID_NAME",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::CorruptBatch => "CORRUPT_BATCH",
            ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::UnknownGroup => "UNKNOWN_GROUP",
            ErrorCode::UnknownMember => "UNKNOWN_MEMBER",
            ErrorCode::IllegalGeneration => "ILLEGAL_GENERATION",
            ErrorCode::GroupNotEmpty => "GROUP_NOT_EMPTY",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::DiskFull => "DISK_FULL",
            ErrorCode::StorageError => "STORAGE_ERROR",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Busy => "BUSY",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed request as the service reports it: the code goes on the wire, the message is for
/// people (logs, CLI output).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ServiceError {
        ServiceError {
            code,
            message: message.into(),
        }
    }
}

/// Why decoding a frame or a body failed. Decoders return this for any hostile input; they
/// never panic and never allocate more than the bytes they were given justify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated: needed {needed} more bytes for {field}")]
    Truncated { field: &'static str, needed: usize },
    #[error("{field}: length {length} exceeds the limit {limit}")]
    TooLong {
        field: &'static str,
        length: usize,
        limit: usize,
    },
    #[error("{field}: invalid value {value}")]
    InvalidValue { field: &'static str, value: i64 },
    #[error("{field}: not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("{trailing} unexpected bytes after the body")]
    TrailingBytes { trailing: usize },
    #[error("unsupported API key {api_key}")]
    UnsupportedApi { api_key: u16 },
    #[error("API {api_key} does not have version {version}")]
    UnsupportedVersion { api_key: u16, version: u16 },
}

/// Errors the client side of `wire` returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to {addr}: {cause}")]
    Connect { addr: String, cause: std::io::Error },
    #[error("connection I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection is closed")]
    Closed,
    #[error("no response within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the broker answered {0}")]
    Server(#[from] ServiceError),
    #[error("malformed frame from the broker: {0}")]
    Decode(#[from] DecodeError),
    #[error("the broker answered API {got} to a request for API {expected}")]
    UnexpectedResponse { expected: u16, got: u16 },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("building a record batch: {0}")]
    Batch(#[from] log_core::Error),
}

impl Error {
    /// Whether the same request may succeed if sent again: broker codes that say so, and
    /// transport failures (a new connection will be made).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Io(_) | Error::Closed | Error::Timeout(_) => true,
            Error::Server(e) => e.code.is_retriable(),
            _ => false,
        }
    }

    /// The broker's error code, when the broker answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server(e) => Some(e.code),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
