//! The record batch (magic 2) as it sits on disk and on the wire, and its validation.
//!
//! Layout (big-endian), as in Kafka's `DefaultRecordBatch`:
//!
//! ```text
//! 0  baseOffset           i64   assigned by the leader, outside the CRC
//! 8  batchLength          i32   bytes after this field
//! 12 partitionLeaderEpoch i32   assigned by the leader, outside the CRC
//! 16 magic                i8    2
//! 17 crc                  u32   CRC-32C of attributes..end
//! 21 attributes           i16   compression (bits 0-2), timestamp type (3), transactional (4), control (5)
//! 23 lastOffsetDelta      i32
//! 27 baseTimestamp        i64
//! 35 maxTimestamp         i64
//! 43 producerId           i64
//! 51 producerEpoch        i16
//! 53 baseSequence         i32
//! 57 recordsCount         i32
//! 61 records...
//! ```

use super::error::BatchError;

pub const BASE_OFFSET_OFFSET: usize = 0;
pub const BATCH_LENGTH_OFFSET: usize = 8;
pub const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
pub const MAGIC_OFFSET: usize = 16;
pub const CRC_OFFSET: usize = 17;
pub const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const BASE_TIMESTAMP_OFFSET: usize = 27;
const MAX_TIMESTAMP_OFFSET: usize = 35;
pub const PRODUCER_ID_OFFSET: usize = 43;
pub const PRODUCER_EPOCH_OFFSET: usize = 51;
pub const BASE_SEQUENCE_OFFSET: usize = 53;
const RECORDS_COUNT_OFFSET: usize = 57;
/// Size of the batch header; records start here.
pub const RECORD_BATCH_OVERHEAD: usize = 61;
/// baseOffset + batchLength: the part of the header not counted in batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// The only record format Weir stores. Kafka 4 removed v0/v1 too.
pub const MAGIC_V2: i8 = 2;
/// Bytes 0..16 are rewritten by the leader (base offset, batch length, leader epoch): see [`patched_prefix`].
pub const PATCHED_PREFIX_LEN: usize = 16;

/// Compression codec from the low three bits of the attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_attributes(attributes: i16) -> Option<Compression> {
        Some(match attributes & 0x07 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// A parsed batch header. Parsing checks only that the bytes exist; [`validate_batch`] checks meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(buf: &[u8], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(bytes)
}

fn be_i32(buf: &[u8], at: usize) -> i32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(bytes)
}

fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

impl BatchHeader {
    /// Reads the header from the front of `buf`; `None` when fewer than 61 bytes are there.
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        if buf.len() < RECORD_BATCH_OVERHEAD {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_OFFSET),
            batch_length: be_i32(buf, BATCH_LENGTH_OFFSET),
            partition_leader_epoch: be_i32(buf, PARTITION_LEADER_EPOCH_OFFSET),
            magic: buf[MAGIC_OFFSET] as i8,
            crc: be_i32(buf, CRC_OFFSET) as u32,
            attributes: be_i16(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_OFFSET),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(buf, PRODUCER_ID_OFFSET),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_OFFSET),
            base_sequence: be_i32(buf, BASE_SEQUENCE_OFFSET),
            records_count: be_i32(buf, RECORDS_COUNT_OFFSET),
        })
    }

    /// Bytes the whole batch occupies, header included. Only meaningful after validation.
    pub fn total_size(&self) -> usize {
        (self.batch_length.max(0) as usize).saturating_add(LOG_OVERHEAD)
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    pub fn compression(&self) -> Option<Compression> {
        Compression::from_attributes(self.attributes)
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// The sequence number of the last record, as Kafka's dump tool prints it.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        // Sequences wrap at i32::MAX, as in Kafka's DefaultRecordBatch.
        let next = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (next % (i64::from(i32::MAX) + 1)) as i32
    }
}

/// CRC-32C over attributes..end, the part of the batch the producer seals.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crate::encoding::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// The first 16 bytes of a stored batch: everything the leader rewrites, the rest stays as received.
pub fn patched_prefix(
    batch: &[u8],
    base_offset: u64,
    partition_leader_epoch: i32,
) -> [u8; PATCHED_PREFIX_LEN] {
    let mut prefix = [0u8; PATCHED_PREFIX_LEN];
    prefix.copy_from_slice(&batch[..PATCHED_PREFIX_LEN]);
    prefix[BASE_OFFSET_OFFSET..BATCH_LENGTH_OFFSET]
        .copy_from_slice(&(base_offset as i64).to_be_bytes());
    prefix[PARTITION_LEADER_EPOCH_OFFSET..MAGIC_OFFSET]
        .copy_from_slice(&partition_leader_epoch.to_be_bytes());
    prefix
}

