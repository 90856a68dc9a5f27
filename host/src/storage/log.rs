//! A partition's log (Kafka's `UnifiedLog` + `LogLoader`): an ordered run of segments with the
//! log start offset, log end offset, recovery point and leader epoch cache.
//!
//! The log knows nothing of replication: it does not know the high watermark or who leads. Callers
//! pass in bounds (the high watermark for retention, an upper offset for reads) where Kafka needs them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::batch::{AppendOrigin, BatchHeader, patched_prefix, validate_record_set};
use super::config::LogConfig;
use super::epoch_cache::LeaderEpochCache;
use super::error::{BatchError, IoContext, LogError, Result};
use super::files::{FileHandleCache, replace_file, sync_dir};
use super::records::{decode_records, first_record_at_or_after};
use super::segment::{
    BatchPosition, BatchToAppend, LOG_SUFFIX, LogSegment, TIME_INDEX_SUFFIX, segment_path,
};
use crate::clock::Clock;

/// Largest batch a follower will take from its leader: the leader already enforced
/// `max.message.bytes`, and a follower must not refuse what its leader accepted (Kafka does the same).
const REPLICATED_BATCH_BYTES_MAX: usize = i32::MAX as usize;

/// What the log directory loader knows about a log from the broker's checkpoints.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOpenOptions {
    /// Offsets below this were fsynced; segments from the one holding it are scanned on open.
    pub recovery_point: u64,
    pub log_start_offset: u64,
    /// The broker shut down cleanly: skip the scan.
    pub clean_shutdown: bool,
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: u64,
    pub last_offset: u64,
    pub log_end_offset: u64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: u64,
    pub records_count: u64,
}

/// What opening found, for the operator's log line and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments_loaded: usize,
    pub segments_recovered: usize,
    /// Bytes cut from torn or corrupt tails.
    pub bytes_truncated: u64,
    /// Segments after a corrupt one, deleted because their offsets can no longer follow.
    pub segments_deleted: usize,
}

