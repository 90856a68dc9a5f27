//! Sparse offset and time indexes of a segment (`.index`, `.timeindex`), in Kafka's file format:
//! big-endian entries with offsets stored relative to the segment's base offset.
//!
//! Entries are appended to the file in small groups rather than one syscall each; a crash may
//! lose the last group, which is harmless because everything past the recovery point is rebuilt
//! on restart. The newest few entries stay in memory so the hot tail of an active segment is
//! searched without I/O.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files::{FileHandleCache, create_fresh, read_at_most};

/// Entries buffered in memory before they are written to the index file.
const PENDING_ENTRIES_MAX: usize = 64;

pub trait IndexEntry: Copy + std::fmt::Debug + PartialEq {
    const SIZE: usize;
    /// The value lookups search by (offset for the offset index, timestamp for the time index).
    fn key(&self) -> i64;
    /// The log offset the entry points to; truncation removes entries at or past an offset.
    fn offset(&self) -> u64;
    fn encode(&self, base_offset: u64, out: &mut [u8]);
    fn decode(base_offset: u64, bytes: &[u8]) -> Self;
}

/// Offset index entry: the last offset of a batch and the file position where that batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPosition {
    pub offset: u64,
    pub position: u32,
}

impl IndexEntry for OffsetPosition {
    const SIZE: usize = 8;
    fn key(&self) -> i64 {
        self.offset as i64
    }
    fn offset(&self) -> u64 {
        self.offset
    }
    fn encode(&self, base_offset: u64, out: &mut [u8]) {
        out[..4].copy_from_slice(&((self.offset - base_offset) as u32).to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn decode(base_offset: u64, bytes: &[u8]) -> Self {
        let relative = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let position = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        OffsetPosition {
            // Saturating: a damaged file name or entry must not overflow (the dump tool reads any file).
            offset: base_offset.saturating_add(u64::from(relative)),
            position,
        }
    }
}

/// Time index entry: the largest timestamp seen so far and the offset of the batch holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: u64,
}

impl IndexEntry for TimestampOffset {
    const SIZE: usize = 12;
    fn key(&self) -> i64 {
        self.timestamp
    }
    fn offset(&self) -> u64 {
        self.offset
    }
    fn encode(&self, base_offset: u64, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&((self.offset - base_offset) as u32).to_be_bytes());
    }
    fn decode(base_offset: u64, bytes: &[u8]) -> Self {
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&bytes[..8]);
        let relative = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        TimestampOffset {
            timestamp: i64::from_be_bytes(timestamp),
            offset: base_offset.saturating_add(u64::from(relative)),
        }
    }
}

/// One index file. Keys and offsets both grow strictly along the file.
#[derive(Debug)]
pub struct Index<E: IndexEntry> {
    path: PathBuf,
    base_offset: u64,
    /// Entries already in the file.
    entries_in_file: u64,
    /// Entries not yet written, newest last.
    pending: Vec<E>,
    /// The newest entry, in the file or pending.
    last: Option<E>,
    /// Held open while the segment is active; sealed indexes go through the shared cache.
    writer: Option<Arc<File>>,
    handles: Arc<FileHandleCache>,
}

impl<E: IndexEntry> Index<E> {
    /// Creates an empty index file, replacing any existing one.
    pub fn create(
        path: PathBuf,
        base_offset: u64,
        handles: Arc<FileHandleCache>,
    ) -> io::Result<Self> {
        handles.evict(&path);
        let file = create_fresh(&path, false)?;
        Ok(Index {
            path,
            base_offset,
            entries_in_file: 0,
            pending: Vec::new(),
            last: None,
            writer: Some(Arc::new(file)),
            handles,
        })
    }