/// Who produced the batch, which decides how strictly its offsets are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer's batch on the leader: offsets are ours to assign, so the count must match exactly.
    Client,
    /// A batch copied from the leader or read back from disk: offsets are already assigned.
    Replication,
}

/// Checks one batch at the front of `buf` and returns its header.
///
/// The checks follow Kafka's `LogValidator`: header sanity, size against `max_message_bytes`
/// (before the CRC, as Kafka does, so an oversized batch is reported as too large), the CRC, the
/// record count against `lastOffsetDelta`, and for uncompressed batches the records themselves.
pub fn validate_batch(
    buf: &[u8],
    max_message_bytes: usize,
    origin: AppendOrigin,
) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf).ok_or_else(|| {
        BatchError::Corrupt(format!(
            "{} bytes cannot hold a record batch header ({RECORD_BATCH_OVERHEAD} bytes)",
            buf.len()
        ))
    })?;
    if header.magic != MAGIC_V2 {
        return Err(if header.magic == 0 || header.magic == 1 {
            BatchError::InvalidRecord(format!(
                "message format v{} is not supported; use magic 2",
                header.magic
            ))
        } else {
            BatchError::Corrupt(format!("unknown magic byte {}", header.magic))
        });
    }
    if (header.batch_length as i64) < (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i64 {
        return Err(BatchError::Corrupt(format!(
            "batch length {} is below the header size",
            header.batch_length
        )));
    }
    let size = header.total_size();
    if size > max_message_bytes {
        return Err(BatchError::TooLarge {
            size,
            max: max_message_bytes,
        });
    }
    if size > buf.len() {
        return Err(BatchError::Corrupt(format!(
            "batch claims {size} bytes but only {} remain",
            buf.len()
        )));
    }
    let batch = &buf[..size];
    let crc = compute_crc(batch);
    if crc != header.crc {
        return Err(BatchError::Corrupt(format!(
            "CRC-32C mismatch: stored {:#010x}, computed {crc:#010x}",
            header.crc
        )));
    }
    let compression = header.compression().ok_or_else(|| {
        BatchError::InvalidRecord(format!(
            "unknown compression codec {}",
            header.attributes & 0x07
        ))
    })?;
    if header.last_offset_delta < 0 {
        return Err(BatchError::InvalidRecord(format!(
            "negative last offset delta {}",
            header.last_offset_delta
        )));
    }
    if header.records_count <= 0 && origin == AppendOrigin::Client {
        return Err(BatchError::InvalidRecord(format!(
            "invalid record count {}",
            header.records_count
        )));
    }
    if origin == AppendOrigin::Client
        && i64::from(header.records_count) != i64::from(header.last_offset_delta) + 1
    {
        return Err(BatchError::InvalidRecord(format!(
            "record count {} does not match last offset delta {}",
            header.records_count, header.last_offset_delta
        )));
    }
    if origin == AppendOrigin::Client && header.is_control() {
        return Err(BatchError::InvalidRecord(
            "clients may not write control batches".to_string(),
        ));
    }
    // Kafka's LogValidator looks inside every client batch, compressed ones included, so a
    // record count or length that lies (and would later blow up a decoder) never gets stored.
    // Replicated batches were checked by their leader; only uncompressed ones are walked, cheaply.
    if compression == Compression::None || origin == AppendOrigin::Client {
        check_records(&header, batch, origin)?;
    }
    Ok(header)
}