#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// By base offset; never empty, and the last one is the active segment.
    segments: BTreeMap<u64, LogSegment>,
    log_start_offset: u64,
    recovery_point: u64,
    epoch_cache: LeaderEpochCache,
    unflushed_messages: u64,
    last_flush_ms: i64,
    clock: Arc<dyn Clock>,
    handles: Arc<FileHandleCache>,
    /// Where the last read ended; checked against the batch header before use, so a truncation
    /// or deletion since can only make it miss, never mislead.
    read_hint: Mutex<Option<ReadHint>>,
    /// Set when an I/O error (or deletion) took the log offline; appends and flushes then fail.
    offline: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct ReadHint {
    segment_base_offset: u64,
    next_offset: u64,
    position: u64,
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering anything past the recovery point.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        options: LogOpenOptions,
        clock: Arc<dyn Clock>,
        handles: Arc<FileHandleCache>,
    ) -> Result<(Log, RecoveryReport)> {
        std::fs::create_dir_all(dir).at(dir)?;
        let now_ms = clock.now_ms();
        let mut report = RecoveryReport::default();
        let bases = scan_segment_files(dir)?;
        let (epoch_cache, epochs_existed) = LeaderEpochCache::load(dir)?;
        // Without a checkpoint, recovery must not write partial ones: a crash mid-open would leave
        // a file the next start trusts. The cache is rebuilt in full and written once, below.
        let mut recovery_epochs = if epochs_existed {
            epoch_cache
        } else {
            LeaderEpochCache::in_memory()
        };

        // Every segment from the one holding the recovery point may hold unflushed bytes.
        let first_unflushed = bases
            .iter()
            .copied()
            .filter(|base| *base <= options.recovery_point)
            .max()
            .unwrap_or(0);
        let mut segments = BTreeMap::new();
        let mut corrupt_tail_found = false;
        for base in bases {
            if corrupt_tail_found {
                let segment = LogSegment::open(
                    dir,
                    base,
                    handles.clone(),
                    now_ms,
                    config.index_interval_bytes,
                )?;
                delete_segment_files(dir, base, segment, &handles)?;
                report.segments_deleted += 1;
                continue;
            }
            let trusted = options.clean_shutdown || base < first_unflushed;
            let opened = if trusted {
                LogSegment::open(
                    dir,
                    base,
                    handles.clone(),
                    now_ms,
                    config.index_interval_bytes,
                )?
            } else {
                None
            };
            let segment = match opened {
                Some(segment) => segment,
                None => {
                    let (segment, truncated) = LogSegment::recover(
                        dir,
                        base,
                        handles.clone(),
                        now_ms,
                        config.index_interval_bytes,
                        &mut recovery_epochs,
                    )?;
                    report.segments_recovered += 1;
                    if truncated > 0 {
                        tracing::warn!(dir = %dir.display(), base_offset = base, bytes = truncated, "cut a torn or corrupt tail");
                        report.bytes_truncated += truncated;
                        corrupt_tail_found = true;
                    }
                    segment
                }
            };
            report.segments_loaded += 1;
            segments.insert(base, segment);
        }
        if report.segments_deleted > 0 {
            // Deleted segments must stay deleted: one that came back after a crash would shadow
            // data appended to the cut segment in its offset range.
            sync_dir(dir).at(dir)?;
        }
        if segments.is_empty() {
            let base = options.log_start_offset;
            segments.insert(
                base,
                LogSegment::create(dir, base, handles.clone(), now_ms)?,
            );
            sync_dir(dir).at(dir)?;
        }
        let count = segments.len();
        for (position, segment) in segments.values_mut().enumerate() {
            if position + 1 < count {
                if segment.is_active() {
                    segment.seal()?;
                }
            } else {
                segment.activate()?;
                segment.flush()?;
            }
        }
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: 0,
            recovery_point: 0,
            epoch_cache: if epochs_existed {
                recovery_epochs
            } else {
                LeaderEpochCache::load(dir)?.0
            },
            unflushed_messages: 0,
            last_flush_ms: now_ms,
            clock,
            handles,
            read_hint: Mutex::new(None),
            offline: None,
        };
        let log_end_offset = log.log_end_offset();
        log.log_start_offset = options
            .log_start_offset
            .max(log.first_segment().base_offset())
            .min(log_end_offset);
        // Whatever was scanned is now fsynced (the active segment just above, the rest at seal);
        // whatever was trusted was below the old recovery point or cleanly shut down.
        log.recovery_point = log_end_offset;
        if !epochs_existed {
            log.rebuild_epoch_cache()?;
        }
        log.epoch_cache.truncate_from_end(log_end_offset)?;
        log.epoch_cache.truncate_from_start(log.log_start_offset)?;
        Ok((log, report))
    }

    /// Re-reads leader epochs from every batch header, when `leader-epoch-checkpoint` was lost.
    fn rebuild_epoch_cache(&mut self) -> Result<()> {
        let mut epochs: Vec<(i32, u64)> = Vec::new();
        for segment in self.segments.values() {
            segment.for_each_header(|header| {
                if header.partition_leader_epoch >= 0
                    && epochs
                        .last()
                        .is_none_or(|(latest, _)| header.partition_leader_epoch > *latest)
                {
                    epochs.push((header.partition_leader_epoch, header.base_offset as u64));
                }
                Ok(())
            })?;
        }
        self.epoch_cache.replace(&epochs)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }

    /// One past the last offset in the log: where the next append goes.
    pub fn log_end_offset(&self) -> u64 {
        self.active_segment().next_offset()
    }

    pub fn recovery_point(&self) -> u64 {
        self.recovery_point
    }

    pub fn size_in_bytes(&self) -> u64 {
        self.segments.values().map(LogSegment::size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn segment_base_offsets(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epoch_cache.latest_epoch()
    }

    /// OffsetForLeaderEpoch: (largest epoch <= `epoch`, the offset where it ended). See
    /// [`LeaderEpochCache::end_offset_for`].
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epoch_cache
            .end_offset_for(epoch, self.log_end_offset())
    }

    /// Calls `visit` with every batch header whose last offset is at least `offset`, in offset
    /// order: what rebuilding state derived from the log (idempotent producers) on start reads
    /// after its snapshot, or from 0 without one. Segments wholly below `offset` are not read.
    pub fn for_each_batch_header_from(
        &self,
        offset: u64,
        mut visit: impl FnMut(&BatchHeader),
    ) -> Result<()> {
        for segment in self.segments_from(offset) {
            segment.for_each_header_from(offset, |header| {
                visit(header);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Writes a producer-state snapshot taken at `offset` (the state after every batch below it)
    /// as `<offset>.snapshot`, atomically, and deletes older ones. Its bytes are the replication
    /// room's; storage only keeps them beside the log (Kafka's `ProducerStateManager` files) and
    /// drops them when the log no longer reaches their offset.
    pub fn write_producer_snapshot(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        // A deleted log's directory may already hold a re-created topic of the same name: an
        // offline log writes nothing there.
        self.check_online()?;
        let path = segment_path(&self.dir, offset, PRODUCER_SNAPSHOT_SUFFIX);
        // Not fsynced: a snapshot only saves reading headers, and one that a crash leaves torn or
        // empty fails its CRC and the log is read instead. So the appends this runs between (it
        // holds the log) never wait for a disk flush.
        replace_file(&path, bytes, false).at(&path)?;
        for (older, path) in producer_snapshots(&self.dir)? {
            if older < offset {
                std::fs::remove_file(&path).at(&path)?;
            }
        }
        Ok(())
    }

    /// The newest producer-state snapshot at or below the log end offset, with its offset.
    /// Snapshots above it are deleted first: a truncation or a recovery that cut the tail left
    /// them describing batches the log no longer has.
    pub fn latest_producer_snapshot(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let log_end_offset = self.log_end_offset();
        let mut newest = None;
        for (offset, path) in producer_snapshots(&self.dir)? {
            if offset > log_end_offset {
                std::fs::remove_file(&path).at(&path)?;
            } else {
                // Oldest first: the last one kept is the newest.
                newest = Some((offset, path));
            }
        }
        let Some((offset, path)) = newest else {
            return Ok(None);
        };
        let bytes = std::fs::read(&path).at(&path)?;
        Ok(Some((offset, bytes)))
    }

    fn delete_producer_snapshots_above(&self, offset: u64) -> Result<()> {
        for (taken_at, path) in producer_snapshots(&self.dir)? {
            if taken_at > offset {
                std::fs::remove_file(&path).at(&path)?;
            }
        }
        Ok(())
    }

    pub fn epoch_entries(&self) -> Vec<(i32, u64)> {
        self.epoch_cache
            .entries()
            .iter()
            .map(|entry| (entry.epoch, entry.start_offset))
            .collect()
    }

    /// The segment holding `offset` (the last one based at or below it) and every one after it.
    fn segments_from(&self, offset: u64) -> impl Iterator<Item = &LogSegment> {
        let first_base = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(0, |(base, _)| *base);
        self.segments
            .range(first_base..)
            .map(|(_, segment)| segment)
    }

    fn active_segment(&self) -> &LogSegment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_segment_mut(&mut self) -> &mut LogSegment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn first_segment(&self) -> &LogSegment {
        self.segments
            .values()
            .next()
            .expect("a log always has a segment")
    }

    /// Appends a producer's record set on the leader: validates every batch, assigns offsets from
    /// the log end offset, stamps `leader_epoch`, and writes the batches as received otherwise.
    /// A record set that fails validation changes nothing.
    pub fn append(&mut self, records: &[u8], leader_epoch: i32) -> Result<AppendInfo> {
        let batches =
            validate_record_set(records, self.config.max_message_bytes, AppendOrigin::Client)?;
        if records.len() as u64 > self.config.segment_bytes {
            return Err(BatchError::RecordListTooLarge {
                size: records.len(),
                max: self.config.segment_bytes as usize,
            }
            .into());
        }
        self.check_online()?;
        self.check_timestamps(&batches)?;
        let first_offset = self.log_end_offset();
        let mut next_offset = first_offset;
        let mut to_append: Vec<BatchToAppend<'_>> = Vec::with_capacity(batches.len());
        for batch in &batches {
            let bytes = &records[batch.start..batch.end];
            let last_offset = next_offset + batch.header.last_offset_delta as u64;
            to_append.push(BatchToAppend {
                patched_prefix: Some(patched_prefix(bytes, next_offset, leader_epoch)),
                bytes,
                first_offset: next_offset,
                last_offset,
                max_timestamp: batch.header.max_timestamp,
            });
            next_offset = last_offset + 1;
        }
        self.append_batches(&to_append)?;
        if leader_epoch >= 0 {
            let assigned = self.epoch_cache.assign(leader_epoch, first_offset);
            self.offline_on_error(assigned)?;
        }
        Ok(self.after_append(&to_append))
    }

    /// Appends batches copied from the leader, offsets and epochs already assigned. They must start
    /// at or after the log end offset (a follower truncates before it fetches).
    pub fn append_as_follower(&mut self, records: &[u8]) -> Result<AppendInfo> {
        let batches = validate_record_set(
            records,
            REPLICATED_BATCH_BYTES_MAX,
            AppendOrigin::Replication,
        )?;
        let mut expected_at_least = self.log_end_offset();
        for batch in &batches {
            if batch.header.base_offset < expected_at_least as i64 {
                return Err(LogError::NonMonotonicOffset {
                    base_offset: batch.header.base_offset.max(0) as u64,
                    log_end_offset: expected_at_least,
                });
            }
            expected_at_least = batch.header.next_offset() as u64;
        }
        self.check_online()?;
        let to_append: Vec<BatchToAppend<'_>> = batches
            .iter()
            .map(|batch| BatchToAppend {
                patched_prefix: None,
                bytes: &records[batch.start..batch.end],
                first_offset: batch.header.base_offset as u64,
                last_offset: batch.header.last_offset() as u64,
                max_timestamp: batch.header.max_timestamp,
            })
            .collect();
        // Offsets inside a segment are contiguous (recovery relies on it), so a set that skips
        // offsets between batches is appended run by run, each gap starting a new segment.
        let mut run_start = 0;
        for end in 1..=to_append.len() {
            let gap = end < to_append.len()
                && to_append[end].first_offset != to_append[end - 1].last_offset + 1;
            if end == to_append.len() || gap {
                self.append_batches(&to_append[run_start..end])?;
                run_start = end;
            }
        }
        for batch in &batches {
            if batch.header.partition_leader_epoch >= 0 {
                let assigned = self.epoch_cache.assign(
                    batch.header.partition_leader_epoch,
                    batch.header.base_offset as u64,
                );
                self.offline_on_error(assigned)?;
            }
        }
        Ok(self.after_append(&to_append))
    }

    fn append_batches(&mut self, batches: &[BatchToAppend<'_>]) -> Result<()> {
        let size: u64 = batches.iter().map(|batch| batch.bytes.len() as u64).sum();
        let first_offset = batches
            .first()
            .map_or(self.log_end_offset(), |batch| batch.first_offset);
        let last_offset = batches
            .last()
            .map_or(first_offset, |batch| batch.last_offset);
        let max_timestamp = batches
            .iter()
            .map(|batch| batch.max_timestamp)
            .max()
            .unwrap_or(-1);
        let rolled = self.maybe_roll(size, first_offset, last_offset, max_timestamp);
        self.offline_on_error(rolled)?;
        let interval = self.config.index_interval_bytes;
        let appended = self.active_segment_mut().append(batches, interval);
        self.offline_on_error(appended)
    }

    fn after_append(&mut self, batches: &[BatchToAppend<'_>]) -> AppendInfo {
        let first_offset = batches.first().map_or(0, |batch| batch.first_offset);
        let last_offset = batches
            .last()
            .map_or(first_offset, |batch| batch.last_offset);
        let (mut max_timestamp, mut offset_of_max_timestamp) = (-1, first_offset);
        for batch in batches {
            if batch.max_timestamp > max_timestamp {
                max_timestamp = batch.max_timestamp;
                offset_of_max_timestamp = batch.last_offset;
            }
        }
        let records_count = batches
            .iter()
            .map(|batch| batch.last_offset + 1 - batch.first_offset)
            .sum();
        self.unflushed_messages += records_count;
        if self.unflushed_messages >= self.config.flush_messages
            && let Err(error) = self.flush()
        {
            // The log is offline now (see `flush`); this append is in the page cache but its
            // durability is unknown, and every later append is refused.
            tracing::error!(dir = %self.dir.display(), %error, "flush after append failed");
        }
        AppendInfo {
            first_offset,
            last_offset,
            log_end_offset: self.log_end_offset(),
            max_timestamp,
            offset_of_max_timestamp,
            records_count,
        }
    }

    /// Kafka's `message.timestamp.{before,after}.max.ms` for create-time batches, checked on the
    /// batch's first and largest timestamps.
    fn check_timestamps(&self, batches: &[super::batch::ValidatedBatch]) -> Result<()> {
        let now_ms = self.clock.now_ms();
        for batch in batches {
            let header = &batch.header;
            if header.is_log_append_time() {
                continue;
            }
            let too_new = header.max_timestamp.saturating_sub(now_ms)
                > self.config.message_timestamp_after_max_ms;
            let too_old = now_ms.saturating_sub(header.base_timestamp)
                > self.config.message_timestamp_before_max_ms;
            if too_new || too_old {
                return Err(BatchError::InvalidTimestamp(format!(
                    "timestamps {}..{} are outside [now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms] (now {now_ms})",
                    header.base_timestamp, header.max_timestamp
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Forgets the remembered read position: truncation and deletion move or remove bytes.
    fn forget_read_position(&mut self) {
        *self
            .read_hint
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// Refuses work once an I/O error has taken the log offline.
    fn check_online(&self) -> Result<()> {
        match &self.offline {
            Some(reason) => Err(LogError::Offline(reason.clone())),
            None => Ok(()),
        }
    }

    /// Kafka's rule: an I/O error takes the log offline. After a failed fsync the kernel may have
    /// dropped the dirty pages, so retrying could report durable what never reached the disk.
    fn offline_on_error<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(error @ LogError::Io { .. }) = &result {
            tracing::error!(dir = %self.dir.display(), %error, "I/O error: taking the log offline");
            self.offline = Some(error.to_string());
        }
        result
    }

    /// Takes the log offline for good (its directory is being deleted).
    pub fn mark_offline(&mut self, reason: &str) {
        self.offline = Some(reason.to_string());
    }

    /// Rolls when the batches would not fit the active segment or it is older than `segment.ms`.
    fn maybe_roll(
        &mut self,
        size: u64,
        first_offset: u64,
        last_offset: u64,
        max_timestamp: i64,
    ) -> Result<()> {
        let now_ms = self.clock.now_ms();
        let active = self.active_segment();
        let too_old =
            active.time_waited_for_roll_ms(now_ms, max_timestamp) > self.config.segment_ms;
        let full = !active.can_hold(size, last_offset, self.config.segment_bytes);
        // A follower may skip offsets (its leader's log was compacted or deleted there); a new
        // segment then starts at the first offset actually appended.
        let gap = first_offset > active.next_offset();
        if !active.is_empty() && (too_old || full || gap) {
            self.roll_at(first_offset)?;
        } else if active.is_empty() && active.base_offset() != first_offset {
            self.replace_empty_active(first_offset)?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at the log end offset.
    pub fn roll(&mut self) -> Result<()> {
        if self.active_segment().is_empty() {
            return Ok(());
        }
        let log_end_offset = self.log_end_offset();
        self.roll_at(log_end_offset)
    }

    fn roll_at(&mut self, base_offset: u64) -> Result<()> {
        self.active_segment_mut().seal()?;
        let now_ms = self.clock.now_ms();
        let segment = LogSegment::create(&self.dir, base_offset, self.handles.clone(), now_ms)?;
        self.segments.insert(base_offset, segment);
        sync_dir(&self.dir).at(&self.dir)?;
        Ok(())
    }

    fn replace_empty_active(&mut self, base_offset: u64) -> Result<()> {
        let (old_base, old) = self
            .segments
            .pop_last()
            .expect("a log always has an active segment");
        let deleted = old.delete();
        debug_assert!(old_base < base_offset || self.segments.is_empty());
        // Whatever failed above, the log keeps an active segment: it is never left without one.
        let now_ms = self.clock.now_ms();
        let created = LogSegment::create(&self.dir, base_offset, self.handles.clone(), now_ms);
        let segment = self.offline_on_error(created)?;
        self.segments.insert(base_offset, segment);
        self.offline_on_error(deleted)?;
        sync_dir(&self.dir).at(&self.dir)
    }

    /// Reads whole batches from the one holding `offset`, up to `max_bytes` (but at least one batch).
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Bytes> {
        self.read_up_to(offset, max_bytes, u64::MAX)
    }

    /// As [`Log::read`], returning only batches that end below `max_offset` (exclusive): a
    /// consumer's fetch passes the high watermark, a follower's the log end offset.
    pub fn read_up_to(&self, offset: u64, max_bytes: usize, max_offset: u64) -> Result<Bytes> {
        let log_end_offset = self.log_end_offset();
        if offset < self.log_start_offset || offset > log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        let max_offset = max_offset.min(log_end_offset);
        if offset >= max_offset {
            return Ok(Bytes::new());
        }
        for segment in self.segments_from(offset) {
            if segment.base_offset() >= max_offset {
                break;
            }
            let found = match self.remembered_position(segment, offset)? {
                Some(found) => found,
                None => match segment.find_batch(offset)? {
                    Some(found) => found,
                    None => continue,
                },
            };
            let end_position = if max_offset < segment.next_offset() {
                segment
                    .find_batch(max_offset)?
                    .map_or(segment.size(), |batch| batch.position)
            } else {
                segment.size()
            };
            let records = segment.read(found, max_bytes, end_position)?;
            self.remember_read_end(segment, found.position, &records);
            return Ok(records);
        }
        Ok(Bytes::new())
    }

    /// Where the previous read ended, if it ended exactly at `offset` in `segment`. A consumer or
    /// follower reading sequentially then skips the index search and the batch scan.
    fn remembered_position(
        &self,
        segment: &LogSegment,
        offset: u64,
    ) -> Result<Option<BatchPosition>> {
        let hint = *self
            .read_hint
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match hint {
            Some(hint)
                if hint.segment_base_offset == segment.base_offset()
                    && hint.next_offset == offset =>
            {
                segment.batch_at(hint.position, offset)
            }
            _ => Ok(None),
        }
    }

    fn remember_read_end(&self, segment: &LogSegment, position: u64, records: &[u8]) {
        let mut last_header = None;
        let mut rest = records;
        while let Some(header) = BatchHeader::parse(rest) {
            rest = &rest[header.total_size().min(rest.len())..];
            last_header = Some(header);
        }
        if let Some(last) = last_header {
            let hint = ReadHint {
                segment_base_offset: segment.base_offset(),
                next_offset: last.next_offset() as u64,
                position: position + records.len() as u64,
            };
            *self
                .read_hint
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(hint);
        }
    }

    /// ListOffsets by timestamp: the first offset whose record timestamp is at least `timestamp`,
    /// with that record's timestamp; `None` when every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(u64, i64)>> {
        for segment in self.segments.values() {
            if segment.max_timestamp() < timestamp {
                continue;
            }
            let Some(found) = segment.find_batch_by_timestamp(timestamp)? else {
                continue;
            };
            let batch = segment.read(found, 1, segment.size())?;
            if let Some((offset, record_timestamp)) =
                first_record_at_or_after(&found.header, &batch, timestamp, self.log_start_offset)
            {
                return Ok(Some((offset, record_timestamp)));
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: the offset of the record with the largest timestamp and that
    /// timestamp; `None` for an empty log.
    pub fn max_timestamp_and_offset(&self) -> Result<Option<(u64, i64)>> {
        let Some(segment) = self
            .segments
            .values()
            .filter(|segment| !segment.is_empty() && segment.max_timestamp() >= 0)
            // The first segment reaching the maximum, as Kafka answers.
            .fold(None::<&LogSegment>, |best, segment| match best {
                Some(best) if best.max_timestamp() >= segment.max_timestamp() => Some(best),
                _ => Some(segment),
            })
        else {
            return Ok(None);
        };
        let max_timestamp = segment.max_timestamp();
        let Some(found) = segment.find_batch(segment.offset_of_max_timestamp())? else {
            return Ok(None);
        };
        let batch = segment.read(found, 1, segment.size())?;
        let offset = match decode_records(&batch) {
            Ok(records) if !found.header.is_log_append_time() => records
                .iter()
                .find(|record| record.timestamp == max_timestamp)
                .map_or(found.header.last_offset() as u64, |record| {
                    record.offset as u64
                }),
            _ => found.header.last_offset() as u64,
        };
        Ok(Some((offset, max_timestamp)))
    }

    /// Removes every batch from the one holding `offset` on (a follower's truncation after
    /// OffsetForLeaderEpoch). Returns the new log end offset, which is at most `offset`.
    pub fn truncate_to(&mut self, offset: u64) -> Result<u64> {
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        self.forget_read_position();
        if offset <= self.first_segment().base_offset() || offset < self.log_start_offset {
            self.truncate_fully_and_start_at(offset)?;
            return Ok(offset);
        }
        let doomed: Vec<u64> = self
            .segments
            .range(offset..)
            .map(|(base, _)| *base)
            .collect();
        for base in doomed {
            if let Some(segment) = self.segments.remove(&base) {
                segment.delete()?;
            }
        }
        let active = self.active_segment_mut();
        active.activate()?;
        active.truncate_to(offset)?;
        if self.log_end_offset() < self.log_start_offset {
            // The batch holding `offset` began below the log start offset (DeleteRecords inside a
            // batch), so nothing readable is left: start afresh at `offset` as Kafka does below
            // the log start, rather than let the log end fall below the log start.
            self.truncate_fully_and_start_at(offset)?;
            return Ok(offset);
        }
        let log_end_offset = self.log_end_offset();
        self.epoch_cache.truncate_from_end(log_end_offset)?;
        self.delete_producer_snapshots_above(log_end_offset)?;
        self.recovery_point = self.recovery_point.min(log_end_offset);
        sync_dir(&self.dir).at(&self.dir)?;
        Ok(log_end_offset)
    }

    /// Deletes everything and starts an empty log at `offset` (a follower far behind its leader's
    /// log start, or truncated below its own first segment).
    pub fn truncate_fully_and_start_at(&mut self, offset: u64) -> Result<()> {
        self.forget_read_position();
        let mut deleted = Ok(());
        while let Some((_, segment)) = self.segments.pop_first() {
            deleted = deleted.and(segment.delete());
        }
        // Whatever failed above, the log keeps an active segment: it is never left without one.
        let now_ms = self.clock.now_ms();
        let created = LogSegment::create(&self.dir, offset, self.handles.clone(), now_ms);
        let segment = self.offline_on_error(created)?;
        self.segments.insert(offset, segment);
        self.offline_on_error(deleted)?;
        self.log_start_offset = offset;
        self.recovery_point = offset;
        self.epoch_cache.clear()?;
        // A snapshot at or below `offset` describes batches that are gone: none is kept.
        for (_, path) in producer_snapshots(&self.dir)? {
            std::fs::remove_file(&path).at(&path)?;
        }
        sync_dir(&self.dir).at(&self.dir)
    }

    /// DeleteRecords: moves the log start offset up to `offset` and deletes segments that lie
    /// wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: u64) -> Result<u64> {
        let log_end_offset = self.log_end_offset();
        if offset > log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            self.epoch_cache.truncate_from_start(offset)?;
            self.delete_segments_while(u64::MAX, |_, _, _| false)?;
        }
        Ok(self.log_start_offset)
    }

    /// Retention: deletes closed segments, oldest first, that are older than `retention.ms`, or
    /// while the log exceeds `retention.bytes`, or that lie below the log start offset. Never
    /// deletes data at or above `high_watermark`, nor the active segment.
    /// Returns the number of segments deleted.
    pub fn apply_retention(&mut self, high_watermark: u64) -> Result<usize> {
        let now_ms = self.clock.now_ms();
        let (retention_ms, retention_bytes) =
            (self.config.retention_ms, self.config.retention_bytes);
        let mut excess_bytes = if retention_bytes < 0 {
            0
        } else {
            self.size_in_bytes().saturating_sub(retention_bytes as u64)
        };
        self.delete_segments_while(high_watermark, |segment, last_modified_ms, _| {
            let newest_ms = if segment.max_timestamp() >= 0 {
                segment.max_timestamp()
            } else {
                last_modified_ms
            };
            let expired = retention_ms >= 0 && now_ms.saturating_sub(newest_ms) > retention_ms;
            let over_size = retention_bytes >= 0 && excess_bytes >= segment.size();
            if over_size {
                excess_bytes -= segment.size();
            }
            expired || over_size
        })
    }

    /// Deletes closed segments from the oldest while `delete` says so or they lie below the log start
    /// offset, stopping at the first segment kept or one whose data reaches `upper_bound`.
    fn delete_segments_while(
        &mut self,
        upper_bound: u64,
        mut delete: impl FnMut(&LogSegment, i64, u64) -> bool,
    ) -> Result<usize> {
        let mut deleted = 0;
        while self.segments.len() > 1 {
            let mut bases = self.segments.keys();
            let (Some(&base), Some(&next_base)) = (bases.next(), bases.next()) else {
                break;
            };
            if next_base > upper_bound {
                break;
            }
            let segment = &self.segments[&base];
            let last_modified_ms = if segment.max_timestamp() < 0 {
                segment.last_modified_ms()?
            } else {
                0
            };
            let below_start = next_base <= self.log_start_offset;
            if !below_start && !delete(segment, last_modified_ms, next_base) {
                break;
            }
            let segment = self.segments.remove(&base).expect("base was just listed");
            segment.delete()?;
            deleted += 1;
            if next_base > self.log_start_offset {
                self.log_start_offset = next_base;
            }
        }
        if deleted > 0 {
            self.forget_read_position();
            self.epoch_cache
                .truncate_from_start(self.log_start_offset)?;
            sync_dir(&self.dir).at(&self.dir)?;
        }
        Ok(deleted)
    }

    /// fsyncs everything appended so far and moves the recovery point to the log end offset.
    pub fn flush(&mut self) -> Result<()> {
        self.check_online()?;
        let flushed = self.active_segment_mut().flush();
        self.offline_on_error(flushed)?;
        self.recovery_point = self.log_end_offset();
        self.unflushed_messages = 0;
        self.last_flush_ms = self.clock.now_ms();
        Ok(())
    }

    /// Flushes when the last flush is older than `flush.ms`; called by the broker's scheduler.
    pub fn maybe_flush_by_time(&mut self) -> Result<bool> {
        let now_ms = self.clock.now_ms();
        if self.unflushed_messages > 0
            && now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_ms
        {
            self.flush()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Rolls when the active segment has outlived `segment.ms` by the wall clock even without new
    /// appends, so time-based retention can reach quiet partitions.
    pub fn maybe_roll_by_time(&mut self) -> Result<bool> {
        let now_ms = self.clock.now_ms();
        let active = self.active_segment();
        if !active.is_empty()
            // No incoming timestamp: judged by how long the segment has been open.
            && active.time_waited_for_roll_ms(now_ms, -1) > self.config.segment_ms
        {
            self.roll()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Deletes the whole log directory (DeleteTopics, or a replica moved away).
    pub fn delete(mut self) -> Result<()> {
        while let Some((_, segment)) = self.segments.pop_first() {
            segment.delete()?;
        }
        std::fs::remove_dir_all(&self.dir).at(&self.dir)
    }
}

/// Suffix of producer-state snapshot files, `<20-digit offset>.snapshot` as in Kafka.
pub const PRODUCER_SNAPSHOT_SUFFIX: &str = "snapshot";

/// The partition's producer-state snapshots, oldest first.
fn producer_snapshots(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut snapshots = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some((stem, suffix)) = name.to_str().and_then(|name| name.split_once('.')) else {
            continue;
        };
        if suffix == PRODUCER_SNAPSHOT_SUFFIX
            && stem.len() == 20
            && let Ok(offset) = stem.parse::<u64>()
        {
            snapshots.push((offset, entry.path()));
        }
    }
    snapshots.sort();
    Ok(snapshots)
}

/// Lists segment base offsets in `dir`, deleting leftovers that have no log file: index files
/// of a deleted segment and temporary files of an interrupted checkpoint write.
fn scan_segment_files(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, suffix)) = name.split_once('.') else {
            continue;
        };
        if suffix == "tmp" || name.ends_with(".tmp") {
            orphans.push(entry.path());
            continue;
        }
        let Ok(base) = stem.parse::<u64>() else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        if suffix == LOG_SUFFIX {
            bases.push(base);
        } else if (suffix == super::segment::INDEX_SUFFIX || suffix == TIME_INDEX_SUFFIX)
            && !dir.join(format!("{stem}.{LOG_SUFFIX}")).exists()
        {
            orphans.push(entry.path());
        }
    }
    for orphan in orphans {
        std::fs::remove_file(&orphan).at(&orphan)?;
    }
    bases.sort_unstable();
    Ok(bases)
}

fn delete_segment_files(
    dir: &Path,
    base: u64,
    opened: Option<LogSegment>,
    handles: &FileHandleCache,
) -> Result<()> {
    if let Some(segment) = opened {
        return segment.delete();
    }
    for suffix in [LOG_SUFFIX, super::segment::INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = super::segment::segment_path(dir, base, suffix);
        handles.evict(&path);
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(error).at(&path);
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::storage::batch::tests::client_batch;
    use crate::storage::batch::{BatchHeader, PATCHED_PREFIX_LEN, patched_prefix};
    use kafka_protocol::ResponseError;

    const NOW_MS: i64 = 1_700_000_000_000;

    struct Fixture {
        dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        handles: Arc<FileHandleCache>,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                dir: tempfile::tempdir().expect("tempdir"),
                clock: Arc::new(ManualClock::new(NOW_MS)),
                handles: FileHandleCache::new(16),
            }
        }

        fn open(&self, config: LogConfig, options: LogOpenOptions) -> (Log, RecoveryReport) {
            Log::open(
                self.dir.path(),
                config,
                options,
                self.clock.clone(),
                self.handles.clone(),
            )
            .expect("open")
        }
    }

    fn small_segments() -> LogConfig {
        LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 0,
            ..LogConfig::default()
        }
    }

    /// Offsets of each batch in a read, as (base, last).
    fn batches_in(bytes: &[u8]) -> Vec<(i64, i64)> {
        let mut batches = Vec::new();
        let mut rest = bytes;
        while let Some(header) = BatchHeader::parse(rest) {
            batches.push((header.base_offset, header.last_offset()));
            rest = &rest[header.total_size()..];
        }
        assert!(rest.is_empty(), "reads hold whole batches only");
        batches
    }

    #[test]
    fn append_assigns_offsets_and_stamps_the_epoch() {
        let fixture = Fixture::new();
        let (mut log, _) = fixture.open(LogConfig::default(), LogOpenOptions::default());
        let batch = client_batch(3, 10, NOW_MS);
        let first = log.append(&batch, 5).expect("append");
        assert_eq!(
            (first.first_offset, first.last_offset, first.log_end_offset),
            (0, 2, 3)
        );
        let second = log.append(&batch, 5).expect("append");
        assert_eq!((second.first_offset, second.last_offset), (3, 5));
        assert_eq!(second.max_timestamp, NOW_MS + 2);
        let stored = log.read(3, 1 << 20).expect("read");
        let header = BatchHeader::parse(&stored).expect("a batch");
        assert_eq!(header.base_offset, 3);
        assert_eq!(header.partition_leader_epoch, 5);
        // Everything after the patched prefix is the producer's bytes.
        assert_eq!(&stored[16..], &batch[16..]);
        assert_eq!(log.epoch_entries(), vec![(5, 0)]);
    }

    #[test]
    fn a_refused_append_changes_nothing() {
        let fixture = Fixture::new();
        let (mut log, _) = fixture.open(LogConfig::default(), LogOpenOptions::default());
        log.append(&client_batch(2, 10, NOW_MS), 0).expect("append");
        let mut corrupt = client_batch(2, 10, NOW_MS);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let error = log.append(&corrupt, 0).expect_err("a bad CRC");
        assert_eq!(error.kafka_error_code(), ResponseError::CorruptMessage);
        // Kafka takes exactly one batch per partition from a producer.
        let mut set = client_batch(1, 10, NOW_MS);
        set.extend_from_slice(&client_batch(1, 10, NOW_MS));
        let error = log.append(&set, 0).expect_err("two batches");
        assert_eq!(error.kafka_error_code(), ResponseError::InvalidRecord);
        let too_large = client_batch(1, 2 << 20, NOW_MS);
        assert_eq!(
            log.append(&too_large, 0)
                .expect_err("too large")
                .kafka_error_code(),
            ResponseError::MessageTooLarge
        );
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(
            log.size_in_bytes(),
            client_batch(2, 10, NOW_MS).len() as u64
        );
    }

    #[test]
    fn reads_return_whole_batches_and_at_least_one() {
        let fixture = Fixture::new();
        let (mut log, _) = fixture.open(small_segments(), LogOpenOptions::default());
        for _ in 0..20 {
            log.append(&client_batch(4, 50, NOW_MS), 0).expect("append");
        }
        assert!(log.segment_count() > 3, "small segments roll");
        // From the middle of a batch: the batch holding the offset comes first.
        assert_eq!(batches_in(&log.read(6, 1).expect("read")), vec![(4, 7)]);
        // max_bytes smaller than one batch still returns one batch.
        assert_eq!(batches_in(&log.read(0, 10).expect("read")).len(), 1);
        // A read never crosses into the next segment, and stays within max_bytes when it can.
        let batch_size = client_batch(4, 50, NOW_MS).len();
        let read = log.read(0, batch_size * 2 + 1).expect("read");
        assert_eq!(batches_in(&read), vec![(0, 3), (4, 7)]);
        // Every offset can be read, across segments.
        for offset in 0..80 {
            let batches = batches_in(&log.read(offset, 1).expect("read"));
            assert!(
                batches[0].0 <= offset as i64 && offset as i64 <= batches[0].1,
                "offset {offset}"
            );
        }
        assert!(log.read(80, 100).expect("read at the end").is_empty());
        assert_eq!(
            log.read(81, 100)
                .expect_err("past the end")
                .kafka_error_code(),
            ResponseError::OffsetOutOfRange
        );
        // An upper bound (the high watermark) hides batches at or past it.
        assert_eq!(
            batches_in(&log.read_up_to(0, 1 << 20, 8).expect("read")),
            vec![(0, 3), (4, 7)]
        );
        assert!(log.read_up_to(8, 1 << 20, 8).expect("read").is_empty());
    }

    #[test]
    fn segments_roll_by_size_and_by_age() {
        let fixture = Fixture::new();
        let (mut log, _) = fixture.open(
            LogConfig {
                segment_ms: 60_000,
                ..LogConfig::default()
            },
            LogOpenOptions::default(),
        );
        // Age is judged by record timestamps: old timestamps alone never roll.
        let month_ago = NOW_MS - 30 * 24 * 60 * 60 * 1000;
        log.append(&client_batch(1, 10, month_ago), 0)
            .expect("append");
        log.append(&client_batch(1, 10, month_ago + 30_000), 0)
            .expect("append");
        assert_eq!(log.segment_count(), 1);
        log.append(&client_batch(1, 10, month_ago + 61_000), 0)
            .expect("append");
        assert_eq!(log.segment_base_offsets(), vec![0, 2]);
        // A quiet segment rolls by the wall clock once it has been open longer than segment.ms.
        assert!(!log.maybe_roll_by_time().expect("roll check"));
        fixture.clock.advance_ms(61_000);
        assert!(log.maybe_roll_by_time().expect("roll check"));
        assert_eq!(log.segment_base_offsets(), vec![0, 2, 3]);

        let mut config = log.config().clone();
        config.segment_bytes = 200;
        log.set_config(config);
        // ~170-byte batches: the first fills the empty segment 3, the second cannot join it.
        log.append(&client_batch(1, 100, NOW_MS), 0)
            .expect("append");
        log.append(&client_batch(1, 100, NOW_MS), 0)
            .expect("append");
        assert_eq!(log.segment_base_offsets(), vec![0, 2, 3, 4]);
        let bigger_than_a_segment = client_batch(1, 300, NOW_MS);
        // Kafka's RECORD_LIST_TOO_LARGE.
        assert_eq!(
            log.append(&bigger_than_a_segment, 0)
                .expect_err("too big")
                .kafka_error_code(),
            ResponseError::RecordListTooLarge
        );
    }

    #[test]
    fn retention_deletes_closed_segments_below_the_high_watermark() {
        let fixture = Fixture::new();
        let (mut log, _) = fixture.open(small_segments(), LogOpenOptions::default());
        for i in 0..10 {
            log.append(&client_batch(4, 200, NOW_MS + i), 0)
                .expect("append");
        }
        let segments = log.segment_count();
        assert!(segments >= 5);
        // Nothing is old enough yet.
        assert_eq!(log.apply_retention(u64::MAX).expect("retention"), 0);
        // Old enough, but the high watermark protects everything.
        fixture.clock.advance_ms(8 * 24 * 60 * 60 * 1000);
        assert_eq!(log.apply_retention(0).expect("retention"), 0);
        // Old enough and committed: every closed segment goes, the active one stays.
        let deleted = log
            .apply_retention(log.log_end_offset())
            .expect("retention");
        assert_eq!(deleted, segments - 1);
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
        assert_eq!(
            log.read(0, 100).expect_err("deleted").kafka_error_code(),
            ResponseError::OffsetOutOfRange
        );
    }

    #[test]
    fn retention_by_bytes_keeps_the_newest() {
        let fixture = Fixture::new();
        let mut config = small_segments();
        config.retention_bytes = 2048;
        let (mut log, _) = fixture.open(config, LogOpenOptions::default());
        for i in 0..20 {
            log.append(&client_batch(4, 200, NOW_MS + i), 0)
                .expect("append");
        }
        log.apply_retention(u64::MAX).expect("retention");
        assert!(
            log.size_in_bytes() <= 2048 + 1024,
            "within one segment of the limit"
        );
        assert!(log.size_in_bytes() >= 2048 - 1024);
        assert_eq!(log.log_end_offset(), 80);
    }

    #[test]
    fn delete_records_moves_the_log_start_offset() {
        let fixture = Fixture::new();
        let (mut log, _) = fixture.open(small_segments(), LogOpenOptions::default());
        for _ in 0..10 {
            log.append(&client_batch(4, 200, NOW_MS), 0)
                .expect("append");
        }
        let before = log.segment_count();
        assert_eq!(log.delete_records_before(21).expect("delete"), 21);
        assert_eq!(log.log_start_offset(), 21);
        assert!(log.segment_count() < before);
        assert_eq!(
            log.read(20, 1).expect_err("below start").kafka_error_code(),
            ResponseError::OffsetOutOfRange
        );
        // The batch holding the start offset is still served whole, as in Kafka.
        assert_eq!(batches_in(&log.read(21, 1).expect("read")), vec![(20, 23)]);
        assert_eq!(log.delete_records_before(5).expect("lower is a no-op"), 21);
        assert_eq!(
            log.delete_records_before(41)
                .expect_err("past the end")
                .kafka_error_code(),
            ResponseError::OffsetOutOfRange
        );
    }

    #[test]
    fn truncation_cuts_at_a_batch_boundary_and_forgets_later_epochs() {
        let fixture = Fixture::new();
        let (mut log, _) = fixture.open(small_segments(), LogOpenOptions::default());
        for epoch in [1, 1, 1, 2, 2, 3, 3, 3] {
            log.append(&client_batch(4, 200, NOW_MS), epoch)
                .expect("append");
        }
        assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 12), (3, 20)]);
        assert_eq!(log.end_offset_for_epoch(2), (2, 20));
        assert_eq!(log.truncate_to(14).expect("truncate"), 12);
        assert_eq!(log.log_end_offset(), 12);
        assert_eq!(log.epoch_entries(), vec![(1, 0)]);
        assert_eq!(log.end_offset_for_epoch(1), (1, 12));
        // The log goes on from the cut.
        let info = log
            .append(&client_batch(4, 200, NOW_MS), 4)
            .expect("append");
        assert_eq!(info.first_offset, 12);
        assert_eq!(batches_in(&log.read(12, 1).expect("read")), vec![(12, 15)]);
        assert_eq!(log.truncate_to(100).expect("past the end is a no-op"), 16);
        assert_eq!(log.truncate_to(0).expect("truncate all"), 0);
        assert_eq!(log.log_end_offset(), 0);
        assert!(log.epoch_entries().is_empty());
    }

    #[test]
    fn followers_append_with_the_leaders_offsets_and_epochs() {
        let fixture = Fixture::new();
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (mut leader, _) = Log::open(
            leader_dir.path(),
            LogConfig::default(),
            LogOpenOptions::default(),
            fixture.clock.clone(),
            fixture.handles.clone(),
        )
        .expect("open leader");
        leader
            .append(&client_batch(3, 10, NOW_MS), 7)
            .expect("append");
        leader
            .append(&client_batch(2, 10, NOW_MS), 8)
            .expect("append");
        let (mut follower, _) = fixture.open(LogConfig::default(), LogOpenOptions::default());
        let fetched = leader.read(0, 1 << 20).expect("fetch");
        let info = follower.append_as_follower(&fetched).expect("replicate");
        assert_eq!((info.first_offset, info.last_offset), (0, 4));
        assert_eq!(follower.read(0, 1 << 20).expect("read"), fetched);
        assert_eq!(follower.epoch_entries(), vec![(7, 0), (8, 3)]);
        let error = follower
            .append_as_follower(&fetched)
            .expect_err("offsets must move forward");
        assert!(matches!(error, LogError::NonMonotonicOffset { .. }));
    }

    #[test]
    fn timestamps_find_the_first_record_at_or_after() {
        let fixture = Fixture::new();
        let (mut log, _) = fixture.open(small_segments(), LogOpenOptions::default());
        for i in 0..10 {
            log.append(&client_batch(4, 100, 1_000 + i * 10), 0)
                .expect("append");
        }
        // Batch i holds timestamps 1000+10i .. 1000+10i+3 at offsets 4i .. 4i+3.
        assert_eq!(
            log.offset_for_timestamp(0).expect("lookup"),
            Some((0, 1_000))
        );
        assert_eq!(
            log.offset_for_timestamp(1_052).expect("lookup"),
            Some((22, 1_052))
        );
        assert_eq!(
            log.offset_for_timestamp(1_055).expect("lookup"),
            Some((24, 1_060))
        );
        assert_eq!(log.offset_for_timestamp(1_094).expect("lookup"), None);
        assert_eq!(
            log.max_timestamp_and_offset().expect("max"),
            Some((39, 1_093))
        );
    }

    #[test]
    fn reopening_keeps_everything() {
        let fixture = Fixture::new();
        let (mut log, _) = fixture.open(small_segments(), LogOpenOptions::default());
        for epoch in 0..12 {
            log.append(&client_batch(4, 100, NOW_MS), epoch / 4)
                .expect("append");
        }
        log.flush().expect("flush");
        let before = log.read(0, 1 << 20).expect("read");
        let bases = log.segment_base_offsets();
        let epochs = log.epoch_entries();
        drop(log);
        for clean_shutdown in [true, false] {
            let (log, report) = fixture.open(
                small_segments(),
                LogOpenOptions {
                    recovery_point: 48,
                    clean_shutdown,
                    ..Default::default()
                },
            );
            assert_eq!(report.bytes_truncated, 0);
            assert_eq!(log.log_end_offset(), 48);
            assert_eq!(log.segment_base_offsets(), bases);
            assert_eq!(log.epoch_entries(), epochs);
            assert_eq!(log.read(0, 1 << 20).expect("read"), before);
        }
    }

    #[test]
    fn flush_messages_and_flush_ms_move_the_recovery_point() {
        let fixture = Fixture::new();
        let config = LogConfig {
            flush_messages: 10,
            flush_ms: 1_000,
            ..LogConfig::default()
        };
        let (mut log, _) = fixture.open(config, LogOpenOptions::default());
        log.append(&client_batch(4, 10, NOW_MS), 0).expect("append");
        log.append(&client_batch(4, 10, NOW_MS), 0).expect("append");
        assert_eq!(log.recovery_point(), 0, "8 messages: below flush.messages");
        log.append(&client_batch(4, 10, NOW_MS), 0).expect("append");
        assert_eq!(log.recovery_point(), 12, "12 messages: flushed");
        log.append(&client_batch(1, 10, NOW_MS), 0).expect("append");
        assert!(!log.maybe_flush_by_time().expect("flush check"));
        fixture.clock.advance_ms(1_000);
        assert!(log.maybe_flush_by_time().expect("flush check"));
        assert_eq!(log.recovery_point(), 13);
        assert!(!log.maybe_flush_by_time().expect("nothing new to flush"));
    }

    /// The resident cost of an idle partition, quoted in ARCHITECTURE.md: fixed-size structs,
    /// no buffers beyond the index entries still pending.
    #[test]
    fn an_idle_partition_is_small() {
        let log_bytes = std::mem::size_of::<Log>();
        let segment_bytes = std::mem::size_of::<LogSegment>();
        assert!(log_bytes < 512, "Log is {log_bytes} bytes");
        assert!(segment_bytes < 512, "LogSegment is {segment_bytes} bytes");
        println!("size_of Log = {log_bytes} B, LogSegment = {segment_bytes} B");
    }

    /// The base offset lies outside the CRC, so damage to it is caught by requiring each batch
    /// to start at the previous one's next offset.
    #[test]
    fn a_damaged_base_offset_is_cut_on_recovery() {
        let fixture = Fixture::new();
        let (mut log, _) = fixture.open(LogConfig::default(), LogOpenOptions::default());
        let batch = client_batch(2, 10, NOW_MS);
        for _ in 0..3 {
            log.append(&batch, 0).expect("append");
        }
        drop(log);
        let path = fixture.dir.path().join("00000000000000000000.log");
        let mut bytes = std::fs::read(&path).expect("read segment");
        let last_batch = 2 * batch.len();
        bytes[last_batch..last_batch + 8].copy_from_slice(&((1u64 << 32) + 4).to_be_bytes());
        std::fs::write(&path, &bytes).expect("write segment");
        let (log, report) = fixture.open(LogConfig::default(), LogOpenOptions::default());
        assert_eq!(report.bytes_truncated, batch.len() as u64);
        assert_eq!(log.log_end_offset(), 4);
    }

    /// A follower's record set may skip offsets between batches; each gap starts a new segment,
    /// so the log survives a reopen whole (recovery requires contiguous offsets per segment).
    #[test]
    fn a_gap_inside_a_replicated_set_starts_a_new_segment() {
        let fixture = Fixture::new();
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let (mut leader, _) = Log::open(
            leader_dir.path(),
            LogConfig::default(),
            LogOpenOptions::default(),
            fixture.clock.clone(),
            fixture.handles.clone(),
        )
        .expect("open leader");
        leader
            .append(&client_batch(3, 10, NOW_MS), 1)
            .expect("append");
        let first = leader.read(0, 1 << 20).expect("read");
        let mut second = client_batch(2, 10, NOW_MS);
        let prefix = patched_prefix(&second, 10, 1);
        second[..PATCHED_PREFIX_LEN].copy_from_slice(&prefix);
        let mut set = first.to_vec();
        set.extend_from_slice(&second);
        let (mut follower, _) = fixture.open(LogConfig::default(), LogOpenOptions::default());
        follower
            .append_as_follower(&set)
            .expect("replicate across a gap");
        assert_eq!(follower.log_end_offset(), 12);
        assert_eq!(follower.segment_base_offsets(), vec![0, 10]);
        follower.flush().expect("flush");
        drop(follower);
        let (follower, report) = fixture.open(
            LogConfig::default(),
            LogOpenOptions {
                clean_shutdown: false,
                ..LogOpenOptions::default()
            },
        );
        assert_eq!(report.bytes_truncated, 0);
        assert_eq!(report.segments_deleted, 0);
        assert_eq!(follower.log_end_offset(), 12);
    }

    #[test]
    fn timestamps_too_far_in_the_future_are_refused() {
        let fixture = Fixture::new();
        let (mut log, _) = fixture.open(LogConfig::default(), LogOpenOptions::default());
        let two_hours_ahead = NOW_MS + 2 * 60 * 60 * 1000;
        let error = log
            .append(&client_batch(1, 10, two_hours_ahead), 0)
            .expect_err("future");
        assert_eq!(error.kafka_error_code(), ResponseError::InvalidTimestamp);
        log.append(&client_batch(1, 10, NOW_MS + 60_000), 0)
            .expect("a minute ahead is fine");
        log.append(&client_batch(1, 10, NOW_MS - 365 * 24 * 60 * 60 * 1000), 0)
            .expect("old is fine by default");
        let mut config = log.config().clone();
        config.message_timestamp_before_max_ms = 1000;
        log.set_config(config);
        let error = log
            .append(&client_batch(1, 10, NOW_MS - 5_000), 0)
            .expect_err("too old");
        assert_eq!(error.kafka_error_code(), ResponseError::InvalidTimestamp);
    }

    /// Snapshots are kept opaque beside the log: the newest at or below the log end is the one
    /// read, older ones go when a newer is written, ones above the log end (the log was truncated
    /// under them) are dropped, and an offline log (deleted, its directory perhaps reused) writes
    /// none. Headers after a snapshot's offset are visited from the right batch on, across
    /// segments.
    #[test]
    fn producer_snapshots_follow_the_log_end_and_headers_are_read_from_an_offset() {
        let fixture = Fixture::new();
        let (mut log, _) = fixture.open(small_segments(), LogOpenOptions::default());
        for _ in 0..6 {
            log.append(&client_batch(2, 200, NOW_MS), 0)
                .expect("append");
        }
        assert!(log.segment_count() > 2, "the batches span segments");
        log.write_producer_snapshot(4, b"at four")
            .expect("snapshot");
        log.write_producer_snapshot(8, b"at eight")
            .expect("snapshot");
        assert_eq!(
            log.latest_producer_snapshot().expect("read"),
            Some((8, b"at eight".to_vec()))
        );
        let mut bases = Vec::new();
        log.for_each_batch_header_from(8, |header| bases.push(header.base_offset))
            .expect("headers");
        assert_eq!(bases, [8, 10]);
        log.truncate_to(6).expect("truncate");
        assert_eq!(
            log.latest_producer_snapshot().expect("read"),
            None,
            "the snapshot at 8 is above the log end 6, and the one at 4 was replaced by it"
        );
        log.mark_offline("deleted");
        assert!(matches!(
            log.write_producer_snapshot(6, b"late"),
            Err(LogError::Offline(_))
        ));
    }
}
