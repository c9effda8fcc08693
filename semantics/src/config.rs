//! The broker's settings: what a `runnel broker` TOML file holds, with a default for every
//! field, and how they become `log-core` settings.
//!
//! ```toml
//! broker_id = 0
//! listen = "127.0.0.1:10911"
//! data_dir = "./data"
//! flush = "interval:1s"        # "os" | "every-write" | "interval:<humantime>"
//! retention = "7d"
//! max_message_bytes = 4194304
//! # A member of a cluster on etcd (default: no endpoints, the embedded coordinator):
//! etcd = ["http://127.0.0.1:2379"]
//! cluster = "runnel"
//! lease_ttl = "10s"            # how long a silent broker stays registered (and controller)
//! ```
//!
//! Unknown fields are rejected, so a misspelt setting fails loudly instead of silently
//! keeping its default.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use log_core::{FlushPolicy, LogConfig, ManagerConfig};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Default address the broker listens on for clients.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:10911";
/// Default address of the metrics HTTP endpoint.
pub const ADMIN_LISTEN_DEFAULT: &str = "127.0.0.1:10912";
/// Default largest `Send` payload, applied to a request's batches: the largest batch one
/// message the client accepts can make (a 4 MiB body, RocketMQ's `maxMessageSize`, plus its
/// metadata and framing), so no valid message is refused by default.
pub const MAX_MESSAGE_BYTES_DEFAULT: u32 = wire::message::MESSAGE_BATCH_BYTES_MAX as u32;
/// Default number of queues of the consumer-offsets topic when the broker creates it.
pub const OFFSETS_QUEUES_DEFAULT: u32 = 8;
/// The most queues the consumer-offsets topic may be created with.
pub const OFFSETS_QUEUES_MAX: u32 = 256;
/// Default records an offsets queue gains between two compacting snapshots.
pub const OFFSETS_COMPACT_RECORDS_DEFAULT: u64 = 100_000;
/// Default name of the cluster a broker joins on etcd.
pub const CLUSTER_DEFAULT: &str = "runnel";
/// Default period of the task that refreshes the `runnel_group_lag` gauge.
pub const GROUP_LAG_INTERVAL_DEFAULT: Duration = Duration::from_secs(10);

/// When appended messages reach the disk; what survives a power cut is documented on
/// `log_core::FlushPolicy`. Written `os`, `every-write` or `interval:<duration>` (humantime
/// syntax, e.g. `interval:500ms`; `interval=<duration>` as `runnel log append` spells it is
/// accepted too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Flush {
    /// The kernel writes back; a process crash loses nothing, a power cut may.
    #[default]
    Os,
    /// Every append is synced before it is acknowledged (appends waiting together share one
    /// `fdatasync`).
    EveryWrite,
    /// A background flusher syncs every log at this period.
    Interval(Duration),
}

impl Flush {
    pub fn policy(self) -> FlushPolicy {
        match self {
            Flush::Os => FlushPolicy::Os,
            Flush::EveryWrite => FlushPolicy::EveryWrite,
            Flush::Interval(period) => FlushPolicy::Interval(period),
        }
    }
}

impl FromStr for Flush {
    type Err = String;

    fn from_str(spec: &str) -> Result<Flush, String> {
        match spec {
            "os" => Ok(Flush::Os),
            "every-write" => Ok(Flush::EveryWrite),
            _ => {
                let period = spec
                    .strip_prefix("interval:")
                    .or_else(|| spec.strip_prefix("interval="))
                    .ok_or_else(|| {
                        format!(
                            "unknown flush policy {spec:?}: expected os, every-write or \
                             interval:<duration>"
                        )
                    })?;
                let period = humantime::parse_duration(period.trim())
                    .map_err(|e| format!("flush interval {period:?}: {e}"))?;
                if period.is_zero() {
                    return Err("flush interval must be positive; use every-write to sync \
                                every append"
                        .into());
                }
                Ok(Flush::Interval(period))
            }
        }
    }
}

impl TryFrom<String> for Flush {
    type Error = String;

    fn try_from(spec: String) -> Result<Flush, String> {
        spec.parse()
    }
}

impl fmt::Display for Flush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flush::Os => f.write_str("os"),
            Flush::EveryWrite => f.write_str("every-write"),
            Flush::Interval(period) => {
                write!(f, "interval:{}", humantime::format_duration(*period))
            }
        }
    }
}

