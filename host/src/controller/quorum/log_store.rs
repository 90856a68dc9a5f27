//! The Raft log of the metadata quorum, its vote and its committed mark, on disk in the metadata
//! directory (KRaft's `__cluster_metadata`). openraft calls this; nothing else writes it.
//!
//! Files:
//! - `quorum.log`: one frame per Raft entry, `length u32 | crc32c u32 | entry (JSON)`, appended
//!   and fsynced before openraft is told the entry is durable. A torn or corrupt tail (a crash
//!   mid-append) is cut at the last whole frame on open: those entries were never acknowledged
//!   as flushed, so Raft did not count them.
//! - `quorum-state`: the vote, the committed log id and the last purged log id, replaced
//!   atomically (write, fsync, rename, fsync the directory). A vote must be durable before it
//!   is answered, or a restarted node could vote twice in one term.
//!
//! The metadata log is small (records, not data), so every live entry is also kept in memory;
//! purging (after a snapshot) rewrites the file with the entries that remain.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use serde::{Deserialize, Serialize};

use super::{MetadataRaft, NodeId, storage_error};
use crate::encoding::crc32c;
use crate::storage::files::{replace_file, sync_dir};

pub const LOG_FILE: &str = "quorum.log";
pub const STATE_FILE: &str = "quorum-state";

/// Bytes before each entry's JSON: its length and CRC-32C.
const FRAME_HEADER: usize = 8;

/// What `quorum-state` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumState {
    pub vote: Option<Vote<NodeId>>,
    pub committed: Option<LogId<NodeId>>,
    pub last_purged: Option<LogId<NodeId>>,
}

/// The log store handed to openraft; clones share the same files (the log reader is a clone).
#[derive(Debug, Clone)]
pub struct MetadataLogStore {
    inner: Arc<Mutex<LogFiles>>,
}

#[derive(Debug)]
struct LogFiles {
    dir: PathBuf,
    file: File,
    /// Live entries by index, each with the file position its frame starts at.
    entries: BTreeMap<u64, (Entry<MetadataRaft>, u64)>,
    /// Length of `quorum.log`: where the next frame goes.
    end: u64,
    state: QuorumState,
}

