//! Record-level access to a stored batch, for the rare paths that need single records
//! (timestamp lookups, the dump tool). The data path never decodes records.

use bytes::Bytes;
pub use kafka_protocol::records::Record;
use kafka_protocol::records::RecordBatchDecoder;

use super::batch::{
    AppendOrigin, BASE_SEQUENCE_OFFSET, BatchHeader, CRC_OFFSET, Compression, check_records,
    compute_crc,
};

/// Decodes (and decompresses) every record of one batch.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, String> {
    // The decoder reserves room for the claimed record count before reading any: walk the
    // records first so a lying count (from a damaged or hostile file) cannot exhaust memory.
    let header = BatchHeader::parse(batch).ok_or("shorter than a batch header")?;
    if header.total_size() != batch.len() {
        return Err(format!(
            "batch claims {} bytes, has {}",
            header.total_size(),
            batch.len()
        ));
    }
    check_records(&header, batch, AppendOrigin::Replication).map_err(|error| error.to_string())?;
    let mut buffer = Bytes::copy_from_slice(batch);
    let set = RecordBatchDecoder::decode(&mut buffer).map_err(|error| format!("{error:#}"))?;
    Ok(set.records)
}

/// The first record with timestamp at least `target` in `batch`, as (offset, timestamp).
/// With log-append time every record carries the batch's max timestamp.
pub fn first_record_at_or_after(
    header: &BatchHeader,
    batch: &[u8],
    target: i64,
    min_offset: u64,
) -> Option<(u64, i64)> {
    let whole_batch = || {
        let offset = (header.base_offset as u64).max(min_offset);
        (header.max_timestamp >= target).then_some((offset, header.max_timestamp))
    };
    if header.is_log_append_time() {
        return whole_batch();
    }
    match decode_records(batch) {
        // Records below the log start offset (DeleteRecords inside a batch) are not searched.
        Ok(records) => records
            .iter()
            .filter(|record| record.offset as u64 >= min_offset)
            .find(|record| record.timestamp >= target)
            .map(|record| (record.offset as u64, record.timestamp)),
        // The batch passed its CRC when stored; if its records still do not decode, answer at
        // batch granularity rather than not at all.
        Err(_) => whole_batch(),
    }
}

/// One record as a producer hands it over, before it is put in a batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProducerRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// Create time in ms since the epoch.
    pub timestamp: i64,
}

/// Encodes `records` as one magic-2 batch the way a plain (non-idempotent) producer sends it:
/// base offset 0, partition leader epoch -1, no producer id, base sequence -1.
pub fn encode_producer_batch(
    records: &[ProducerRecord<'_>],
    compression: Compression,
) -> Result<Vec<u8>, String> {
    use bytes::BytesMut;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression as WireCompression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    if records.is_empty() {
        return Err("a batch needs at least one record".to_string());
    }
    let wire_records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, record)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder keeps records in one batch only while offset - sequence is constant;
            // the base sequence is reset to -1 below.
            sequence: index as i32,
            timestamp: record.timestamp,
            key: record.key.map(Bytes::copy_from_slice),
            value: record.value.map(Bytes::copy_from_slice),
            headers: record
                .headers
                .iter()
                .map(|(key, value)| {
                    (
                        StrBytes::from_string((*key).to_string()),
                        value.map(Bytes::copy_from_slice),
                    )
                })
                .collect(),
        })
        .collect();
    let compression = match compression {
        Compression::None => WireCompression::None,
        Compression::Gzip => WireCompression::Gzip,
        Compression::Snappy => WireCompression::Snappy,
        Compression::Lz4 => WireCompression::Lz4,
        Compression::Zstd => WireCompression::Zstd,
    };
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buffer,
        &wire_records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|error| format!("{error:#}"))?;
    let mut batch = buffer.to_vec();
    batch[BASE_SEQUENCE_OFFSET..BASE_SEQUENCE_OFFSET + 4].copy_from_slice(&(-1i32).to_be_bytes());
    let crc = compute_crc(&batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::{AppendOrigin, validate_record_set};

    #[test]
    fn encoded_batches_are_one_valid_batch_that_decodes_back() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let headers: &[(&str, Option<&[u8]>)] = &[("trace", Some(b"abc")), ("empty", None)];
            let records = [
                ProducerRecord {
                    key: Some(b"k"),
                    value: Some(b"v1"),
                    headers,
                    timestamp: 10,
                },
                ProducerRecord {
                    key: None,
                    value: None,
                    headers: &[],
                    timestamp: 12,
                },
            ];
            let batch = encode_producer_batch(&records, compression).expect("encode");
            let batches =
                validate_record_set(&batch, usize::MAX, AppendOrigin::Client).expect("valid");
            assert_eq!(batches.len(), 1, "{compression:?}");
            assert_eq!(batches[0].header.base_sequence, -1);
            assert_eq!(batches[0].header.compression(), Some(compression));
            let decoded = decode_records(&batch).expect("decode");
            assert_eq!(decoded.len(), 2);
            assert_eq!(decoded[0].key.as_deref(), Some(&b"k"[..]));
            assert_eq!(decoded[0].headers.len(), 2);
            assert_eq!(decoded[1].value, None);
            assert_eq!(decoded[1].timestamp, 12);
        }
        assert!(encode_producer_batch(&[], Compression::None).is_err());
    }
}
