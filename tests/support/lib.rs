//! Helpers shared by the multi-process tests in `tests/`.
//!
//! Everything a storage test writes is derived from a sequence number ([`BatchSpec`]), so a test
//! that reopens a log, possibly in another process and after a crash, can regenerate what every
//! stored batch must be and compare it byte for byte instead of trusting what it reads back.

pub mod broker;
pub mod clients;
pub mod plugins;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, anyhow, ensure};
use bytes::Bytes;
use weir::clock::SystemClock;
use weir::storage::batch::{patched_prefix, validate_record_set};
use weir::storage::checkpoint::{RECOVERY_POINT_CHECKPOINT, read_offsets};
use weir::storage::records::{ProducerRecord, decode_records, encode_producer_batch};
use weir::storage::segment::segment_path;
use weir::storage::{
    AppendOrigin, BatchHeader, Compression, Log, LogConfig, LogManager, TopicPartition,
};

/// Timestamp of record 0 of batch 0. Fixed (not "now") so a batch's bytes depend on its
/// sequence number alone.
pub const BASE_TIMESTAMP_MS: i64 = 1_600_000_000_000;
/// Timestamp distance between consecutive batches; larger than any record count, so record
/// timestamps grow strictly along the log and every record has a unique timestamp.
pub const BATCH_TIMESTAMP_STEP_MS: i64 = 100;
/// Most records [`BatchSpec::new`] puts in one batch.
pub const MAX_RECORDS_PER_BATCH: usize = 8;

/// SplitMix64's finaliser: spreads nearby seeds (0, 1, 2, ...) over the whole `u64` range.
pub fn mix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A tiny seeded xorshift generator: reproducible kill points and garbage without a `rand`
/// dependency.
#[derive(Debug, Clone)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    pub fn new(seed: u64) -> Self {
        // Xorshift never leaves the all-zero state, so force a set bit.
        XorShift64 {
            state: mix64(seed) | 1,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// A value in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "empty range {low}..={high}");
        low + self.next_u64() % (high - low + 1)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// The shape and content of one test batch, all derived from `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpec {
    pub seq: u64,
    pub records: usize,
    /// Minimum length of each record value; values are padded up to it.
    pub value_len: usize,
}

impl BatchSpec {
    /// Batch `seq` with a varying (but deterministic) record count and value size, so segments
    /// fill unevenly and batch boundaries fall at irregular file positions.
    pub fn new(seq: u64) -> Self {
        let h = mix64(seq ^ 0x5eed_0fba_7c00);
        BatchSpec {
            seq,
            records: 1 + (h % MAX_RECORDS_PER_BATCH as u64) as usize,
            value_len: 32 + ((h >> 16) % 1200) as usize,
        }
    }

    pub fn with_shape(seq: u64, records: usize, value_len: usize) -> Self {
        assert!(records > 0, "a batch holds at least one record");
        assert!(
            records <= MAX_RECORDS_PER_BATCH,
            "timestamps stay unique only up to {MAX_RECORDS_PER_BATCH} records per batch"
        );
        BatchSpec {
            seq,
            records,
            value_len,
        }
    }

    pub fn timestamp(&self, record: usize) -> i64 {
        BASE_TIMESTAMP_MS + self.seq as i64 * BATCH_TIMESTAMP_STEP_MS + record as i64
    }

    pub fn max_timestamp(&self) -> i64 {
        self.timestamp(self.records - 1)
    }

    pub fn key(&self, record: usize) -> Vec<u8> {
        format!("key-{}-{record}", self.seq).into_bytes()
    }

    /// `batch-<seq>-record-<i>|` padded with letters that also depend on seq and i, so a value
    /// moved to another batch or record would not compare equal.
    pub fn value(&self, record: usize) -> Vec<u8> {
        let mut value = format!("batch-{}-record-{record}|", self.seq).into_bytes();
        let mut fill = XorShift64::new(self.seq.wrapping_mul(1_000_003) ^ record as u64);
        while value.len() < self.value_len {
            value.push(b'a' + (fill.next_u64() % 26) as u8);
        }
        value
    }

    /// The batch as a producer sends it: base offset 0, leader epoch -1, no producer id.
    pub fn encode(&self) -> Vec<u8> {
        let keys: Vec<Vec<u8>> = (0..self.records).map(|i| self.key(i)).collect();
        let values: Vec<Vec<u8>> = (0..self.records).map(|i| self.value(i)).collect();
        let records: Vec<ProducerRecord<'_>> = (0..self.records)
            .map(|i| ProducerRecord {
                key: Some(&keys[i]),
                value: Some(&values[i]),
                headers: &[],
                timestamp: self.timestamp(i),
            })
            .collect();
        encode_producer_batch(&records, Compression::None)
            .expect("encoding an in-memory batch of plain records cannot fail")
    }