/// Checks that the records of `batch` (decompressed first if needed) are exactly
/// `header.records_count` well-formed records.
pub fn check_records(
    header: &BatchHeader,
    batch: &[u8],
    origin: AppendOrigin,
) -> Result<(), BatchError> {
    use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
    let payload = &batch[RECORD_BATCH_OVERHEAD..];
    let count = header.records_count;
    let walk = |records: &mut bytes::Bytes| -> anyhow::Result<Result<(), BatchError>> {
        Ok(check_uncompressed_records(&records[..], count, origin))
    };
    let compression = header.compression();
    if compression == Some(Compression::None) {
        return check_uncompressed_records(payload, count, origin);
    }
    // The decompressors take an owned buffer; only compressed batches pay for the copy.
    let mut compressed = bytes::Bytes::copy_from_slice(payload);
    // Decompression is not bounded beyond the batch size; Kafka's validator has the same exposure.
    let walked = match compression {
        Some(Compression::None) => unreachable!("handled above"),
        Some(Compression::Gzip) => Gzip::decompress(&mut compressed, walk),
        Some(Compression::Snappy) => Snappy::decompress(&mut compressed, walk),
        Some(Compression::Lz4) => Lz4::decompress(&mut compressed, walk),
        Some(Compression::Zstd) => Zstd::decompress(&mut compressed, walk),
        None => {
            return Err(BatchError::InvalidRecord(
                "unknown compression codec".to_string(),
            ));
        }
    };
    walked.map_err(|error| BatchError::Corrupt(format!("records do not decompress: {error:#}")))?
}

/// Walks the records of an uncompressed batch, checking every length stays inside its record
/// and, for client batches, that offset deltas run 0, 1, 2, ... as Kafka requires.
///
/// Every produced record passes through here, so the walk is [`records_are_well_formed`], which
/// only answers yes or no; a batch it refuses is walked again by [`explain_malformed_records`]
/// to say what is wrong. The two make the same decision (a property test holds them to it).
fn check_uncompressed_records(
    records: &[u8],
    records_count: i32,
    origin: AppendOrigin,
) -> Result<(), BatchError> {
    if records_are_well_formed(records, records_count, origin) {
        return Ok(());
    }
    match explain_malformed_records(records, records_count, origin) {
        Err(error) => Err(error),
        // Unreachable while the two walks agree; refusing is the safe answer if they ever do not.
        Ok(()) => Err(BatchError::InvalidRecord(
            "records are malformed".to_string(),
        )),
    }
}

/// The fast walk: the checks of [`explain_malformed_records`], without building errors.
fn records_are_well_formed(records: &[u8], records_count: i32, origin: AppendOrigin) -> bool {
    let check_deltas = origin == AppendOrigin::Client;
    let mut at = 0usize;
    for index in 0..records_count.max(0) {
        match record_end(records, at, index, check_deltas) {
            Some(end) => at = end,
            None => return false,
        }
    }
    at == records.len()
}

/// Where the record at `at` (the `index`th of its batch) ends if it is well formed, else `None`.
#[inline(always)]
fn record_end(records: &[u8], at: usize, index: i32, check_deltas: bool) -> Option<usize> {
    let (length, after_length) = varint_at(records, at)?;
    if length < 0 || length as usize > records.len() - after_length {
        return None;
    }
    let end = after_length + length as usize;
    let record = &records[..end];
    // Attributes: one byte, not interpreted.
    let mut at_field = after_length + 1;
    if at_field > end {
        return None;
    }
    let after_timestamp = skip_varint_at(record, at_field, 10)?;
    let (offset_delta, after_offset) = varint_at(record, after_timestamp)?;
    if check_deltas && offset_delta != index {
        return None;
    }
    at_field = after_offset;
    // Key, then value: -1 (null) or a length within the record.
    for _ in 0..2 {
        let (field_length, after) = varint_at(record, at_field)?;
        if field_length >= 0 {
            if field_length as usize > end - after {
                return None;
            }
            at_field = after + field_length as usize;
        } else if field_length == -1 {
            at_field = after;
        } else {
            return None;
        }
    }
    let (headers, after_count) = varint_at(record, at_field)?;
    if headers < 0 {
        return None;
    }
    at_field = after_count;
    for _ in 0..headers {
        let (key_length, after_key) = varint_at(record, at_field)?;
        if key_length < 0 || key_length as usize > end - after_key {
            return None;
        }
        at_field = after_key + key_length as usize;
        let (value_length, after_value) = varint_at(record, at_field)?;
        if value_length >= 0 {
            if value_length as usize > end - after_value {
                return None;
            }
            at_field = after_value + value_length as usize;
        } else if value_length == -1 {
            at_field = after_value;
        } else {
            return None;
        }
    }
    (at_field == end).then_some(end)
}

