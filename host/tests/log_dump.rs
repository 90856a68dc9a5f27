//! `weir log dump` against real segment files: what it prints for good data, and that damaged
//! files and bad paths get a clear message and a non-zero exit, never a panic.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use proptest::prelude::*;
use weir::clock::SystemClock;
use weir::storage::files::FileHandleCache;
use weir::storage::records::{ProducerRecord, encode_producer_batch};
use weir::storage::{Compression, Log, LogConfig, LogOpenOptions};

const TRACE: &[(&str, Option<&[u8]>)] = &[("trace", Some(b"abc"))];

fn record<'a>(i: usize, key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> ProducerRecord<'a> {
    ProducerRecord {
        key,
        value,
        headers: TRACE,
        timestamp: 1_700_000_000_000 + i as i64,
    }
}

fn encode(records: &[ProducerRecord<'_>], compression: Compression) -> Vec<u8> {
    encode_producer_batch(records, compression).expect("encode")
}

/// A partition directory with three batches: plain text, a null key and binary value, and zstd.
fn write_log(dir: &Path) {
    let (mut log, _) = Log::open(
        dir,
        LogConfig::default(),
        LogOpenOptions::default(),
        Arc::new(SystemClock),
        FileHandleCache::new(4),
    )
    .expect("open");
    let plain = encode(
        &[
            record(0, Some(b"k0"), Some(b"hello")),
            record(1, Some(b"k1"), Some(b"world")),
        ],
        Compression::None,
    );
    log.append(&plain, 3).expect("append");
    let binary = encode(
        &[record(0, None, Some(&[0xff, 0x00, 0x10]))],
        Compression::None,
    );
    log.append(&binary, 3).expect("append");
    let compressed = encode(
        &[
            record(0, Some(b"z"), Some(b"squeezed")),
            record(1, Some(b"z"), None),
        ],
        Compression::Zstd,
    );
    log.append(&compressed, 4).expect("append");
    log.flush().expect("flush");
}

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("run weir")
}

fn segment(dir: &Path) -> String {
    dir.join("00000000000000000000.log").display().to_string()
}

#[test]
fn dump_prints_every_batch_and_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path());
    let output = weir(&["log", "dump", &segment(dir.path()), "--records"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let batches: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("baseOffset:"))
        .collect();
    assert_eq!(batches.len(), 3, "{stdout}");
    assert!(
        batches[0].starts_with("baseOffset: 0 lastOffset: 1 count: 2 "),
        "{}",
        batches[0]
    );
    assert!(batches[0].contains("partitionLeaderEpoch: 3"));
    assert!(batches[0].contains("producerId: -1 producerEpoch: -1"));
    assert!(batches[0].contains("compresscodec: none crcValid: true"));
    assert!(batches[0].contains("baseTimestamp: 1700000000000 maxTimestamp: 1700000000001"));
    assert!(batches[2].starts_with("baseOffset: 3 lastOffset: 4 count: 2 "));
    assert!(batches[2].contains("partitionLeaderEpoch: 4"));
    assert!(batches[2].contains("compresscodec: zstd"));
    let records: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("| offset:"))
        .collect();
    assert_eq!(records.len(), 5, "{stdout}");
    assert!(
        records[0].contains("key: k0 payload: hello"),
        "{}",
        records[0]
    );
    assert!(records[0].contains("headerKeys: [trace]"));
    assert!(
        records[2].contains("keySize: -1 valueSize: 3"),
        "{}",
        records[2]
    );
    assert!(
        records[2].contains("key: null payload: 0xff0010"),
        "{}",
        records[2]
    );
    assert!(
        records[3].contains("offset: 3 ") && records[3].contains("payload: squeezed"),
        "{}",
        records[3]
    );
    assert!(records[4].contains("payload: null"), "{}", records[4]);

    // A partition directory dumps all its segments; indexes dump too.
    let whole = weir(&["log", "dump", &dir.path().display().to_string()]);
    assert!(whole.status.success());
    assert_eq!(
        String::from_utf8_lossy(&whole.stdout)
            .lines()
            .filter(|l| l.starts_with("baseOffset:"))
            .count(),
        3
    );
    let index = dir
        .path()
        .join("00000000000000000000.timeindex")
        .display()
        .to_string();
    assert!(weir(&["log", "dump", &index]).status.success());
}

#[test]
fn damaged_files_get_a_message_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path());
    let path = segment(dir.path());
    let mut bytes = std::fs::read(&path).expect("read");
    // Flip a byte in the first batch's value: its CRC fails, the others still print.
    bytes[70] ^= 0x55;
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    std::fs::write(&path, &bytes).expect("write");
    let output = weir(&["log", "dump", &path, "--records"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("crcValid: false"), "{stdout}");
    assert!(
        stdout.contains("records not printed: the batch fails its CRC"),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.contains("crcValid: true"))
            .count(),
        2
    );
    assert!(stdout.contains("13 trailing bytes at position"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("is damaged"));
}

#[test]
fn bad_paths_are_named() {
    let missing = weir(&["log", "dump", "/nonexistent/00000000000000000000.log"]);
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("/nonexistent/00000000000000000000.log") && stderr.contains("No such file"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, "hi").expect("write");
    let wrong = weir(&["log", "dump", &other.display().to_string()]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not a segment file"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// Fuzz-style: any bytes as a segment or index file dump without panicking.
    #[test]
    fn dumping_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), records: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["00000000000000000000.log", "00000000000000000000.index", "00000000000000000000.timeindex"] {
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes).expect("write");
            let mut out = Vec::new();
            let _ = weir::tools::log_dump::dump(&path, records, &mut out);
        }
    }
}