    /// The batch as the leader stores it: the producer's bytes with base offset and leader
    /// epoch rewritten (they sit outside the CRC).
    pub fn stored(&self, base_offset: u64, leader_epoch: i32) -> Vec<u8> {
        let mut batch = self.encode();
        let prefix = patched_prefix(&batch, base_offset, leader_epoch);
        batch[..prefix.len()].copy_from_slice(&prefix);
        batch
    }

    /// Checks a stored batch record by record (so a failure names what differs) and then byte
    /// for byte against [`BatchSpec::stored`].
    pub fn check_stored(
        &self,
        stored: &[u8],
        base_offset: u64,
        leader_epoch: i32,
    ) -> anyhow::Result<()> {
        let header = BatchHeader::parse(stored).context("stored batch has no full header")?;
        ensure!(
            header.base_offset == base_offset as i64,
            "batch {} stored at base offset {}, expected {base_offset}",
            self.seq,
            header.base_offset
        );
        ensure!(
            header.partition_leader_epoch == leader_epoch,
            "batch {} stored with leader epoch {}, expected {leader_epoch}",
            self.seq,
            header.partition_leader_epoch
        );
        let records = decode_records(stored)
            .map_err(|error| anyhow!("batch {} does not decode: {error}", self.seq))?;
        ensure!(
            records.len() == self.records,
            "batch {} holds {} records, expected {}",
            self.seq,
            records.len(),
            self.records
        );
        for (i, record) in records.iter().enumerate() {
            ensure!(
                record.offset == (base_offset + i as u64) as i64,
                "batch {} record {i} at offset {}",
                self.seq,
                record.offset
            );
            ensure!(
                record.value.as_deref() == Some(self.value(i).as_slice()),
                "batch {} record {i} has value {:?}",
                self.seq,
                record.value.as_ref().map(|v| String::from_utf8_lossy(v))
            );
            ensure!(
                record.timestamp == self.timestamp(i),
                "batch {} record {i} has timestamp {}",
                self.seq,
                record.timestamp
            );
        }
        ensure!(
            stored == self.stored(base_offset, leader_epoch).as_slice(),
            "batch {} decodes right but its bytes differ from what was written",
            self.seq
        );
        Ok(())
    }
}

/// One batch a test appended: what it was and where it landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub spec: BatchSpec,
    pub base_offset: u64,
    pub leader_epoch: i32,
}

impl Written {
    pub fn last_offset(&self) -> u64 {
        self.base_offset + self.spec.records as u64 - 1
    }

    pub fn next_offset(&self) -> u64 {
        self.base_offset + self.spec.records as u64
    }
}

/// Where a run of batches lands when appended one by one to a log ending at `start`: the
/// expectation a reader holds a recovered log against.
pub fn layout(batches: impl IntoIterator<Item = (BatchSpec, i32)>, start: u64) -> Vec<Written> {
    let mut next = start;
    batches
        .into_iter()
        .map(|(spec, leader_epoch)| {
            let written = Written {
                spec,
                base_offset: next,
                leader_epoch,
            };
            next = written.next_offset();
            written
        })
        .collect()
}

/// Appends `spec` as a leader would and checks the offsets it was given.
pub fn append_spec(log: &mut Log, spec: BatchSpec, leader_epoch: i32) -> anyhow::Result<Written> {
    let expected_base = log.log_end_offset();
    let info = log
        .append(&spec.encode(), leader_epoch)
        .with_context(|| format!("appending batch {}", spec.seq))?;
    let written = Written {
        spec,
        base_offset: info.first_offset,
        leader_epoch,
    };
    ensure!(
        info.first_offset == expected_base && info.last_offset == written.last_offset(),
        "batch {} got offsets {}..={}, expected to start at {expected_base}",
        spec.seq,
        info.first_offset,
        info.last_offset
    );
    Ok(written)
}

/// A stored batch read back through [`Log::read`].
#[derive(Debug, Clone)]
pub struct StoredBatch {
    pub header: BatchHeader,
    pub bytes: Bytes,
}

/// Reads every batch from the log start offset to the log end offset. Fails unless each read
/// returns whole batches that validate (CRC included) and the offsets run contiguously from the
/// log start to exactly the log end.
pub fn read_all_batches(log: &Log) -> anyhow::Result<Vec<StoredBatch>> {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut batches = Vec::new();
    while offset < end {
        let chunk = log
            .read(offset, 256 * 1024)
            .with_context(|| format!("reading at offset {offset}"))?;
        ensure!(
            !chunk.is_empty(),
            "read at offset {offset} returned nothing though the log ends at {end}"
        );
        let validated = validate_record_set(&chunk, usize::MAX, AppendOrigin::Replication)
            .map_err(|error| anyhow!("batches read at offset {offset} are invalid: {error}"))?;
        for batch in validated {
            ensure!(
                batch.header.base_offset == offset as i64,
                "expected a batch at offset {offset}, found one at {}",
                batch.header.base_offset
            );
            offset = batch.header.next_offset() as u64;
            batches.push(StoredBatch {
                header: batch.header,
                bytes: chunk.slice(batch.start..batch.end),
            });
        }
    }
    ensure!(
        offset == end,
        "the last batch ends at {offset}, past the log end offset {end}"
    );
    Ok(batches)
}