impl MetadataLogStore {
    /// Opens (or creates) the log in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> std::io::Result<MetadataLogStore> {
        std::fs::create_dir_all(dir)?;
        let state = read_state(dir)?;
        let path = dir.join(LOG_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        let (entries, valid) = read_frames(&bytes)?;
        // Append mode: every write lands at the end, also after a truncation shortened the file.
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        if (valid as usize) < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                cut_bytes = bytes.len() - valid as usize,
                "metadata log has a torn or corrupt tail; cutting it"
            );
            file.set_len(valid)?;
            file.sync_all()?;
        }
        let last_purged = state.last_purged.map(|id| id.index);
        let entries = entries
            .into_iter()
            .filter(|(index, _)| last_purged.is_none_or(|purged| *index > purged))
            .collect();
        sync_dir(dir)?;
        Ok(MetadataLogStore {
            inner: Arc::new(Mutex::new(LogFiles {
                dir: dir.to_path_buf(),
                file,
                entries,
                end: valid,
                state,
            })),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, LogFiles>, LockPoisoned> {
        self.inner.lock().map_err(|_| LockPoisoned)
    }

    /// The last committed offset recorded on disk, if any.
    pub fn committed_index(&self) -> Option<u64> {
        self.lock()
            .ok()
            .and_then(|files| files.state.committed.map(|id| id.index))
    }

    /// Every live entry and the persisted state, for `weir metadata dump`.
    pub fn contents(&self) -> Result<(QuorumState, Vec<Entry<MetadataRaft>>), LockPoisoned> {
        let files = self.lock()?;
        Ok((
            files.state.clone(),
            files
                .entries
                .values()
                .map(|(entry, _)| entry.clone())
                .collect(),
        ))
    }
}

/// A panic while the files were half-written leaves them unknown: the Raft node stops (as on
/// any storage error) rather than serve from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("metadata log lock poisoned by an earlier panic")]
pub struct LockPoisoned;

impl From<LockPoisoned> for StorageError<NodeId> {
    fn from(error: LockPoisoned) -> Self {
        storage_error(StorageIOError::read_logs, error)
    }
}

fn read_state(dir: &Path) -> std::io::Result<QuorumState> {
    match std::fs::read(dir.join(STATE_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {error}", dir.join(STATE_FILE).display()),
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(QuorumState::default()),
        Err(error) => Err(error),
    }
}

/// What a metadata directory's log holds, read without changing anything (for
/// `weir metadata dump`): the state, the live entries, and how many bytes after them do not
/// form whole frames (a torn tail the next open would cut).
pub fn read_log(dir: &Path) -> std::io::Result<(QuorumState, Vec<Entry<MetadataRaft>>, u64)> {
    let state = read_state(dir)?;
    let bytes = match std::fs::read(dir.join(LOG_FILE)) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    let (entries, valid) = read_frames(&bytes)?;
    let last_purged = state.last_purged.map(|id| id.index);
    let entries = entries
        .into_values()
        .map(|(entry, _)| entry)
        .filter(|entry| last_purged.is_none_or(|purged| entry.log_id.index > purged))
        .collect();
    Ok((state, entries, bytes.len() as u64 - valid))
}

/// The whole frames at the start of `bytes` (entries by index, with positions) and where they
/// end. Reading stops at the first frame that is short or fails its CRC (a torn write) or does
/// not follow the previous index. A frame whose checksum holds but which does not parse was
/// written whole by a build that understands more than this one: an error, never a tail to cut,
/// since cutting it would drop committed metadata.
type Frames = BTreeMap<u64, (Entry<MetadataRaft>, u64)>;

fn read_frames(bytes: &[u8]) -> std::io::Result<(Frames, u64)> {
    let mut entries = BTreeMap::new();
    let mut position = 0usize;
    let mut previous: Option<u64> = None;
    while let Some(header) = bytes.get(position..position + FRAME_HEADER) {
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let start = position + FRAME_HEADER;
        let Some(payload) = bytes.get(start..start + length) else {
            break;
        };
        if crc32c(payload) != crc {
            break;
        }
        let entry = serde_json::from_slice::<Entry<MetadataRaft>>(payload).map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the metadata log entry at byte {position} is whole but unreadable by this version of Weir (written by a newer one?): {error}"
                ),
            )
        })?;
        if previous.is_some_and(|index| entry.log_id.index != index + 1) {
            break;
        }
        previous = Some(entry.log_id.index);
        entries.insert(entry.log_id.index, (entry, position as u64));
        position = start + length;
    }
    Ok((entries, position as u64))
}

fn frame(entry: &Entry<MetadataRaft>) -> Vec<u8> {
    // Entries are plain data: serialising cannot fail short of a bug.
    let payload = serde_json::to_vec(entry).expect("a Raft entry serialises");
    let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&crc32c(&payload).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame
}

impl LogFiles {
    /// Writes the state with `change` applied, durably, then adopts it.
    fn update_state(&mut self, change: impl FnOnce(&mut QuorumState)) -> std::io::Result<()> {
        let mut next = self.state.clone();
        change(&mut next);
        // Plain data: cannot fail to serialise.
        let bytes = serde_json::to_vec(&next).expect("quorum state serialises");
        replace_file(&self.dir.join(STATE_FILE), &bytes, true)?;
        self.state = next;
        Ok(())
    }

    fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.entries
            .values()
            .next_back()
            .map(|(entry, _)| entry.log_id)
            .or(self.state.last_purged)
    }
}

