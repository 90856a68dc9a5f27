//! Log throughput against the file system it sits on.
//!
//! Every group pairs the log with a reference measured in the same run and the same directory: a
//! plain write or read of the same bytes to an ordinary file. The log's figure only means something
//! next to that reference, because the disk, the page cache and the machine's load move both alike.
//! The target is log >= 0.85 x raw throughput; after criterion's own report a table prints the ratios.
//!
//! - `append_16KiB_batches`, `append_1MiB_batches`: 1 KiB records in producer batches of Kafka's
//!   default `batch.size` and of its default `max.message.bytes`, appended to a fresh log (one
//!   segment, no fsync: Kafka's default flush policy leaves flushing to the OS).
//! - `sequential_read`: a consumer reading a page-cache-warm log from offset 0 in 1 MiB fetches,
//!   against 1 MiB reads of a file holding the same bytes.
//!
//! `WEIR_BENCH_DIR` picks the directory to measure in (default: the cargo target directory, a
//! stand-in for a broker's log.dirs). Under `cargo test --benches` criterion runs every benchmark
//! once and the data sets shrink so the run stays quick.

#[path = "support/criterion.rs"]
mod criterion_estimates;

use std::cell::{Cell, OnceCell};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput};
use criterion_estimates::{criterion_dir, mean_ns};
use tempfile::TempDir;
use weir::clock::{Clock, SystemClock};
use weir::storage::batch::validate_record_set;
use weir::storage::files::{FileHandleCache, SEALED_FILE_HANDLES_MAX};
use weir::storage::records::{ProducerRecord, encode_producer_batch};
use weir::storage::{AppendOrigin, BatchHeader, Compression, Log, LogConfig, LogOpenOptions};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Size of one record as it sits in the batch (length prefix, key and value included).
const RECORD_BYTES: usize = KIB;
/// Kafka's default producer `batch.size`.
const SMALL_BATCH_BYTES: usize = 16 * KIB;
/// The largest batch a broker with Kafka's default `max.message.bytes` (1 MiB + 12) accepts.
const LARGE_BATCH_BYTES: usize = MIB;
/// Kafka's default `max.partition.fetch.bytes`: what one fetch asks of one partition.
const PARTITION_FETCH_BYTES: usize = MIB;
/// The epoch the benchmark's leader appends in.
const LEADER_EPOCH: i32 = 0;
/// Throughput is compared at this fraction of the raw file's, or better.
const TARGET_RATIO: f64 = 0.85;
/// Name of the log's directory, in Kafka's `<topic>-<partition>` form.
const PARTITION_DIR: &str = "bench-0";

/// How much data each measurement moves. Benchmark mode uses enough to dwarf per-iteration noise;
/// test mode (`cargo test --benches`, an unoptimised build) only checks the code paths run.
#[derive(Debug, Clone, Copy)]
struct Scale {
    benchmarking: bool,
    /// Bytes appended per timed iteration.
    append_bytes: usize,
    /// Bytes in the data set every read iteration reads end to end.
    read_bytes: usize,
}

impl Scale {
    /// Mirrors criterion's own choice: it benchmarks only under `--bench` without `--test`.
    fn from_args() -> Scale {
        if criterion_estimates::benchmarking() {
            Scale {
                benchmarking: true,
                append_bytes: 64 * MIB,
                read_bytes: 256 * MIB,
            }
        } else {
            Scale {
                benchmarking: false,
                append_bytes: 2 * MIB,
                read_bytes: 4 * MIB,
            }
        }
    }
}

/// A log group whose two functions both ran in this process, so their estimates are fresh.
#[derive(Debug)]
struct Comparison {
    group: &'static str,
    reference: &'static str,
    subject: &'static str,
    /// Bytes moved per iteration by either function.
    bytes: u64,
}

