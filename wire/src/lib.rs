//! Runnel's binary protocol, shared by both ends of a connection, and the native Rust client.
//!
//! - `protocol`: request / response headers and typed bodies; `codec` encodes and decodes them
//!   (`docs/protocol.md` is the byte-level specification).
//! - `connection`: one multiplexed TCP connection (pipelined requests matched by correlation
//!   id, one-way requests, requests from the other end).
//! - `server`: the acceptor that decodes frames and dispatches them to a `Service`, the trait
//!   the broker (`semantics`) implements.
//! - `message`: the message model (topic, tag, keys, properties, body, id) and its mapping onto
//!   `log-core` records.
//! - `client`: `Producer`, `PushConsumer`, `PullConsumer`, `Admin`.
//!
//! Record batches travel as the raw bytes `log-core` stores. This crate knows nothing of
//! storage internals, etcd or broker logic.

pub mod client;
pub mod codec;
pub mod connection;
pub mod error;
pub mod message;
pub mod protocol;
pub mod server;
pub mod service;

pub use connection::{Connection, ConnectionConfig, InboundHandler};
pub use error::{DecodeError, Error, ErrorCode, Result, ServiceError};
pub use message::{Message, MessageId, ReceivedMessage};
pub use server::{Server, ServerConfig};
pub use service::{Peer, RequestContext, Service};
