//! One segment of a partition log: `NNNNNNNNNNNNNNNNNNNN.log` holding record batches byte for byte,
//! with its sparse `.index` (last offset of a batch -> file position of the batch) and
//! `.timeindex` (largest timestamp so far -> offset). Named by the 20-digit base offset, as Kafka does.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::batch::{AppendOrigin, BatchHeader, MAGIC_V2, RECORD_BATCH_OVERHEAD, validate_batch};
use super::epoch_cache::LeaderEpochCache;
use super::error::{IoContext, Result};
use super::files::{FileHandleCache, create_fresh, read_at_most, read_to_vec, write_all_vectored};
use super::index::{Index, OffsetPosition, TimestampOffset};

pub const LOG_SUFFIX: &str = "log";
pub const INDEX_SUFFIX: &str = "index";
pub const TIME_INDEX_SUFFIX: &str = "timeindex";

/// Largest batch recovery will read back. Recovery must accept batches that were valid when
/// written even if `max.message.bytes` shrank since, but must not trust a garbage length field.
const RECOVERY_BATCH_BYTES_MAX: usize = i32::MAX as usize;

pub fn segment_path(dir: &Path, base_offset: u64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// One batch on its way into a segment: its bytes and, on a leader, the rewritten first 16 bytes.
#[derive(Debug, Clone, Copy)]
pub struct BatchToAppend<'a> {
    pub patched_prefix: Option<[u8; super::batch::PATCHED_PREFIX_LEN]>,
    pub bytes: &'a [u8],
    pub first_offset: u64,
    pub last_offset: u64,
    pub max_timestamp: i64,
}

#[derive(Debug)]
pub struct LogSegment {
    base_offset: u64,
    log_path: PathBuf,
    /// Bytes in the `.log` file.
    size: u64,
    /// One past the last offset stored here; `base_offset` when empty.
    next_offset: u64,
    /// Largest batch max timestamp stored here, -1 when none.
    max_timestamp: i64,
    offset_of_max_timestamp: u64,
    /// Max timestamp of the first batch: `segment.ms` counts from it, as in Kafka, so a restart
    /// does not reset the age of the active segment.
    rolling_timestamp: Option<i64>,
    created_ms: i64,
    bytes_since_last_index_entry: u64,
    offset_index: Index<OffsetPosition>,
    time_index: Index<TimestampOffset>,
    /// Open for append while the segment is active; sealed segments read through `handles`.
    writer: Option<Arc<File>>,
    handles: Arc<FileHandleCache>,
}

/// Where a lookup landed: the batch holding (or first after) an offset, and its file position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPosition {
    pub position: u64,
    pub header: BatchHeader,
}