/// Everything a broker is configured with. Every field has a default (see each field).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// This broker's id in the cluster. Default 0.
    pub broker_id: u32,
    /// `host:port` the binary listens on for clients; also the address clients are told to
    /// connect to unless `advertised_address` is set. Default `127.0.0.1:10911`.
    pub listen: String,
    /// The `host:port` route answers give clients, when it differs from `listen` (a wildcard
    /// listen address, NAT, containers). Default: none.
    pub advertised_address: Option<String>,
    /// Root of the broker's files: message logs in `logs/`, internal topics (consumer
    /// offsets) in `internal/`, coordinator state in `meta/`. Default `./data`.
    pub data_dir: PathBuf,
    /// Flush policy of every log. Default `os`.
    pub flush: Flush,
    /// Roll a queue's active segment when it would grow past this many bytes. Default 1 GiB.
    pub segment_bytes: u64,
    /// Delete sealed segments whose newest message is older than this (humantime syntax).
    /// Default `7d`.
    #[serde(with = "humantime_duration")]
    pub retention: Duration,
    /// Delete a queue's oldest sealed segments while it holds more than this. Default: no limit.
    pub retention_bytes: Option<u64>,
    /// The largest `Send` payload (its batches together) the broker accepts; larger sends are
    /// answered `MessageTooLarge`. Also the largest single batch a log accepts. Default 4 MiB +
    /// 128 KiB (`MAX_MESSAGE_BYTES_DEFAULT`).
    pub max_message_bytes: u32,
    /// `host:port` of the metrics HTTP endpoint the binary serves. Default `127.0.0.1:10912`.
    pub admin_listen: Option<String>,
    /// Queues of the consumer-offsets topic when this broker creates it; an existing topic
    /// keeps its count (groups are hashed onto its queues). Default 8.
    pub offsets_queues: u32,
    /// Records an offsets queue may gain after its last snapshot before it is compacted
    /// (once they also pass twice its live offsets). Default 100000.
    pub offsets_compact_records: u64,
    /// How often the `runnel_group_lag` gauge is refreshed for every group (humantime
    /// syntax). Default `10s`.
    #[serde(with = "humantime_duration")]
    pub group_lag_interval: Duration,
    /// etcd endpoints (`http://host:port`) of the cluster's metadata store. Empty: the broker
    /// runs alone on the embedded coordinator under `data_dir/meta`. Default: empty.
    pub etcd: Vec<String>,
    /// The cluster's name: its metadata lives under `/runnel/<cluster>/` in etcd. Only used
    /// with `etcd`. Default `runnel`.
    pub cluster: String,
    /// How long the broker stays registered in etcd after its last keep-alive (whole
    /// seconds, at least 1): a crashed broker's queues and, if it was the controller, its
    /// control pass on after this. Shorter fails over sooner; too short risks losing the
    /// registration to a pause. Only used with `etcd`. Default `10s`.
    #[serde(with = "humantime_duration")]
    pub lease_ttl: Duration,
    /// The most bytes pulls may hold at once, from their read to the moment their response
    /// is written to the socket (a pull counts the most its buffer can be: its `max_bytes`,
    /// up to 32 MiB, or the bytes it returns if more). Pulls beyond it wait, and are
    /// answered `Busy` if nothing frees by their deadline (at least 1 s): many consumers, or
    /// a client that pipelines pulls and never reads its socket, cannot make the broker
    /// hold more. At least 32 MiB and `max_message_bytes`. Default 256 MiB.
    pub pull_memory_bytes: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            broker_id: 0,
            listen: LISTEN_DEFAULT.to_owned(),
            advertised_address: None,
            data_dir: PathBuf::from("./data"),
            flush: Flush::Os,
            segment_bytes: log_core::log::SEGMENT_BYTES_DEFAULT,
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_bytes: None,
            max_message_bytes: MAX_MESSAGE_BYTES_DEFAULT,
            admin_listen: Some(ADMIN_LISTEN_DEFAULT.to_owned()),
            offsets_queues: OFFSETS_QUEUES_DEFAULT,
            offsets_compact_records: OFFSETS_COMPACT_RECORDS_DEFAULT,
            group_lag_interval: GROUP_LAG_INTERVAL_DEFAULT,
            etcd: Vec::new(),
            cluster: CLUSTER_DEFAULT.to_owned(),
            lease_ttl: coordinator::BROKER_LEASE_TTL_DEFAULT,
            pull_memory_bytes: PULL_MEMORY_BYTES_DEFAULT,
        }
    }
}

