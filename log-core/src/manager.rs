//! Many partition logs under one data directory, one subdirectory each, named
//! `<topic>-<partition>`.
//!
//! The manager opens every partition at start-up in parallel (recovery is I/O and CRC bound,
//! so one thread per core), and runs one background thread that applies each log's flush
//! policy and, less often, its retention. Deleting a partition renames its directory to
//! `<topic>-<partition>.delete` first, so a crash halfway leaves a name the next start-up
//! recognises and finishes removing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::fsio::{self, DirLock};
use crate::log::{LogConfig, PartitionLog};

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
const DELETE_SUFFIX: &str = ".delete";

/// Settings of a [`LogManager`].
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Settings of partitions opened at start-up and created without their own.
    pub default_log: LogConfig,
    /// How often the background thread applies flush policies.
    pub flush_check_interval: Duration,
    /// How often the background thread applies retention (Kafka: 5 minutes).
    pub retention_check_interval: Duration,
    /// Threads that recover partitions at start-up; 0 means one per core.
    pub recovery_threads: usize,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            default_log: LogConfig::default(),
            flush_check_interval: Duration::from_millis(100),
            retention_check_interval: Duration::from_secs(300),
            recovery_threads: 0,
        }
    }
}

type PartitionKey = (String, u32);

#[derive(Debug, Default)]
struct Shutdown {
    stopping: Mutex<bool>,
    wake: Condvar,
}

/// The partition logs of one data directory.
#[derive(Debug)]
pub struct LogManager {
    data_dir: PathBuf,
    config: ManagerConfig,
    clock: Arc<dyn Clock>,
    logs: RwLock<BTreeMap<PartitionKey, Arc<PartitionLog>>>,
    shutdown: Arc<Shutdown>,
    background: Mutex<Option<JoinHandle<()>>>,
    lock: Mutex<Option<DirLock>>,
}

impl LogManager {
    /// Opens every partition under `data_dir` (creating the directory if needed) and starts
    /// the background flusher and retention thread.
    pub fn open(data_dir: impl AsRef<Path>, config: ManagerConfig) -> Result<Arc<LogManager>> {
        Self::open_with_clock(data_dir, config, Arc::new(SystemClock))
    }

