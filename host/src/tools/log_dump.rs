//! `weir log dump PATH`: prints a segment's batches (and with `--records` its records), or an
//! index's entries, the way `kafka-dump-log.sh --print-data-log` does. It reads files directly and
//! tolerates damage: a bad CRC is reported per batch, a torn tail ends the dump with a message.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::storage::batch::{
    BatchHeader, LOG_OVERHEAD, MAGIC_V2, RECORD_BATCH_OVERHEAD, compute_crc,
};
use crate::storage::files::read_at_most;
use crate::storage::index::{IndexEntry, OffsetPosition, TimestampOffset};
use crate::storage::records::decode_records;
use crate::storage::segment::{INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{0}: not a segment file (expected a .log, .index or .timeindex file, or a partition directory)"
    )]
    UnknownFile(String),
}

/// What a dump saw; `damaged` makes the command exit non-zero.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DumpSummary {
    pub batches: u64,
    pub records: u64,
    pub damaged: bool,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DumpError + '_ {
    move |source| DumpError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Dumps a file, or every segment file of a partition directory in offset order.
pub fn dump(
    path: &Path,
    print_records: bool,
    out: &mut dyn Write,
) -> Result<DumpSummary, DumpError> {
    let metadata = std::fs::metadata(path).map_err(io_error(path))?;
    if metadata.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io_error(path))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|file| {
                file.extension()
                    .is_some_and(|extension| extension == LOG_SUFFIX)
            })
            .collect();
        files.sort();
        let mut summary = DumpSummary::default();
        for file in files {
            let one = dump_file(&file, print_records, out)?;
            summary.batches += one.batches;
            summary.records += one.records;
            summary.damaged |= one.damaged;
        }
        return Ok(summary);
    }
    dump_file(path, print_records, out)
}

fn dump_file(
    path: &Path,
    print_records: bool,
    out: &mut dyn Write,
) -> Result<DumpSummary, DumpError> {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .unwrap_or("");
    let base_offset = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse::<u64>().ok())
        .unwrap_or(0);
    let written = |result: io::Result<()>| result.map_err(io_error(Path::new("<stdout>")));
    written(writeln!(out, "Dumping {}", path.display()))?;
    match extension {
        LOG_SUFFIX => dump_log(path, base_offset, print_records, out),
        INDEX_SUFFIX => dump_index::<OffsetPosition>(path, base_offset, out, |entry| {
            format!("offset: {} position: {}", entry.offset, entry.position)
        }),
        TIME_INDEX_SUFFIX => dump_index::<TimestampOffset>(path, base_offset, out, |entry| {
            format!("timestamp: {} offset: {}", entry.timestamp, entry.offset)
        }),
        _ => Err(DumpError::UnknownFile(path.display().to_string())),
    }
}

fn dump_index<E: IndexEntry>(
    path: &Path,
    base_offset: u64,
    out: &mut dyn Write,
    describe: impl Fn(&E) -> String,
) -> Result<DumpSummary, DumpError> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let stdout = io_error(Path::new("<stdout>"));
    let mut summary = DumpSummary::default();
    for chunk in bytes.chunks_exact(E::SIZE) {
        let entry = E::decode(base_offset, chunk);
        writeln!(out, "{}", describe(&entry)).map_err(io_error(Path::new("<stdout>")))?;
    }
    let leftover = bytes.len() % E::SIZE;
    if leftover != 0 {
        summary.damaged = true;
        writeln!(
            out,
            "error: {leftover} trailing bytes do not form a whole {}-byte index entry",
            E::SIZE
        )
        .map_err(stdout)?;
    }
    Ok(summary)
}

