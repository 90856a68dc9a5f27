//! Storage errors. Each one maps to the Kafka error code a client should see.

use std::io;

// Kafka's error codes have one vocabulary in Weir: the `kafka-protocol` crate's `ResponseError`,
// Kafka's own `Errors` enum. It is a codec crate, not the protocol room, so storage may name it.
use kafka_protocol::ResponseError;

/// Why a record batch was refused. A refused batch never changes the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The bytes are not a well-formed record batch (bad CRC, truncated, impossible lengths).
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// The batch is well-formed but its contents break a rule (count vs offsets, old magic, ...).
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    /// The record set is larger than a whole segment (`segment.bytes`).
    #[error("record set of {size} bytes exceeds segment.bytes ({max})")]
    RecordListTooLarge { size: usize, max: usize },
    /// A create-time timestamp outside `message.timestamp.{before,after}.max.ms` of now.
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// The batch is larger than `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes ({max})")]
    TooLarge { size: usize, max: usize },
}

impl BatchError {
    pub fn kafka_error_code(&self) -> ResponseError {
        match self {
            BatchError::Corrupt(_) => ResponseError::CorruptMessage,
            BatchError::InvalidRecord(_) => ResponseError::InvalidRecord,
            BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
            BatchError::InvalidTimestamp(_) => ResponseError::InvalidTimestamp,
            BatchError::RecordListTooLarge { .. } => ResponseError::RecordListTooLarge,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("offset {offset} is outside the log [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: u64,
        log_start_offset: u64,
        log_end_offset: u64,
    },
    /// A replicated batch does not continue the log (its base offset is below the log end offset).
    #[error(
        "replicated batch at offset {base_offset} does not follow log end offset {log_end_offset}"
    )]
    NonMonotonicOffset {
        base_offset: u64,
        log_end_offset: u64,
    },
    #[error("log is offline after a storage error: {0}")]
    Offline(String),
    #[error("invalid log configuration: {0}")]
    Config(String),
    #[error("storage I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl LogError {
    pub fn kafka_error_code(&self) -> ResponseError {
        match self {
            LogError::Batch(error) => error.kafka_error_code(),
            LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            LogError::NonMonotonicOffset { .. } => ResponseError::CorruptMessage,
            LogError::Config(_) | LogError::Io { .. } | LogError::Offline(_) => {
                ResponseError::KafkaStorageError
            }
        }
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Attaches the path to an I/O error, so an operator can tell which file failed.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| LogError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}
