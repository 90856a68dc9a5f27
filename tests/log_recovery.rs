//! On-disk damage, case by case: each test builds a multi-segment log through a `LogManager`,
//! damages its files the way a crash, a disk or an operator would, reopens it and checks exactly
//! what recovery kept, cut, rebuilt and reported.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, ensure};
use proptest::prelude::*;
use weir::clock::SystemClock;
use weir::storage::checkpoint::{
    LEADER_EPOCH_CHECKPOINT, RECOVERY_POINT_CHECKPOINT, write_offsets,
};
use weir::storage::files::FileHandleCache;
use weir::storage::manager::CLEAN_SHUTDOWN_MARKER;
use weir::storage::{
    AppendOrigin, BatchHeader, Log, LogConfig, LogManager, LogOpenOptions, RecoveryReport,
    TopicPartition,
};
use weir_tests::{
    BatchSpec, Written, XorShift64, append_spec, batch_positions, expected_epochs, lock,
    open_manager, partition_dir, segment_file, test_config, verify_log,
    verify_reads_at_every_offset,
};

/// Segments of 32 KiB hold about ten test batches, so 80 batches make seven or eight segments.
const SEGMENT_BYTES: u64 = 32 * 1024;
const BATCHES: u64 = 80;

fn partition() -> TopicPartition {
    TopicPartition::new("damaged", 0)
}

/// How the broker that built the log stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Flushed and checkpointed (recovery point = log end offset), then died: no marker.
    Crash,
    /// `LogManager::shutdown`: flushed, checkpointed and marked clean.
    Clean,
}

/// A log on disk, closed, and what was written to it.
struct Built {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    config: LogConfig,
    written: Vec<Written>,
    bases: Vec<u64>,
}

impl Built {
    fn partition_dir(&self) -> PathBuf {
        partition_dir(&self.dir, &partition())
    }

    fn segment(&self, base: u64, suffix: &str) -> PathBuf {
        segment_file(&self.partition_dir(), base, suffix)
    }

    fn last_base(&self) -> u64 {
        *self.bases.last().expect("a log has at least one segment")
    }

    /// The written batches that end at or below `offset`.
    fn written_below(&self, offset: u64) -> Vec<Written> {
        self.written
            .iter()
            .copied()
            .filter(|written| written.next_offset() <= offset)
            .collect()
    }

    fn reopen(&self) -> anyhow::Result<Reopened> {
        let manager = open_manager(&self.dir, &self.config)?;
        let report = manager
            .recovery_report(&partition())
            .cloned()
            .context("no recovery report for the partition")?;
        let log = manager
            .get(&partition())
            .context("the partition was not loaded")?;
        Ok(Reopened {
            manager,
            report,
            log,
        })
    }
}

struct Reopened {
    manager: LogManager,
    report: RecoveryReport,
    log: Arc<Mutex<Log>>,
}

/// Appends batches 0..`batches` (leader epoch from `epoch_of`), stops the broker as `ending`
/// says, and checks the log spans at least three segments.
fn build_with(
    config: LogConfig,
    batches: u64,
    epoch_of: impl Fn(u64) -> i32,
    ending: Ending,
) -> anyhow::Result<Built> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = temp.path().join("data");
    let manager = open_manager(&dir, &config)?;
    let shared = manager.get_or_create(&partition(), config.clone())?;
    let (written, bases) = {
        let mut log = lock(&shared);
        let written = (0..batches)
            .map(|seq| append_spec(&mut log, BatchSpec::new(seq), epoch_of(seq)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        (written, log.segment_base_offsets())
    };
    ensure!(bases.len() >= 3, "only {} segments were built", bases.len());
    match ending {
        Ending::Crash => ensure!(manager.flush_all()?.is_empty(), "a log was poisoned"),
        Ending::Clean => manager.shutdown()?,
    }
    Ok(Built {
        _temp: temp,
        dir,
        config,
        written,
        bases,
    })
}

fn build(ending: Ending) -> anyhow::Result<Built> {
    build_with(test_config(SEGMENT_BYTES), BATCHES, |_| 0, ending)
}

fn file_len(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("reading the size of {}", path.display()))?
        .len())
}

fn append_to_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .with_context(|| format!("appending to {}", path.display()))
}

