//! Weir: a Kafka-compatible broker whose policies are WebAssembly plugins.
//!
//! Layout (see `ARCHITECTURE.md` at the repository root for the whole map):
//! - [`protocol`]: the Kafka listener, framing, routing; one file per API in `protocol/api/`.
//! - [`broker`]: the shell a `weir serve` process runs: topics, partitions, periodic work.
//! - [`replication`]: a partition replica's state (high watermark, leader epoch, producers).
//! - [`storage`]: partition logs on disk (segments, indexes, recovery, retention, checkpoints).
//! - [`policy`]: the WebAssembly policy plugins (election, partitioner, acks): sandbox, registry,
//!   hot swap, fallback.
//! - [`group`]: consumer groups (join, sync, heartbeat, rebalance) and committed offsets.
//! - [`controller`]: elections through the [`controller::election::LeaderElector`] trait.
//! - [`config`]: broker configuration with Kafka's property names.
//! - [`tools`]: offline tools over the data directory (`weir log dump`).
//! - [`admin`]: the HTTP admin API (plugins, metrics, HTTP produce) and the plugin-dir watcher.
//! - [`cli`]: the client commands (`weir topics`, `produce`, `consume`) and their Kafka client.
//! - [`clock`]: time as an input, so age-based decisions are testable.
//! - [`alloc`]: the process allocator (huge wire-driven reservations cannot abort the broker).

pub mod admin;
pub mod alloc;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod controller;
pub mod encoding;
pub mod group;
pub mod policy;
pub mod protocol;
pub mod replication;
pub mod storage;
pub mod tools;

/// Unit tests run under the same allocator as the broker, so the decoder fuzz tests exercise it.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc::Allocator = alloc::Allocator;