/// The zig-zag varint at `at` in `buf` and the position after it, as [`read_varint`] reads it.
#[inline(always)]
fn varint_at(buf: &[u8], at: usize) -> Option<(i32, usize)> {
    let first = *buf.get(at)?;
    // One byte: deltas, short lengths, null keys, header counts. Two bytes: lengths up to 8 KiB,
    // offset deltas up to 8191. Longer ones take the general path.
    let (raw, next) = if first & 0x80 == 0 {
        (u32::from(first), at + 1)
    } else {
        let second = *buf.get(at + 1)?;
        if second & 0x80 == 0 {
            (u32::from(first & 0x7f) | (u32::from(second) << 7), at + 2)
        } else {
            let mut rest = buf.get(at..)?;
            let before = rest.len();
            let value = read_varint(&mut rest)?;
            return Some((value, at + before - rest.len()));
        }
    };
    Some((((raw >> 1) as i32) ^ -((raw & 1) as i32), next))
}

/// The position after the unsigned varint of at most `max_bytes` bytes at `at` in `buf`.
#[inline(always)]
fn skip_varint_at(buf: &[u8], at: usize, max_bytes: usize) -> Option<usize> {
    if *buf.get(at)? & 0x80 == 0 {
        return Some(at + 1);
    }
    let mut rest = buf.get(at..)?;
    let before = rest.len();
    read_unsigned_varint(&mut rest, max_bytes)?;
    Some(at + before - rest.len())
}

/// The walk of [`check_uncompressed_records`] that says what is wrong.
fn explain_malformed_records(
    mut records: &[u8],
    records_count: i32,
    origin: AppendOrigin,
) -> Result<(), BatchError> {
    let invalid =
        |what: &str, index: i32| BatchError::InvalidRecord(format!("record {index}: {what}"));
    for index in 0..records_count.max(0) {
        let length = read_varint(&mut records).ok_or_else(|| invalid("truncated length", index))?;
        if length < 0 || length as usize > records.len() {
            return Err(invalid("length runs past the batch", index));
        }
        let (mut record, rest) = records.split_at(length as usize);
        records = rest;
        let _attributes =
            take(&mut record, 1).ok_or_else(|| invalid("truncated attributes", index))?;
        read_varlong(&mut record).ok_or_else(|| invalid("bad timestamp delta", index))?;
        let offset_delta =
            read_varint(&mut record).ok_or_else(|| invalid("bad offset delta", index))?;
        if origin == AppendOrigin::Client && offset_delta != index {
            return Err(invalid(
                &format!("offset delta {offset_delta}, expected {index}"),
                index,
            ));
        }
        skip_nullable_bytes(&mut record).ok_or_else(|| invalid("bad key", index))?;
        skip_nullable_bytes(&mut record).ok_or_else(|| invalid("bad value", index))?;
        let headers = read_varint(&mut record).ok_or_else(|| invalid("bad header count", index))?;
        if headers < 0 {
            return Err(invalid("negative header count", index));
        }
        for _ in 0..headers {
            let key_length =
                read_varint(&mut record).ok_or_else(|| invalid("bad header key", index))?;
            if key_length < 0 {
                return Err(invalid("null header key", index));
            }
            take(&mut record, key_length as usize)
                .ok_or_else(|| invalid("header key runs past the record", index))?;
            skip_nullable_bytes(&mut record).ok_or_else(|| invalid("bad header value", index))?;
        }
        if !record.is_empty() {
            return Err(invalid(&format!("{} bytes left over", record.len()), index));
        }
    }
    if !records.is_empty() {
        return Err(BatchError::InvalidRecord(format!(
            "{} bytes after the last of {records_count} records",
            records.len()
        )));
    }
    Ok(())
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Some(head)
}

fn skip_nullable_bytes(buf: &mut &[u8]) -> Option<()> {
    let length = read_varint(buf)?;
    if length >= 0 {
        take(buf, length as usize)?;
    } else if length != -1 {
        return None;
    }
    Some(())
}