fn set_len(path: &Path, len: u64) -> anyhow::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(len))
        .with_context(|| format!("truncating {}", path.display()))
}

fn xor_byte(path: &Path, position: u64, mask: u8) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let byte = bytes
        .get_mut(position as usize)
        .with_context(|| format!("{} has no byte {position}", path.display()))?;
    *byte ^= mask;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The last batch of the last segment: (file position, header).
fn last_batch(built: &Built) -> anyhow::Result<(u64, BatchHeader)> {
    batch_positions(&built.segment(built.last_base(), "log"))?
        .last()
        .copied()
        .context("the last segment is empty")
}

/// After recovery cut the log back to `expected`: the log holds exactly those batches, the cut
/// segment file ends where they do, and the log takes the next batch at its end and keeps it
/// across another reopen.
fn check_cut_back(built: &Built, reopened: Reopened, expected: Vec<Written>) -> anyhow::Result<()> {
    {
        let log = lock(&reopened.log);
        verify_log(&log, &expected)?;
        verify_reads_at_every_offset(&log, &expected)?;
        ensure!(
            log.recovery_point() == log.log_end_offset(),
            "recovery point {} after recovery to {}",
            log.recovery_point(),
            log.log_end_offset()
        );
    }
    let mut all = expected;
    let next_seq = all.last().map_or(0, |written| written.spec.seq + 1);
    all.push(append_spec(
        &mut lock(&reopened.log),
        BatchSpec::new(next_seq),
        0,
    )?);
    reopened.manager.flush_all()?;
    drop(reopened);
    let again = built.reopen()?;
    ensure!(
        again.report.bytes_truncated == 0 && again.report.segments_deleted == 0,
        "a second reopen cut more: {:?}",
        again.report
    );
    verify_log(&lock(&again.log), &all)
}

fn run(test: impl FnOnce() -> anyhow::Result<()>) {
    if let Err(error) = test() {
        panic!("{error:#}");
    }
}

#[test]
fn zeros_after_the_last_batch_are_cut() {
    run(|| {
        // Fewer zeros than a batch header, exactly one header, and several pages' worth (what a
        // file system may expose after a crash extended the file but lost the data).
        for zeros in [7usize, 61, 8192] {
            let built = build(Ending::Crash)?;
            let log_file = built.segment(built.last_base(), "log");
            let length = file_len(&log_file)?;
            append_to_file(&log_file, &vec![0u8; zeros])?;
            let reopened = built.reopen()?;
            ensure!(
                reopened.report.bytes_truncated == zeros as u64,
                "{zeros} zeros: {:?}",
                reopened.report
            );
            ensure!(
                reopened.report.segments_deleted == 0,
                "{:?}",
                reopened.report
            );
            ensure!(
                file_len(&log_file)? == length,
                "{zeros} zeros: the file was not cut back to {length}"
            );
            check_cut_back(&built, reopened, built.written.clone())
                .with_context(|| format!("{zeros} zeros"))?;
        }
        Ok(())
    });
}

#[test]
fn zeros_after_a_clean_shutdown_are_cut_too() {
    run(|| {
        // A clean shutdown trusts the files, but a tail that does not parse still gets scanned.
        let built = build(Ending::Clean)?;
        let log_file = built.segment(built.last_base(), "log");
        let length = file_len(&log_file)?;
        append_to_file(&log_file, &[0u8; 100])?;
        let reopened = built.reopen()?;
        ensure!(
            reopened.report.bytes_truncated == 100,
            "{:?}",
            reopened.report
        );
        ensure!(file_len(&log_file)? == length, "the file was not cut back");
        check_cut_back(&built, reopened, built.written.clone())
    });
}

#[test]
fn garbage_after_the_last_batch_is_cut() {
    run(|| {
        for (case, len) in [5usize, 100, 5000].into_iter().enumerate() {
            let built = build(Ending::Crash)?;
            let log_file = built.segment(built.last_base(), "log");
            let length = file_len(&log_file)?;
            let garbage = XorShift64::new(case as u64 + 17).bytes(len);
            append_to_file(&log_file, &garbage)?;
            let reopened = built.reopen()?;
            ensure!(
                reopened.report.bytes_truncated == len as u64,
                "{len} bytes of garbage: {:?}",
                reopened.report
            );
            ensure!(
                reopened.report.segments_deleted == 0,
                "{:?}",
                reopened.report
            );
            ensure!(file_len(&log_file)? == length, "{len} bytes: not cut back");
            check_cut_back(&built, reopened, built.written.clone())
                .with_context(|| format!("{len} bytes of garbage"))?;
        }
        Ok(())
    });
}

