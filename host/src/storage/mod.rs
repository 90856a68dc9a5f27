//! The storage room: a partition's log on disk, in Kafka's layout and with Kafka's semantics.
//!
//! Layout:
//! - [`batch`]: the record batch format and its validation (CRC-32C, sizes, counts).
//! - [`index`]: sparse offset and time indexes.
//! - [`segment`]: one `.log` file with its indexes.
//! - [`log`]: a partition's segments, offsets, rolling, retention, truncation and recovery.
//! - [`epoch_cache`]: leader epoch -> start offset, for OffsetForLeaderEpoch.
//! - [`checkpoint`] and [`files`]: Kafka's checkpoint files, atomic writes, the handle cache.
//! - [`manager`]: every log in a log directory, its checkpoints and clean-shutdown marker.
//!
//! Architecture invariant: storage knows nothing of replication, the network or the controller.
//! It never learns the high watermark except as a bound a caller passes in.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod epoch_cache;
pub mod error;
pub mod files;
pub mod index;
pub mod log;
pub mod manager;
pub mod records;
pub mod segment;

pub use batch::{AppendOrigin, BatchHeader, Compression};
pub use checkpoint::TopicPartition;
pub use config::LogConfig;
pub use error::{BatchError, LogError};
pub use log::{AppendInfo, Log, LogOpenOptions, RecoveryReport};
pub use manager::LogManager;
