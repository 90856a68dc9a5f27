//! One partition replica hosted here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::ResponseError;
use tokio::sync::Notify;

use super::producer_state::{BatchMetadata, ProducerStateTable, SequenceCheck};
use crate::policy::wit::acks;
use crate::storage::manager::{SharedLog, lock_log};
use crate::storage::{BatchHeader, Log, LogError, TopicPartition};

/// Why a produce (or DeleteRecords) was refused. The code is a plain Kafka error code rather than
/// a `ResponseError` because an acks plugin may fail a request with any code it likes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceError {
    pub code: i16,
    pub message: String,
}

impl ProduceError {
    /// A refusal of the host's own, with one of Kafka's errors.
    pub fn kafka(error: ResponseError, message: impl Into<String>) -> Self {
        Self::with_code(error.code(), message)
    }

    /// A refusal with the code an acks plugin answered.
    fn with_code(code: i16, message: impl Into<String>) -> Self {
        ProduceError {
            code,
            message: message.into(),
        }
    }
}

impl From<LogError> for ProduceError {
    fn from(error: LogError) -> Self {
        ProduceError::kafka(error.kafka_error_code(), error.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceResult {
    pub base_offset: u64,
    pub last_offset: u64,
    pub log_start_offset: u64,
    /// True when the batch was a retry of one already written.
    pub duplicate: bool,
}

#[derive(Debug)]
pub struct Partition {
    pub topic_partition: TopicPartition,
    log: SharedLog,
    leader_epoch: i32,
    high_watermark: AtomicU64,
    producers: Mutex<ProducerStateTable>,
    /// The log end offset of the last producer-state snapshot this process wrote.
    producer_snapshot_offset: AtomicU64,
    /// Woken on every append, so a waiting fetch answers the moment data arrives.
    data_arrived: Notify,
}

/// Why a partition whose producer-state table is poisoned is refused.
const POISONED_PRODUCER_STATE: &str = "a panic while the producer state was locked may have left \
     it half-updated; the partition is out of service until a restart rebuilds it from the log";

/// The idempotent producers' state on start: the newest snapshot at or below the log end offset,
/// then the batch headers after it; the whole log's headers when there is no usable snapshot.
/// Also returns how many batch headers it read: none after a clean shutdown's snapshot.
fn restore_producer_state(
    topic_partition: &TopicPartition,
    log: &mut Log,
) -> Result<(ProducerStateTable, u64), LogError> {
    // A snapshot only saves reading headers: whatever is wrong with one, the log is read instead.
    let (mut producers, from) = match log.latest_producer_snapshot() {
        Ok(Some((offset, bytes))) => match ProducerStateTable::decode_snapshot(&bytes) {
            Some(table) => (table, offset),
            None => {
                tracing::warn!(partition = %topic_partition, offset, "corrupt producer-state snapshot; reading the whole log");
                (ProducerStateTable::default(), 0)
            }
        },
        Ok(None) => (ProducerStateTable::default(), 0),
        Err(error) => {
            tracing::warn!(partition = %topic_partition, %error, "producer-state snapshot unreadable; reading the whole log");
            (ProducerStateTable::default(), 0)
        }
    };
    let mut headers_read = 0u64;
    log.for_each_batch_header_from(from, |header| {
        headers_read += 1;
        if header.producer_id >= 0 {
            producers.record(
                header.producer_id,
                header.producer_epoch,
                batch_metadata(header),
            );
        }
    })?;
    tracing::debug!(partition = %topic_partition, snapshot_offset = from, headers_read, "producer state restored");
    Ok((producers, headers_read))
}

impl Partition {
    /// Takes over a log, rebuilding idempotent producer state from its batch headers.
    pub fn new(
        topic_partition: TopicPartition,
        log: SharedLog,
        leader_epoch: i32,
    ) -> Result<Arc<Self>, LogError> {
        let (producers, log_end_offset) = {
            let mut log = lock_log(&log)?;
            let (producers, _) = restore_producer_state(&topic_partition, &mut log)?;
            (producers, log.log_end_offset())
        };
        Ok(Arc::new(Partition {
            topic_partition,
            log,
            leader_epoch,
            // One replica: everything in the log is in the whole ISR.
            high_watermark: AtomicU64::new(log_end_offset),
            producers: Mutex::new(producers),
            producer_snapshot_offset: AtomicU64::new(u64::MAX),
            data_arrived: Notify::new(),
        }))
    }

    /// Writes the idempotent producers' state as a snapshot at the log end offset, so the next
    /// start reads only the batches after it (at clean shutdown and with each periodic
    /// checkpoint). Does nothing when no batch arrived since the last snapshot.
    pub fn write_producer_snapshot(&self) -> Result<(), LogError> {
        // Producers before the log, as the append takes them: the snapshot matches the log end.
        let producers = self
            .producers
            .lock()
            .map_err(|_| LogError::Offline(POISONED_PRODUCER_STATE.to_string()))?;
        let mut log = self.log()?;
        let log_end_offset = log.log_end_offset();
        if self.producer_snapshot_offset.load(Ordering::Acquire) == log_end_offset {
            return Ok(());
        }
        log.write_producer_snapshot(log_end_offset, &producers.encode_snapshot())?;
        self.producer_snapshot_offset
            .store(log_end_offset, Ordering::Release);
        Ok(())
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn high_watermark(&self) -> u64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// The partition's log, or KAFKA_STORAGE_ERROR (`LogError::Offline`) once a panic while it
    /// was locked has taken it out of service ([`lock_log`]).
    pub fn log(&self) -> Result<MutexGuard<'_, Log>, LogError> {
        lock_log(&self.log)
    }

    pub fn data_arrived(&self) -> &Notify {
        &self.data_arrived
    }

    /// What the acks plugin is asked about this partition: its replicas' progress (here the
    /// ISR is this broker alone), log end offset, high watermark and flushed offset.
    pub fn acks_request(
        &self,
        leader_id: i32,
        stage: acks::Stage,
        produce: &ProduceAcks,
        last_offset: u64,
    ) -> Result<acks::Request, LogError> {
        let (log_end_offset, flushed_offset) = {
            let log = self.log()?;
            (log.log_end_offset(), log.recovery_point())
        };
        Ok(acks::Request {
            stage,
            acks: produce.acks,
            min_insync_replicas: produce.min_insync_replicas,
            replicas: vec![acks::ReplicaProgress {
                broker_id: leader_id,
                in_isr: true,
                log_end_offset: log_end_offset as i64,
                rack_id: None,
            }],
            leader_log_end_offset: log_end_offset as i64,
            high_watermark: self.high_watermark() as i64,
            flushed_offset: flushed_offset as i64,
            last_offset: last_offset as i64,
            elapsed_ms: produce.arrived.elapsed().as_millis().min(u32::MAX as u128) as u32,
        })
    }

    /// Produce as leader: the acks plugin may refuse before the append; after it, the request
    /// completes, fails, or waits in "purgatory" until a progress event (an append, a flush)
    /// lets the plugin complete it or the request's timeout passes (REQUEST_TIMED_OUT).
    pub async fn produce(
        &self,
        records: &[u8],
        produce: &ProduceAcks,
        decide: impl Fn(&acks::Request) -> acks::Decision,
    ) -> Result<ProduceResult, ProduceError> {
        let leader_log_end_offset = self.log()?.log_end_offset();
        let expected_last_offset =
            (leader_log_end_offset + record_count(records)).saturating_sub(1);
        let before = self.acks_request(
            produce.leader_id,
            acks::Stage::BeforeAppend,
            produce,
            expected_last_offset,
        )?;
        let settled = match decide(&before) {
            acks::Decision::Fail(code) => {
                return Err(ProduceError::with_code(
                    code,
                    refusal_message(code, produce.min_insync_replicas),
                ));
            }
            // The outcome is certain once the append succeeds: no second question.
            acks::Decision::Complete => true,
            acks::Decision::Wait => false,
        };
        let result = self.append_as_leader(records)?;
        if settled || produce.acks == 0 || result.duplicate {
            return Ok(result);
        }
        let deadline = produce.arrived + produce.timeout;
        loop {
            // Registered before asking, so an append between the question and the wait wakes it.
            let progressed = self.data_arrived.notified();
            let request = self.acks_request(
                produce.leader_id,
                acks::Stage::AfterAppend,
                produce,
                result.last_offset,
            )?;
            match decide(&request) {
                acks::Decision::Complete => return Ok(result),
                acks::Decision::Fail(code) => {
                    return Err(ProduceError::with_code(
                        code,
                        refusal_message(code, produce.min_insync_replicas),
                    ));
                }
                acks::Decision::Wait => {}
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(ProduceError::kafka(
                    ResponseError::RequestTimedOut,
                    format!(
                        "the acks policy was still waiting after the request's timeout of {} ms",
                        produce.timeout.as_millis()
                    ),
                ));
            }
            // Flushes do not notify: look again at least every PURGATORY_RECHECK.
            let wait = (deadline - now).min(PURGATORY_RECHECK);
            let _ = tokio::time::timeout(wait, progressed).await;
        }
    }

    /// Appends a producer's record set as leader (the acks policy is [`Partition::produce`]'s).
    pub fn append_as_leader(&self, records: &[u8]) -> Result<ProduceResult, ProduceError> {
        let header = BatchHeader::parse(records).ok_or_else(|| {
            ProduceError::kafka(
                ResponseError::CorruptMessage,
                "record set shorter than a batch header",
            )
        })?;
        let idempotent = header.producer_id >= 0;
        if idempotent && header.total_size() != records.len() {
            return Err(ProduceError::kafka(
                ResponseError::InvalidRecord,
                "an idempotent producer must send exactly one batch per partition",
            ));
        }
        // The producer table is held across the append so two retries cannot both pass the check.
        // A panic mid-check or mid-append poisons the table: like a poisoned log, the partition
        // is then out of service rather than deduplicating from a half-updated table.
        let mut producers = self.producers.lock().map_err(|_| {
            ProduceError::kafka(ResponseError::KafkaStorageError, POISONED_PRODUCER_STATE)
        })?;
        if idempotent {
            let metadata = batch_metadata(&header);
            match producers.check(
                header.producer_id,
                header.producer_epoch,
                metadata.first_sequence,
                metadata.last_sequence,
            ) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate(cached) => {
                    return Ok(ProduceResult {
                        base_offset: cached.first_offset,
                        last_offset: cached.last_offset,
                        log_start_offset: self.log()?.log_start_offset(),
                        duplicate: true,
                    });
                }
                SequenceCheck::StaleEpoch => {
                    return Err(ProduceError::kafka(
                        ResponseError::InvalidProducerEpoch,
                        format!(
                            "producer {} epoch {} is fenced",
                            header.producer_id, header.producer_epoch
                        ),
                    ));
                }
                SequenceCheck::OutOfOrder { expected } => {
                    return Err(ProduceError::kafka(
                        ResponseError::OutOfOrderSequenceNumber,
                        format!(
                            "producer {} sent sequence {}, expected {expected}",
                            header.producer_id, header.base_sequence
                        ),
                    ));
                }
            }
        }
        let (info, log_start_offset) = {
            let mut log = self.log()?;
            let info = log.append(records, self.leader_epoch)?;
            (info, log.log_start_offset())
        };
        if idempotent {
            let mut metadata = batch_metadata(&header);
            metadata.first_offset = info.first_offset;
            metadata.last_offset = info.last_offset;
            producers.record(header.producer_id, header.producer_epoch, metadata);
        }
        drop(producers);
        // The ISR is this broker: the high watermark moves with the log end offset.
        self.high_watermark
            .fetch_max(info.log_end_offset, Ordering::AcqRel);
        self.data_arrived.notify_waiters();
        Ok(ProduceResult {
            base_offset: info.first_offset,
            last_offset: info.last_offset,
            log_start_offset,
            duplicate: false,
        })
    }

    /// DeleteRecords below the high watermark. Returns the new log start offset.
    pub fn delete_records_before(&self, offset: u64) -> Result<u64, ProduceError> {
        let high_watermark = self.high_watermark();
        if offset > high_watermark {
            return Err(ProduceError::kafka(
                ResponseError::OffsetOutOfRange,
                format!("offset {offset} is above the high watermark {high_watermark}"),
            ));
        }
        Ok(self.log()?.delete_records_before(offset)?)
    }
}

/// How long a waiting produce goes without looking at the acks policy again.
const PURGATORY_RECHECK: std::time::Duration = std::time::Duration::from_millis(20);

/// One produce request's terms, as the acks policy sees them.
#[derive(Debug, Clone, Copy)]
pub struct ProduceAcks {
    pub leader_id: i32,
    pub acks: i16,
    pub min_insync_replicas: u32,
    pub timeout: std::time::Duration,
    pub arrived: std::time::Instant,
}

fn refusal_message(code: i16, min_insync_replicas: u32) -> String {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::NotEnoughReplicas | ResponseError::NotEnoughReplicasAfterAppend) => {
            format!(
                "the ISR is smaller than min.insync.replicas ({min_insync_replicas}); the acks policy refused"
            )
        }
        _ => format!("the acks policy failed the request with error code {code}"),
    }
}