#[test]
fn a_flipped_byte_in_the_last_batch_drops_that_batch() {
    run(|| {
        // Positions inside the last batch: the batch length (high and low byte), the magic byte,
        // the CRC, the attributes, the timestamps, a record in the middle and the very last byte.
        // Bytes 0..8 (base offset) and 12..16 (leader epoch) are left out: they sit outside the
        // CRC by design, so no reader can tell a flipped one.
        let built = build(Ending::Crash)?;
        let (_, header) = last_batch(&built)?;
        let size = header.total_size() as u64;
        for relative in [8, 11, 16, 18, 21, 30, size / 2, size - 1] {
            let built = build(Ending::Crash)?;
            let log_file = built.segment(built.last_base(), "log");
            let (position, header) = last_batch(&built)?;
            xor_byte(&log_file, position + relative, 0xff)?;
            let reopened = built.reopen()?;
            ensure!(
                reopened.report.bytes_truncated == header.total_size() as u64
                    && reopened.report.segments_deleted == 0,
                "byte {relative} of the last batch flipped: {:?}",
                reopened.report
            );
            ensure!(
                file_len(&log_file)? == position,
                "byte {relative}: the file was not cut at the batch"
            );
            let base = header.base_offset as u64;
            ensure!(
                lock(&reopened.log).log_end_offset() == base,
                "byte {relative}: the log should end at the dropped batch's base offset {base}"
            );
            check_cut_back(&built, reopened, built.written_below(base))
                .with_context(|| format!("byte {relative} flipped"))?;
        }
        Ok(())
    });
}

#[test]
fn a_torn_last_batch_is_cut_at_the_previous_boundary() {
    run(|| {
        let built = build(Ending::Crash)?;
        let (_, header) = last_batch(&built)?;
        let size = header.total_size() as u64;
        // Torn inside the length field, inside the header, just short of a full header, at
        // exactly a header, and inside the records.
        for kept in [1, 10, 60, 61, size / 2, size - 1] {
            let built = build(Ending::Crash)?;
            let log_file = built.segment(built.last_base(), "log");
            let (position, header) = last_batch(&built)?;
            set_len(&log_file, position + kept)?;
            let reopened = built.reopen()?;
            ensure!(
                reopened.report.bytes_truncated == kept && reopened.report.segments_deleted == 0,
                "{kept} bytes of the last batch kept: {:?}",
                reopened.report
            );
            ensure!(file_len(&log_file)? == position, "{kept}: not cut");
            let base = header.base_offset as u64;
            check_cut_back(&built, reopened, built.written_below(base))
                .with_context(|| format!("{kept} bytes of a torn batch"))?;
        }
        Ok(())
    });
}

/// Dense indexes (an entry per batch), so cutting entries off matters.
fn dense_index_config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 0,
        ..test_config(SEGMENT_BYTES)
    }
}

#[test]
fn a_truncated_offset_index_below_the_recovery_point_is_rebuilt() {
    run(|| {
        let probe = build_with(dense_index_config(), BATCHES, |_| 0, Ending::Crash)?;
        let index_len = file_len(&probe.segment(probe.bases[1], "index"))?;
        ensure!(
            index_len >= 3 * 8,
            "segment 1 has only {index_len} index bytes"
        );
        // Mid-entry, two whole entries short, and empty.
        for cut_to in [index_len - 3, index_len - 16, 0] {
            let built = build_with(dense_index_config(), BATCHES, |_| 0, Ending::Crash)?;
            // Segment 1 is sealed and wholly below the recovery point (= the log end offset), so
            // it is opened from its indexes rather than scanned.
            let index_file = built.segment(built.bases[1], "index");
            let original = std::fs::read(&index_file).context("reading the index")?;
            set_len(&index_file, cut_to)?;
            let reopened = built.reopen()?;
            ensure!(
                reopened.report.bytes_truncated == 0 && reopened.report.segments_deleted == 0,
                "index cut to {cut_to}: {:?}",
                reopened.report
            );
            {
                let log = lock(&reopened.log);
                verify_log(&log, &built.written)?;
                verify_reads_at_every_offset(&log, &built.written)
                    .with_context(|| format!("index cut to {cut_to} bytes"))?;
            }
            let rebuilt = std::fs::read(&index_file).context("reading the index again")?;
            ensure!(
                rebuilt == original,
                "index cut to {cut_to} bytes: reopened with {} bytes, not rebuilt to the original {}",
                rebuilt.len(),
                original.len()
            );
        }
        Ok(())
    });
}

