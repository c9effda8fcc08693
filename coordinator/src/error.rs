//! The coordinator's errors: one enum, each variant naming what failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("member {member_id} is not in group {group}")]
    UnknownMember { group: String, member_id: String },
    #[error("group {group} is at generation {current}, not {given}")]
    IllegalGeneration {
        group: String,
        given: u64,
        current: u64,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A guarded write was refused: the writer is no longer the controller, or what it
    /// changes changed since it read it. Not retriable as is: read again first.
    #[error("write refused: {0}")]
    Fenced(String),
    /// Another live broker is registered with this id (at another address).
    #[error("broker id {id} is taken by the live broker at {address}")]
    BrokerIdTaken { id: u32, address: String },
    /// The metadata store cannot be reached (etcd down); retriable.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    pub fn is_retriable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