    pub fn open_with_clock(
        data_dir: impl AsRef<Path>,
        config: ManagerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<LogManager>> {
        config.default_log.validate()?;
        let data_dir = data_dir.as_ref().to_path_buf();
        fs::create_dir_all(&data_dir)
            .map_err(|e| Error::io("create data directory", &data_dir, e))?;
        let lock = DirLock::acquire(&data_dir)?;
        let partitions = scan_data_dir(&data_dir)?;
        let started = Instant::now();
        let logs = open_parallel(&data_dir, &partitions, &config, &clock)?;
        tracing::info!(
            dir = %data_dir.display(),
            partitions = logs.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened log manager"
        );
        let manager = Arc::new(LogManager {
            data_dir,
            config,
            clock,
            logs: RwLock::new(logs),
            shutdown: Arc::new(Shutdown::default()),
            background: Mutex::new(None),
            lock: Mutex::new(Some(lock)),
        });
        let weak = Arc::downgrade(&manager);
        let shutdown = Arc::clone(&manager.shutdown);
        let (flush_every, retention_every) = (
            manager.config.flush_check_interval,
            manager.config.retention_check_interval,
        );
        let handle = std::thread::Builder::new()
            .name("log-manager".into())
            .spawn(move || background_loop(weak, shutdown, flush_every, retention_every))
            .map_err(|e| Error::io("spawn log-manager thread", "", e))?;
        *manager.background.lock() = Some(handle);
        Ok(manager)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Creates a partition with `config` (or the default settings).
    pub fn create(
        &self,
        topic: &str,
        partition: u32,
        config: Option<LogConfig>,
    ) -> Result<Arc<PartitionLog>> {
        validate_topic_name(topic)?;
        let key = (topic.to_string(), partition);
        let mut logs = self.logs.write();
        if logs.contains_key(&key) {
            return Err(Error::PartitionExists {
                topic: topic.to_string(),
                partition,
            });
        }
        let dir = self.data_dir.join(dir_name(topic, partition));
        let config = config.unwrap_or_else(|| self.config.default_log.clone());
        let log = Arc::new(PartitionLog::open_with_clock(
            &dir,
            config,
            Arc::clone(&self.clock),
        )?);
        fsio::sync_dir(&self.data_dir)?;
        logs.insert(key, Arc::clone(&log));
        Ok(log)
    }

    pub fn get(&self, topic: &str, partition: u32) -> Option<Arc<PartitionLog>> {
        self.logs
            .read()
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// The partition, created with the default settings if it does not exist.
    pub fn get_or_create(&self, topic: &str, partition: u32) -> Result<Arc<PartitionLog>> {
        if let Some(log) = self.get(topic, partition) {
            return Ok(log);
        }
        match self.create(topic, partition, None) {
            Err(Error::PartitionExists { .. }) => {
                self.get(topic, partition).ok_or(Error::UnknownPartition {
                    topic: topic.to_string(),
                    partition,
                })
            }
            other => other,
        }
    }

    /// Every partition, in order of topic then partition.
    pub fn partitions(&self) -> Vec<(String, u32)> {
        self.logs.read().keys().cloned().collect()
    }

    /// Closes and deletes a partition's log and its directory.
    pub fn delete(&self, topic: &str, partition: u32) -> Result<()> {
        let key = (topic.to_string(), partition);
        let log = self
            .logs
            .write()
            .remove(&key)
            .ok_or_else(|| Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })?;
        let dir = log.dir().to_path_buf();
        // The data is going away: a failed final flush does not matter.
        let _ = log.close();
        drop(log);
        remove_partition_dir(&self.data_dir, &dir)
    }

    /// Applies every log's flush policy now.
    pub fn flush_due(&self) {
        let now = self.clock.now_ms();
        // Clone the list: fsyncs must not hold the map's lock against create and get.
        let logs: Vec<Arc<PartitionLog>> = self.logs.read().values().cloned().collect();
        for log in &logs {
            if let Err(error) = log.maybe_flush(now) {
                tracing::error!(dir = %log.dir().display(), %error, "flush failed");
            }
        }
    }

    /// Applies every log's retention now; returns the segments deleted.
    pub fn apply_retention(&self) -> usize {
        let logs: Vec<Arc<PartitionLog>> = self.logs.read().values().cloned().collect();
        let mut deleted = 0;
        for log in logs {
            match log.apply_retention() {
                Ok(outcome) => deleted += outcome.segments_deleted,
                Err(error) => {
                    tracing::error!(dir = %log.dir().display(), %error, "retention failed")
                }
            }
        }
        deleted
    }

    /// Stops the background thread and closes every log cleanly. Returns the first error.
    pub fn close(&self) -> Result<()> {
        *self.shutdown.stopping.lock() = true;
        self.shutdown.wake.notify_all();
        if let Some(handle) = self.background.lock().take() {
            let _ = handle.join();
        }
        let logs = std::mem::take(&mut *self.logs.write());
        let mut first_error = None;
        for log in logs.values() {
            if let Err(error) = log.close() {
                tracing::error!(dir = %log.dir().display(), %error, "close failed");
                first_error.get_or_insert(error);
            }
        }
        // Another manager (or process) may open the directory from now on.
        self.lock.lock().take();
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for LogManager {
    fn drop(&mut self) {
        *self.shutdown.stopping.lock() = true;
        self.shutdown.wake.notify_all();
    }
}

fn background_loop(
    manager: std::sync::Weak<LogManager>,
    shutdown: Arc<Shutdown>,
    flush_every: Duration,
    retention_every: Duration,
) {
    let mut last_retention = Instant::now();
    loop {
        {
            let mut stopping = shutdown.stopping.lock();
            if *stopping {
                return;
            }
            shutdown.wake.wait_for(&mut stopping, flush_every);
            if *stopping {
                return;
            }
        }
        let Some(manager) = manager.upgrade() else {
            return;
        };
        manager.flush_due();
        if last_retention.elapsed() >= retention_every {
            manager.apply_retention();
            last_retention = Instant::now();
        }
    }
}

/// A partition's directory name.
pub fn dir_name(topic: &str, partition: u32) -> String {
    format!("{topic}-{partition}")
}

/// Splits a partition directory name into topic and partition.
pub fn parse_dir_name(name: &str) -> Option<(String, u32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let partition = partition.parse().ok()?;
    validate_topic_name(topic).ok()?;
    Some((topic.to_string(), partition))
}

/// Topic names become directory names: ASCII letters, digits, `.`, `_`, `-` and `%` (for
/// `%RETRY%` and `%DLQ%` topics), at most 249 bytes, never `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidTopicName {
            name: name.chars().take(TOPIC_NAME_BYTES_MAX + 1).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid("longer than 249 bytes");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-%".contains(&b))
    {
        return invalid("only ASCII letters, digits, '.', '_', '-' and '%' are allowed");
    }
    Ok(())
}

fn scan_data_dir(data_dir: &Path) -> Result<Vec<(String, u32)>> {
    let mut partitions = Vec::new();
    let entries =
        fs::read_dir(data_dir).map_err(|e| Error::io("list data directory", data_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list data directory", data_dir, e))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(DELETE_SUFFIX) {
            tracing::info!(dir = %path.display(), "finishing an interrupted partition delete");
            fs::remove_dir_all(&path)
                .map_err(|e| Error::io("remove partition directory", &path, e))?;
            continue;
        }
        match parse_dir_name(&name) {
            Some(partition) => partitions.push(partition),
            None => {
                tracing::warn!(dir = %path.display(), "ignoring a directory that is not a partition")
            }
        }
    }
    partitions.sort();
    Ok(partitions)
}

fn open_parallel(
    data_dir: &Path,
    partitions: &[(String, u32)],
    config: &ManagerConfig,
    clock: &Arc<dyn Clock>,
) -> Result<BTreeMap<PartitionKey, Arc<PartitionLog>>> {
    let threads = match config.recovery_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(partitions.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let opened = Mutex::new(BTreeMap::new());
    let first_error = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((topic, partition)) = partitions.get(i) else {
                    return;
                };
                let dir = data_dir.join(dir_name(topic, *partition));
                match PartitionLog::open_with_clock(
                    &dir,
                    config.default_log.clone(),
                    Arc::clone(clock),
                ) {
                    Ok(log) => {
                        opened
                            .lock()
                            .insert((topic.clone(), *partition), Arc::new(log));
                    }
                    Err(error) => {
                        first_error.lock().get_or_insert(error);
                        return;
                    }
                }
            });
        }
    });
    if let Some(error) = first_error.into_inner() {
        return Err(error);
    }
    Ok(opened.into_inner())
}

fn remove_partition_dir(data_dir: &Path, dir: &Path) -> Result<()> {
    let mut doomed = dir.as_os_str().to_os_string();
    doomed.push(DELETE_SUFFIX);
    let doomed = PathBuf::from(doomed);
    fs::rename(dir, &doomed).map_err(|e| Error::io("rename partition directory", dir, e))?;
    fsio::sync_dir(data_dir)?;
    fs::remove_dir_all(&doomed).map_err(|e| Error::io("remove partition directory", &doomed, e))?;
    fsio::sync_dir(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for good in [
            "orders",
            "%RETRY%group-a",
            "RMQ_SYS_TRANS_HALF_TOPIC",
            "a.b-c_d",
        ] {
            assert!(validate_topic_name(good).is_ok(), "{good}");
        }
        let long = "x".repeat(250);
        for bad in ["", ".", "..", "a/b", "a b", "\0", "ü", long.as_str()] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_dir_name("orders-3"), Some(("orders".into(), 3)));
        assert_eq!(parse_dir_name("my-topic-12"), Some(("my-topic".into(), 12)));
        assert_eq!(parse_dir_name("orders"), None);
        assert_eq!(parse_dir_name("orders-"), None);
    }
}
