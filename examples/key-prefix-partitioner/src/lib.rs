//! Key-prefix partitioning, an example Weir partitioner plugin.
//!
//! A record whose key starts with one of the prefixes in [`PREFIX_ROUTES`] goes to that route's
//! partition (modulo the topic's partition count, so the answer is always in range). Every other
//! record is placed as Kafka's default partitioner places it, using the default partitioner
//! plugin (`weir-partitioner-default`) rather than a copy of it: a keyed record by murmur2 of its
//! key, bit-exact with the Java client; a null-key record stickily (KIP-480).

use weir_partitioner_default::Sticky;
use weir_plugin_sdk::partitioner::{BatchKeys, Partitioner};

/// Key prefixes (compared byte for byte) and the partition their records go to. The first
/// matching prefix wins, so list a longer prefix before a shorter one it extends
/// (`"eu:fr:"` before `"eu:"`). A partition beyond the topic's count wraps around
/// (`partition % partition_count`).
///
/// Plugins import nothing but the broker's log, so there is no configuration to read at run
/// time: edit this table and rebuild the plugin.
pub const PREFIX_ROUTES: &[(&str, u32)] = &[("eu:", 0), ("us:", 1)];

/// The partition of a route's records in a topic of `partition_count` partitions.
fn routed(partition: u32, partition_count: u32) -> u32 {
    partition % partition_count.max(1)
}

/// The routed partition for `key`, if one of `routes` matches it.
fn route(routes: &[(&str, u32)], key: &[u8], partition_count: u32) -> Option<u32> {
    routes
        .iter()
        .find(|(prefix, _)| key.starts_with(prefix.as_bytes()))
        .map(|&(_, partition)| routed(partition, partition_count))
}

/// The partitioner with an explicit table and sticky state, as plain Rust (the component uses
/// [`PREFIX_ROUTES`] and one sticky state per instance).
pub fn partition(
    routes: &[(&str, u32)],
    sticky: &Sticky,
    key: Option<&[u8]>,
    value_size: u32,
    partition_count: u32,
) -> u32 {
    match key.and_then(|key| route(routes, key, partition_count)) {
        Some(partition) => partition,
        None => weir_partitioner_default::partition(sticky, key, value_size, partition_count),
    }
}

/// The batch form: one pass over the packed keys, one allocation for the answer, no copy of any
/// key.
pub fn partition_batch(
    routes: &[(&str, u32)],
    sticky: &Sticky,
    keys: BatchKeys<'_>,
    value_sizes: &[u32],
    partition_count: u32,
) -> Vec<u32> {
    let mut partitions = Vec::with_capacity(keys.len());
    let value_sizes = value_sizes.iter().copied().chain(std::iter::repeat(0));
    for (key, value_size) in keys.iter().zip(value_sizes) {
        partitions.push(partition(routes, sticky, key, value_size, partition_count));
    }
    partitions
}

/// Null-key placement for this plugin instance.
static STICKY: Sticky = Sticky::new();

#[derive(Debug)]
pub struct KeyPrefixPartitioner;

impl Partitioner for KeyPrefixPartitioner {
    fn partition(_topic: &str, key: Option<&[u8]>, value_size: u32, partition_count: u32) -> u32 {
        partition(PREFIX_ROUTES, &STICKY, key, value_size, partition_count)
    }

    fn partition_batch(
        _topic: &str,
        keys: BatchKeys<'_>,
        value_sizes: &[u32],
        partition_count: u32,
    ) -> Vec<u32> {
        partition_batch(PREFIX_ROUTES, &STICKY, keys, value_sizes, partition_count)
    }
}