impl LogSegment {
    /// Creates an empty active segment, replacing files of the same name.
    pub fn create(
        dir: &Path,
        base_offset: u64,
        handles: Arc<FileHandleCache>,
        now_ms: i64,
    ) -> Result<LogSegment> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        handles.evict(&log_path);
        let writer = create_fresh(&log_path, true).at(&log_path)?;
        Self::empty_active(dir, base_offset, log_path, writer, handles, now_ms)
    }

    /// An active segment with no batches indexed yet and fresh index files: what `create` returns
    /// and what `recover` refills from the log file.
    fn empty_active(
        dir: &Path,
        base_offset: u64,
        log_path: PathBuf,
        writer: File,
        handles: Arc<FileHandleCache>,
        now_ms: i64,
    ) -> Result<LogSegment> {
        let offset_index_path = segment_path(dir, base_offset, INDEX_SUFFIX);
        let time_index_path = segment_path(dir, base_offset, TIME_INDEX_SUFFIX);
        Ok(LogSegment {
            base_offset,
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            rolling_timestamp: None,
            created_ms: now_ms,
            bytes_since_last_index_entry: 0,
            offset_index: Index::create(offset_index_path.clone(), base_offset, handles.clone())
                .at(&offset_index_path)?,
            time_index: Index::create(time_index_path.clone(), base_offset, handles.clone())
                .at(&time_index_path)?,
            writer: Some(Arc::new(writer)),
            handles,
            log_path,
        })
    }

    /// Opens an existing segment without scanning it, trusting its indexes. Returns `None` when an
    /// index is missing or disagrees with the log, or the tail does not parse: the caller then
    /// runs [`LogSegment::recover`].
    pub fn open(
        dir: &Path,
        base_offset: u64,
        handles: Arc<FileHandleCache>,
        now_ms: i64,
        index_interval_bytes: u64,
    ) -> Result<Option<LogSegment>> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let size = std::fs::metadata(&log_path).at(&log_path)?.len();
        let offset_index_path = segment_path(dir, base_offset, INDEX_SUFFIX);
        let time_index_path = segment_path(dir, base_offset, TIME_INDEX_SUFFIX);
        let Some(offset_index) =
            Index::<OffsetPosition>::open(offset_index_path.clone(), base_offset, handles.clone())
                .at(&offset_index_path)?
        else {
            return Ok(None);
        };
        let Some(time_index) =
            Index::<TimestampOffset>::open(time_index_path.clone(), base_offset, handles.clone())
                .at(&time_index_path)?
        else {
            return Ok(None);
        };
        let mut segment = LogSegment {
            base_offset,
            log_path,
            size,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            rolling_timestamp: None,
            created_ms: now_ms,
            bytes_since_last_index_entry: 0,
            offset_index,
            time_index,
            writer: None,
            handles,
        };
        if segment.load_tail(index_interval_bytes)? {
            Ok(Some(segment))
        } else {
            Ok(None)
        }
    }

    /// Checks the indexes' last entries against the log and reads the batch headers after the
    /// last offset-index entry, which gives the next offset and the exact max timestamp.
    /// Returns false when anything disagrees, including an index entry missing where the
    /// `index.interval.bytes` rule says one is due (a truncated index).
    fn load_tail(&mut self, index_interval_bytes: u64) -> Result<bool> {
        let mut position = 0;
        let mut next_offset = self.base_offset;
        if let Some(last) = self.offset_index.last() {
            let indexed_position = u64::from(last.position);
            if indexed_position >= self.size || last.offset < self.base_offset {
                return Ok(false);
            }
            match self.header_at(indexed_position)? {
                Some(header) if header.last_offset() == last.offset as i64 => {
                    next_offset = header.base_offset as u64;
                }
                _ => return Ok(false),
            }
            position = indexed_position;
        }
        // Sealing leaves the time index's last entry at the segment's exact max timestamp; the
        // headers after the last offset-index entry can only raise it. Strictly greater keeps the
        // first batch that reached the maximum, as Kafka does.
        if let Some(last) = self.time_index.last() {
            self.max_timestamp = last.timestamp;
            self.offset_of_max_timestamp = last.offset;
        }
        if let Some(first) = self.header_at(0)? {
            self.rolling_timestamp = (first.max_timestamp >= 0).then_some(first.max_timestamp);
        }
        // Replays index_batch's rule: the batch at the last entry reset the count.
        let mut bytes_since_last_index_entry = 0;
        while position < self.size {
            let Some(header) = self.header_at(position)? else {
                return Ok(false);
            };
            let fits = position + header.total_size() as u64 <= self.size;
            if !fits || !self.follows(&header, next_offset) {
                return Ok(false);
            }
            let entry_due = bytes_since_last_index_entry > index_interval_bytes;
            let entry_here = self
                .offset_index
                .last()
                .is_some_and(|entry| u64::from(entry.position) == position);
            if entry_due && !entry_here {
                return Ok(false);
            }
            bytes_since_last_index_entry = if entry_here {
                0
            } else {
                bytes_since_last_index_entry
            };
            bytes_since_last_index_entry += header.total_size() as u64;
            if header.max_timestamp > self.max_timestamp {
                self.max_timestamp = header.max_timestamp;
                self.offset_of_max_timestamp = header.last_offset() as u64;
            }
            next_offset = header.next_offset() as u64;
            position += header.total_size() as u64;
        }
        if let Some(last) = self.time_index.last()
            && (last.offset < self.base_offset || last.offset >= next_offset)
        {
            return Ok(false);
        }
        self.next_offset = next_offset;
        self.bytes_since_last_index_entry = self.size
            - self
                .offset_index
                .last()
                .map_or(0, |e| u64::from(e.position));
        Ok(true)
    }

    /// Whether `header` can be the next batch of this segment: a sane length and the very next
    /// offset. Offsets within a segment are always
    /// contiguous here (a follower skipping offsets starts a new segment), and the base offset is
    /// outside the CRC, so this is the only check that catches damage to it.
    fn follows(&self, header: &BatchHeader, next_offset: u64) -> bool {
        header.magic == MAGIC_V2
            && header.batch_length >= (RECORD_BATCH_OVERHEAD - super::batch::LOG_OVERHEAD) as i32
            && header.base_offset == next_offset as i64
            && header.last_offset_delta >= 0
            && (header.last_offset() as u64).saturating_sub(self.base_offset) <= i32::MAX as u64
    }

    /// Rebuilds the segment from its log file: validates every batch (CRC included), rebuilds both
    /// indexes, records leader epochs, and cuts the file at the first invalid byte.
    /// Returns the number of bytes cut.
    pub fn recover(
        dir: &Path,
        base_offset: u64,
        handles: Arc<FileHandleCache>,
        now_ms: i64,
        index_interval_bytes: u64,
        epoch_cache: &mut LeaderEpochCache,
    ) -> Result<(LogSegment, u64)> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        handles.evict(&log_path);
        let writer = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&log_path)
            .at(&log_path)?;
        let file_size = writer.metadata().at(&log_path)?.len();
        let mut segment =
            Self::empty_active(dir, base_offset, log_path.clone(), writer, handles, now_ms)?;
        let mut buffer = Vec::new();
        let mut position = 0u64;
        while position < file_size {
            let Some(header) = segment.header_at(position)? else {
                break;
            };
            let size = header.total_size() as u64;
            let fits = header.batch_length >= 0 && position + size <= file_size;
            if !fits || !segment.follows(&header, segment.next_offset) {
                break;
            }
            buffer.resize(size as usize, 0);
            let read = read_at_most(&*segment.reader().at(&log_path)?, &mut buffer, position)
                .at(&log_path)?;
            if read as u64 != size {
                break;
            }
            if validate_batch(&buffer, RECOVERY_BATCH_BYTES_MAX, AppendOrigin::Replication).is_err()
            {
                break;
            }
            if header.partition_leader_epoch >= 0 {
                epoch_cache.assign(header.partition_leader_epoch, header.base_offset as u64)?;
            }
            segment.index_batch(
                position,
                header.last_offset() as u64,
                header.max_timestamp,
                size,
                index_interval_bytes,
            );
            position += size;
        }
        let truncated = file_size - position;
        if truncated > 0 {
            segment.writable()?.set_len(position).at(&log_path)?;
        }
        Ok((segment, truncated))
    }

    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub fn offset_of_max_timestamp(&self) -> u64 {
        self.offset_of_max_timestamp
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn is_active(&self) -> bool {
        self.writer.is_some()
    }

    /// How long this segment has been filling, by which `segment.ms` rolling is judged. Kafka's
    /// rule: the incoming batch's timestamp minus the first batch's, so a producer replaying old
    /// timestamps does not roll on every append; wall-clock time only when there are no timestamps.
    pub fn time_waited_for_roll_ms(&self, now_ms: i64, incoming_max_timestamp: i64) -> i64 {
        match self.rolling_timestamp {
            Some(first_timestamp) if incoming_max_timestamp >= 0 => {
                incoming_max_timestamp.saturating_sub(first_timestamp)
            }
            _ => now_ms.saturating_sub(self.created_ms),
        }
    }

    /// Whether `records_size` more bytes ending at `last_offset` would still fit: the file must
    /// stay within `segment_bytes` and positions and relative offsets within the index's 32 bits.
    pub fn can_hold(&self, records_size: u64, last_offset: u64, segment_bytes: u64) -> bool {
        let within_size = self.size + records_size <= segment_bytes
            && self.size + records_size <= u32::MAX as u64;
        let within_offsets = last_offset - self.base_offset <= i32::MAX as u64;
        within_size && within_offsets
    }

    /// Appends whole batches with one vectored write; on a leader the patched header prefix is
    /// written in place of the first 16 bytes, so the rest of the batch goes from the request
    /// buffer to the file without a copy.
    pub fn append(
        &mut self,
        batches: &[BatchToAppend<'_>],
        index_interval_bytes: u64,
    ) -> Result<()> {
        let mut slices = Vec::with_capacity(batches.len() * 2);
        for batch in batches {
            match &batch.patched_prefix {
                Some(prefix) => {
                    slices.push(IoSlice::new(prefix));
                    slices.push(IoSlice::new(&batch.bytes[prefix.len()..]));
                }
                None => slices.push(IoSlice::new(batch.bytes)),
            }
        }
        let writer = self.writable()?;
        if let Err(error) = write_all_vectored(&writer, &mut slices) {
            // A partial write must not leave half a batch behind for readers or for the next append.
            let _ = writer.set_len(self.size);
            return Err(error).at(&self.log_path);
        }
        let mut position = self.size;
        for batch in batches {
            let size = batch.bytes.len() as u64;
            self.index_batch(
                position,
                batch.last_offset,
                batch.max_timestamp,
                size,
                index_interval_bytes,
            );
            position += size;
        }
        Ok(())
    }

    /// Bookkeeping for one batch now stored at `position`, shared by append and recovery so both
    /// build identical indexes. Kafka's rule: an index entry once more than `index.interval.bytes`
    /// have been written since the previous one.
    fn index_batch(
        &mut self,
        position: u64,
        last_offset: u64,
        max_timestamp: i64,
        size: u64,
        interval: u64,
    ) {
        if self.rolling_timestamp.is_none() && self.size == 0 && max_timestamp >= 0 {
            self.rolling_timestamp = Some(max_timestamp);
        }
        if max_timestamp > self.max_timestamp {
            self.max_timestamp = max_timestamp;
            self.offset_of_max_timestamp = last_offset;
        }
        // The batch is in the file: size and next offset move first, so an index I/O error below
        // can never leave the segment's bookkeeping behind its bytes.
        let bytes_since_last_index_entry = self.bytes_since_last_index_entry;
        self.size = position + size;
        self.next_offset = last_offset + 1;
        self.bytes_since_last_index_entry += size;
        if bytes_since_last_index_entry > interval {
            self.bytes_since_last_index_entry = size;
            // Entries stay buffered when the write fails and are retried on the next one; the
            // index is rebuilt from the log on recovery anyway, so a failure only costs speed.
            let entry = OffsetPosition {
                offset: last_offset,
                position: position as u32,
            };
            if let Err(error) = self.offset_index.append(entry) {
                tracing::warn!(path = %self.offset_index.path().display(), %error, "offset index write failed");
            }
            if let Err(error) = self.append_time_index_entry() {
                tracing::warn!(path = %self.time_index.path().display(), %error, "time index write failed");
            }
        }
    }

    fn append_time_index_entry(&mut self) -> Result<()> {
        if self.max_timestamp >= 0
            && self
                .time_index
                .last()
                .is_none_or(|last| self.max_timestamp > last.timestamp)
        {
            let path = self.time_index.path().to_path_buf();
            self.time_index
                .append(TimestampOffset {
                    timestamp: self.max_timestamp,
                    offset: self.offset_of_max_timestamp,
                })
                .at(&path)?;
        }
        Ok(())
    }

    /// The batch header at `position`, or `None` past the end or before a partial header.
    pub fn header_at(&self, position: u64) -> Result<Option<BatchHeader>> {
        let mut bytes = [0u8; RECORD_BATCH_OVERHEAD];
        let read = read_at_most(&*self.reader().at(&self.log_path)?, &mut bytes, position)
            .at(&self.log_path)?;
        Ok(BatchHeader::parse(&bytes[..read]))
    }

    /// The first batch whose last offset is at least `offset`, starting from the index's hint.
    pub fn find_batch(&self, offset: u64) -> Result<Option<BatchPosition>> {
        let start = self
            .offset_index
            .floor(offset as i64)
            .at(self.offset_index.path())?
            .map_or(0, |entry| u64::from(entry.position));
        self.scan_from(start, |header| header.last_offset() >= offset as i64)
    }

    /// The first batch whose max timestamp is at least `timestamp`, from the time index's hint.
    pub fn find_batch_by_timestamp(&self, timestamp: i64) -> Result<Option<BatchPosition>> {
        let start = match self
            .time_index
            .floor(timestamp)
            .at(self.time_index.path())?
        {
            // The entry's offset is in a batch whose timestamp is <= the target; start at that batch.
            Some(entry) => self
                .offset_index
                .floor(entry.offset as i64)
                .at(self.offset_index.path())?
                .map_or(0, |entry| u64::from(entry.position)),
            None => 0,
        };
        self.scan_from(start, |header| header.max_timestamp >= timestamp)
    }

    fn scan_from(
        &self,
        mut position: u64,
        found: impl Fn(&BatchHeader) -> bool,
    ) -> Result<Option<BatchPosition>> {
        while position < self.size {
            let Some(header) = self.header_at(position)? else {
                return Ok(None);
            };
            if found(&header) {
                return Ok(Some(BatchPosition { position, header }));
            }
            position += header.total_size().max(1) as u64;
        }
        Ok(None)
    }

    /// Reads whole batches starting with `first` (found by [`LogSegment::find_batch`]): as many as
    /// fit in `max_bytes` before `end_position`, but always at least the first one, as Kafka does
    /// so a consumer can never get stuck behind a batch larger than its fetch size.
    pub fn read(&self, first: BatchPosition, max_bytes: usize, end_position: u64) -> Result<Bytes> {
        let end_position = end_position.min(self.size);
        if first.position >= end_position {
            return Ok(Bytes::new());
        }
        let available = (end_position - first.position) as usize;
        let first_size = first.header.total_size().min(available);
        let want = if first_size >= max_bytes {
            first_size
        } else {
            max_bytes.min(available)
        };
        let file = self.reader().at(&self.log_path)?;
        let mut buffer = read_to_vec(&file, want, first.position).at(&self.log_path)?;
        // Keep whole batches only.
        let mut whole = 0;
        while let Some(header) = BatchHeader::parse(&buffer[whole..]) {
            let size = header.total_size();
            if size == 0 || whole + size > buffer.len() {
                break;
            }
            whole += size;
        }
        buffer.truncate(whole);
        Ok(Bytes::from(buffer))
    }

    /// The batch at `position` if it starts at `offset`: checks a remembered read position
    /// without trusting it.
    pub fn batch_at(&self, position: u64, offset: u64) -> Result<Option<BatchPosition>> {
        if position >= self.size {
            return Ok(None);
        }
        Ok(self
            .header_at(position)?
            .filter(|header| header.base_offset == offset as i64)
            .map(|header| BatchPosition { position, header }))
    }

    /// Cuts the segment at the batch holding `offset`; everything from that batch on goes.
    /// Returns the bytes removed.
    pub fn truncate_to(&mut self, offset: u64) -> Result<u64> {
        let Some(found) = self.find_batch(offset)? else {
            return Ok(0);
        };
        let removed = self.size - found.position;
        let writer = self.writable()?;
        writer.set_len(found.position).at(&self.log_path)?;
        self.offset_index
            .truncate_to_offset(offset)
            .at(self.offset_index.path())?;
        self.time_index
            .truncate_to_offset(offset)
            .at(self.time_index.path())?;
        self.size = found.position;
        self.next_offset = (found.header.base_offset as u64).max(self.base_offset);
        // The time index's last entry covers every batch up to the last offset-index entry; the
        // headers after it complete the maximum.
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        if let Some(last) = self.time_index.last() {
            self.max_timestamp = last.timestamp;
            self.offset_of_max_timestamp = last.offset;
        }
        let mut position = self
            .offset_index
            .last()
            .map_or(0, |entry| u64::from(entry.position));
        self.bytes_since_last_index_entry = self.size.saturating_sub(position);
        while position < self.size {
            let Some(header) = self.header_at(position)? else {
                break;
            };
            if header.max_timestamp > self.max_timestamp {
                self.max_timestamp = header.max_timestamp;
                self.offset_of_max_timestamp = header.last_offset() as u64;
            }
            position += header.total_size().max(1) as u64;
        }
        if self.size == 0 {
            self.rolling_timestamp = None;
        }
        Ok(removed)
    }

    /// Writes index entries and fsyncs the log and both indexes.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(writer) = &self.writer {
            writer.sync_data().at(&self.log_path)?;
        }
        let offset_index_path = self.offset_index.path().to_path_buf();
        self.offset_index.flush().at(&offset_index_path)?;
        let time_index_path = self.time_index.path().to_path_buf();
        self.time_index.flush().at(&time_index_path)
    }

    /// Closes the segment for writing when the log rolls past it. The final time-index entry makes
    /// the index's last entry this segment's exact max timestamp, which retention and reload rely on.
    pub fn seal(&mut self) -> Result<()> {
        self.append_time_index_entry()?;
        self.flush()?;
        let offset_index_path = self.offset_index.path().to_path_buf();
        self.offset_index.seal().at(&offset_index_path)?;
        let time_index_path = self.time_index.path().to_path_buf();
        self.time_index.seal().at(&time_index_path)?;
        self.writer = None;
        Ok(())
    }

    pub fn delete(mut self) -> Result<()> {
        self.writer = None;
        self.handles.evict(&self.log_path);
        match std::fs::remove_file(&self.log_path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(error).at(&self.log_path);
            }
            _ => {}
        }
        let offset_index_path = self.offset_index.path().to_path_buf();
        self.offset_index.delete().at(&offset_index_path)?;
        let time_index_path = self.time_index.path().to_path_buf();
        self.time_index.delete().at(&time_index_path)
    }

    fn reader(&self) -> io::Result<Arc<File>> {
        match &self.writer {
            Some(writer) => Ok(writer.clone()),
            None => self.handles.open(&self.log_path),
        }
    }

    /// A handle for writing; a sealed segment reopens for append when truncation makes it active.
    fn writable(&mut self) -> Result<Arc<File>> {
        if self.writer.is_none() {
            self.handles.evict(&self.log_path);
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&self.log_path)
                .at(&self.log_path)?;
            self.writer = Some(Arc::new(file));
        }
        Ok(self.writer.clone().expect("writer was just set"))
    }
}