#[test]
fn missing_indexes_are_rebuilt_and_timestamps_still_found() {
    run(|| {
        let built = build(Ending::Crash)?;
        // Segment 0 loses both indexes, segment 1 only its offset index, segment 2 only its
        // time index.
        let missing = [
            built.segment(built.bases[0], "index"),
            built.segment(built.bases[0], "timeindex"),
            built.segment(built.bases[1], "index"),
            built.segment(built.bases[2], "timeindex"),
        ];
        let mut originals = Vec::new();
        for path in &missing {
            originals.push(std::fs::read(path).context("reading an index")?);
            std::fs::remove_file(path).context("removing an index")?;
        }
        let reopened = built.reopen()?;
        ensure!(
            reopened.report.bytes_truncated == 0 && reopened.report.segments_deleted == 0,
            "{:?}",
            reopened.report
        );
        for (path, original) in missing.iter().zip(&originals) {
            let rebuilt = std::fs::read(path)
                .with_context(|| format!("{} was not recreated", path.display()))?;
            ensure!(
                &rebuilt == original,
                "{} was rebuilt differently ({} bytes, was {})",
                path.display(),
                rebuilt.len(),
                original.len()
            );
        }
        let log = lock(&reopened.log);
        verify_log(&log, &built.written)?;
        verify_reads_at_every_offset(&log, &built.written)?;
        // Every record's timestamp is unique and grows along the log, so a lookup by a record's
        // own timestamp must land on exactly that record.
        for written in &built.written {
            for record in 0..written.spec.records {
                let timestamp = written.spec.timestamp(record);
                let expected = (written.base_offset + record as u64, timestamp);
                let found = log.offset_for_timestamp(timestamp)?;
                ensure!(
                    found == Some(expected),
                    "timestamp {timestamp}: found {found:?}, expected {expected:?}"
                );
            }
        }
        let first = built.written.first().context("nothing written")?;
        ensure!(
            log.offset_for_timestamp(0)? == Some((0, first.spec.timestamp(0))),
            "an old timestamp should find the first record"
        );
        let last = built.written.last().context("nothing written")?;
        ensure!(
            log.offset_for_timestamp(last.spec.max_timestamp() + 1)?
                .is_none(),
            "a timestamp past every record should find nothing"
        );
        Ok(())
    });
}

#[test]
fn a_missing_recovery_point_checkpoint_means_a_full_scan_and_no_loss() {
    run(|| {
        let built = build(Ending::Crash)?;
        std::fs::remove_file(built.dir.join(RECOVERY_POINT_CHECKPOINT))
            .context("removing the recovery point checkpoint")?;
        let reopened = built.reopen()?;
        let segments = built.bases.len();
        ensure!(
            reopened.report
                == RecoveryReport {
                    segments_loaded: segments,
                    segments_recovered: segments,
                    bytes_truncated: 0,
                    segments_deleted: 0,
                },
            "{:?}",
            reopened.report
        );
        let log = lock(&reopened.log);
        ensure!(
            log.segment_base_offsets() == built.bases,
            "segments changed"
        );
        verify_log(&log, &built.written)?;
        verify_reads_at_every_offset(&log, &built.written)
    });
}

