//! Cluster metadata for Runnel: the `Coordinator` interface and its two implementations.
//!
//! This crate will own the broker registry (lease-bound), topic and queue placement, partition
//! state (leader, leader epoch, ISR, version, changed with compare-and-swap), controller
//! election, consumer-group membership and assignment strategies. `EtcdCoordinator` keeps all
//! of it in etcd; `EmbeddedCoordinator` is the single-node, file-backed default with the same
//! interface. It knows nothing of record bytes or sockets.
//!
//! Not yet built: see `docs/ARCHITECTURE.md` for what exists today.
