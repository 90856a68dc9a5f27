//! Idempotent producer state per partition (Kafka's `ProducerStateManager`): for each producer id
//! its epoch and the last few batches' sequence ranges and offsets, so a retried batch is answered
//! with its original offsets instead of being written twice, and a gap is refused.
//!
//! Pure state, no I/O: the partition asks [`ProducerStateTable::check`] before appending and calls
//! [`ProducerStateTable::record`] after.

use std::collections::{HashMap, VecDeque};

use crate::encoding::{Reader, crc32c};

/// Batches remembered per producer: Kafka's limit on in-flight requests per connection with
/// idempotence (`max.in.flight.requests.per.connection` <= 5).
pub const PRODUCER_BATCHES_CACHED_MAX: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: u64,
    pub last_offset: u64,
}

#[derive(Debug, Default, Clone)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// Already written: answer with these offsets, write nothing.
    Duplicate(BatchMetadata),
    /// INVALID_PRODUCER_EPOCH: an older epoch of a producer that has been fenced.
    StaleEpoch,
    /// OUT_OF_ORDER_SEQUENCE_NUMBER: a gap, or a new producer or epoch not starting at 0.
    OutOfOrder { expected: i32 },
}

#[derive(Debug, Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

/// Sequences wrap from i32::MAX to 0, as in Kafka.
fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStateTable {
    /// Decides about a batch from `producer_id`/`epoch` covering `first_sequence..=last_sequence`.
    ///
    /// Worked cases (producer 7, epoch 0, last batch 0..=4):
    /// - batch 5..=9, epoch 0 -> Append
    /// - batch 0..=4, epoch 0 -> Duplicate (the cached offsets)
    /// - batch 7..=9, epoch 0 -> OutOfOrder { expected: 5 }
    /// - batch 0..=2, epoch 1 -> Append (a bumped epoch restarts at 0)
    /// - any batch, epoch -1 after epoch 0 -> StaleEpoch
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_sequence: i32,
        last_sequence: i32,
    ) -> SequenceCheck {
        let Some(entry) = self.producers.get(&producer_id) else {
            return if first_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0 }
            };
        };
        if epoch < entry.epoch {
            return SequenceCheck::StaleEpoch;
        }
        if epoch > entry.epoch {
            return if first_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0 }
            };
        }
        if let Some(cached) = entry.batches.iter().find(|batch| {
            batch.first_sequence == first_sequence && batch.last_sequence == last_sequence
        }) {
            return SequenceCheck::Duplicate(*cached);
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |last| next_sequence(last.last_sequence));
        if first_sequence == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder { expected }
        }
    }

    /// Records an appended batch (also used to rebuild the table from the log on start).
    pub fn record(&mut self, producer_id: i64, epoch: i16, batch: BatchMetadata) {
        let entry = self.producers.entry(producer_id).or_default();
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(batch);
        while entry.batches.len() > PRODUCER_BATCHES_CACHED_MAX {
            entry.batches.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.producers.clear();
    }

    /// The table as snapshot bytes (`<offset>.snapshot`, kept by storage): a version, then per
    /// producer its id, epoch and cached batches, in producer id order, then a CRC-32C of all
    /// before it. Big-endian, like Kafka's own files.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        let mut bytes = Vec::with_capacity(8 + ids.len() * (11 + 24 * PRODUCER_BATCHES_CACHED_MAX));
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        bytes.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let entry = &self.producers[id];
            bytes.extend_from_slice(&id.to_be_bytes());
            bytes.extend_from_slice(&entry.epoch.to_be_bytes());
            bytes.push(entry.batches.len() as u8);
            for batch in &entry.batches {
                bytes.extend_from_slice(&batch.first_sequence.to_be_bytes());
                bytes.extend_from_slice(&batch.last_sequence.to_be_bytes());
                bytes.extend_from_slice(&batch.first_offset.to_be_bytes());
                bytes.extend_from_slice(&batch.last_offset.to_be_bytes());
            }
        }
        let crc = crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        bytes
    }

    /// Reads [`ProducerStateTable::encode_snapshot`]'s bytes; `None` for a torn, corrupt or
    /// unknown-version file, which the caller replaces by reading the log.
    pub fn decode_snapshot(bytes: &[u8]) -> Option<Self> {
        let (body, crc) = bytes.split_last_chunk::<4>()?;
        if crc32c(body) != u32::from_be_bytes(*crc) {
            return None;
        }
        let mut reader = Reader::new(body);
        if reader.u16()? != SNAPSHOT_VERSION {
            return None;
        }
        let count = reader.u32()?;
        let mut table = ProducerStateTable::default();
        for _ in 0..count {
            let id = reader.i64()?;
            let epoch = reader.i16()?;
            let batches = reader.u8()?;
            if usize::from(batches) > PRODUCER_BATCHES_CACHED_MAX {
                return None;
            }
            let mut entry = ProducerEntry {
                epoch,
                batches: VecDeque::with_capacity(usize::from(batches)),
            };
            for _ in 0..batches {
                entry.batches.push_back(BatchMetadata {
                    first_sequence: reader.i32()?,
                    last_sequence: reader.i32()?,
                    first_offset: reader.u64()?,
                    last_offset: reader.u64()?,
                });
            }
            table.producers.insert(id, entry);
        }
        (reader.remaining() == 0).then_some(table)
    }
}