#[test]
fn a_missing_leader_epoch_checkpoint_is_rebuilt_from_batch_headers() {
    run(|| {
        // Epoch 1 for the first 30 batches, then 3: epoch 2 never wrote here.
        let epoch_of = |seq: u64| if seq < 30 { 1 } else { 3 };
        for (ending, keep_recovery_point) in [
            (Ending::Clean, true),
            (Ending::Crash, true),
            (Ending::Crash, false),
        ] {
            let case = format!("{ending:?}, recovery point kept: {keep_recovery_point}");
            let built = build_with(test_config(SEGMENT_BYTES), BATCHES, epoch_of, ending)?;
            let expected = expected_epochs(&built.written);
            let epoch_3_start = built.written[30].base_offset;
            ensure!(
                expected == vec![(1, 0), (3, epoch_3_start)],
                "{case}: expected epochs {expected:?}"
            );
            let epochs_file = built.partition_dir().join(LEADER_EPOCH_CHECKPOINT);
            let original = std::fs::read(&epochs_file).context("reading the epochs")?;
            std::fs::remove_file(&epochs_file).context("removing the epochs")?;
            if !keep_recovery_point {
                std::fs::remove_file(built.dir.join(RECOVERY_POINT_CHECKPOINT))
                    .context("removing the recovery point checkpoint")?;
            }
            let reopened = built.reopen()?;
            let log = lock(&reopened.log);
            ensure!(
                log.epoch_entries() == expected,
                "{case}: rebuilt {:?}, expected {expected:?}",
                log.epoch_entries()
            );
            let end = log.log_end_offset() as i64;
            let start_3 = epoch_3_start as i64;
            for (requested, answer) in [(1, (1, start_3)), (2, (1, start_3)), (3, (3, end))] {
                ensure!(
                    log.end_offset_for_epoch(requested) == answer,
                    "{case}: epoch {requested} ends at {:?}, expected {answer:?}",
                    log.end_offset_for_epoch(requested)
                );
            }
            let rewritten = std::fs::read(&epochs_file)
                .with_context(|| format!("{case}: the epoch checkpoint was not rewritten"))?;
            ensure!(
                rewritten == original,
                "{case}: the rewritten epoch checkpoint differs"
            );
            verify_log(&log, &built.written)?;
        }
        Ok(())
    });
}

#[test]
fn a_clean_shutdown_skips_recovery_and_the_marker_is_removed() {
    run(|| {
        // Kafka's default index interval: sparse indexes, so most segments end with batches
        // that have no offset-index entry, as they would in production.
        let config = LogConfig {
            index_interval_bytes: LogConfig::default().index_interval_bytes,
            ..test_config(SEGMENT_BYTES)
        };
        let built = build_with(config, BATCHES, |_| 0, Ending::Clean)?;
        let marker = built.dir.join(CLEAN_SHUTDOWN_MARKER);
        ensure!(marker.exists(), "shutdown wrote no marker");
        let reopened = built.reopen()?;
        ensure!(
            reopened.manager.had_clean_shutdown(),
            "the marker was not honoured"
        );
        ensure!(
            !marker.exists(),
            "the marker must go at start, or a later crash would pass as clean"
        );
        verify_log(&lock(&reopened.log), &built.written)?;
        ensure!(
            reopened.report.segments_loaded == built.bases.len()
                && reopened.report.segments_recovered == 0
                && reopened.report.bytes_truncated == 0
                && reopened.report.segments_deleted == 0,
            "a clean shutdown should be trusted without a scan: {:?}",
            reopened.report
        );
        drop(reopened);
        // Stopping now without a shutdown is a crash again.
        let again = built.reopen()?;
        ensure!(
            !again.manager.had_clean_shutdown(),
            "a crash after a clean start passed as clean"
        );
        verify_log(&lock(&again.log), &built.written)
    });
}

