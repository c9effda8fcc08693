//! The server acceptor: accepts connections, decodes frames and dispatches them to a
//! `Service`.
//!
//! Not yet built.