impl RaftLogReader<MetadataRaft> for MetadataLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<MetadataRaft>>, StorageError<NodeId>> {
        let files = self.lock()?;
        Ok(files
            .entries
            .range(range)
            .map(|(_, (entry, _))| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<MetadataRaft> for MetadataLogStore {
    type LogReader = MetadataLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<MetadataRaft>, StorageError<NodeId>> {
        let files = self.lock()?;
        Ok(LogState {
            last_purged_log_id: files.state.last_purged,
            last_log_id: files.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut files = self.lock()?;
        files
            .update_state(|state| state.vote = Some(*vote))
            .map_err(|error| storage_error(StorageIOError::write_vote, error))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock()?.state.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Saved so a restart re-applies committed entries at once instead of waiting for a
        // leader to tell it again; one write per commit advance is cheap at metadata rates.
        let mut files = self.lock()?;
        files
            .update_state(|state| state.committed = committed)
            .map_err(|error| storage_error(StorageIOError::write, error))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock()?.state.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<MetadataRaft>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<MetadataRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut files = self.lock()?;
        let mut bytes = Vec::new();
        let mut appended = Vec::new();
        for entry in entries {
            let position = files.end + bytes.len() as u64;
            bytes.extend_from_slice(&frame(&entry));
            appended.push((entry, position));
        }
        let result = (|| {
            let mut file = &files.file;
            file.write_all(&bytes)?;
            // Durable before openraft counts the entries towards a quorum.
            file.sync_data()
        })();
        if let Err(error) = result {
            callback.log_io_completed(Err(std::io::Error::new(error.kind(), error.to_string())));
            return Err(storage_error(StorageIOError::write_logs, error));
        }
        files.end += bytes.len() as u64;
        for (entry, position) in appended {
            files.entries.insert(entry.log_id.index, (entry, position));
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Entries from log_id.index on were never committed (a new leader overrules them).
        let mut files = self.lock()?;
        let Some(&(_, position)) = files.entries.get(&log_id.index) else {
            return Ok(());
        };
        files
            .file
            .set_len(position)
            .and_then(|()| files.file.sync_all())
            .map_err(|error| storage_error(StorageIOError::write_logs, error))?;
        files.end = position;
        files.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // A snapshot holds everything up to log_id. Record the purge first: a crash before the
        // rewrite leaves stale entries that the next open drops.
        let mut files = self.lock()?;
        files
            .update_state(|state| state.last_purged = Some(log_id))
            .map_err(|error| storage_error(StorageIOError::write_logs, error))?;
        let kept = files.entries.split_off(&(log_id.index + 1));
        let mut bytes = Vec::new();
        let mut entries = BTreeMap::new();
        for (index, (entry, _)) in kept {
            let position = bytes.len() as u64;
            bytes.extend_from_slice(&frame(&entry));
            entries.insert(index, (entry, position));
        }
        let path = files.dir.join(LOG_FILE);
        let reopened = replace_file(&path, &bytes, true)
            .and_then(|()| OpenOptions::new().read(true).append(true).open(&path));
        let file = reopened.map_err(|error| storage_error(StorageIOError::write_logs, error))?;
        files.file = file;
        files.end = bytes.len() as u64;
        files.entries = entries;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn blank(term: u64, index: u64) -> Entry<MetadataRaft> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_last_whole_frame() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = Vec::new();
        for index in 1..=3 {
            bytes.extend_from_slice(&frame(&blank(1, index)));
        }
        let whole = bytes.len();
        bytes.extend_from_slice(&frame(&blank(1, 4))[..10]);
        std::fs::write(dir.path().join(LOG_FILE), &bytes).expect("write");
        let store = MetadataLogStore::open(dir.path()).expect("opens");
        let (_, entries) = store.contents().expect("contents");
        assert_eq!(
            entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(
            std::fs::metadata(dir.path().join(LOG_FILE))
                .expect("metadata")
                .len(),
            whole as u64
        );
    }

    #[test]
    fn a_corrupt_frame_ends_the_log_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = Vec::new();
        for index in 1..=3 {
            bytes.extend_from_slice(&frame(&blank(1, index)));
        }
        let second = frame(&blank(1, 1)).len();
        bytes[second + FRAME_HEADER + 2] ^= 0x40;
        std::fs::write(dir.path().join(LOG_FILE), &bytes).expect("write");
        let store = MetadataLogStore::open(dir.path()).expect("opens");
        let (_, entries) = store.contents().expect("contents");
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn a_whole_frame_that_does_not_parse_refuses_the_open_and_cuts_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A checksummed payload this build cannot read, as a newer record type would be.
        let payload =
            br#"{"log_id":{"leader_id":{"term":1,"node_id":1},"index":1},"payload":{"Future":{}}}"#;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&crc32c(payload).to_be_bytes());
        bytes.extend_from_slice(payload);
        std::fs::write(dir.path().join(LOG_FILE), &bytes).expect("write");
        let error = MetadataLogStore::open(dir.path()).expect_err("refused");
        assert!(error.to_string().contains("unreadable"), "{error}");
        assert_eq!(
            std::fs::read(dir.path().join(LOG_FILE)).expect("read"),
            bytes,
            "nothing was cut"
        );
    }
}
