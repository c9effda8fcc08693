//! The Runnel broker: RocketMQ semantics over `log-core` and the coordinator.
//!
//! This crate will implement `wire`'s `Service` trait: the message model (topic, tags, keys,
//! properties mapped onto record key and headers), topics and queues, send / pull / long poll,
//! consumer offsets kept in an internal topic, cluster / broadcast / ordered consumption,
//! broker-side tag filtering, delay levels as internal schedule topics, transactional half / op
//! topics with check-back, `%RETRY%` and `%DLQ%` groups, and it will drive `log-core`'s ISR
//! replication state machine. It knows nothing of how bytes lie on a socket.
//!
//! Not yet built: see `docs/ARCHITECTURE.md` for what exists today.
