//! A multiplexed connection: many requests in flight, responses matched by correlation id,
//! one-way requests, and requests arriving from the other end.
//!
//! Not yet built.
