//! How long a broker's partitions take to come back after a clean shutdown: opening every log
//! (`LogManager::open`) and taking each over as a `Partition`, which restores idempotent producer
//! state. Two ways, alternating in the same run on the same files:
//!
//! - **header scan** (the reference, and all a restart did before producer-state snapshots): no
//!   snapshot on disk, so every batch header of every segment is read;
//! - **snapshot**: each partition's `<offset>.snapshot` at its log end offset, written as a clean
//!   shutdown writes it, so no header is read.
//!
//! Each way runs `ROUNDS` times with the page cache as the previous round left it (warm: a
//! process restart); with `WEIR_BENCH_DROP_CACHES=1` (root) the cache is dropped before every
//! round (cold: a machine restart). The table takes each way's fastest round.
//!
//! `cargo bench -p weir --bench restart`; `WEIR_BENCH_RESTART_PARTITIONS` (default 1000) and
//! `WEIR_BENCH_RESTART_MIB` (MiB per partition, default 4) size it, `WEIR_BENCH_DIR` picks the
//! parent directory (default: the system's temporary directory). Under `cargo test --benches` it
//! runs once on a few small partitions, and no figure means anything.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::clock::{Clock, SystemClock};
use weir::replication::Partition;
use weir::storage::records::{ProducerRecord, encode_producer_batch};
use weir::storage::{Compression, LogConfig, LogManager, TopicPartition};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Kafka's default producer `batch.size`: the batch size that puts the most headers in a log.
const BATCH_BYTES: usize = 16 * KIB;
const RECORD_VALUE_BYTES: usize = KIB - 64;
/// Rounds of each way, alternating.
const ROUNDS: usize = 3;
const LEADER_EPOCH: i32 = 0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let (partitions, mib_each) = if benchmarking {
        (
            env_usize("WEIR_BENCH_RESTART_PARTITIONS", 1000),
            env_usize("WEIR_BENCH_RESTART_MIB", 4),
        )
    } else {
        (3, 1)
    };
    let drop_caches = std::env::var_os("WEIR_BENCH_DROP_CACHES").is_some_and(|value| value == "1");
    let parent = std::env::var_os("WEIR_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("weir-bench-restart-")
        .tempdir_in(&parent)?;

    let batch = one_batch()?;
    let batches_each = (mib_each * MIB).div_ceil(batch.len());
    let written = Instant::now();
    write_logs(dir.path(), partitions, batches_each, &batch)?;
    println!(
        "{partitions} partitions x {batches_each} batches of {:.1} KiB ({:.1} MiB each) written in {:.1?}",
        batch.len() as f64 / KIB as f64,
        (batches_each * batch.len()) as f64 / MIB as f64,
        written.elapsed()
    );

    let mut scans = Vec::new();
    let mut snapshots = Vec::new();
    for round in 0..ROUNDS {
        // No snapshot: the header scan; it then leaves snapshots for the next restart.
        remove_snapshots(dir.path())?;
        scans.push(restart(dir.path(), drop_caches, true)?);
        snapshots.push(restart(dir.path(), drop_caches, false)?);
        println!(
            "round {round}: header scan {:.1?}, snapshot {:.1?}",
            scans[round], snapshots[round]
        );
    }
    let scan = scans.iter().min().copied().unwrap_or_default();
    let snapshot = snapshots.iter().min().copied().unwrap_or_default();
    let headers = (partitions * batches_each) as f64;
    println!();
    println!(
        "restart of {partitions} partitions x {mib_each} MiB, page cache {}:",
        if drop_caches { "cold" } else { "warm" }
    );
    println!(
        "  header scan (reference)  {scan:>10.1?}  ({:.2} µs per header, {headers:.0} headers)",
        scan.as_secs_f64() * 1e6 / headers
    );
    println!(
        "  snapshot                 {snapshot:>10.1?}  ratio {:.3} of the header scan",
        snapshot.as_secs_f64() / scan.as_secs_f64().max(f64::MIN_POSITIVE)
    );
    println!(
        "  at 100 MiB per partition the header scan would read {:.0} headers ({:.1?} at this rate); the snapshot path reads none",
        headers * 100.0 / mib_each as f64,
        scan.mul_f64(100.0 / mib_each as f64)
    );
    Ok(())
}

/// One 16 KiB batch of 1 KiB records, appended over and over (each append gets its own offsets).
fn one_batch() -> anyhow::Result<Vec<u8>> {
    let value = vec![b'v'; RECORD_VALUE_BYTES];
    let records: Vec<ProducerRecord<'_>> = (0..BATCH_BYTES / KIB)
        .map(|_| ProducerRecord {
            key: None,
            value: Some(&value),
            headers: &[],
            timestamp: SystemClock.now_ms(),
        })
        .collect();
    encode_producer_batch(&records, Compression::None).map_err(anyhow::Error::msg)
}

fn open_manager(dir: &Path) -> anyhow::Result<LogManager> {
    Ok(LogManager::open(dir, Arc::new(SystemClock), |_| {
        LogConfig::default()
    })?)
}

fn write_logs(
    dir: &Path,
    partitions: usize,
    batches_each: usize,
    batch: &[u8],
) -> anyhow::Result<()> {
    let manager = open_manager(dir)?;
    for index in 0..partitions {
        let tp = TopicPartition::new("restart", index as u32);
        let log = manager.get_or_create(&tp, LogConfig::default())?;
        let mut log = log.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        for _ in 0..batches_each {
            log.append(batch, LEADER_EPOCH)?;
        }
    }
    manager.shutdown()?;
    Ok(())
}

/// Opens every log and takes each over as a partition, timed; then, untimed, writes producer-state
/// snapshots when asked (as a clean shutdown does) and shuts down cleanly.
fn restart(dir: &Path, drop_caches: bool, write_snapshots: bool) -> anyhow::Result<Duration> {
    if drop_caches {
        drop_page_cache()?;
    }
    let started = Instant::now();
    let manager = open_manager(dir)?;
    let mut partitions = Vec::new();
    for index in 0.. {
        let tp = TopicPartition::new("restart", index);
        let Some(log) = manager.get(&tp) else { break };
        partitions.push(Partition::new(tp, log, LEADER_EPOCH)?);
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(!partitions.is_empty(), "no partitions reopened");
    if write_snapshots {
        for partition in &partitions {
            partition.write_producer_snapshot()?;
        }
    }
    manager.shutdown()?;
    Ok(elapsed)
}

fn remove_snapshots(dir: &Path) -> anyhow::Result<()> {
    for partition in std::fs::read_dir(dir)? {
        let partition = partition?.path();
        if !partition.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&partition)? {
            let file = file?.path();
            if file
                .extension()
                .is_some_and(|extension| extension == "snapshot")
            {
                std::fs::remove_file(file)?;
            }
        }
    }
    Ok(())
}

fn drop_page_cache() -> anyhow::Result<()> {
    // Dirty pages are written first: drop_caches only drops clean ones.
    std::process::Command::new("sync").status()?;
    std::fs::write("/proc/sys/vm/drop_caches", b"3")
        .map_err(|error| anyhow::anyhow!("dropping the page cache needs root: {error}"))
}
