//! Kafka's default partitioner: a keyed record goes to `toPositive(murmur2(key)) % n`, bit-exact
//! with the Java client, so keys land where Java producers put them. Null keys are sticky
//! (KIP-480): they stay on one partition until about `batch.size` (16 KiB) of values has gone
//! there, then move on to the next partition.

use std::sync::atomic::{AtomicU32, Ordering};

use weir_plugin_sdk::partitioner::{BatchKeys, Partitioner};

/// Kafka's murmur2 (MurmurHash2, seed 0x9747b28c), as `org.apache.kafka.common.utils.Utils`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// `Utils.toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partition_count: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partition_count.max(1)
}

/// `batch.size`'s default: how much value data sticks to one partition before null keys move on.
pub const STICKY_BATCH_BYTES: u32 = 16 * 1024;

/// Sticky placement of null-key records (per plugin instance).
#[derive(Debug, Default)]
pub struct Sticky {
    partition: AtomicU32,
    bytes: AtomicU32,
}

impl Sticky {
    pub const fn new() -> Self {
        Sticky {
            partition: AtomicU32::new(0),
            bytes: AtomicU32::new(0),
        }
    }

    /// The partition for a null-key record of `value_size` bytes.
    pub fn next(&self, value_size: u32, partition_count: u32) -> u32 {
        let partition_count = partition_count.max(1);
        // Instances are single-threaded; the atomics only make the static safe to share.
        let mut partition = self.partition.load(Ordering::Relaxed) % partition_count;
        let bytes = self.bytes.load(Ordering::Relaxed);
        if bytes >= STICKY_BATCH_BYTES {
            partition = (partition + 1) % partition_count;
            self.bytes.store(0, Ordering::Relaxed);
        }
        self.partition.store(partition, Ordering::Relaxed);
        self.bytes.fetch_add(value_size.max(1), Ordering::Relaxed);
        partition
    }
}

static STICKY: Sticky = Sticky::new();

/// The default partitioner, as plain Rust (sticky state passed in).
pub fn partition(
    sticky: &Sticky,
    key: Option<&[u8]>,
    value_size: u32,
    partition_count: u32,
) -> u32 {
    match key {
        Some(key) => partition_for_key(key, partition_count),
        None => sticky.next(value_size, partition_count),
    }
}

#[derive(Debug)]
pub struct DefaultPartitioner;

impl Partitioner for DefaultPartitioner {
    fn partition(_topic: &str, key: Option<&[u8]>, value_size: u32, partition_count: u32) -> u32 {
        partition(&STICKY, key, value_size, partition_count)
    }

    fn partition_batch(
        _topic: &str,
        keys: BatchKeys<'_>,
        value_sizes: &[u32],
        partition_count: u32,
    ) -> Vec<u32> {
        keys.iter()
            .enumerate()
            .map(|(i, key)| {
                let value_size = value_sizes.get(i).copied().unwrap_or(0);
                partition(&STICKY, key, value_size, partition_count)
            })
            .collect()
    }
}

#[cfg(feature = "component")]
weir_plugin_sdk::export_partitioner!(DefaultPartitioner);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_places_keys_where_single_calls_do() {
        let keys: Vec<Vec<u8>> = (0..500).map(|i| format!("k{i}").into_bytes()).collect();
        let (bytes, ends) =
            weir_plugin_sdk::partitioner::pack_keys(keys.iter().map(|k| Some(k.as_slice())));
        for partition_count in [1, 3, 12, 1000] {
            let batch = DefaultPartitioner::partition_batch(
                "t",
                BatchKeys {
                    bytes: &bytes,
                    ends: &ends,
                },
                &[],
                partition_count,
            );
            let single: Vec<u32> = keys
                .iter()
                .map(|key| partition_for_key(key, partition_count))
                .collect();
            assert_eq!(batch, single);
        }
    }

    /// Vectors from the Java client's `UtilsTest.testMurmur2` and DefaultPartitioner behaviour.
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key),
                *expected,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn keyed_records_always_land_in_range_and_stay_put() {
        for n in 1..50u32 {
            let p = partition_for_key(b"order-42", n);
            assert!(p < n);
            assert_eq!(p, partition_for_key(b"order-42", n));
        }
    }

    #[test]
    fn null_keys_stick_then_move_on() {
        let sticky = Sticky::new();
        let first: Vec<u32> = (0..16).map(|_| sticky.next(1024, 3)).collect();
        assert!(first.iter().all(|&p| p == first[0]), "{first:?}");
        let next = sticky.next(1024, 3);
        assert_eq!(next, (first[0] + 1) % 3);
        assert!(sticky.next(10, 0) == 0, "zero partitions is treated as one");
    }
}