#[test]
fn corruption_in_a_middle_segment_deletes_every_later_segment() {
    run(|| {
        // Corrupt the first batch of segment 1 (the segment is left empty) or its second.
        for batch_in_segment in [0usize, 1] {
            let built = build(Ending::Crash)?;
            // Nothing is known to be flushed: every segment is scanned.
            let mut offsets = std::collections::BTreeMap::new();
            offsets.insert(partition(), 0);
            write_offsets(&built.dir.join(RECOVERY_POINT_CHECKPOINT), &offsets)
                .context("writing a zero recovery point")?;
            let middle = built.bases[1];
            let log_file = built.segment(middle, "log");
            let batches = batch_positions(&log_file)?;
            let (position, header) = *batches
                .get(batch_in_segment)
                .context("segment 1 has too few batches")?;
            xor_byte(&log_file, position + header.total_size() as u64 / 2, 0x55)?;
            let cut = file_len(&log_file)? - position;
            let reopened = built.reopen()?;
            let later = built.bases.len() - 2;
            let case = format!("batch {batch_in_segment} of segment 1");
            ensure!(
                reopened.report.bytes_truncated == cut
                    && reopened.report.segments_deleted == later
                    && reopened.report.segments_deleted > 0,
                "{case}: {:?}",
                reopened.report
            );
            for base in &built.bases[2..] {
                for suffix in ["log", "index", "timeindex"] {
                    let path = built.segment(*base, suffix);
                    ensure!(!path.exists(), "{case}: {} survived", path.display());
                }
            }
            let base = header.base_offset as u64;
            {
                let log = lock(&reopened.log);
                ensure!(
                    log.segment_base_offsets() == built.bases[..2],
                    "{case}: segments {:?}",
                    log.segment_base_offsets()
                );
                ensure!(
                    log.log_end_offset() == base,
                    "{case}: log ends at {}, expected the corrupt batch's base {base}",
                    log.log_end_offset()
                );
            }
            check_cut_back(&built, reopened, built.written_below(base))
                .with_context(|| case.clone())?;
        }
        Ok(())
    });
}

/// What follows the valid batches in the fuzzed segment file.
#[derive(Debug, Clone)]
enum Tail {
    /// Arbitrary bytes.
    Random(Vec<u8>),
    /// Arbitrary bytes behind a plausible header (right base offset, magic 2, a length that
    /// fits), so recovery gets as far as the CRC.
    Plausible(Vec<u8>),
    /// The next valid batch with some bytes changed and then possibly cut short. Changes start
    /// at byte 16: bytes 0..16 (base offset, length, epoch) are covered by other cases above.
    Mutated {
        flips: Vec<(usize, u8)>,
        keep: usize,
    },
}

fn tail_strategy() -> impl Strategy<Value = Tail> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048).prop_map(Tail::Random),
        proptest::collection::vec(any::<u8>(), 0..2048).prop_map(Tail::Plausible),
        (
            proptest::collection::vec((any::<usize>(), 1u8..=255), 0..4),
            any::<usize>()
        )
            .prop_map(|(flips, keep)| Tail::Mutated { flips, keep }),
    ]
}

/// Fuzz case: `prefix` valid batches then `tail`, as the only segment, opened unclean with
/// recovery point 0. Fails if open destroys the valid prefix, or succeeds with anything but
/// valid batches (the prefix first) left in the file, or the result refuses an append.
fn fuzz_case(prefix: u64, tail: &Tail) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = temp.path().join("fuzz-0");
    std::fs::create_dir_all(&dir).context("creating the partition directory")?;
    let written = weir_tests::layout((0..prefix).map(|seq| (BatchSpec::new(seq), 2)), 0);
    let mut bytes = Vec::new();
    for w in &written {
        bytes.extend_from_slice(&w.spec.stored(w.base_offset, w.leader_epoch));
    }
    let prefix_len = bytes.len();
    let next_offset = written.last().map_or(0, Written::next_offset);
    match tail {
        Tail::Random(garbage) => bytes.extend_from_slice(garbage),
        Tail::Plausible(garbage) => {
            let mut batch = garbage.clone();
            batch.resize(batch.len().max(61), 0);
            let length = (batch.len() - 12) as i32;
            batch[0..8].copy_from_slice(&(next_offset as i64).to_be_bytes());
            batch[8..12].copy_from_slice(&length.to_be_bytes());
            batch[16] = 2;
            bytes.extend_from_slice(&batch);
        }
        Tail::Mutated { flips, keep } => {
            let mut batch = BatchSpec::new(prefix).stored(next_offset, 2);
            for (position, mask) in flips {
                let position = 16 + position % (batch.len() - 16);
                batch[position] ^= mask;
            }
            batch.truncate(keep % (batch.len() + 1));
            bytes.extend_from_slice(&batch);
        }
    }
    let log_file = segment_file(&dir, 0, "log");
    std::fs::write(&log_file, &bytes).context("writing the segment")?;

    let config = test_config(SEGMENT_BYTES);
    let opened = Log::open(
        &dir,
        config,
        LogOpenOptions {
            recovery_point: 0,
            log_start_offset: 0,
            clean_shutdown: false,
        },
        Arc::new(SystemClock),
        FileHandleCache::new(16),
    );
    let Ok((mut log, report)) = opened else {
        // Refusing to open is acceptable; destroying the valid prefix on the way is not.
        let on_disk = std::fs::read(&log_file).context("reading the segment back")?;
        ensure!(
            on_disk.len() >= prefix_len && on_disk[..prefix_len] == bytes[..prefix_len],
            "open failed and the valid prefix was damaged"
        );
        return Ok(());
    };
    // Whatever survived validates batch by batch, and the valid prefix is all there first.
    let stored = read_validating_every_batch(&log)?;
    for (stored, w) in stored.iter().zip(&written) {
        w.spec.check_stored(stored, w.base_offset, w.leader_epoch)?;
    }
    ensure!(
        stored.len() >= written.len() && log.log_end_offset() >= next_offset,
        "the valid prefix was not kept: {} batches, log end {}, {report:?}",
        stored.len(),
        log.log_end_offset()
    );
    let kept: u64 = stored.iter().map(|batch| batch.len() as u64).sum();
    ensure!(
        file_len(&log_file)? == kept,
        "{} bytes left in the file but only {kept} are batches",
        file_len(&log_file)?
    );
    // And the recovered log takes the next append.
    let end = log.log_end_offset();
    let info = log.append(&BatchSpec::new(1_000).encode(), 2)?;
    ensure!(
        info.first_offset == end,
        "appended at {}",
        info.first_offset
    );
    Ok(())
}

