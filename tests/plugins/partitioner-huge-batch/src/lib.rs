//! A partitioner whose single-record form is Kafka's murmur2 but whose batch form answers 2 Mi
//! partitions (8 MiB) whatever the number of records: install must refuse it.

use weir_plugin_sdk::partitioner::{BatchKeys, Partitioner};

/// Entries in every batch answer.
pub const HUGE_BATCH_LEN: usize = 2 << 20;

#[derive(Debug)]
pub struct HugeBatch;

impl Partitioner for HugeBatch {
    fn partition(_topic: &str, key: Option<&[u8]>, _value_size: u32, count: u32) -> u32 {
        key.map_or(0, |key| {
            weir_partitioner_default::partition_for_key(key, count)
        })
    }

    fn partition_batch(_: &str, _: BatchKeys<'_>, _: &[u32], _: u32) -> Vec<u32> {
        vec![0; HUGE_BATCH_LEN]
    }
}

weir_plugin_sdk::export_partitioner!(HugeBatch);
