//! A partitioner whose zero-initialised static table needs 64 MiB of linear memory from the
//! start (the component declares it in its initial memory size; being writable and zero it is
//! `.bss`, so the component file stays small): install must refuse it at instantiation, before
//! any call.

use std::sync::atomic::{AtomicU8, Ordering};

use weir_plugin_sdk::partitioner::Partitioner;

const TABLE_BYTES: usize = 64 << 20;

static TABLE: [AtomicU8; TABLE_BYTES] = [const { AtomicU8::new(0) }; TABLE_BYTES];

#[derive(Debug)]
pub struct BigStatic;

impl Partitioner for BigStatic {
    fn partition(_topic: &str, key: Option<&[u8]>, _value_size: u32, count: u32) -> u32 {
        let index = key.map_or(0, |key| key.len() * 4099) % TABLE_BYTES;
        u32::from(TABLE[index].fetch_add(1, Ordering::Relaxed)) % count.max(1)
    }
}

weir_plugin_sdk::export_partitioner!(BigStatic);
