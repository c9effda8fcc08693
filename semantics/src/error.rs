//! The crate's errors: `Error` for opening and closing a broker, and the mapping of storage
//! and coordinator failures onto the protocol's `ServiceError` codes (one place decides which
//! code a client sees for each failure).

use log_core::Error as LogError;
use wire::{ErrorCode, ServiceError};

/// Why a broker could not open or close.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid broker configuration: {0}")]
    Config(String),
    #[error("log storage: {0}")]
    Log(#[from] log_core::Error),
    #[error("coordinator: {0}")]
    Coordinator(#[from] coordinator::Error),
    #[error(
        "broker id {id} is taken: a live broker at {address} is registered with it; give this \
         broker another --broker-id (a crashed broker's registration expires with its lease)"
    )]
    BrokerIdTaken { id: u32, address: String },
    #[error("{op}: {reason}")]
    Open { op: &'static str, reason: String },
    /// A blocking task (recovery, close) panicked or was cancelled.
    #[error("{op}: background task failed: {reason}")]
    Task { op: &'static str, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The code and message a client sees for a storage failure on `topic`/`queue`.
pub(crate) fn storage(error: &LogError, topic: &str, queue: u32) -> ServiceError {
    let code = match error {
        LogError::DiskFull { .. } => ErrorCode::DiskFull,
        LogError::InvalidBatch(_) => ErrorCode::CorruptBatch,
        LogError::BatchTooLarge { .. } => ErrorCode::MessageTooLarge,
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::InvalidArgument(_) => ErrorCode::InvalidArgument,
        LogError::UnknownPartition { .. } => ErrorCode::UnknownQueue,
        LogError::Closed { .. } => ErrorCode::ShuttingDown,
        LogError::Io { .. }
        | LogError::Poisoned { .. }
        | LogError::TruncatedBeforeSync { .. }
        | LogError::NonContiguousAppend { .. }
        | LogError::SegmentCorrupt { .. }
        | LogError::IndexCorrupt { .. }
        | LogError::CheckpointCorrupt { .. }
        | LogError::Locked { .. } => ErrorCode::StorageError,
        _ => ErrorCode::Unknown,
    };
    ServiceError::new(code, format!("{topic}-{queue}: {error}"))
}

/// The code and message a client sees for a coordinator failure.
pub(crate) fn metadata(error: coordinator::Error) -> ServiceError {
    use coordinator::Error as C;
    let code = match &error {
        C::TopicExists(_) => ErrorCode::TopicExists,
        C::UnknownTopic(_) => ErrorCode::UnknownTopic,
        C::UnknownMember { .. } => ErrorCode::UnknownMember,
        C::IllegalGeneration { .. } => ErrorCode::IllegalGeneration,
        C::InvalidArgument(_) | C::BrokerIdTaken { .. } => ErrorCode::InvalidArgument,
        C::Io { .. } | C::Corrupt { .. } => ErrorCode::StorageError,
        // Retriable: the metadata store (etcd) may be back after a back-off. Every etcd
        // request is bounded by the coordinator's request timeout, so this comes back in
        // bounded time rather than hanging the request.
        C::Unavailable(_) => ErrorCode::Busy,
        // A guarded write met newer metadata (another controller term, a changed queue):
        // what the client asked about moved; it refreshes its route and retries.
        C::Fenced(_) => ErrorCode::NotLeader,
        #[allow(unreachable_patterns)] // the coordinator may grow variants
        _ => ErrorCode::Unknown,
    };
    ServiceError::new(code, error.to_string())
}

/// A blocking task that should never fail did (a panic in log-core, a cancelled runtime).
pub(crate) fn task_failed(what: &str, error: tokio::task::JoinError) -> ServiceError {
    ServiceError::new(ErrorCode::Unknown, format!("{what}: task failed: {error}"))
}

pub(crate) fn shutting_down() -> ServiceError {
    ServiceError::new(ErrorCode::ShuttingDown, "the broker is shutting down")
}

pub(crate) fn unknown_topic(topic: &str) -> ServiceError {
    ServiceError::new(
        ErrorCode::UnknownTopic,
        format!("topic {topic} does not exist"),
    )
}

pub(crate) fn unknown_queue(topic: &str, queue: u32, queues: usize) -> ServiceError {
    ServiceError::new(
        ErrorCode::UnknownQueue,
        format!("topic {topic} has {queues} queues; queue {queue} does not exist"),
    )
}

pub(crate) fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ErrorCode::InvalidArgument, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_failures_are_retriable_codes() {
        let unavailable = metadata(coordinator::Error::Unavailable("etcd down".into()));
        assert_eq!(unavailable.code, ErrorCode::Busy);
        assert!(unavailable.message.contains("etcd down"));
        let fenced = metadata(coordinator::Error::Fenced("deposed".into()));
        assert_eq!(fenced.code, ErrorCode::NotLeader);
        assert!(unavailable.code.is_retriable() && fenced.code.is_retriable());
    }
}
