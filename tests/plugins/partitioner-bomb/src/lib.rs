//! A partitioner that allocates memory without bound: install must refuse it (memory).

use weir_plugin_sdk::partitioner::Partitioner;

#[derive(Debug)]
pub struct Bomb;

impl Partitioner for Bomb {
    fn partition(_topic: &str, _key: Option<&[u8]>, _value_size: u32, _count: u32) -> u32 {
        weir_test_misbehave::bomb()
    }
}

weir_plugin_sdk::export_partitioner!(Bomb);