/// Reads the whole log, validating each batch (CRC included). Offsets must grow but may skip:
/// a recovered batch keeps the base offset stored in it.
fn read_validating_every_batch(log: &Log) -> anyhow::Result<Vec<Vec<u8>>> {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut batches = Vec::new();
    while offset < end {
        let chunk = log.read(offset, 64 * 1024)?;
        ensure!(!chunk.is_empty(), "nothing read at {offset} below {end}");
        let validated = weir::storage::batch::validate_record_set(
            &chunk,
            usize::MAX,
            AppendOrigin::Replication,
        )
        .map_err(|error| anyhow::anyhow!("invalid batch read at {offset}: {error}"))?;
        for batch in validated {
            ensure!(
                batch.header.base_offset >= offset as i64,
                "offsets went backwards at {offset}"
            );
            offset = batch.header.next_offset() as u64;
            batches.push(chunk[batch.start..batch.end].to_vec());
        }
    }
    Ok(batches)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // Failures print their minimal input; no regression file is written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_segment_bytes_never_break_recovery(prefix in 0u64..4, tail in tail_strategy()) {
        if let Err(error) = fuzz_case(prefix, &tail) {
            return Err(TestCaseError::fail(format!("{error:#}")));
        }
    }
}

#[test]
fn a_sealed_segment_whose_last_batch_is_not_indexed_is_trusted_after_a_clean_shutdown() {
    run(|| {
        // The smallest case of the above: segment 0 holds one batch, so its offset index is
        // empty while sealing gave its time index an entry for that batch.
        let temp = tempfile::tempdir().context("creating a temporary directory")?;
        let dir = temp.path().join("data");
        let config = LogConfig {
            index_interval_bytes: 4096,
            ..test_config(SEGMENT_BYTES)
        };
        let manager = open_manager(&dir, &config)?;
        let shared = manager.get_or_create(&partition(), config.clone())?;
        let written = {
            let mut log = lock(&shared);
            let first = append_spec(&mut log, BatchSpec::new(0), 0)?;
            log.roll()?;
            let second = append_spec(&mut log, BatchSpec::new(1), 0)?;
            ensure!(log.segment_count() == 2, "the roll made no segment");
            vec![first, second]
        };
        manager.shutdown()?;
        drop(shared);
        drop(manager);
        let manager = open_manager(&dir, &config)?;
        let report = manager
            .recovery_report(&partition())
            .cloned()
            .context("no recovery report")?;
        let shared = manager.get(&partition()).context("partition not loaded")?;
        verify_log(&lock(&shared), &written)?;
        ensure!(
            report.segments_recovered == 0,
            "segment 0 was rescanned after a clean shutdown: {report:?}"
        );
        Ok(())
    });
}
