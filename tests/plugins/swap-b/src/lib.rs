//! Version B of the hot-swap test's partitioner: one past Kafka's murmur2 partition, modulo the
//! count (null keys on partition 1 % count), so every keyed answer differs from version A's
//! when there is more than one partition.

use weir_plugin_sdk::partitioner::Partitioner;

#[derive(Debug)]
pub struct SwapB;

impl Partitioner for SwapB {
    fn partition(_topic: &str, key: Option<&[u8]>, _value_size: u32, count: u32) -> u32 {
        let count = count.max(1);
        let a = key.map_or(0, |key| {
            weir_partitioner_default::partition_for_key(key, count)
        });
        (a + 1) % count
    }
}

weir_plugin_sdk::export_partitioner!(SwapB);
