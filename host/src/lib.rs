//! Weir: a Kafka-compatible broker whose policies are WebAssembly plugins.
//!
//! Layout (see `ARCHITECTURE.md` at the repository root for the whole map):
//! - [`storage`]: partition logs on disk (segments, indexes, recovery, retention, checkpoints).
//! - [`tools`]: offline tools over the data directory (`weir log dump`).
//! - [`clock`]: time as an input, so age-based decisions are testable.

pub mod clock;
pub mod storage;
pub mod tools;
