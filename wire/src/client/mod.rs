//! The native async client: producer, push and pull consumers, admin.
//!
//! Not yet built.
