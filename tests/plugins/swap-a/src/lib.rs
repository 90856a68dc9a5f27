//! Version A of the hot-swap test's partitioner: Kafka's murmur2 (null keys on partition 0).

use weir_plugin_sdk::partitioner::Partitioner;

#[derive(Debug)]
pub struct SwapA;

impl Partitioner for SwapA {
    fn partition(_topic: &str, key: Option<&[u8]>, _value_size: u32, count: u32) -> u32 {
        key.map_or(0, |key| {
            weir_partitioner_default::partition_for_key(key, count)
        })
    }
}

weir_plugin_sdk::export_partitioner!(SwapA);