/// Zig-zag varint as in Kafka's `ByteUtils.readVarint`; `None` if truncated or longer than 5 bytes.
#[inline]
pub fn read_varint(buf: &mut &[u8]) -> Option<i32> {
    let raw = read_unsigned_varint(buf, 5)?;
    let raw = u32::try_from(raw).ok()?;
    Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

pub fn read_varlong(buf: &mut &[u8]) -> Option<i64> {
    let raw = read_unsigned_varint(buf, 10)?;
    Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

#[inline]
fn read_unsigned_varint(buf: &mut &[u8], max_bytes: usize) -> Option<u64> {
    // Most fields of a record (attributes aside: deltas, short lengths, header counts) fit one byte.
    if let Some(&byte) = buf.first()
        && byte & 0x80 == 0
    {
        *buf = &buf[1..];
        return Some(u64::from(byte));
    }
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let byte = *buf.get(i)?;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(value);
        }
    }
    None
}

/// One validated batch inside a record set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidatedBatch {
    pub header: BatchHeader,
    /// Byte range of the batch inside the record set.
    pub start: usize,
    pub end: usize,
}

/// Validates every batch of a record set (a produce partition's `records` may hold several).
/// Trailing bytes that are not a whole batch make the whole set corrupt.
pub fn validate_record_set(
    records: &[u8],
    max_message_bytes: usize,
    origin: AppendOrigin,
) -> Result<Vec<ValidatedBatch>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Corrupt("empty record set".to_string()));
    }
    let mut batches = Vec::with_capacity(1);
    let mut start = 0;
    while start < records.len() {
        if origin == AppendOrigin::Client && start > 0 {
            return Err(BatchError::InvalidRecord(
                "a produce request must carry exactly one record batch per partition".to_string(),
            ));
        }
        let header = validate_batch(&records[start..], max_message_bytes, origin)?;
        let end = start + header.total_size();
        batches.push(ValidatedBatch { header, start, end });
        start = end;
    }
    Ok(batches)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::records::{ProducerRecord, encode_producer_batch};
    use kafka_protocol::ResponseError;

    /// A client-style batch (base offset 0, epoch -1) of `count` records with `value_size`-byte values.
    pub(crate) fn client_batch(count: usize, value_size: usize, timestamp: i64) -> Vec<u8> {
        encode_batch(count, value_size, timestamp, Compression::None)
    }

    pub(crate) fn encode_batch(
        count: usize,
        value_size: usize,
        timestamp: i64,
        compression: Compression,
    ) -> Vec<u8> {
        let keys: Vec<String> = (0..count).map(|i| format!("key-{i}")).collect();
        let value = vec![b'v'; value_size];
        let records: Vec<ProducerRecord<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| ProducerRecord {
                key: Some(key.as_bytes()),
                value: Some(&value),
                headers: &[],
                timestamp: timestamp + i as i64,
            })
            .collect();
        encode_producer_batch(&records, compression).expect("encoding a test batch")
    }

    pub(crate) fn refresh_crc(batch: &mut [u8]) {
        let crc = compute_crc(batch);
        batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn a_well_formed_batch_validates() {
        let batch = client_batch(3, 10, 1_000);
        let header = validate_batch(&batch, 1 << 20, AppendOrigin::Client).expect("valid");
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.total_size(), batch.len());
        assert_eq!(header.max_timestamp, 1_002);
        assert_eq!(header.compression(), Some(Compression::None));
    }

    #[test]
    fn compressed_batches_validate() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = encode_batch(5, 100, 7, codec);
            let header = validate_batch(&batch, 1 << 20, AppendOrigin::Client).expect("valid");
            assert_ne!(header.compression(), Some(Compression::None), "{codec:?}");
        }
    }

    #[test]
    fn a_flipped_bit_is_corrupt() {
        let mut batch = client_batch(3, 10, 1_000);
        let last = batch.len() - 1;
        batch[last] ^= 1;
        let error = validate_batch(&batch, 1 << 20, AppendOrigin::Client).expect_err("corrupt");
        assert!(matches!(error, BatchError::Corrupt(_)), "{error}");
        assert_eq!(error.kafka_error_code(), ResponseError::CorruptMessage);
    }

    #[test]
    fn the_base_offset_and_epoch_are_outside_the_crc() {
        let mut batch = client_batch(3, 10, 1_000);
        let prefix = patched_prefix(&batch, 12_345, 7);
        batch[..PATCHED_PREFIX_LEN].copy_from_slice(&prefix);
        let header =
            validate_batch(&batch, 1 << 20, AppendOrigin::Replication).expect("still valid");
        assert_eq!(header.base_offset, 12_345);
        assert_eq!(header.partition_leader_epoch, 7);
    }

    #[test]
    fn oversized_batches_are_too_large() {
        let batch = client_batch(3, 1000, 1_000);
        let error = validate_batch(&batch, 100, AppendOrigin::Client).expect_err("too large");
        assert_eq!(
            error,
            BatchError::TooLarge {
                size: batch.len(),
                max: 100
            }
        );
        assert_eq!(error.kafka_error_code(), ResponseError::MessageTooLarge);
    }

    #[test]
    fn count_must_match_last_offset_delta() {
        let mut batch = client_batch(3, 10, 1_000);
        batch[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4].copy_from_slice(&2i32.to_be_bytes());
        refresh_crc(&mut batch);
        let error = validate_batch(&batch, 1 << 20, AppendOrigin::Client).expect_err("invalid");
        assert!(matches!(error, BatchError::InvalidRecord(_)), "{error}");
        assert_eq!(error.kafka_error_code(), ResponseError::InvalidRecord);
    }

    #[test]
    fn records_must_fill_the_batch_exactly() {
        let mut batch = client_batch(3, 10, 1_000);
        // Claim four records where three are stored: the walk runs out of bytes.
        batch[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4].copy_from_slice(&4i32.to_be_bytes());
        batch[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
            .copy_from_slice(&3i32.to_be_bytes());
        refresh_crc(&mut batch);
        let error = validate_batch(&batch, 1 << 20, AppendOrigin::Client).expect_err("invalid");
        assert!(matches!(error, BatchError::InvalidRecord(_)), "{error}");
    }

    #[test]
    fn old_magic_is_invalid_and_unknown_magic_corrupt() {
        let mut batch = client_batch(1, 10, 1_000);
        batch[MAGIC_OFFSET] = 1;
        assert!(matches!(
            validate_batch(&batch, 1 << 20, AppendOrigin::Client),
            Err(BatchError::InvalidRecord(_))
        ));
        batch[MAGIC_OFFSET] = 9;
        assert!(matches!(
            validate_batch(&batch, 1 << 20, AppendOrigin::Client),
            Err(BatchError::Corrupt(_))
        ));
    }

    #[test]
    fn truncated_batches_and_trailing_bytes_are_corrupt() {
        let batch = client_batch(2, 10, 1_000);
        assert!(matches!(
            validate_batch(&batch[..batch.len() - 1], 1 << 20, AppendOrigin::Client),
            Err(BatchError::Corrupt(_))
        ));
        assert!(matches!(
            validate_batch(&batch[..20], 1 << 20, AppendOrigin::Client),
            Err(BatchError::Corrupt(_))
        ));
        let mut two = batch.clone();
        two.extend_from_slice(&batch);
        assert!(matches!(
            validate_record_set(&two, 1 << 20, AppendOrigin::Client),
            Err(BatchError::InvalidRecord(_))
        ));
        assert_eq!(
            validate_record_set(&two, 1 << 20, AppendOrigin::Replication)
                .expect("two batches")
                .len(),
            2
        );
        two.extend_from_slice(&[0, 0, 0]);
        assert!(validate_record_set(&two, 1 << 20, AppendOrigin::Replication).is_err());
        assert!(validate_record_set(&[], 1 << 20, AppendOrigin::Client).is_err());
    }

    /// A compressed batch whose header claims more records than it holds is refused at append,
    /// before a decoder could try to reserve room for them all.
    #[test]
    fn a_compressed_batch_that_lies_about_its_count_is_invalid() {
        let mut batch = encode_batch(1, 10, 7, Compression::Gzip);
        batch[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4]
            .copy_from_slice(&i32::MAX.to_be_bytes());
        batch[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
            .copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        refresh_crc(&mut batch);
        let error = validate_batch(&batch, 1 << 20, AppendOrigin::Client).expect_err("lying count");
        assert!(matches!(error, BatchError::InvalidRecord(_)), "{error}");
        assert!(crate::storage::records::decode_records(&batch).is_err());
    }

    #[test]
    fn clients_may_not_write_control_batches() {
        let mut batch = client_batch(1, 10, 7);
        batch[ATTRIBUTES_OFFSET + 1] |= 0x20;
        refresh_crc(&mut batch);
        assert!(matches!(
            validate_batch(&batch, 1 << 20, AppendOrigin::Client),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    #[test]
    fn varints_decode_as_kafka_encodes_them() {
        // Worked cases from Kafka's ByteUtilsTest: zig-zag maps 0,-1,1,-2 to 0,1,2,3.
        let cases: [(&[u8], i32); 5] = [
            (&[0x00], 0),
            (&[0x01], -1),
            (&[0x02], 1),
            (&[0x03], -2),
            (&[0xac, 0x02], 150),
        ];
        for (bytes, expected) in cases {
            let mut buf = bytes;
            assert_eq!(read_varint(&mut buf), Some(expected));
            assert!(buf.is_empty());
        }
        let mut too_long: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(read_varint(&mut too_long), None);
    }

    proptest::proptest! {
        /// Fuzz-style: arbitrary bytes never panic validation, whichever origin.
        #[test]
        fn validation_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = validate_record_set(&bytes, 1 << 20, AppendOrigin::Client);
            let _ = validate_record_set(&bytes, 1 << 20, AppendOrigin::Replication);
        }

        /// The fast record walk accepts exactly what the explaining walk accepts, on well-formed
        /// records (with keys, nulls, headers, multi-byte lengths and deltas) and on those records
        /// with bytes changed, cut or a wrong count claimed.
        #[test]
        fn the_fast_walk_decides_as_the_explaining_walk(
            count in 1usize..140,
            value_size in proptest::prop_oneof![0usize..80, 8000usize..9000],
            with_headers in proptest::bool::ANY,
            flips in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 0..4),
            cut in proptest::option::of(proptest::num::usize::ANY),
            claimed_delta in -2i32..3,
        ) {
            let value = vec![b'v'; value_size];
            let header_value = [7u8; 3];
            let headers: &[(&str, Option<&[u8]>)] =
                if with_headers { &[("h1", Some(&header_value)), ("h2", None)] } else { &[] };
            let keys: Vec<String> = (0..count).map(|i| format!("key-{i}")).collect();
            let records: Vec<ProducerRecord<'_>> = keys
                .iter()
                .enumerate()
                .map(|(i, key)| ProducerRecord {
                    key: (i % 3 != 0).then_some(key.as_bytes()),
                    value: (i % 5 != 1).then_some(&value[..]),
                    headers,
                    timestamp: 1_000 + 40 * i as i64,
                })
                .collect();
            let batch = encode_producer_batch(&records, Compression::None).expect("encoding");
            let mut payload = batch[RECORD_BATCH_OVERHEAD..].to_vec();
            for (position, byte) in flips {
                let position = position % payload.len();
                payload[position] = byte;
            }
            if let Some(cut) = cut {
                payload.truncate(cut % (payload.len() + 1));
            }
            let claimed = count as i32 + claimed_delta;
            let mut changed = batch[..RECORD_BATCH_OVERHEAD].to_vec();
            changed.extend_from_slice(&payload);
            let mut header = BatchHeader::parse(&changed).expect("a header");
            header.records_count = claimed;
            for origin in [AppendOrigin::Client, AppendOrigin::Replication] {
                let explained = explain_malformed_records(&payload, claimed, origin).is_ok();
                proptest::prop_assert_eq!(
                    records_are_well_formed(&payload, claimed, origin),
                    explained,
                    "origin {:?}", origin
                );
                proptest::prop_assert_eq!(check_records(&header, &changed, origin).is_ok(), explained);
            }
        }

        /// Fuzz-style: arbitrary bytes as records: both walks decide alike.
        #[test]
        fn the_fast_walk_decides_as_the_explaining_walk_on_noise(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
            claimed in 0i32..6,
        ) {
            for origin in [AppendOrigin::Client, AppendOrigin::Replication] {
                proptest::prop_assert_eq!(
                    records_are_well_formed(&bytes, claimed, origin),
                    explain_malformed_records(&bytes, claimed, origin).is_ok()
                );
            }
        }

        /// Fuzz-style: a valid batch with one byte changed anywhere past the patched prefix is refused.
        #[test]
        fn any_single_byte_change_is_caught(position in 16usize..200, delta in 1u8..=255) {
            let mut batch = client_batch(4, 20, 5);
            let position = position % batch.len();
            if position >= PATCHED_PREFIX_LEN {
                batch[position] = batch[position].wrapping_add(delta);
                proptest::prop_assert!(validate_record_set(&batch, 1 << 20, AppendOrigin::Client).is_err());
            }
        }
    }
}