fn dump_log(
    path: &Path,
    base_offset: u64,
    print_records: bool,
    out: &mut dyn Write,
) -> Result<DumpSummary, DumpError> {
    let file = File::open(path).map_err(io_error(path))?;
    let file_size = file.metadata().map_err(io_error(path))?.len();
    let to_stdout = |result: io::Result<()>| result.map_err(io_error(Path::new("<stdout>")));
    to_stdout(writeln!(out, "Log starting offset: {base_offset}"))?;
    let mut summary = DumpSummary::default();
    let mut position = 0u64;
    let mut batch = Vec::new();
    while position < file_size {
        let mut header_bytes = [0u8; RECORD_BATCH_OVERHEAD];
        let read = read_at_most(&file, &mut header_bytes, position).map_err(io_error(path))?;
        let Some(header) = BatchHeader::parse(&header_bytes[..read]) else {
            summary.damaged = true;
            to_stdout(writeln!(
                out,
                "error: {} trailing bytes at position {position} are not a whole batch header",
                file_size - position
            ))?;
            break;
        };
        let size = header.total_size() as u64;
        if header.magic != MAGIC_V2 {
            summary.damaged = true;
            to_stdout(writeln!(
                out,
                "error: batch at position {position} has magic {}, expected {MAGIC_V2}; stopping",
                header.magic
            ))?;
            break;
        }
        if header.batch_length < (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i32
            || position + size > file_size
        {
            summary.damaged = true;
            to_stdout(writeln!(
                out,
                "error: batch at position {position} claims {} bytes but {} remain; the tail is torn or corrupt",
                i64::from(header.batch_length) + LOG_OVERHEAD as i64,
                file_size - position
            ))?;
            break;
        }
        batch.resize(size as usize, 0);
        read_at_most(&file, &mut batch, position).map_err(io_error(path))?;
        let crc_valid = compute_crc(&batch) == header.crc;
        summary.damaged |= !crc_valid;
        summary.batches += 1;
        summary.records += header.records_count.max(0) as u64;
        to_stdout(writeln!(
            out,
            "baseOffset: {} lastOffset: {} count: {} baseSequence: {} lastSequence: {} producerId: {} \
             producerEpoch: {} partitionLeaderEpoch: {} isTransactional: {} isControl: {} position: {position} \
             {}: {} baseTimestamp: {} maxTimestamp: {} size: {size} magic: {} compresscodec: {} crcValid: {crc_valid}",
            header.base_offset,
            header.last_offset(),
            header.records_count,
            header.base_sequence,
            header.last_sequence(),
            header.producer_id,
            header.producer_epoch,
            header.partition_leader_epoch,
            header.is_transactional(),
            header.is_control(),
            timestamp_type(&header),
            header.max_timestamp,
            header.base_timestamp,
            header.max_timestamp,
            header.magic,
            header.compression().map_or("unknown", |codec| codec.name()),
        ))?;
        if print_records {
            print_batch_records(&header, &batch, crc_valid, out)
                .map_err(io_error(Path::new("<stdout>")))?;
        }
        position += size;
    }
    Ok(summary)
}

fn timestamp_type(header: &BatchHeader) -> &'static str {
    if header.is_log_append_time() {
        "LogAppendTime"
    } else {
        "CreateTime"
    }
}

fn print_batch_records(
    header: &BatchHeader,
    batch: &[u8],
    crc_valid: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    if !crc_valid {
        return writeln!(out, "| records not printed: the batch fails its CRC");
    }
    let records = match decode_records(batch) {
        Ok(records) => records,
        Err(error) => return writeln!(out, "| records could not be decoded: {error}"),
    };
    for record in records {
        let header_keys: Vec<&str> = record.headers.keys().map(|key| key.as_str()).collect();
        writeln!(
            out,
            "| offset: {} {}: {} keySize: {} valueSize: {} sequence: {} headerKeys: [{}] key: {} payload: {}",
            record.offset,
            timestamp_type(header),
            record.timestamp,
            record.key.as_ref().map_or(-1, |key| key.len() as i64),
            record.value.as_ref().map_or(-1, |value| value.len() as i64),
            record.sequence,
            header_keys.join(","),
            printable(record.key.as_deref()),
            printable(record.value.as_deref()),
        )?;
    }
    Ok(())
}

/// UTF-8 text as is, anything else as hex, null as `null`.
fn printable(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "null".to_string(),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => text.to_string(),
            Err(_) => {
                let mut hex = String::with_capacity(2 + bytes.len() * 2);
                hex.push_str("0x");
                for byte in bytes {
                    hex.push_str(&format!("{byte:02x}"));
                }
                hex
            }
        },
    }
}
