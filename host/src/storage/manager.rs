//! All partition logs in one log directory (Kafka's `LogManager` for one `log.dirs` entry): loads
//! them at start, owns the directory's checkpoint files and the clean-shutdown marker.
//!
//! Files in the directory:
//! ```text
//! recovery-point-offset-checkpoint   topic partition offset: everything below is fsynced
//! log-start-offset-checkpoint        topic partition offset: records below were deleted
//! .kafka_cleanshutdown               present only after a clean shutdown; removed at start
//! <topic>-<partition>/               one directory per partition log
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::checkpoint::{
    LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT, TopicPartition, read_offsets,
    write_offsets,
};
use super::config::LogConfig;
use super::error::{IoContext, LogError, Result};
use super::files::{FileHandleCache, SEALED_FILE_HANDLES_MAX, sync_dir, write_atomically};
use super::log::{Log, LogOpenOptions, RecoveryReport};
use crate::clock::Clock;

/// Kafka's marker name, so operators' habits and scripts carry over.
pub const CLEAN_SHUTDOWN_MARKER: &str = ".kafka_cleanshutdown";
/// Kafka's `partition.metadata`: the topic id a partition directory belongs to, so a topic
/// deleted while this broker was away and recreated under the same name never inherits the old
/// topic's records.
pub const PARTITION_METADATA: &str = "partition.metadata";

pub type SharedLog = Arc<Mutex<Log>>;

#[derive(Debug)]
pub struct LogManager {
    dir: PathBuf,
    logs: Mutex<HashMap<TopicPartition, SharedLog>>,
    clock: Arc<dyn Clock>,
    handles: Arc<FileHandleCache>,
    /// What loading found, per partition, for the start-up log line and for tests.
    recovery: HashMap<TopicPartition, RecoveryReport>,
    had_clean_shutdown: bool,
    /// Checkpoint writes share temporary file names: one at a time (periodic, DeleteRecords,
    /// deletion and shutdown may overlap).
    checkpointing: Mutex<()>,
}

/// Why a poisoned log is refused: what `LogError::Offline` says to every caller.
const POISONED_LOG: &str = "a panic while the log was locked may have left it half-updated; it \
     is out of service until a restart recovers it from disk";

/// Locks a partition's log. A panic while another thread held it (mid-append, mid-truncation)
/// may have left it half-updated, so a poisoned log is taken out of service rather than reused:
/// every caller gets [`LogError::Offline`] (KAFKA_STORAGE_ERROR), its recovery point is never
/// checkpointed again and the clean-shutdown marker is not written, so the next start scans and
/// repairs it from disk.
pub fn lock_log(log: &SharedLog) -> Result<MutexGuard<'_, Log>> {
    log.lock()
        .map_err(|_| LogError::Offline(POISONED_LOG.to_string()))
}