/// Default of `BrokerConfig::pull_memory_bytes`.
pub const PULL_MEMORY_BYTES_DEFAULT: u64 = 256 << 20;

/// Segment size of the internal topics: small, so compaction by snapshot frees disk soon.
const INTERNAL_SEGMENT_BYTES: u64 = 16 << 20;
/// Preallocation of the internal topics' segments: they grow slowly.
const INTERNAL_PREALLOCATE_BYTES: u64 = 1 << 20;
/// Index files of the internal topics' active segments.
const INTERNAL_INDEX_MAX_BYTES: usize = 1 << 20;

impl BrokerConfig {
    /// The address clients are told to connect to.
    pub fn advertised(&self) -> &str {
        self.advertised_address.as_deref().unwrap_or(&self.listen)
    }

    /// Whether the broker is a member of a cluster on etcd (rather than alone on the embedded
    /// coordinator).
    pub fn clustered(&self) -> bool {
        !self.etcd.is_empty()
    }

    /// Where the coordinator of a single-node broker keeps its state.
    pub fn meta_dir(&self) -> PathBuf {
        self.data_dir.join("meta")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    pub fn internal_dir(&self) -> PathBuf {
        self.data_dir.join("internal")
    }

    /// Checks what serde cannot: ranges and the settings `log-core` validates.
    pub fn validate(&self) -> Result<()> {
        if self.listen.trim().is_empty() {
            return Err(Error::Config("listen must not be empty".into()));
        }
        if self.offsets_queues == 0 || self.offsets_queues > OFFSETS_QUEUES_MAX {
            return Err(Error::Config(format!(
                "offsets_queues must be in 1..={OFFSETS_QUEUES_MAX}, got {}",
                self.offsets_queues
            )));
        }
        if self.offsets_compact_records == 0 {
            return Err(Error::Config(
                "offsets_compact_records must be positive".into(),
            ));
        }
        if self.etcd.iter().any(|e| e.trim().is_empty()) {
            return Err(Error::Config("etcd endpoints must not be empty".into()));
        }
        if self.clustered() && self.cluster.trim().is_empty() {
            return Err(Error::Config("cluster must not be empty".into()));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(Error::Config(format!(
                "lease_ttl must be at least 1s, got {}",
                humantime::format_duration(self.lease_ttl)
            )));
        }
        // One pull's share is at most max(PULL_BYTES_MAX, max_message_bytes).
        let pull_max = u64::from(wire::protocol::PULL_BYTES_MAX.max(self.max_message_bytes));
        if self.pull_memory_bytes < pull_max || self.pull_memory_bytes > u64::from(u32::MAX) {
            return Err(Error::Config(format!(
                "pull_memory_bytes must be in {pull_max}..={} (at least one largest pull), got {}",
                u32::MAX,
                self.pull_memory_bytes
            )));
        }
        if self.group_lag_interval.is_zero() {
            return Err(Error::Config("group_lag_interval must be positive".into()));
        }
        let frame_max = wire::protocol::FRAME_BYTES_MAX;
        if self.max_message_bytes as usize >= frame_max {
            return Err(Error::Config(format!(
                "max_message_bytes {} must be below the frame limit {frame_max}",
                self.max_message_bytes
            )));
        }
        self.log_config()
            .validate()
            .and_then(|()| self.internal_log_config().validate())
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// Settings of every message queue's log.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            flush: self.flush.policy(),
            retention_age: Some(self.retention),
            retention_bytes: self.retention_bytes,
            max_batch_bytes: self.max_message_bytes as usize,
            ..LogConfig::default()
        }
    }

    /// Settings of the internal topics' logs: never deleted by retention (the consumer-offsets
    /// topic is compacted by snapshot instead), small segments, the broker's flush policy.
    pub fn internal_log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: INTERNAL_SEGMENT_BYTES,
            segment_age: None,
            index_max_bytes: INTERNAL_INDEX_MAX_BYTES,
            flush: self.flush.policy(),
            retention_age: None,
            retention_bytes: None,
            preallocate_bytes: INTERNAL_PREALLOCATE_BYTES,
            ..LogConfig::default()
        }
    }

    pub(crate) fn manager_config(&self) -> ManagerConfig {
        ManagerConfig {
            default_log: self.log_config(),
            ..ManagerConfig::default()
        }
    }

    pub(crate) fn internal_manager_config(&self) -> ManagerConfig {
        ManagerConfig {
            default_log: self.internal_log_config(),
            ..ManagerConfig::default()
        }
    }
}

