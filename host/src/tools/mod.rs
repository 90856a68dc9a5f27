//! Offline tools that read Weir's data directory directly, like Kafka's `kafka-dump-log.sh`.

pub mod log_dump;
