//! `log-core`: Runnel's durable partition log, usable on its own.
//!
//! A partition log is an append-only sequence of record batches (Kafka's RecordBatch v2 byte
//! layout) kept as segment files with sparse offset and time indexes. This crate owns the batch
//! format and its compression codecs, segments and indexes, the partition log (leader and
//! follower appends, reads, truncation, retention), crash recovery, flush policies with group
//! commit, the leader-epoch cache, and a manager for many partitions in one data directory.
//!
//! It knows nothing of topics' meaning, the network or the cluster: the broker (`semantics`)
//! and people who embed the log as a local durable spool both use it as it is.
//!
//! ```no_run
//! use log_core::{BatchBuilder, Compression, LeaderEpoch, LogConfig, PartitionLog};
//!
//! let log = PartitionLog::open("./spool", LogConfig::default())?;
//! let mut batch = BatchBuilder::new(Compression::Zstd);
//! batch.append(1_700_000_000_000, None, Some(b"hello"), &[]);
//! let mut bytes = batch.build()?;
//! let appended = log.append_as_leader(&mut bytes, LeaderEpoch(0))?;
//! println!("stored at offsets {}..={}", appended.first_offset, appended.last_offset);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batch;
pub mod clock;
pub mod error;
mod fsio;
/// Test hooks that make fsyncs fail (feature `fault-injection`, never in production builds).
#[cfg(feature = "fault-injection")]
pub use fsio::fault;
pub mod log;
pub mod manager;
pub mod segment;
pub mod types;

pub use batch::{BatchBuilder, BatchHeader, Compression, Header, Record, RecordBatch};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{BatchError, Error, Result};
pub use log::{AppendInfo, FlushPolicy, LogConfig, PartitionLog, ReadResult, VerifyReport};
pub use manager::{LogManager, ManagerConfig};
pub use types::{FilePosition, LeaderEpoch, Offset, RelativeOffset, TimestampMs};
