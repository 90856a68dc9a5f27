//! Property test: a `Log` driven by random operations behaves like a plain in-memory list of
//! batches. After every operation the log end offset, log start offset, reads and leader epochs
//! are checked against the model; reopening (clean or not) must change nothing.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use proptest::prelude::*;
use weir::clock::ManualClock;
use weir::storage::files::FileHandleCache;
use weir::storage::records::{ProducerRecord, encode_producer_batch};
use weir::storage::{BatchHeader, Compression, Log, LogConfig, LogOpenOptions};

const START_MS: i64 = 1_700_000_000_000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        value_size: usize,
        new_epoch: bool,
    },
    Read {
        offset_pick: u64,
        max_bytes: usize,
    },
    Truncate {
        offset_pick: u64,
    },
    Roll,
    Retention {
        advance_ms: i64,
        high_watermark_pick: u64,
    },
    DeleteRecords {
        offset_pick: u64,
    },
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6, 0usize..400, proptest::bool::weighted(0.15))
            .prop_map(|(records, value_size, new_epoch)| Op::Append { records, value_size, new_epoch }),
        4 => (any::<u64>(), 1usize..3000).prop_map(|(offset_pick, max_bytes)| Op::Read { offset_pick, max_bytes }),
        1 => any::<u64>().prop_map(|offset_pick| Op::Truncate { offset_pick }),
        1 => Just(Op::Roll),
        1 => (0i64..(10 * DAY_MS), any::<u64>())
            .prop_map(|(advance_ms, high_watermark_pick)| Op::Retention { advance_ms, high_watermark_pick }),
        1 => any::<u64>().prop_map(|offset_pick| Op::DeleteRecords { offset_pick }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

#[derive(Debug, Clone)]
struct ModelBatch {
    base_offset: u64,
    last_offset: u64,
    epoch: i32,
    /// The producer's bytes after the 16 the leader rewrites.
    sealed_bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct Model {
    batches: Vec<ModelBatch>,
    log_start_offset: u64,
    log_end_offset: u64,
    epoch: i32,
}

impl Model {
    fn pick(&self, pick: u64, low: u64) -> u64 {
        // Mostly inside [low, log end], sometimes just outside it.
        let span = self.log_end_offset.saturating_sub(low) + 3;
        (low + pick % span).saturating_sub(1)
    }
}

fn client_batch(records: usize, value_size: usize, timestamp: i64, seed: u64) -> Vec<u8> {
    let keys: Vec<String> = (0..records).map(|i| format!("key-{seed}-{i}")).collect();
    let value = vec![(seed % 251) as u8; value_size];
    let records: Vec<ProducerRecord<'_>> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| ProducerRecord {
            key: (i % 2 == 0).then_some(key.as_bytes()),
            value: Some(&value),
            headers: &[],
            timestamp,
        })
        .collect();
    encode_producer_batch(&records, Compression::None).expect("encode")
}

fn headers_in(bytes: &[u8]) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut batches = Vec::new();
    let mut rest = bytes;
    while let Some(header) = BatchHeader::parse(rest) {
        let size = header.total_size();
        assert!(size <= rest.len(), "a read returned a partial batch");
        batches.push((header, rest[16..size].to_vec()));
        rest = &rest[size..];
    }
    assert!(rest.is_empty(), "a read returned trailing bytes");
    batches
}

struct Harness {
    dir: tempfile::TempDir,
    config: LogConfig,
    clock: Arc<ManualClock>,
    handles: Arc<FileHandleCache>,
    log: Option<Log>,
    model: Model,
    appended: u64,
}