/// Checks the log holds exactly `expected`, byte for byte, from its start to its end.
pub fn verify_log(log: &Log, expected: &[Written]) -> anyhow::Result<()> {
    let stored = read_all_batches(log)?;
    verify_batches(&stored, expected)?;
    let expected_end = expected
        .last()
        .map_or(log.log_start_offset(), |w| w.next_offset());
    ensure!(
        log.log_end_offset() == expected_end,
        "log end offset {} but the expected batches end at {expected_end}",
        log.log_end_offset()
    );
    Ok(())
}

/// Checks `stored` is exactly `expected`, batch for batch.
pub fn verify_batches(stored: &[StoredBatch], expected: &[Written]) -> anyhow::Result<()> {
    for (stored, written) in stored.iter().zip(expected) {
        written
            .spec
            .check_stored(&stored.bytes, written.base_offset, written.leader_epoch)?;
    }
    ensure!(
        stored.len() == expected.len(),
        "{} batches stored, {} expected",
        stored.len(),
        expected.len()
    );
    Ok(())
}

/// Reads at every single offset and checks the first batch returned is the one holding it: this
/// goes through the offset index, so it catches a wrong or stale index entry.
pub fn verify_reads_at_every_offset(log: &Log, expected: &[Written]) -> anyhow::Result<()> {
    for written in expected {
        for offset in written.base_offset..written.next_offset() {
            let chunk = log
                .read(offset, 1)
                .with_context(|| format!("reading at offset {offset}"))?;
            let header = BatchHeader::parse(&chunk)
                .with_context(|| format!("read at offset {offset} returned no batch"))?;
            ensure!(
                chunk.len() >= header.total_size(),
                "read at offset {offset} returned part of a batch"
            );
            written
                .spec
                .check_stored(
                    &chunk[..header.total_size()],
                    written.base_offset,
                    written.leader_epoch,
                )
                .with_context(|| format!("read at offset {offset}"))?;
        }
    }
    Ok(())
}

/// A small-segment config for tests. Time-based rolling and retention are off: test batches carry
/// fixed timestamps from 2020, which would otherwise make every segment look years old.
pub fn test_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: i64::MAX,
        retention_ms: -1,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

/// Opens a manager on `dir` giving every partition `config`.
pub fn open_manager(dir: &Path, config: &LogConfig) -> anyhow::Result<LogManager> {
    let config = config.clone();
    LogManager::open(dir, Arc::new(SystemClock), move |_| config.clone())
        .with_context(|| format!("opening the log manager on {}", dir.display()))
}

/// Locks a shared log; a test that panicked while holding it has already failed, so a poisoned
/// lock is taken over rather than reported twice.
pub fn lock(log: &Arc<Mutex<Log>>) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn partition_dir(dir: &Path, tp: &TopicPartition) -> PathBuf {
    dir.join(tp.dir_name())
}

/// `<partition dir>/<20-digit base>.<suffix>`.
pub fn segment_file(partition_dir: &Path, base_offset: u64, suffix: &str) -> PathBuf {
    segment_path(partition_dir, base_offset, suffix)
}

/// Walks a `.log` file's batch headers: (file position, header) of every whole batch, stopping at
/// the first that does not fit in the file.
pub fn batch_positions(log_file: &Path) -> anyhow::Result<Vec<(u64, BatchHeader)>> {
    let bytes =
        std::fs::read(log_file).with_context(|| format!("reading {}", log_file.display()))?;
    let mut positions = Vec::new();
    let mut position = 0usize;
    while let Some(header) = BatchHeader::parse(&bytes[position..]) {
        let size = header.total_size();
        if size == 0 || position + size > bytes.len() {
            break;
        }
        positions.push((position as u64, header));
        position += size;
    }
    Ok(positions)
}

/// The recovery point `dir`'s checkpoint file records for `tp`, if any.
pub fn read_recovery_point(dir: &Path, tp: &TopicPartition) -> anyhow::Result<Option<u64>> {
    let path = dir.join(RECOVERY_POINT_CHECKPOINT);
    let offsets: BTreeMap<TopicPartition, u64> =
        read_offsets(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(offsets.get(tp).copied())
}

/// The leader epoch entries a log holding `batches` must have: each epoch starts at the first
/// batch stamped with it (epochs only grow in these tests; negative means none).
pub fn expected_epochs(batches: &[Written]) -> Vec<(i32, u64)> {
    let mut epochs: Vec<(i32, u64)> = Vec::new();
    for written in batches {
        if written.leader_epoch >= 0
            && epochs
                .last()
                .is_none_or(|(latest, _)| written.leader_epoch > *latest)
        {
            epochs.push((written.leader_epoch, written.base_offset));
        }
    }
    epochs
}
