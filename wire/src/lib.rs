//! Runnel's binary protocol, shared by both ends of a connection.
//!
//! This crate will own the frame codec, request / response types, connection multiplexing
//! (pipelined requests matched by correlation id), the server acceptor that dispatches decoded
//! requests to a `Service` trait it defines, and the native Rust client (producer, push and pull
//! consumers, transaction producer, admin). Record batches travel as the raw bytes `log-core`
//! stores. It knows nothing of storage internals, etcd or broker logic.
//!
//! Not yet built: see `docs/ARCHITECTURE.md` for what exists today.
