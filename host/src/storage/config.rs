//! Per-log configuration, with Kafka's topic-level property names and defaults.
//!
//! Every key and its default live here and nowhere else.

use super::error::{LogError, Result};

pub const SEGMENT_BYTES: &str = "segment.bytes";
pub const SEGMENT_MS: &str = "segment.ms";
pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const INDEX_INTERVAL_BYTES: &str = "index.interval.bytes";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const FLUSH_MESSAGES: &str = "flush.messages";
pub const FLUSH_MS: &str = "flush.ms";
pub const MESSAGE_TIMESTAMP_BEFORE_MAX_MS: &str = "message.timestamp.before.max.ms";
pub const MESSAGE_TIMESTAMP_AFTER_MAX_MS: &str = "message.timestamp.after.max.ms";

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Smallest segment Kafka accepts; smaller segments would make every batch its own file.
const SEGMENT_BYTES_MIN: u64 = 14;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment before the active one would exceed this size.
    pub segment_bytes: u64,
    /// Roll once the active segment's first record is this old.
    pub segment_ms: i64,
    /// Delete closed segments whose newest record is older than this; -1 keeps forever.
    pub retention_ms: i64,
    /// Delete the oldest closed segments while the log is larger than this; -1 means no limit.
    pub retention_bytes: i64,
    /// Bytes of log between two sparse offset-index entries.
    pub index_interval_bytes: u64,
    /// Largest record batch accepted.
    pub max_message_bytes: usize,
    /// fsync after this many messages; `i64::MAX` leaves flushing to the OS (Kafka's default).
    pub flush_messages: u64,
    /// fsync when the last flush is this old; `i64::MAX` leaves flushing to the OS (Kafka's default).
    pub flush_ms: i64,
    /// Refuse create-time timestamps further in the past than this (Kafka 4 default: no limit).
    pub message_timestamp_before_max_ms: i64,
    /// Refuse create-time timestamps further in the future than this (Kafka 4 default: 1 hour,
    /// KIP-1030), so one bad clock cannot hold back time-based retention for a whole partition.
    pub message_timestamp_after_max_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            flush_messages: i64::MAX as u64,
            flush_ms: i64::MAX,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 60 * 60 * 1000,
        }
    }
}

impl LogConfig {
    /// All the keys this config understands, for listing and validation.
    pub const KEYS: [&'static str; 10] = [
        SEGMENT_BYTES,
        SEGMENT_MS,
        RETENTION_MS,
        RETENTION_BYTES,
        INDEX_INTERVAL_BYTES,
        MAX_MESSAGE_BYTES,
        FLUSH_MESSAGES,
        FLUSH_MS,
        MESSAGE_TIMESTAMP_BEFORE_MAX_MS,
        MESSAGE_TIMESTAMP_AFTER_MAX_MS,
    ];

    /// Sets one property from its string form, refusing unknown keys and out-of-range values.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let parse_i64 = |min: i64| -> Result<i64> {
            let parsed: i64 = value
                .trim()
                .parse()
                .map_err(|_| LogError::Config(format!("{key}: '{value}' is not an integer")))?;
            if parsed < min {
                return Err(LogError::Config(format!(
                    "{key}: {parsed} is below the minimum {min}"
                )));
            }
            Ok(parsed)
        };
        match key {
            SEGMENT_BYTES => self.segment_bytes = parse_i64(SEGMENT_BYTES_MIN as i64)? as u64,
            SEGMENT_MS => self.segment_ms = parse_i64(1)?,
            RETENTION_MS => self.retention_ms = parse_i64(-1)?,
            RETENTION_BYTES => self.retention_bytes = parse_i64(-1)?,
            INDEX_INTERVAL_BYTES => self.index_interval_bytes = parse_i64(0)? as u64,
            MAX_MESSAGE_BYTES => self.max_message_bytes = parse_i64(0)? as usize,
            FLUSH_MESSAGES => self.flush_messages = parse_i64(1)? as u64,
            FLUSH_MS => self.flush_ms = parse_i64(0)?,
            MESSAGE_TIMESTAMP_BEFORE_MAX_MS => self.message_timestamp_before_max_ms = parse_i64(0)?,
            MESSAGE_TIMESTAMP_AFTER_MAX_MS => self.message_timestamp_after_max_ms = parse_i64(0)?,
            _ => return Err(LogError::Config(format!("unknown log config '{key}'"))),
        }
        Ok(())
    }

    /// The current value of a property, as Kafka's DescribeConfigs would print it.
    pub fn get(&self, key: &str) -> Option<String> {
        let value = match key {
            SEGMENT_BYTES => self.segment_bytes.to_string(),
            SEGMENT_MS => self.segment_ms.to_string(),
            RETENTION_MS => self.retention_ms.to_string(),
            RETENTION_BYTES => self.retention_bytes.to_string(),
            INDEX_INTERVAL_BYTES => self.index_interval_bytes.to_string(),
            MAX_MESSAGE_BYTES => self.max_message_bytes.to_string(),
            FLUSH_MESSAGES => self.flush_messages.to_string(),
            FLUSH_MS => self.flush_ms.to_string(),
            MESSAGE_TIMESTAMP_BEFORE_MAX_MS => self.message_timestamp_before_max_ms.to_string(),
            MESSAGE_TIMESTAMP_AFTER_MAX_MS => self.message_timestamp_after_max_ms.to_string(),
            _ => return None,
        };
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let config = LogConfig::default();
        assert_eq!(config.get(SEGMENT_BYTES).as_deref(), Some("1073741824"));
        assert_eq!(config.get(RETENTION_MS).as_deref(), Some("604800000"));
        assert_eq!(config.get(SEGMENT_MS).as_deref(), Some("604800000"));
        assert_eq!(config.get(RETENTION_BYTES).as_deref(), Some("-1"));
        assert_eq!(config.get(INDEX_INTERVAL_BYTES).as_deref(), Some("4096"));
        assert_eq!(config.get(MAX_MESSAGE_BYTES).as_deref(), Some("1048588"));
        assert_eq!(
            config.get(FLUSH_MESSAGES).as_deref(),
            Some("9223372036854775807")
        );
    }

    #[test]
    fn set_round_trips_and_refuses_bad_values() {
        let mut config = LogConfig::default();
        for key in LogConfig::KEYS {
            let value = config.get(key).expect("every key has a value");
            config
                .set(key, &value)
                .expect("a printed value parses back");
        }
        assert_eq!(config, LogConfig::default());
        config.set(SEGMENT_BYTES, "4096").expect("valid");
        assert_eq!(config.segment_bytes, 4096);
        assert!(config.set(SEGMENT_BYTES, "1").is_err());
        assert!(config.set(RETENTION_MS, "soon").is_err());
        assert!(config.set("segment.byte", "10").is_err());
    }
}
