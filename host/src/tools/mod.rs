//! Offline tools that read Weir's data directory directly, like Kafka's `kafka-dump-log.sh`
//! (partition logs, and the metadata log with its snapshot).

pub mod log_dump;
pub mod metadata_dump;