fn main() {
    let scale = Scale::from_args();
    let scratch = scratch_dir();
    // Defaults first, so `--sample-size`, `--measurement-time` and friends still override them.
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let timestamp = SystemClock.now_ms();
    let small_batch = producer_batch(SMALL_BATCH_BYTES, timestamp);
    let large_batch = producer_batch(LARGE_BATCH_BYTES, timestamp);

    let mut comparisons = Vec::new();
    comparisons.extend(bench_append(
        &mut criterion,
        "append_16KiB_batches",
        &small_batch,
        scale,
        scratch.path(),
    ));
    comparisons.extend(bench_append(
        &mut criterion,
        "append_1MiB_batches",
        &large_batch,
        scale,
        scratch.path(),
    ));
    comparisons.extend(bench_sequential_read(
        &mut criterion,
        &small_batch,
        scale,
        scratch.path(),
    ));
    criterion.final_summary();

    if scale.benchmarking {
        print_ratios(&comparisons);
    } else if !comparisons.is_empty() {
        println!(
            "log vs raw ratios are only computed under `cargo bench` (test mode times nothing)"
        );
    }
}

/// Appends `batch` over and over: to a fresh file with `write_all` (`raw_write`), and to a fresh
/// log (`log_append`), which validates each batch and writes it with its offsets assigned.
fn bench_append(
    criterion: &mut Criterion,
    group_name: &'static str,
    batch: &[u8],
    scale: Scale,
    scratch: &Path,
) -> Option<Comparison> {
    let batches_per_iteration = (scale.append_bytes / batch.len()).max(1);
    let bytes = (batches_per_iteration * batch.len()) as u64;
    let (raw_ran, log_ran) = (Cell::new(false), Cell::new(false));
    let mut group = criterion.benchmark_group(group_name);
    group
        .throughput(Throughput::Bytes(bytes))
        // Each iteration is tens of milliseconds with its own setup: no point in linear sampling.
        .sampling_mode(SamplingMode::Flat);

    group.bench_function("raw_write", |bencher| {
        raw_ran.set(true);
        bencher.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let path = scratch.join("raw_write.bin");
                let mut file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)
                    .expect("creating the reference file");
                // The log's first batch is written in setup (see log_append), so the reference's is too.
                file.write_all(batch).expect("writing the reference file");
                let started = Instant::now();
                for _ in 0..batches_per_iteration {
                    file.write_all(batch).expect("writing the reference file");
                }
                elapsed += started.elapsed();
                drop(file);
                std::fs::remove_file(&path).expect("deleting the reference file");
            }
            elapsed
        });
    });

    group.bench_function("log_append", |bencher| {
        log_ran.set(true);
        bencher.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let mut log = open_log(&scratch.join(PARTITION_DIR));
                // A leader's first append in an epoch fsyncs leader-epoch-checkpoint: once per
                // election, not per produce, so it stays out of the steady state measured here.
                log.append(batch, LEADER_EPOCH)
                    .expect("appending the first batch");
                let started = Instant::now();
                for _ in 0..batches_per_iteration {
                    let appended = log
                        .append(batch, LEADER_EPOCH)
                        .expect("appending a valid batch");
                    std::hint::black_box(appended);
                }
                elapsed += started.elapsed();
                log.delete().expect("deleting the benchmark log");
            }
            elapsed
        });
    });
    group.finish();

    (raw_ran.get() && log_ran.get()).then_some(Comparison {
        group: group_name,
        reference: "raw_write",
        subject: "log_append",
        bytes,
    })
}

/// The data set both read functions read, written once and kept warm in the page cache.
struct ReadFixture {
    raw_path: PathBuf,
    log: Log,
    bytes: u64,
}

impl ReadFixture {
    /// Writes the same batches to a plain file and to a log, then fsyncs both so background
    /// writeback does not run in the middle of the measurement.
    fn create(batch: &[u8], scale: Scale, scratch: &Path) -> ReadFixture {
        let batches = (scale.read_bytes / batch.len()).max(1);
        let raw_path = scratch.join("raw_read.bin");
        let mut raw = File::create(&raw_path).expect("creating the reference file");
        let mut log = open_log(&scratch.join("read-0"));
        for _ in 0..batches {
            raw.write_all(batch).expect("writing the reference file");
            log.append(batch, LEADER_EPOCH)
                .expect("appending a valid batch");
        }
        raw.sync_all().expect("fsyncing the reference file");
        log.flush().expect("fsyncing the log");
        let bytes = (batches * batch.len()) as u64;
        assert_eq!(log.size_in_bytes(), bytes, "the log stores batches as sent");
        ReadFixture {
            raw_path,
            log,
            bytes,
        }
    }
}

