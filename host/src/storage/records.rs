//! Record-level access to a stored batch, for the rare paths that need single records
//! (timestamp lookups, the dump tool). The data path never decodes records.

use bytes::Bytes;
pub use kafka_protocol::records::Record;
use kafka_protocol::records::RecordBatchDecoder;

use super::batch::BatchHeader;

/// Decodes (and decompresses) every record of one batch.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, String> {
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
) -> Option<(u64, i64)> {
    if header.is_log_append_time() {
        return (header.max_timestamp >= target)
            .then_some((header.base_offset as u64, header.max_timestamp));
    }
    match decode_records(batch) {
        Ok(records) => records
            .iter()
            .find(|record| record.timestamp >= target)
            .map(|record| (record.offset as u64, record.timestamp)),
        // The batch passed its CRC when stored; if its records still do not decode, answer at
        // batch granularity rather than not at all.
        Err(_) => (header.max_timestamp >= target)
            .then_some((header.base_offset as u64, header.max_timestamp)),
    }
}
