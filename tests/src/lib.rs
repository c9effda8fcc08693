//! Runnel's cross-crate scenarios: tests that start real `runnel` processes (and, for the
//! cluster, a real etcd) on loopback with temporary data directories.
//!
//! The layering check lives here too: `tests/layering.rs` reads `cargo metadata` and fails when
//! a crate gains a dependency edge the architecture does not allow.
