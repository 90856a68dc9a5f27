//! The leader epoch cache (Kafka's `LeaderEpochFileCache`): for each leader epoch, the first
//! offset written in it. A returning follower asks "where did epoch E end?" (OffsetForLeaderEpoch,
//! KIP-101) and truncates there, instead of trusting its high watermark.

use std::path::PathBuf;

use super::checkpoint::{LEADER_EPOCH_CHECKPOINT, read_epochs, write_epochs};
use super::error::{IoContext, Result};

/// Kafka's "no epoch" and "no offset" answers.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: u64,
}

#[derive(Debug)]
pub struct LeaderEpochCache {
    /// `None` for a cache that is never written (used while rebuilding one).
    path: Option<PathBuf>,
    /// Sorted by epoch and by start offset, both strictly.
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// Loads the partition's `leader-epoch-checkpoint`. Returns whether the file existed, so the
    /// loader can rebuild a missing cache from the batches' own epochs.
    pub fn load(partition_dir: &std::path::Path) -> Result<(LeaderEpochCache, bool)> {
        let path = partition_dir.join(LEADER_EPOCH_CHECKPOINT);
        let stored = read_epochs(&path).at(&path)?;
        let existed = stored.is_some();
        let mut cache = LeaderEpochCache {
            path: Some(path),
            entries: Vec::new(),
        };
        for (epoch, start_offset) in stored.unwrap_or_default() {
            // A hand-edited or stale file may break ordering; keep what is consistent.
            cache.insert(EpochEntry {
                epoch,
                start_offset,
            });
        }
        Ok((cache, existed))
    }

    /// A cache that is never persisted.
    pub fn in_memory() -> LeaderEpochCache {
        LeaderEpochCache {
            path: None,
            entries: Vec::new(),
        }
    }

    /// Replaces every entry with `epochs` (ascending) and writes the file once.
    pub fn replace(&mut self, epochs: &[(i32, u64)]) -> Result<()> {
        self.entries.clear();
        for (epoch, start_offset) in epochs {
            self.insert(EpochEntry {
                epoch: *epoch,
                start_offset: *start_offset,
            });
        }
        self.persist()
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|entry| entry.epoch)
    }

    /// Records that `epoch` began at `start_offset`, if it is newer than every known epoch.
    /// Returns whether the cache changed (and so was written).
    pub fn assign(&mut self, epoch: i32, start_offset: u64) -> Result<bool> {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return Ok(false);
        }
        self.insert(EpochEntry {
            epoch,
            start_offset,
        });
        self.persist()?;
        Ok(true)
    }

    /// Appends keeping both orders strict: an entry at or below an existing start offset
    /// replaces the entries it shadows, as Kafka's cache does.
    fn insert(&mut self, entry: EpochEntry) {
        if self
            .latest_epoch()
            .is_some_and(|latest| entry.epoch <= latest)
        {
            return;
        }
        while self
            .entries
            .last()
            .is_some_and(|last| last.start_offset >= entry.start_offset)
        {
            self.entries.pop();
        }
        self.entries.push(entry);
    }

    /// The answer to OffsetForLeaderEpoch: the largest epoch at most `requested` and the offset at
    /// which it ended (the start of the next epoch, or the log end offset for the latest epoch).
    ///
    /// Worked cases, with epochs {1 at 0, 3 at 10, 4 at 25} and log end offset 40:
    /// - requested 4 -> (4, 40): the latest epoch ends at the log end
    /// - requested 3 -> (3, 25)
    /// - requested 2 -> (1, 10): epoch 2 never wrote here; epoch 1 ended where 3 began
    /// - requested 0 -> (0, 0): below the first epoch, which starts at 0
    /// - requested 5 -> (-1, -1): newer than anything known
    /// - requested -1 -> (-1, -1)
    pub fn end_offset_for(&self, requested: i32, log_end_offset: u64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH || self.entries.is_empty() {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset as i64);
        }
        let higher = self
            .entries
            .partition_point(|entry| entry.epoch <= requested);
        let Some(higher_entry) = self.entries.get(higher) else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        match higher.checked_sub(1).map(|floor| self.entries[floor]) {
            None => (requested, higher_entry.start_offset as i64),
            Some(floor_entry) => (floor_entry.epoch, higher_entry.start_offset as i64),
        }
    }

    /// Forgets epochs that start at or after `end_offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: u64) -> Result<()> {
        let keep = self
            .entries
            .partition_point(|entry| entry.start_offset < end_offset);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.persist()?;
        }
        Ok(())
    }

    /// Moves the first epoch's start up to `start_offset` (records before it were deleted).
    pub fn truncate_from_start(&mut self, start_offset: u64) -> Result<()> {
        let floor = self
            .entries
            .partition_point(|entry| entry.start_offset <= start_offset);
        if floor == 0 {
            return Ok(());
        }
        let mut changed = floor > 1;
        self.entries.drain(..floor - 1);
        if self.entries[0].start_offset < start_offset {
            self.entries[0].start_offset = start_offset;
            changed = true;
        }
        if changed {
            self.persist()?;
        }
        Ok(())
    }

    pub fn clear(&mut self) -> Result<()> {
        self.entries.clear();
        self.persist()
    }

    pub fn persist(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let epochs: Vec<(i32, u64)> = self
            .entries
            .iter()
            .map(|entry| (entry.epoch, entry.start_offset))
            .collect();
        write_epochs(path, &epochs).at(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, u64)]) -> (tempfile::TempDir, LeaderEpochCache) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut cache, existed) = LeaderEpochCache::load(dir.path()).expect("load");
        assert!(!existed);
        for (epoch, start) in entries {
            assert!(cache.assign(*epoch, *start).expect("assign"));
        }
        (dir, cache)
    }

    #[test]
    fn end_offset_for_matches_the_worked_cases() {
        let (_dir, cache) = cache(&[(1, 0), (3, 10), (4, 25)]);
        let cases = [
            (4, (4, 40)),
            (3, (3, 25)),
            (2, (1, 10)),
            (1, (1, 10)),
            (0, (0, 0)),
            (5, (-1, -1)),
            (-1, (-1, -1)),
        ];
        for (requested, expected) in cases {
            assert_eq!(
                cache.end_offset_for(requested, 40),
                expected,
                "requested epoch {requested}"
            );
        }
    }

    #[test]
    fn assign_ignores_old_epochs_and_persists() {
        let (dir, mut cache) = cache(&[(1, 0), (2, 5)]);
        assert!(!cache.assign(2, 9).expect("assign"));
        assert!(!cache.assign(1, 9).expect("assign"));
        let (reloaded, existed) = LeaderEpochCache::load(dir.path()).expect("load");
        assert!(existed);
        assert_eq!(reloaded.entries(), cache.entries());
    }

    #[test]
    fn truncation_from_either_end() {
        let (dir, mut cache) = cache(&[(1, 0), (3, 10), (4, 25)]);
        cache.truncate_from_end(25).expect("truncate");
        assert_eq!(cache.latest_epoch(), Some(3));
        cache.truncate_from_start(12).expect("truncate");
        assert_eq!(
            cache.entries(),
            &[EpochEntry {
                epoch: 3,
                start_offset: 12
            }]
        );
        cache
            .truncate_from_start(5)
            .expect("no-op below the first entry");
        assert_eq!(cache.entries().len(), 1);
        let (reloaded, _) = LeaderEpochCache::load(dir.path()).expect("load");
        assert_eq!(reloaded.entries(), cache.entries());
        cache.truncate_from_end(0).expect("truncate all");
        assert!(cache.entries().is_empty());
    }
}