impl Harness {
    fn log(&mut self) -> &mut Log {
        self.log
            .as_mut()
            .expect("the log is open between operations")
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Append {
                records,
                value_size,
                new_epoch,
            } => {
                if new_epoch {
                    self.model.epoch += 1;
                }
                self.appended += 1;
                let batch = client_batch(
                    records,
                    value_size,
                    self.clock.now_ms_for_test(),
                    self.appended,
                );
                let epoch = self.model.epoch;
                let segment_bytes = self.config.segment_bytes;
                let result = self.log().append(&batch, epoch);
                if batch.len() as u64 > segment_bytes {
                    // A record set larger than a segment is refused, and changes nothing.
                    assert_eq!(
                        result
                            .expect_err("larger than a segment")
                            .kafka_error_code(),
                        ResponseError::RecordListTooLarge
                    );
                    return;
                }
                let info = result.expect("append");
                assert_eq!(info.first_offset, self.model.log_end_offset);
                self.model.batches.push(ModelBatch {
                    base_offset: info.first_offset,
                    last_offset: info.last_offset,
                    epoch,
                    sealed_bytes: batch[16..].to_vec(),
                });
                self.model.log_end_offset = info.last_offset + 1;
            }
            Op::Read {
                offset_pick,
                max_bytes,
            } => {
                let offset = self.model.pick(offset_pick, self.model.log_start_offset);
                let (start, end) = (self.model.log_start_offset, self.model.log_end_offset);
                let result = self.log().read(offset, max_bytes);
                if offset < start || offset > end {
                    assert_eq!(
                        result.expect_err("outside the log").kafka_error_code(),
                        ResponseError::OffsetOutOfRange
                    );
                    return;
                }
                let read = headers_in(&result.expect("read inside the log"));
                if offset == end {
                    assert!(read.is_empty());
                    return;
                }
                assert!(
                    !read.is_empty(),
                    "a read below the log end returns at least one batch"
                );
                let first = self
                    .model
                    .batches
                    .iter()
                    .position(|batch| batch.last_offset >= offset)
                    .expect("the model holds the offset");
                let total: usize = read.iter().map(|(header, _)| header.total_size()).sum();
                assert!(
                    total <= max_bytes || read.len() == 1,
                    "reads exceed max_bytes only for one batch"
                );
                for ((header, sealed), expected) in read.iter().zip(&self.model.batches[first..]) {
                    assert_eq!(header.base_offset as u64, expected.base_offset);
                    assert_eq!(header.last_offset() as u64, expected.last_offset);
                    assert_eq!(header.partition_leader_epoch, expected.epoch);
                    assert_eq!(
                        sealed, &expected.sealed_bytes,
                        "stored bytes equal the producer's"
                    );
                }
            }
            Op::Truncate { offset_pick } => {
                let offset = self.model.pick(offset_pick, 0);
                let first_segment = self.log().segment_base_offsets()[0];
                let new_end = self.log().truncate_to(offset).expect("truncate");
                if offset >= self.model.log_end_offset {
                    assert_eq!(new_end, self.model.log_end_offset);
                } else if offset <= first_segment || offset < self.model.log_start_offset {
                    assert_eq!(new_end, offset);
                    self.model.batches.clear();
                    self.model.log_start_offset = offset;
                    self.model.log_end_offset = offset;
                } else {
                    let keep = self
                        .model
                        .batches
                        .iter()
                        .position(|batch| batch.last_offset >= offset);
                    let keep = keep.expect("offset is inside the log");
                    if self.model.batches[keep].base_offset < self.model.log_start_offset {
                        // Nothing readable would be left: the log starts afresh at the offset.
                        self.model.batches.clear();
                        self.model.log_start_offset = offset;
                        self.model.log_end_offset = offset;
                    } else {
                        // The batch holding the offset goes whole: the log ends where it began.
                        self.model.log_end_offset = self.model.batches[keep].base_offset;
                        self.model.batches.truncate(keep);
                    }
                    assert_eq!(new_end, self.model.log_end_offset);
                }
            }
            Op::Roll => self.log().roll().expect("roll"),
            Op::Retention {
                advance_ms,
                high_watermark_pick,
            } => {
                self.clock.advance_ms(advance_ms);
                let high_watermark = self.model.pick(high_watermark_pick, 0);
                self.log()
                    .apply_retention(high_watermark)
                    .expect("retention");
                let start = self.log().log_start_offset();
                assert!(
                    start >= self.model.log_start_offset,
                    "the log start offset never moves back"
                );
                if start > self.model.log_start_offset {
                    assert!(
                        start <= high_watermark,
                        "retention never deletes at or above the high watermark"
                    );
                    assert!(
                        self.model
                            .batches
                            .iter()
                            .any(|batch| batch.base_offset == start)
                            || start == self.model.log_end_offset,
                        "retention deletes whole segments"
                    );
                }
                self.model.log_start_offset = start;
                self.model
                    .batches
                    .retain(|batch| batch.last_offset >= start);
            }
            Op::DeleteRecords { offset_pick } => {
                let offset = self.model.pick(offset_pick, 0);
                let result = self.log().delete_records_before(offset);
                if offset > self.model.log_end_offset {
                    assert_eq!(
                        result.expect_err("past the end").kafka_error_code(),
                        ResponseError::OffsetOutOfRange
                    );
                    return;
                }
                let start = result.expect("delete records");
                self.model.log_start_offset = self.model.log_start_offset.max(offset);
                assert_eq!(start, self.model.log_start_offset);
                self.model
                    .batches
                    .retain(|batch| batch.last_offset >= start);
            }
            Op::Reopen { clean } => {
                let mut log = self.log.take().expect("open");
                if clean {
                    log.flush().expect("flush before a clean shutdown");
                }
                let options = LogOpenOptions {
                    recovery_point: log.recovery_point(),
                    log_start_offset: log.log_start_offset(),
                    clean_shutdown: clean,
                };
                drop(log);
                let (log, report) = Log::open(
                    self.dir.path(),
                    self.config.clone(),
                    options,
                    self.clock.clone(),
                    self.handles.clone(),
                )
                .expect("reopen");
                assert_eq!(report.bytes_truncated, 0, "nothing was torn");
                self.log = Some(log);
            }
        }
    }

    fn check(&mut self) {
        let (start, end) = (self.model.log_start_offset, self.model.log_end_offset);
        assert_eq!(self.log().log_end_offset(), end);
        assert_eq!(self.log().log_start_offset(), start);
        assert!(self.log().recovery_point() <= end);
        for batch in self.model.batches.clone() {
            let (epoch, end_offset) = self.log().end_offset_for_epoch(batch.epoch);
            assert_eq!(
                epoch, batch.epoch,
                "epoch {} is known while its batches remain",
                batch.epoch
            );
            assert!(
                end_offset > batch.last_offset as i64,
                "epoch {} ends after its batches",
                batch.epoch
            );
        }
    }
}

trait NowForTest {
    fn now_ms_for_test(&self) -> i64;
}

impl NowForTest for ManualClock {
    fn now_ms_for_test(&self) -> i64 {
        weir::clock::Clock::now_ms(self)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_log_behaves_like_a_list_of_batches(
        segment_bytes in 512u64..4096,
        index_interval_bytes in 0u64..1024,
        retention_bytes in prop_oneof![Just(-1i64), 1024i64..8192],
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let config = LogConfig { segment_bytes, index_interval_bytes, retention_bytes, ..LogConfig::default() };
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(START_MS));
        let handles = FileHandleCache::new(8);
        let (log, _) = Log::open(dir.path(), config.clone(), LogOpenOptions::default(), clock.clone(), handles.clone())
            .expect("open");
        let mut harness = Harness { dir, config, clock, handles, log: Some(log), model: Model::default(), appended: 0 };
        for op in &ops {
            harness.apply(op);
            harness.check();
        }
    }
}
