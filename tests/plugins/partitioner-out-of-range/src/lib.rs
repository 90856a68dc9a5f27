//! A partitioner that answers `partition_count`, one past the last partition: install must
//! refuse it.

use weir_plugin_sdk::partitioner::Partitioner;

#[derive(Debug)]
pub struct OutOfRange;

impl Partitioner for OutOfRange {
    fn partition(_topic: &str, _key: Option<&[u8]>, _value_size: u32, count: u32) -> u32 {
        count
    }
}

weir_plugin_sdk::export_partitioner!(OutOfRange);
