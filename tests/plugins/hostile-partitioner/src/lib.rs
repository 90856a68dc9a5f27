//! A partitioner that places records as Kafka's default (murmur2 of the key; null keys on
//! partition 0), so it passes conformance (whose topic is `conformance`), except for records of
//! the trigger topics below: then it misbehaves. `tests/policy_sandbox.rs` activates it and
//! partitions records of those topics to exercise the host's fallback on the hot path.

use weir_plugin_sdk::partitioner::{BatchKeys, Partitioner};
use weir_test_misbehave as misbehave;

/// Spins forever.
pub const SPIN: &str = "spin";
/// Allocates memory without bound.
pub const BOMB: &str = "bomb";
/// Panics.
pub const PANIC: &str = "panic";
/// Executes `unreachable`.
pub const UNREACHABLE: &str = "unreachable";
/// Recurses until the stack runs out.
pub const RECURSE: &str = "recurse";
/// Answers `partition_count`, one past the last partition.
pub const OUT_OF_RANGE: &str = "out-of-range";
/// The batch form answers [`HUGE_BATCH_LEN`] partitions whatever the number of records.
pub const HUGE_BATCH: &str = "huge-batch";
/// 2 Mi entries: 8 MiB, under the tests' 16 MiB memory cap, so the answer reaches the host.
pub const HUGE_BATCH_LEN: usize = 2 << 20;

#[derive(Debug)]
pub struct HostilePartitioner;

impl Partitioner for HostilePartitioner {
    fn partition(topic: &str, key: Option<&[u8]>, _value_size: u32, partition_count: u32) -> u32 {
        match topic {
            SPIN => misbehave::spin(),
            BOMB => misbehave::bomb(),
            PANIC => misbehave::panic("partitioner trigger"),
            UNREACHABLE => misbehave::unreachable(),
            RECURSE => misbehave::recurse(0) as u32 % partition_count.max(1),
            OUT_OF_RANGE => partition_count,
            _ => key.map_or(0, |key| {
                weir_partitioner_default::partition_for_key(key, partition_count)
            }),
        }
    }

    fn partition_batch(
        topic: &str,
        keys: BatchKeys<'_>,
        value_sizes: &[u32],
        partition_count: u32,
    ) -> Vec<u32> {
        if topic == HUGE_BATCH {
            return vec![0; HUGE_BATCH_LEN];
        }
        let value_sizes = value_sizes.iter().copied().chain(std::iter::repeat(0));
        keys.iter()
            .zip(value_sizes)
            .map(|(key, value_size)| Self::partition(topic, key, value_size, partition_count))
            .collect()
    }
}

weir_plugin_sdk::export_partitioner!(HostilePartitioner);