/// Reads the whole data set sequentially: 1 MiB `pread`s of the plain file into one buffer
/// (`raw_read`), and fetches from the log from offset 0, each starting where the last batch
/// returned ended (`log_read`).
fn bench_sequential_read(
    criterion: &mut Criterion,
    batch: &[u8],
    scale: Scale,
    scratch: &Path,
) -> Option<Comparison> {
    const GROUP: &str = "sequential_read";
    // Built on first use, so a filter that skips both reads skips writing the data set too.
    let fixture_cell = OnceCell::new();
    let read_fixture = || fixture_cell.get_or_init(|| ReadFixture::create(batch, scale, scratch));
    let bytes = ((scale.read_bytes / batch.len()).max(1) * batch.len()) as u64;
    let (raw_ran, log_ran) = (Cell::new(false), Cell::new(false));
    let mut group = criterion.benchmark_group(GROUP);
    group
        .throughput(Throughput::Bytes(bytes))
        .sampling_mode(SamplingMode::Flat);

    group.bench_function("raw_read", |bencher| {
        raw_ran.set(true);
        let fixture = read_fixture();
        let file = File::open(&fixture.raw_path).expect("opening the reference file");
        let mut buffer = vec![0u8; PARTITION_FETCH_BYTES];
        bencher.iter_custom(|iterations| {
            let started = Instant::now();
            for _ in 0..iterations {
                let mut position = 0u64;
                loop {
                    let read = file
                        .read_at(&mut buffer, position)
                        .expect("reading the reference file");
                    if read == 0 {
                        break;
                    }
                    std::hint::black_box(&buffer[..read]);
                    position += read as u64;
                }
                assert_eq!(position, fixture.bytes, "read the whole reference file");
            }
            started.elapsed()
        });
    });

    group.bench_function("log_read", |bencher| {
        log_ran.set(true);
        let fixture = read_fixture();
        let log_end_offset = fixture.log.log_end_offset();
        bencher.iter_custom(|iterations| {
            let started = Instant::now();
            for _ in 0..iterations {
                let (mut offset, mut read) = (0u64, 0u64);
                while offset < log_end_offset {
                    let batches = fixture
                        .log
                        .read(offset, PARTITION_FETCH_BYTES)
                        .expect("reading the log");
                    offset = next_fetch_offset(&batches)
                        .expect("a read below the log end returns at least one whole batch");
                    read += batches.len() as u64;
                    std::hint::black_box(batches);
                }
                assert_eq!(read, fixture.bytes, "read the whole log");
            }
            started.elapsed()
        });
    });
    group.finish();

    (raw_ran.get() && log_ran.get()).then_some(Comparison {
        group: GROUP,
        reference: "raw_read",
        subject: "log_read",
        bytes,
    })
}

/// Where a consumer fetches next: one past the last offset of the last batch returned, found by
/// walking the batch headers as a consumer does.
fn next_fetch_offset(batches: &Bytes) -> Option<u64> {
    let (mut position, mut next_offset) = (0, None);
    while let Some(header) = BatchHeader::parse(&batches[position..]) {
        next_offset = Some(header.next_offset() as u64);
        position += header.total_size();
    }
    next_offset
}

/// A fresh, empty log with the broker's defaults (1 GiB segments, so no roll during a run).
fn open_log(dir: &Path) -> Log {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (log, _) = Log::open(
        dir,
        LogConfig::default(),
        LogOpenOptions::default(),
        clock,
        FileHandleCache::new(SEALED_FILE_HANDLES_MAX),
    )
    .expect("opening a fresh log");
    assert_eq!(log.log_end_offset(), 0, "the benchmark log starts empty");
    log
}