impl LogSegment {
    /// Makes a sealed segment writable again (it became the last segment after a truncation or
    /// on load).
    pub fn activate(&mut self) -> Result<()> {
        self.writable().map(|_| ())
    }

    /// Calls `visit` with every batch header in file order; stops early at an unreadable header.
    pub fn for_each_header(&self, visit: impl FnMut(&BatchHeader) -> Result<()>) -> Result<()> {
        self.for_each_header_at(0, visit)
    }

    /// [`LogSegment::for_each_header`] from the batch holding `offset` (found through the index)
    /// on: a restart that restored producer state from a snapshot reads only what came after it.
    pub fn for_each_header_from(
        &self,
        offset: u64,
        visit: impl FnMut(&BatchHeader) -> Result<()>,
    ) -> Result<()> {
        match self.find_batch(offset)? {
            Some(first) => self.for_each_header_at(first.position, visit),
            None => Ok(()),
        }
    }

    fn for_each_header_at(
        &self,
        mut position: u64,
        mut visit: impl FnMut(&BatchHeader) -> Result<()>,
    ) -> Result<()> {
        while position < self.size {
            let Some(header) = self.header_at(position)? else {
                break;
            };
            visit(&header)?;
            position += header.total_size().max(1) as u64;
        }
        Ok(())
    }

    /// Last modification time of the log file in ms, for retention of segments without timestamps.
    pub fn last_modified_ms(&self) -> Result<i64> {
        let modified = std::fs::metadata(&self.log_path)
            .at(&self.log_path)?
            .modified()
            .at(&self.log_path)?;
        Ok(modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64))
    }
}