/// Version of the snapshot layout; another version is ignored (the log is read instead).
const SNAPSHOT_VERSION: u16 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first_sequence: i32, last_sequence: i32, first_offset: u64) -> BatchMetadata {
        BatchMetadata {
            first_sequence,
            last_sequence,
            first_offset,
            last_offset: first_offset + (last_sequence - first_sequence) as u64,
        }
    }

    #[test]
    fn the_worked_cases() {
        let mut table = ProducerStateTable::default();
        assert_eq!(table.check(7, 0, 0, 4), SequenceCheck::Append);
        table.record(7, 0, batch(0, 4, 100));
        assert_eq!(table.check(7, 0, 5, 9), SequenceCheck::Append);
        assert_eq!(
            table.check(7, 0, 0, 4),
            SequenceCheck::Duplicate(batch(0, 4, 100))
        );
        assert_eq!(
            table.check(7, 0, 7, 9),
            SequenceCheck::OutOfOrder { expected: 5 }
        );
        assert_eq!(table.check(7, 1, 0, 2), SequenceCheck::Append);
        assert_eq!(
            table.check(7, 1, 3, 4),
            SequenceCheck::OutOfOrder { expected: 0 }
        );
        assert_eq!(table.check(7, -1, 0, 0), SequenceCheck::StaleEpoch);
        assert_eq!(
            table.check(8, 0, 3, 3),
            SequenceCheck::OutOfOrder { expected: 0 }
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut table = ProducerStateTable::default();
        for i in 0..7 {
            table.record(1, 0, batch(i, i, i as u64));
        }
        assert_eq!(
            table.check(1, 0, 6, 6),
            SequenceCheck::Duplicate(batch(6, 6, 6))
        );
        assert_eq!(
            table.check(1, 0, 2, 2),
            SequenceCheck::Duplicate(batch(2, 2, 2))
        );
        assert_eq!(
            table.check(1, 0, 1, 1),
            SequenceCheck::OutOfOrder { expected: 7 }
        );
        assert_eq!(table.check(1, 0, 7, 7), SequenceCheck::Append);
    }

    #[test]
    fn a_snapshot_restores_the_table_and_a_damaged_one_is_refused() {
        let mut table = ProducerStateTable::default();
        for (producer, epoch, first_offset) in [(7, 0, 0), (7, 0, 5), (9, 2, 10), (-3, 0, 20)] {
            table.record(
                producer,
                epoch,
                batch(first_offset as i32, first_offset as i32 + 4, first_offset),
            );
        }
        for extra in 0..6 {
            table.record(
                11,
                1,
                batch(extra * 2, extra * 2 + 1, 100 + extra as u64 * 2),
            );
        }
        let bytes = table.encode_snapshot();
        let restored = ProducerStateTable::decode_snapshot(&bytes).expect("a whole snapshot");
        for (producer, epoch, first, last) in [
            (7, 0, 5, 9),
            (7, 0, 10, 12),
            (9, 2, 10, 14),
            (11, 1, 2, 3),
            (11, 1, 12, 13),
            (11, 0, 0, 0),
            (12, 0, 0, 0),
        ] {
            assert_eq!(
                restored.check(producer, epoch, first, last),
                table.check(producer, epoch, first, last),
                "producer {producer} epoch {epoch} batch {first}..={last}"
            );
        }
        assert_eq!(
            restored.encode_snapshot(),
            bytes,
            "the same table encodes the same bytes"
        );
        assert!(
            ProducerStateTable::decode_snapshot(&bytes[..bytes.len() - 1]).is_none(),
            "torn"
        );
        let mut flipped = bytes.clone();
        flipped[9] ^= 1;
        assert!(
            ProducerStateTable::decode_snapshot(&flipped).is_none(),
            "corrupt"
        );
        assert!(ProducerStateTable::decode_snapshot(&[]).is_none(), "empty");
        let empty = ProducerStateTable::default().encode_snapshot();
        assert!(
            ProducerStateTable::decode_snapshot(&empty)
                .is_some_and(|table| table.producers.is_empty())
        );
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut table = ProducerStateTable::default();
        table.record(1, 0, batch(i32::MAX - 1, i32::MAX, 0));
        assert_eq!(table.check(1, 0, 0, 3), SequenceCheck::Append);
    }
}