/// A producer's uncompressed batch of `RECORD_BYTES` records filling at most `batch_bytes`, as a
/// producer's `batch.size` bounds the whole batch, header included.
fn producer_batch(batch_bytes: usize, timestamp: i64) -> Vec<u8> {
    let records_count = batch_bytes / RECORD_BYTES;
    // Start from 1 KiB values and shrink them by the overshoot (header, lengths, keys) until the
    // batch fits; varint lengths barely change, so this settles in a step or two.
    let mut value_bytes = RECORD_BYTES;
    let batch = loop {
        let batch = encode_batch(records_count, value_bytes, timestamp);
        if batch.len() <= batch_bytes {
            break batch;
        }
        value_bytes = value_bytes
            .checked_sub((batch.len() - batch_bytes).div_ceil(records_count))
            .expect("record overhead is far below a record");
    };
    // Checked once here, outside any timing: the log must accept this batch as a client's, whole.
    let validated = validate_record_set(&batch, usize::MAX, AppendOrigin::Client)
        .expect("the benchmark batch is valid");
    assert_eq!(validated.len(), 1, "the encoder produced exactly one batch");
    assert_eq!(validated[0].header.records_count as usize, records_count);
    assert!(
        batch.len() <= LogConfig::default().max_message_bytes,
        "the batch fits the default max.message.bytes"
    );
    batch
}

fn encode_batch(records_count: usize, value_bytes: usize, timestamp: i64) -> Vec<u8> {
    let keys: Vec<String> = (0..records_count).map(|i| format!("key-{i}")).collect();
    let value = vec![b'v'; value_bytes];
    let records: Vec<ProducerRecord<'_>> = keys
        .iter()
        .map(|key| ProducerRecord {
            key: Some(key.as_bytes()),
            value: Some(&value),
            headers: &[],
            timestamp,
        })
        .collect();
    encode_producer_batch(&records, Compression::None).expect("encoding the benchmark batch")
}

/// A directory for the benchmark's files, removed on exit. Both sides of every comparison live in
/// it, so they share a file system and its state.
fn scratch_dir() -> TempDir {
    let base = std::env::var_os("WEIR_BENCH_DIR")
        .map(PathBuf::from)
        .or_else(cargo_target_dir)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).expect("creating the benchmark directory");
    tempfile::Builder::new()
        .prefix("weir-bench-log-")
        .tempdir_in(&base)
        .expect("creating a scratch directory")
}

/// `$CARGO_TARGET_DIR`, or the nearest directory above this binary holding cargo's
/// `CACHEDIR.TAG` (the binary's depth below it differs between cargo's layouts).
fn cargo_target_dir() -> Option<PathBuf> {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            exe.ancestors()
                .find(|dir| dir.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
}

fn print_ratios(comparisons: &[Comparison]) {
    if comparisons.is_empty() {
        return;
    }
    let criterion_dir = criterion_dir();
    let gib_per_s = |bytes: u64, ns: f64| bytes as f64 / ns / (1u64 << 30) as f64 * 1e9;
    println!();
    println!("log vs raw file, same run, same directory (target: log >= {TARGET_RATIO:.2} x raw)");
    println!(
        "{:<22} {:>14} {:>14} {:>7}  verdict",
        "group", "raw", "log", "ratio"
    );
    for comparison in comparisons {
        let reference = mean_ns(&criterion_dir, comparison.group, comparison.reference);
        let subject = mean_ns(&criterion_dir, comparison.group, comparison.subject);
        let (Some(reference), Some(subject)) = (reference, subject) else {
            println!(
                "{:<22} no estimates under {}",
                comparison.group,
                criterion_dir.display()
            );
            continue;
        };
        // Same bytes per iteration on both sides, so the throughput ratio is the inverse time ratio.
        let ratio = reference / subject;
        println!(
            "{:<22} {:>9.3} GiB/s {:>9.3} GiB/s {:>7.3}  {}",
            comparison.group,
            gib_per_s(comparison.bytes, reference),
            gib_per_s(comparison.bytes, subject),
            ratio,
            if ratio >= TARGET_RATIO {
                "PASS"
            } else {
                "BELOW"
            }
        );
    }
}