    /// Opens an existing index read-only. Returns `None` when the file is missing or its size is
    /// not a whole number of entries, in which case the caller rebuilds it.
    pub fn open(
        path: PathBuf,
        base_offset: u64,
        handles: Arc<FileHandleCache>,
    ) -> io::Result<Option<Self>> {
        let length = match std::fs::metadata(&path) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        if length % E::SIZE as u64 != 0 {
            return Ok(None);
        }
        let mut index = Index {
            path,
            base_offset,
            entries_in_file: length / E::SIZE as u64,
            pending: Vec::new(),
            last: None,
            writer: None,
            handles,
        };
        if index.entries_in_file > 0 {
            index.last = Some(index.file_entry(index.entries_in_file - 1)?);
        }
        Ok(Some(index))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.entries_in_file + self.pending.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn last(&self) -> Option<E> {
        self.last
    }

    /// Appends an entry; the caller guarantees key and offset grow.
    pub fn append(&mut self, entry: E) -> io::Result<()> {
        if let Some(last) = self.last {
            debug_assert!(entry.key() > last.key(), "index keys grow");
            debug_assert!(entry.offset() >= last.offset(), "index offsets grow");
        }
        self.pending.push(entry);
        self.last = Some(entry);
        if self.pending.len() >= PENDING_ENTRIES_MAX {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Writes buffered entries to the file (no fsync).
    pub fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut bytes = vec![0u8; self.pending.len() * E::SIZE];
        for (entry, chunk) in self.pending.iter().zip(bytes.chunks_exact_mut(E::SIZE)) {
            entry.encode(self.base_offset, chunk);
        }
        let file = self.writable()?;
        file.write_all_at(&bytes, self.entries_in_file * E::SIZE as u64)?;
        self.entries_in_file += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Writes buffered entries and fsyncs the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_pending()?;
        if let Some(writer) = &self.writer {
            writer.sync_data()?;
        }
        Ok(())
    }

    /// Stops holding a writable handle; later reads go through the shared cache.
    pub fn seal(&mut self) -> io::Result<()> {
        self.flush()?;
        self.writer = None;
        Ok(())
    }

    /// The newest entry whose key is at most `key`.
    pub fn floor(&self, key: i64) -> io::Result<Option<E>> {
        if let Some(first_pending) = self.pending.first()
            && first_pending.key() <= key
        {
            let index = self.pending.partition_point(|entry| entry.key() <= key);
            return Ok(Some(self.pending[index - 1]));
        }
        // Binary search over the file: the entries are fixed size and sorted by key.
        let (mut low, mut high) = (0u64, self.entries_in_file);
        let mut found = None;
        while low < high {
            let middle = low + (high - low) / 2;
            let entry = self.file_entry(middle)?;
            if entry.key() <= key {
                found = Some(entry);
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(found)
    }

    /// Drops every entry whose offset is at or past `offset`.
    pub fn truncate_to_offset(&mut self, offset: u64) -> io::Result<()> {
        self.pending.retain(|entry| entry.offset() < offset);
        let (mut low, mut high) = (0u64, self.entries_in_file);
        while low < high {
            let middle = low + (high - low) / 2;
            if self.file_entry(middle)?.offset() < offset {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        if low < self.entries_in_file {
            // Entries still pending sit after the file's; keeping any would leave a hole.
            self.pending.clear();
            self.entries_in_file = low;
            self.writable()?.set_len(low * E::SIZE as u64)?;
        }
        self.last = match self.pending.last() {
            Some(entry) => Some(*entry),
            None if self.entries_in_file > 0 => Some(self.file_entry(self.entries_in_file - 1)?),
            None => None,
        };
        Ok(())
    }

    /// Every entry, oldest first; used to check an index against its log when loading.
    pub fn entries(&self) -> io::Result<Vec<E>> {
        let mut bytes = vec![0u8; (self.entries_in_file as usize) * E::SIZE];
        let file = self.readable()?;
        let read = read_at_most(&file, &mut bytes, 0)?;
        bytes.truncate(read - read % E::SIZE);
        let mut entries: Vec<E> = bytes
            .chunks_exact(E::SIZE)
            .map(|chunk| E::decode(self.base_offset, chunk))
            .collect();
        entries.extend_from_slice(&self.pending);
        Ok(entries)
    }

    pub fn delete(&mut self) -> io::Result<()> {
        self.handles.evict(&self.path);
        self.writer = None;
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    fn file_entry(&self, index: u64) -> io::Result<E> {
        let mut bytes = [0u8; 16];
        let bytes = &mut bytes[..E::SIZE];
        self.readable()?
            .read_exact_at(bytes, index * E::SIZE as u64)?;
        Ok(E::decode(self.base_offset, bytes))
    }

    fn readable(&self) -> io::Result<Arc<File>> {
        match &self.writer {
            Some(writer) => Ok(writer.clone()),
            None => self.handles.open(&self.path),
        }
    }

    /// A writable handle, reopening a sealed index when truncation makes its segment active again.
    fn writable(&mut self) -> io::Result<Arc<File>> {
        if self.writer.is_none() {
            self.handles.evict(&self.path);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)?;
            self.writer = Some(Arc::new(file));
        }
        Ok(self.writer.clone().expect("writer was just set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u64) -> OffsetPosition {
        OffsetPosition {
            offset,
            position: (offset * 100) as u32,
        }
    }

    #[test]
    fn floor_finds_entries_in_file_and_pending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let handles = FileHandleCache::new(8);
        let mut index =
            Index::create(dir.path().join("0.index"), 1000, handles.clone()).expect("create");
        for i in 0..(PENDING_ENTRIES_MAX as u64 + 10) {
            index.append(entry(1000 + i * 10)).expect("append");
        }
        assert!(
            index.entries_in_file > 0 && !index.pending.is_empty(),
            "both halves are exercised"
        );
        assert_eq!(index.floor(999).expect("floor"), None);
        assert_eq!(index.floor(1000).expect("floor"), Some(entry(1000)));
        assert_eq!(index.floor(1015).expect("floor"), Some(entry(1010)));
        let last = 1000 + (PENDING_ENTRIES_MAX as u64 + 9) * 10;
        assert_eq!(index.floor(i64::MAX).expect("floor"), Some(entry(last)));
        assert_eq!(
            index.floor(1000 + 640 + 5).expect("floor"),
            Some(entry(1640))
        );

        index.seal().expect("seal");
        let reopened = Index::<OffsetPosition>::open(dir.path().join("0.index"), 1000, handles)
            .expect("open")
            .expect("present");
        assert_eq!(reopened.len(), PENDING_ENTRIES_MAX as u64 + 10);
        assert_eq!(reopened.last(), Some(entry(last)));
        assert_eq!(reopened.floor(1015).expect("floor"), Some(entry(1010)));
    }

    #[test]
    fn truncation_removes_entries_at_and_past_the_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let handles = FileHandleCache::new(8);
        let mut index = Index::create(dir.path().join("0.timeindex"), 0, handles).expect("create");
        for i in 0..100u64 {
            index
                .append(TimestampOffset {
                    timestamp: i as i64 * 5,
                    offset: i * 3,
                })
                .expect("append");
        }
        index.truncate_to_offset(30).expect("truncate");
        assert_eq!(index.len(), 10);
        assert_eq!(
            index.last(),
            Some(TimestampOffset {
                timestamp: 45,
                offset: 27
            })
        );
        index.truncate_to_offset(0).expect("truncate");
        assert!(index.is_empty());
        assert_eq!(index.last(), None);
    }

    #[test]
    fn a_partial_entry_means_rebuild() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.index");
        std::fs::write(&path, [0u8; 13]).expect("write");
        assert!(
            Index::<OffsetPosition>::open(path, 0, FileHandleCache::new(2))
                .expect("open")
                .is_none()
        );
        let missing = dir.path().join("missing.index");
        assert!(
            Index::<OffsetPosition>::open(missing, 0, FileHandleCache::new(2))
                .expect("open")
                .is_none()
        );
    }
}
