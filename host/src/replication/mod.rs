//! The replication room: a partition replica's state on this broker (leader epoch, high
//! watermark, idempotent producer state) and the wake-ups that long-polling fetches wait on.
//!
//! Single-node for now: this broker leads every partition and the ISR is itself, so the high
//! watermark follows the log end offset. Followers, ISR changes and the purgatory arrive with the
//! replication issue; the shapes here (`Partition::append_as_leader`, `high_watermark`) are the
//! ones they extend.

pub mod partition;
pub mod producer_state;

pub use partition::{Partition, ProduceError, ProduceResult};
