//! The replication room: a partition replica's state on this broker (leader epoch, high
//! watermark, idempotent producer state) and the wake-ups that long-polling fetches wait on.
//!
//! Not replicating yet: this broker leads the partitions it hosts and the ISR is itself, so the
//! high watermark follows the log end offset. [`replica`] is the pure state machine the
//! replication issue puts behind each partition (follower progress, ISR shrink and expansion
//! through AlterPartition, the high watermark over the ISR), tested on its own from tables; the
//! shapes here (`Partition::append_as_leader`, `high_watermark`) are the ones it will drive.

pub mod partition;
pub mod producer_state;
pub mod replica;

pub use partition::{Partition, ProduceError, ProduceResult};