/// Records in a record set (the sum of its batches' counts), read from the batch headers.
fn record_count(records: &[u8]) -> u64 {
    let mut rest = records;
    let mut count = 0u64;
    while let Some(header) = BatchHeader::parse(rest) {
        count += u64::try_from(header.last_offset_delta).unwrap_or(0) + 1;
        let size = header.total_size();
        if size == 0 || size > rest.len() {
            break;
        }
        rest = &rest[size..];
    }
    count.max(1)
}

fn batch_metadata(header: &BatchHeader) -> BatchMetadata {
    BatchMetadata {
        first_sequence: header.base_sequence,
        last_sequence: header.last_sequence(),
        first_offset: header.base_offset.max(0) as u64,
        last_offset: header.last_offset().max(0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kafka_protocol::ResponseError;

    use super::*;
    use crate::clock::SystemClock;
    use crate::storage::LogConfig;
    use crate::storage::batch::tests::client_batch;
    use crate::storage::checkpoint::{RECOVERY_POINT_CHECKPOINT, read_offsets};
    use crate::storage::manager::{CLEAN_SHUTDOWN_MARKER, LogManager};

    /// An idempotent producer's batch of `count` records from `base_sequence`.
    fn idempotent_batch(producer_id: i64, base_sequence: i32, count: usize) -> Vec<u8> {
        use crate::storage::batch::{
            BASE_SEQUENCE_OFFSET, CRC_OFFSET, PRODUCER_EPOCH_OFFSET, PRODUCER_ID_OFFSET,
            compute_crc,
        };
        let mut batch = client_batch(count, 10, now_ms());
        batch[PRODUCER_ID_OFFSET..PRODUCER_ID_OFFSET + 8]
            .copy_from_slice(&producer_id.to_be_bytes());
        batch[PRODUCER_EPOCH_OFFSET..PRODUCER_EPOCH_OFFSET + 2]
            .copy_from_slice(&0i16.to_be_bytes());
        batch[BASE_SEQUENCE_OFFSET..BASE_SEQUENCE_OFFSET + 4]
            .copy_from_slice(&base_sequence.to_be_bytes());
        let crc = compute_crc(&batch);
        batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    /// Producer state survives a restart through the snapshot plus the headers after it: a retry
    /// of a batch from before the snapshot and of one after it are both answered as duplicates
    /// with their original offsets. A restart right after a snapshot reads no header at all, and
    /// a snapshot above the log end (the log was truncated under it) is dropped, not trusted.
    #[test]
    fn producer_state_is_restored_from_the_snapshot_and_the_headers_after_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let manager = LogManager::open(dir.path(), Arc::new(SystemClock), |_| LogConfig::default())
            .expect("opening the log manager");
        let tp = TopicPartition::new("idempotent", 0);
        let log = manager
            .get_or_create(&tp, LogConfig::default())
            .expect("creating the log");
        let partition = Partition::new(tp.clone(), log.clone(), 0).expect("the partition");
        let before_snapshot = [
            idempotent_batch(7, 0, 3),
            idempotent_batch(7, 3, 3),
            idempotent_batch(9, 0, 2),
        ];
        let mut offsets = Vec::new();
        for batch in &before_snapshot {
            let appended = partition.append_as_leader(batch).expect("append");
            offsets.push((appended.base_offset, appended.last_offset));
        }
        partition.write_producer_snapshot().expect("snapshot");
        let restart = |log: &SharedLog| {
            let mut log = lock_log(log).expect("in service");
            restore_producer_state(&tp, &mut log).expect("restored").1
        };
        assert_eq!(
            restart(&log),
            0,
            "a restart at the snapshot reads no header"
        );

        let after_snapshot = idempotent_batch(7, 6, 2);
        let appended = partition.append_as_leader(&after_snapshot).expect("append");
        offsets.push((appended.base_offset, appended.last_offset));
        drop(partition);
        assert_eq!(
            restart(&log),
            1,
            "only the batch after the snapshot is read"
        );

        let restarted = Partition::new(tp.clone(), log.clone(), 0).expect("the partition");
        for (batch, (base_offset, last_offset)) in
            before_snapshot.iter().chain([&after_snapshot]).zip(offsets)
        {
            let retried = restarted.append_as_leader(batch).expect("a retry");
            assert!(
                retried.duplicate,
                "a retry after the restart is a duplicate"
            );
            assert_eq!(
                (retried.base_offset, retried.last_offset),
                (base_offset, last_offset)
            );
        }
        let next = restarted
            .append_as_leader(&idempotent_batch(9, 2, 1))
            .expect("producer 9 continues at sequence 2");
        assert!(!next.duplicate);
        assert_eq!(next.base_offset, 10);

        restarted.write_producer_snapshot().expect("snapshot at 11");
        lock_log(&log)
            .expect("in service")
            .truncate_to(8)
            .expect("truncate");
        assert_eq!(
            restart(&log),
            3,
            "the snapshot at 11 is above the log end 8: dropped, and the whole log read"
        );
    }

    fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64)
    }

    /// A panic while the log is locked (here: a thread that panics holding it) takes the
    /// partition out of service: appends, reads and DeleteRecords get KAFKA_STORAGE_ERROR instead
    /// of a half-updated log, the recovery point is not checkpointed, no clean-shutdown marker is
    /// written, and the next start recovers the log from disk with what was acknowledged.
    #[test]
    fn a_log_poisoned_by_a_panic_is_out_of_service_and_recovered_on_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let open = || {
            LogManager::open(dir.path(), Arc::new(SystemClock), |_| LogConfig::default())
                .expect("opening the log manager")
        };
        let tp = TopicPartition::new("poisoned", 0);
        let manager = open();
        let log = manager
            .get_or_create(&tp, LogConfig::default())
            .expect("creating the log");
        let partition = Partition::new(tp.clone(), log.clone(), 0).expect("the partition");
        let acknowledged = partition
            .append_as_leader(&client_batch(3, 10, now_ms()))
            .expect("an append before the panic");
        assert_eq!(acknowledged.last_offset, 2);

        let panicked = std::thread::spawn(move || {
            let _held = log.lock().expect("not yet poisoned");
            panic!("a bug in the middle of an append");
        })
        .join();
        assert!(panicked.is_err(), "the thread panicked holding the log");

        let storage_error = ResponseError::KafkaStorageError.code();
        let refused = partition
            .append_as_leader(&client_batch(1, 10, now_ms()))
            .expect_err("no append into a poisoned log");
        assert_eq!(refused.code, storage_error, "{refused:?}");
        let refused = partition
            .delete_records_before(1)
            .expect_err("no DeleteRecords on a poisoned log");
        assert_eq!(refused.code, storage_error, "{refused:?}");
        let read = partition.log().map(|_| ()).expect_err("no reads either");
        assert_eq!(read.kafka_error_code(), ResponseError::KafkaStorageError);

        manager.shutdown().expect("shutdown still completes");
        assert!(
            !dir.path().join(CLEAN_SHUTDOWN_MARKER).exists(),
            "a clean-shutdown marker would skip the recovery a poisoned log needs"
        );
        let recovery_points =
            read_offsets(&dir.path().join(RECOVERY_POINT_CHECKPOINT)).expect("checkpoint");
        assert!(
            !recovery_points.contains_key(&tp),
            "the poisoned log's recovery point was checkpointed: {recovery_points:?}"
        );
        drop(partition);
        drop(manager);

        let manager = open();
        assert!(!manager.had_clean_shutdown());
        let log = manager.get(&tp).expect("the log reopens");
        let partition = Partition::new(tp, log, 0).expect("the partition");
        assert_eq!(
            partition.log().expect("in service again").log_end_offset(),
            3,
            "the acknowledged records survive"
        );
    }
}