weir_plugin_sdk::export_partitioner!(KeyPrefixPartitioner);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_partitioner_default::{STICKY_BATCH_BYTES, partition_for_key};
    use weir_plugin_sdk::partitioner::pack_keys;

    const ROUTES: &[(&str, u32)] = &[("eu:fr:", 5), ("eu:", 0), ("us:", 1), ("ap:", 9)];

    fn keyed(key: &[u8], partition_count: u32) -> u32 {
        partition(ROUTES, &Sticky::new(), Some(key), 100, partition_count)
    }

    #[test]
    fn prefixed_keys_go_to_their_partition() {
        assert_eq!(keyed(b"eu:order-1", 8), 0);
        assert_eq!(keyed(b"eu:order-2", 8), 0);
        assert_eq!(keyed(b"us:order-1", 8), 1);
        // The prefix alone is a match too.
        assert_eq!(keyed(b"us:", 8), 1);
    }

    #[test]
    fn the_first_matching_prefix_wins() {
        assert_eq!(keyed(b"eu:fr:paris", 8), 5);
        assert_eq!(keyed(b"eu:de:berlin", 8), 0);
    }

    #[test]
    fn route_partitions_wrap_around_the_partition_count() {
        // "ap:" routes to 9: in a 4-partition topic that is 9 % 4.
        assert_eq!(keyed(b"ap:tokyo", 4), 1);
        assert_eq!(keyed(b"ap:tokyo", 10), 9);
        assert_eq!(keyed(b"ap:tokyo", 1), 0);
        // A zero count (never sent by the host) is treated as one rather than dividing by zero.
        assert_eq!(keyed(b"ap:tokyo", 0), 0);
        for n in 1..=32 {
            for key in [&b"eu:fr:x"[..], b"eu:x", b"us:x", b"ap:x", b"other", b""] {
                assert!(keyed(key, n) < n, "key {key:?} in {n} partitions");
            }
        }
    }

    #[test]
    fn other_keys_are_placed_by_murmur2_like_the_java_client() {
        for key in [
            &b"order-42"[..],
            b"EU:upper-case",
            b"xeu:",
            b"eu",
            b"u",
            b"",
        ] {
            for n in [1, 3, 8, 12] {
                assert_eq!(keyed(key, n), partition_for_key(key, n), "key {key:?}");
            }
        }
        // A known Java-client placement: murmur2("foobar") = -790332482, positive part
        // 1357151166, which is 6 modulo 10.
        assert_eq!(keyed(b"foobar", 10), 6);
    }

    #[test]
    fn null_keys_are_sticky_and_never_routed() {
        let sticky = Sticky::new();
        let per_record = STICKY_BATCH_BYTES / 4;
        let first: Vec<u32> = (0..4)
            .map(|_| partition(ROUTES, &sticky, None, per_record, 3))
            .collect();
        assert!(first.iter().all(|&p| p == first[0]), "{first:?}");
        let next = partition(ROUTES, &sticky, None, per_record, 3);
        assert_eq!(next, (first[0] + 1) % 3, "moves on after a batch's worth");
        // An empty key is a key, not a null key: it hashes.
        assert_eq!(
            partition(ROUTES, &Sticky::new(), Some(b""), 1, 7),
            partition_for_key(b"", 7)
        );
    }

    #[test]
    fn batch_answers_match_the_single_record_form() {
        let keys: Vec<Option<&[u8]>> = vec![
            Some(b"eu:a"),
            None,
            Some(b"us:b"),
            Some(b"plain"),
            Some(b""),
            None,
            Some(b"eu:fr:c"),
            Some(b"ap:d"),
        ];
        let value_sizes = [10, 20, 30, 40, 50, 60, 70, 80];
        let (bytes, ends) = pack_keys(keys.iter().copied());
        let batch_keys = BatchKeys {
            bytes: &bytes,
            ends: &ends,
        };
        let batch = partition_batch(ROUTES, &Sticky::new(), batch_keys, &value_sizes, 6);
        let single_sticky = Sticky::new();
        let single: Vec<u32> = keys
            .iter()
            .zip(value_sizes)
            .map(|(&key, size)| partition(ROUTES, &single_sticky, key, size, 6))
            .collect();
        assert_eq!(batch, single);
        assert_eq!(&batch[..1], &[0]);
        assert_eq!(batch[2], 1);
        assert_eq!(batch[3], partition_for_key(b"plain", 6));
        assert_eq!(batch[6], 5);
        assert_eq!(batch[7], 9 % 6);
    }

    #[test]
    fn batch_has_one_answer_per_record_even_with_short_value_sizes() {
        let (bytes, ends) = pack_keys([Some(&b"eu:a"[..]), Some(b"us:b"), None]);
        let batch = partition_batch(
            ROUTES,
            &Sticky::new(),
            BatchKeys {
                bytes: &bytes,
                ends: &ends,
            },
            &[1],
            4,
        );
        assert_eq!(batch.len(), 3);
        assert_eq!(&batch[..2], &[0, 1]);
        assert!(batch[2] < 4);
        let empty = partition_batch(
            ROUTES,
            &Sticky::new(),
            BatchKeys {
                bytes: &[],
                ends: &[],
            },
            &[],
            4,
        );
        assert!(empty.is_empty());
    }

    #[test]
    fn the_compiled_in_table_is_used_by_the_plugin() {
        for &(prefix, partition) in PREFIX_ROUTES {
            let key = format!("{prefix}some-id");
            let answer = KeyPrefixPartitioner::partition("t", Some(key.as_bytes()), 1, 64);
            assert_eq!(answer, partition % 64, "key {key}");
        }
    }
}
