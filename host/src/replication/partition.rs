//! One partition replica hosted here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::producer_state::{BatchMetadata, ProducerStateTable, SequenceCheck};
use crate::storage::manager::SharedLog;
use crate::storage::{BatchHeader, Log, LogError, TopicPartition};

/// Kafka error codes the produce path returns beyond storage's own.
pub mod error_code {
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const INVALID_RECORD: i16 = 87;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceError {
    pub code: i16,
    pub message: String,
}

impl ProduceError {
    fn new(code: i16, message: impl Into<String>) -> Self {
        ProduceError {
            code,
            message: message.into(),
        }
    }
}

impl From<LogError> for ProduceError {
    fn from(error: LogError) -> Self {
        ProduceError::new(error.kafka_error_code(), error.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceResult {
    pub base_offset: u64,
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
    /// Woken on every append, so a waiting fetch answers the moment data arrives.
    data_arrived: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Partition {
    /// Takes over a log, rebuilding idempotent producer state from its batch headers.
    pub fn new(
        topic_partition: TopicPartition,
        log: SharedLog,
        leader_epoch: i32,
    ) -> Result<Arc<Self>, LogError> {
        let mut producers = ProducerStateTable::default();
        let log_end_offset = {
            let log = lock(&log);
            log.for_each_batch_header(|header| {
                if header.producer_id >= 0 {
                    producers.record(
                        header.producer_id,
                        header.producer_epoch,
                        batch_metadata(header),
                    );
                }
            })?;
            log.log_end_offset()
        };
        Ok(Arc::new(Partition {
            topic_partition,
            log,
            leader_epoch,
            // One replica: everything in the log is in the whole ISR.
            high_watermark: AtomicU64::new(log_end_offset),
            producers: Mutex::new(producers),
            data_arrived: Notify::new(),
        }))
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn high_watermark(&self) -> u64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log(&self) -> MutexGuard<'_, Log> {
        lock(&self.log)
    }

    pub fn data_arrived(&self) -> &Notify {
        &self.data_arrived
    }

    /// Appends a producer's record set as leader. `acks` and `min_insync_replicas` decide, as in
    /// Kafka, whether acks=all may proceed with the current ISR (here: this broker alone).
    pub fn append_as_leader(
        &self,
        records: &[u8],
        acks: i16,
        min_insync_replicas: u32,
    ) -> Result<ProduceResult, ProduceError> {
        const IN_SYNC_REPLICAS: u32 = 1;
        if acks == -1 && IN_SYNC_REPLICAS < min_insync_replicas {
            return Err(ProduceError::new(
                error_code::NOT_ENOUGH_REPLICAS,
                format!(
                    "ISR has {IN_SYNC_REPLICAS} replica, min.insync.replicas is {min_insync_replicas}"
                ),
            ));
        }
        let header = BatchHeader::parse(records)
            .ok_or_else(|| ProduceError::new(2, "record set shorter than a batch header"))?;
        let idempotent = header.producer_id >= 0;
        if idempotent && header.total_size() != records.len() {
            return Err(ProduceError::new(
                error_code::INVALID_RECORD,
                "an idempotent producer must send exactly one batch per partition",
            ));
        }
        // The producer table is held across the append so two retries cannot both pass the check.
        let mut producers = lock(&self.producers);
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
                        log_start_offset: self.log().log_start_offset(),
                        duplicate: true,
                    });
                }
                SequenceCheck::StaleEpoch => {
                    return Err(ProduceError::new(
                        error_code::INVALID_PRODUCER_EPOCH,
                        format!(
                            "producer {} epoch {} is fenced",
                            header.producer_id, header.producer_epoch
                        ),
                    ));
                }
                SequenceCheck::OutOfOrder { expected } => {
                    return Err(ProduceError::new(
                        error_code::OUT_OF_ORDER_SEQUENCE_NUMBER,
                        format!(
                            "producer {} sent sequence {}, expected {expected}",
                            header.producer_id, header.base_sequence
                        ),
                    ));
                }
            }
        }
        let (info, log_start_offset) = {
            let mut log = self.log();
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
            log_start_offset,
            duplicate: false,
        })
    }

    /// DeleteRecords below the high watermark. Returns the new log start offset.
    pub fn delete_records_before(&self, offset: u64) -> Result<u64, ProduceError> {
        let high_watermark = self.high_watermark();
        if offset > high_watermark {
            return Err(ProduceError::new(
                1,
                format!("offset {offset} is above the high watermark {high_watermark}"),
            ));
        }
        Ok(self.log().delete_records_before(offset)?)
    }
}

fn batch_metadata(header: &BatchHeader) -> BatchMetadata {
    BatchMetadata {
        first_sequence: header.base_sequence,
        last_sequence: header.last_sequence(),
        first_offset: header.base_offset.max(0) as u64,
        last_offset: header.last_offset().max(0) as u64,
    }
}