/// Durations written in humantime syntax (`7d`, `500ms`, `1h 30m`).
mod humantime_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_specs_parse() {
        assert_eq!("os".parse::<Flush>(), Ok(Flush::Os));
        assert_eq!("every-write".parse::<Flush>(), Ok(Flush::EveryWrite));
        assert_eq!(
            "interval:250ms".parse::<Flush>(),
            Ok(Flush::Interval(Duration::from_millis(250)))
        );
        assert_eq!(
            "interval=2s".parse::<Flush>(),
            Ok(Flush::Interval(Duration::from_secs(2)))
        );
        for bad in ["", "always", "interval:", "interval:0s", "interval:soon"] {
            assert!(bad.parse::<Flush>().is_err(), "{bad:?}");
        }
        let round = Flush::Interval(Duration::from_millis(1500));
        assert_eq!(round.to_string().parse::<Flush>(), Ok(round));
    }

    #[test]
    fn defaults_validate() {
        let config = BrokerConfig::default();
        config.validate().unwrap();
        assert!(!config.clustered(), "the embedded coordinator by default");
        assert_eq!(config.cluster, CLUSTER_DEFAULT);
        assert_eq!(config.advertised(), LISTEN_DEFAULT);
        // The logs accept the largest batch one valid message makes.
        assert_eq!(
            config.log_config().max_batch_bytes,
            wire::message::MESSAGE_BATCH_BYTES_MAX
        );
    }

    #[test]
    fn the_pull_memory_budget_holds_at_least_one_largest_pull() {
        let smallest = wire::protocol::PULL_BYTES_MAX as u64;
        for (bytes, valid) in [
            (smallest - 1, false),
            (smallest, true),
            (u64::from(u32::MAX), true),
            (u64::from(u32::MAX) + 1, false),
        ] {
            let config = BrokerConfig {
                pull_memory_bytes: bytes,
                ..BrokerConfig::default()
            };
            assert_eq!(config.validate().is_ok(), valid, "{bytes}");
        }
        let large_messages = BrokerConfig {
            max_message_bytes: 40 << 20,
            pull_memory_bytes: smallest,
            ..BrokerConfig::default()
        };
        assert!(
            large_messages.validate().is_err(),
            "a budget smaller than one message"
        );
    }

    #[test]
    fn a_config_file_parses_and_unknown_fields_are_refused() {
        let config: BrokerConfig = toml::from_str(
            r#"
            broker_id = 3
            listen = "0.0.0.0:10911"
            advertised_address = "broker-3.example:10911"
            data_dir = "/var/lib/runnel"
            flush = "interval:500ms"
            retention = "2d 12h"
            retention_bytes = 1073741824
            max_message_bytes = 1048576
            group_lag_interval = "30s"
            etcd = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
            cluster = "east"
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.broker_id, 3);
        assert!(config.clustered());
        assert_eq!(config.etcd.len(), 2);
        assert_eq!(config.cluster, "east");
        assert_eq!(config.advertised(), "broker-3.example:10911");
        assert_eq!(config.flush, Flush::Interval(Duration::from_millis(500)));
        assert_eq!(config.retention, Duration::from_secs(60 * 3600));
        assert_eq!(config.logs_dir(), PathBuf::from("/var/lib/runnel/logs"));
        assert_eq!(
            config.offsets_queues, OFFSETS_QUEUES_DEFAULT,
            "defaults fill the rest"
        );
        let log = config.log_config();
        assert_eq!(log.retention_bytes, Some(1 << 30));
        assert_eq!(log.max_batch_bytes, 1 << 20);

        let misspelt = toml::from_str::<BrokerConfig>("retension = \"1d\"");
        assert!(misspelt.unwrap_err().to_string().contains("retension"));
        let bad_flush = toml::from_str::<BrokerConfig>("flush = \"sometimes\"");
        assert!(bad_flush.is_err());
    }

    #[test]
    fn out_of_range_settings_are_rejected() {
        let config = BrokerConfig {
            offsets_queues: 0,
            ..BrokerConfig::default()
        };
        assert!(config.validate().is_err());
        let config = BrokerConfig {
            segment_bytes: 0,
            ..BrokerConfig::default()
        };
        assert!(config.validate().is_err());
        let config = BrokerConfig {
            max_message_bytes: 10,
            ..BrokerConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