impl LogManager {
    /// Opens every partition log under `dir`. `config_for` gives each partition's config (the
    /// broker knows topic overrides; storage does not).
    pub fn open(
        dir: &Path,
        clock: Arc<dyn Clock>,
        config_for: impl Fn(&TopicPartition) -> LogConfig,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).at(dir)?;
        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let had_clean_shutdown = marker.exists();
        let recovery_points = read_offsets(&dir.join(RECOVERY_POINT_CHECKPOINT)).unwrap_or_else(|error| {
            tracing::warn!(%error, "unreadable recovery point checkpoint; recovering every log in full");
            BTreeMap::new()
        });
        let log_start_offsets = read_offsets(&dir.join(LOG_START_OFFSET_CHECKPOINT)).unwrap_or_else(|error| {
            tracing::warn!(%error, "unreadable log start offset checkpoint; using each log's first segment");
            BTreeMap::new()
        });
        let handles = FileHandleCache::new(SEALED_FILE_HANDLES_MAX);
        let mut logs = HashMap::new();
        let mut recovery = HashMap::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .at(dir)?
            .collect::<std::io::Result<_>>()
            .at(dir)?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            if !entry.file_type().at(&entry.path())?.is_dir() {
                continue;
            }
            let Some(tp) = entry
                .file_name()
                .to_str()
                .and_then(TopicPartition::from_dir_name)
            else {
                continue;
            };
            let options = LogOpenOptions {
                // Without a checkpoint entry nothing is known to be flushed: scan it all.
                recovery_point: recovery_points.get(&tp).copied().unwrap_or(0),
                log_start_offset: log_start_offsets.get(&tp).copied().unwrap_or(0),
                clean_shutdown: had_clean_shutdown,
            };
            let (log, report) = Log::open(
                &entry.path(),
                config_for(&tp),
                options,
                clock.clone(),
                handles.clone(),
            )?;
            if report.bytes_truncated > 0 || report.segments_deleted > 0 {
                tracing::warn!(partition = %tp, ?report, "log recovered with data cut");
            }
            recovery.insert(tp.clone(), report);
            logs.insert(tp, Arc::new(Mutex::new(log)));
        }
        // From here on a crash is unclean until the next clean shutdown writes the marker again.
        if had_clean_shutdown {
            std::fs::remove_file(&marker).at(&marker)?;
            sync_dir(dir).at(dir)?;
        }
        let manager = LogManager {
            dir: dir.to_path_buf(),
            logs: Mutex::new(logs),
            clock,
            handles,
            recovery,
            had_clean_shutdown,
            checkpointing: Mutex::new(()),
        };
        manager.checkpoint()?;
        Ok(manager)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn had_clean_shutdown(&self) -> bool {
        self.had_clean_shutdown
    }

    pub fn recovery_report(&self, tp: &TopicPartition) -> Option<&RecoveryReport> {
        self.recovery.get(tp)
    }

    fn logs(&self) -> MutexGuard<'_, HashMap<TopicPartition, SharedLog>> {
        self.logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every log with its partition, copied out so the map's lock is not held while each log's
    /// is taken.
    fn all_logs(&self) -> Vec<(TopicPartition, SharedLog)> {
        self.logs()
            .iter()
            .map(|(tp, log)| (tp.clone(), log.clone()))
            .collect()
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<SharedLog> {
        self.logs().get(tp).cloned()
    }

    pub fn partitions(&self) -> Vec<TopicPartition> {
        let mut partitions: Vec<_> = self.logs().keys().cloned().collect();
        partitions.sort();
        partitions
    }

    /// The log for `tp`, created empty with `config` if it does not exist.
    pub fn get_or_create(&self, tp: &TopicPartition, config: LogConfig) -> Result<SharedLog> {
        let mut logs = self.logs();
        if let Some(log) = logs.get(tp) {
            return Ok(log.clone());
        }
        if tp.topic.is_empty()
            // The name becomes a directory and a whitespace-separated checkpoint field.
            || tp.topic.contains(|c: char| c == '/' || c == '\0' || c.is_whitespace())
            || tp.topic == "."
            || tp.topic == ".."
        {
            return Err(LogError::Config(format!(
                "'{}' cannot name a log directory",
                tp.topic
            )));
        }
        let dir = self.dir.join(tp.dir_name());
        let (log, _) = Log::open(
            &dir,
            config,
            LogOpenOptions::default(),
            self.clock.clone(),
            self.handles.clone(),
        )?;
        sync_dir(&self.dir).at(&self.dir)?;
        let log = Arc::new(Mutex::new(log));
        logs.insert(tp.clone(), log.clone());
        Ok(log)
    }

    /// [`LogManager::get_or_create`] for a partition of the topic with id `topic_id`: a log on
    /// disk that belongs to another topic of the same name (its `partition.metadata` says so) is
    /// deleted first and the partition starts empty; a log without the file (written before
    /// topic ids were kept) adopts this id.
    pub fn get_or_create_for_topic(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
        topic_id: uuid::Uuid,
    ) -> Result<SharedLog> {
        let path = self.dir.join(tp.dir_name()).join(PARTITION_METADATA);
        let recorded = match std::fs::read_to_string(&path) {
            Ok(text) => Some(
                text.lines()
                    .find_map(|line| line.strip_prefix("topic_id: "))
                    .and_then(|id| id.trim().parse::<uuid::Uuid>().ok())
                    .ok_or_else(|| {
                        LogError::Config(format!("{}: no readable topic_id", path.display()))
                    })?,
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(error).at(&path),
        };
        if recorded.is_some_and(|recorded| recorded != topic_id) {
            tracing::warn!(partition = %tp, ?recorded, %topic_id, "log belongs to an earlier topic of the same name; deleting it");
            self.delete(tp)?;
        }
        let log = self.get_or_create(tp, config)?;
        if recorded != Some(topic_id) {
            write_atomically(
                &path,
                format!("version: 0\ntopic_id: {topic_id}\n").as_bytes(),
            )
            .at(&path)?;
        }
        Ok(log)
    }

    /// Deletes a partition's log and its directory. The directory is first renamed aside (as
    /// Kafka does) and the log taken offline, so a holder still using it can neither write into
    /// it nor into a re-created partition of the same name.
    pub fn delete(&self, tp: &TopicPartition) -> Result<bool> {
        let Some(log) = self.logs().remove(tp) else {
            return Ok(false);
        };
        // A poisoned log is deleted all the same: its half-updated state goes with its files.
        let mut log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        log.mark_offline("the partition was deleted");
        let dir = log.dir().to_path_buf();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let doomed = self.dir.join(format!("{}.{nanos}-delete", tp.dir_name()));
        std::fs::rename(&dir, &doomed).at(&dir)?;
        sync_dir(&self.dir).at(&self.dir)?;
        drop(log);
        self.checkpoint()?;
        std::fs::remove_dir_all(&doomed).at(&doomed)?;
        Ok(true)
    }

    /// Writes both checkpoint files from the logs' current recovery points and start offsets.
    pub fn checkpoint(&self) -> Result<()> {
        let _one_at_a_time = self
            .checkpointing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let logs = self.all_logs();
        let mut recovery_points = BTreeMap::new();
        let mut log_start_offsets = BTreeMap::new();
        for (tp, log) in logs {
            match log.lock() {
                Ok(log) => {
                    recovery_points.insert(tp.clone(), log.recovery_point());
                    log_start_offsets.insert(tp, log.log_start_offset());
                }
                // No recovery point: the next start scans the whole log. Its start offset only
                // moves by whole assignments, so it is kept and deleted records stay deleted.
                Err(poisoned) => {
                    log_start_offsets.insert(tp, poisoned.into_inner().log_start_offset());
                }
            }
        }
        let path = self.dir.join(RECOVERY_POINT_CHECKPOINT);
        write_offsets(&path, &recovery_points).at(&path)?;
        let path = self.dir.join(LOG_START_OFFSET_CHECKPOINT);
        write_offsets(&path, &log_start_offsets).at(&path)
    }

    /// fsyncs every log in service, then checkpoints: the periodic job and the first half of
    /// shutdown. Returns the partitions whose logs are poisoned (see [`lock_log`]), never flushed.
    pub fn flush_all(&self) -> Result<Vec<TopicPartition>> {
        let logs = self.all_logs();
        let mut poisoned = Vec::new();
        for (tp, log) in logs {
            match lock_log(&log) {
                Ok(mut log) => log.flush()?,
                Err(_) => poisoned.push(tp),
            }
        }
        self.checkpoint()?;
        Ok(poisoned)
    }

    /// Clean shutdown: flush, checkpoint, then write the marker that lets the next start skip
    /// recovery. The marker goes last so a crash anywhere before it means a full recovery, and
    /// it is not written at all while a poisoned log is in the directory.
    pub fn shutdown(&self) -> Result<()> {
        let poisoned = self.flush_all()?;
        if !poisoned.is_empty() {
            tracing::error!(
                ?poisoned,
                "logs left poisoned by a panic: no clean-shutdown marker, so the next start recovers them"
            );
            return Ok(());
        }
        let marker = self.dir.join(CLEAN_SHUTDOWN_MARKER);
        write_atomically(&marker, b"").at(&marker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_of_an_earlier_topic_of_the_same_name_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manager = LogManager::open(dir.path(), Arc::new(crate::clock::SystemClock), |_| {
            LogConfig::default()
        })
        .expect("open");
        let tp = TopicPartition::new("orders", 0);
        let (first, second) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        manager
            .get_or_create_for_topic(&tp, LogConfig::default(), first)
            .expect("created");
        let leftover = dir.path().join(tp.dir_name()).join("from-the-first-topic");
        std::fs::write(&leftover, b"old").expect("write");
        // The same topic again: the log stays.
        manager
            .get_or_create_for_topic(&tp, LogConfig::default(), first)
            .expect("reopened");
        assert!(leftover.exists());
        // A new topic of the same name: the old directory goes.
        manager
            .get_or_create_for_topic(&tp, LogConfig::default(), second)
            .expect("replaced");
        assert!(!leftover.exists());
        let metadata =
            std::fs::read_to_string(dir.path().join(tp.dir_name()).join(PARTITION_METADATA))
                .expect("partition.metadata");
        assert!(metadata.contains(&second.to_string()), "{metadata}");
    }
}
