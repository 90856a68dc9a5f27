//! A partitioner that recurses until the stack runs out: install must refuse it (trap).

use weir_plugin_sdk::partitioner::Partitioner;

#[derive(Debug)]
pub struct Recurse;

impl Partitioner for Recurse {
    fn partition(_topic: &str, _key: Option<&[u8]>, _value_size: u32, count: u32) -> u32 {
        weir_test_misbehave::recurse(0) as u32 % count.max(1)
    }
}

weir_plugin_sdk::export_partitioner!(Recurse);
