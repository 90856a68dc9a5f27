//! A real crash: a child process appends to a log through a `LogManager` and is SIGKILLed at a
//! seeded random point; the parent then recovers the directory and checks that nothing flushed
//! (or even written) was lost, nothing torn was kept, and the log carries on.
//!
//! The child is this very test binary, re-run with `--exact crash_child_appends_until_killed` and
//! the directory in an environment variable; without the variable that test returns at once, so
//! it is harmless in a normal run.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use weir::storage::TopicPartition;
use weir_tests::{
    BatchSpec, XorShift64, append_spec, expected_epochs, layout, lock, open_manager,
    read_all_batches, read_recovery_point, test_config, verify_batches, verify_log,
};

const CHILD_TEST: &str = "crash_child_appends_until_killed";
const CHILD_DIR_ENV: &str = "WEIR_CRASH_CHILD_DIR";
const CHILD_SEED_ENV: &str = "WEIR_CRASH_CHILD_SEED";
/// Marks the child's protocol lines among the test harness's own output on the same stdout.
const PROGRESS_PREFIX: &str = "weir-crash-child:";
const ITERATIONS: u64 = 8;
/// Small segments, so a run of a few hundred batches rolls many times and a kill can land in a
/// roll as well as in an append, a flush or a checkpoint write.
const SEGMENT_BYTES: u64 = 64 * 1024;
/// Bounds every wait on the child, so a hung child fails the test instead of hanging it.
const WAIT_LIMIT: Duration = Duration::from_secs(30);
/// A child whose parent died without killing it stops by itself.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
/// SIGKILL, the signal `Child::kill` sends on Unix.
const SIGKILL: i32 = 9;

fn partition() -> TopicPartition {
    TopicPartition::new("crash", 0)
}

/// The leader epoch batch `seq` is appended with: it changes every 40 batches, so the epoch
/// cache has entries to lose (or keep) across the crash.
fn epoch_of(seq: u64) -> i32 {
    1 + (seq / 40) as i32
}

/// The child half. Does nothing unless the parent set the directory variable.
#[test]
fn crash_child_appends_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let seed = std::env::var(CHILD_SEED_ENV)
        .ok()
        .and_then(|seed| seed.parse().ok())
        .expect("the parent passes a numeric seed with the directory");
    if let Err(error) = run_child(Path::new(&dir), seed) {
        panic!("crash child failed: {error:#}");
    }
}

/// Appends batch 0, 1, 2, ... forever, flushing and checkpointing every 1 to 6 batches, and
/// reports each step on stdout only after it returned, so every line is a promise the recovered
/// log must keep.
fn run_child(dir: &Path, seed: u64) -> anyhow::Result<()> {
    let config = test_config(SEGMENT_BYTES);
    let manager = open_manager(dir, &config)?;
    let shared = manager.get_or_create(&partition(), config)?;
    let mut rng = XorShift64::new(seed);
    let mut until_flush = rng.between(1, 6);
    let deadline = Instant::now() + CHILD_LIFETIME;
    let mut stdout = std::io::stdout();
    for seq in 0u64.. {
        ensure!(
            Instant::now() < deadline,
            "never killed: the parent must have died"
        );
        let written = append_spec(&mut lock(&shared), BatchSpec::new(seq), epoch_of(seq))?;
        writeln!(
            stdout,
            "{PROGRESS_PREFIX} appended {seq} next {}",
            written.next_offset()
        )?;
        until_flush -= 1;
        if until_flush == 0 {
            // The lock is released before checkpointing: the manager locks every log itself.
            let recovery_point = {
                let mut log = lock(&shared);
                log.flush()?;
                log.recovery_point()
            };
            manager.checkpoint()?;
            writeln!(
                stdout,
                "{PROGRESS_PREFIX} flushed up to offset {recovery_point}"
            )?;
            until_flush = rng.between(1, 6);
        }
        stdout.flush()?;
    }
    Ok(())
}

/// What the child reported before it died.
#[derive(Debug, Default)]
struct Progress {
    lines: u64,
    /// One past the last offset of the last batch the child said it appended.
    appended_up_to: u64,
    /// The recovery point of the last flush + checkpoint the child said completed.
    flushed_up_to: Option<u64>,
}

impl Progress {
    fn record(&mut self, line: &str) -> anyhow::Result<()> {
        let Some(message) = line.strip_prefix(PROGRESS_PREFIX) else {
            // The test harness's own output ("running 1 test", ...).
            return Ok(());
        };
        let words: Vec<&str> = message.split_whitespace().collect();
        match words.as_slice() {
            ["appended", _seq, "next", next] => {
                self.appended_up_to = next.parse().context("bad next offset")?;
            }
            ["flushed", "up", "to", "offset", offset] => {
                self.flushed_up_to = Some(offset.parse().context("bad flushed offset")?);
            }
            _ => bail!("unexpected line from the child: {line}"),
        }
        self.lines += 1;
        Ok(())
    }
}

/// The running child. Dropping it kills and reaps it, so no failure path leaves it running.
struct ChildGuard {
    child: Child,
    lines: Receiver<String>,
}

impl ChildGuard {
    fn spawn(dir: &Path, seed: u64) -> anyhow::Result<ChildGuard> {
        let exe = std::env::current_exe().context("finding the test binary")?;
        let mut child = Command::new(exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir)
            .env(CHILD_SEED_ENV, seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the crash child")?;
        let stdout = child.stdout.take().context("the child's stdout is piped")?;
        let (sender, lines) = mpsc::channel();
        // A thread reads, so the parent can wait on the channel with a deadline; it ends at EOF,
        // which comes at the latest when the child is killed.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(ChildGuard { child, lines })
    }

    /// Reads progress until `target` protocol lines have arrived.
    fn wait_for_lines(&mut self, target: u64, progress: &mut Progress) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT_LIMIT;
        while progress.lines < target {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => progress.record(&line)?,
                Err(RecvTimeoutError::Timeout) => {
                    bail!("no progress from the child within {WAIT_LIMIT:?}: {progress:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().context("checking on the child")?;
                    bail!("the child stopped early ({status:?}) after {progress:?}")
                }
            }
        }
        Ok(())
    }

    /// SIGKILLs the child, reaps it, and reads whatever it wrote before dying: those lines are
    /// promises too.
    fn kill(mut self, progress: &mut Progress) -> anyhow::Result<()> {
        self.child.kill().context("killing the child")?;
        let deadline = Instant::now() + WAIT_LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().context("reaping the child")? {
                break status;
            }
            ensure!(
                Instant::now() < deadline,
                "the child outlived SIGKILL by {WAIT_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        ensure!(
            status.signal() == Some(SIGKILL),
            "the child ended by itself ({status}) instead of by SIGKILL"
        );
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => progress.record(&line)?,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Err(RecvTimeoutError::Timeout) => bail!("the child's stdout never closed"),
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Already dead after a successful `kill`, and then these fail harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sigkill_at_random_points_keeps_every_promise() {
    for iteration in 0..ITERATIONS {
        crash_and_recover(iteration)
            .unwrap_or_else(|error| panic!("iteration {iteration}: {error:#}"));
    }
}

fn crash_and_recover(iteration: u64) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir: PathBuf = temp.path().join("data");
    let tp = partition();
    let config = test_config(SEGMENT_BYTES);
    let mut rng = XorShift64::new(iteration);
    // The first iteration dies within a few lines, likely before its first checkpoint; the
    // others anywhere up to a few hundred batches in, many segments later.
    let target = if iteration == 0 {
        rng.between(1, 3)
    } else {
        rng.between(1, 300)
    };

    let mut progress = Progress::default();
    let mut child = ChildGuard::spawn(&dir, iteration ^ 0xc4a5)?;
    child.wait_for_lines(target, &mut progress)?;
    child.kill(&mut progress)?;

    // Read before reopening: opening rewrites the checkpoint.
    let checkpointed = read_recovery_point(&dir, &tp)?.unwrap_or(0);
    ensure!(
        checkpointed >= progress.flushed_up_to.unwrap_or(0),
        "the checkpoint says {checkpointed} but the child reported a flush to {progress:?}"
    );

    let manager = open_manager(&dir, &config)?;
    ensure!(
        !manager.had_clean_shutdown(),
        "a killed child left a clean-shutdown marker"
    );
    let report = manager
        .recovery_report(&tp)
        .cloned()
        .context("no recovery report for the partition")?;
    let shared = manager.get(&tp).context("the partition was not loaded")?;
    let mut log = lock(&shared);
    let log_end_offset = log.log_end_offset();
    eprintln!(
        "iteration {iteration}: killed after {} lines, checkpoint {checkpointed}, log end {log_end_offset}, {report:?}",
        progress.lines
    );

    // (a) Everything below the checkpointed recovery point survived...
    ensure!(
        checkpointed <= log_end_offset,
        "recovery point {checkpointed} is past the recovered log end {log_end_offset}"
    );
    // ... and so did every append that returned: a process crash leaves the page cache intact.
    ensure!(
        progress.appended_up_to <= log_end_offset,
        "the child appended up to {} but only {log_end_offset} survived",
        progress.appended_up_to
    );
    // (b) The log holds whole, valid batches with contiguous offsets from its start to its end...
    let stored = read_all_batches(&log)?;
    // ... and each is byte for byte the batch the child wrote at that position.
    let expected = layout(
        (0..stored.len() as u64).map(|seq| (BatchSpec::new(seq), epoch_of(seq))),
        0,
    );
    verify_batches(&stored, &expected)?;
    ensure!(
        checkpointed == 0 || expected.iter().any(|w| w.next_offset() == checkpointed),
        "the checkpointed recovery point {checkpointed} is not a batch boundary"
    );
    ensure!(
        report.segments_deleted == 0,
        "a crash cannot corrupt a sealed segment, yet recovery deleted segments: {report:?}"
    );
    ensure!(
        log.epoch_entries() == expected_epochs(&expected),
        "epoch cache {:?} does not match the recovered batches",
        log.epoch_entries()
    );

    // (c) The recovered log takes appends, and reopening again changes nothing.
    let mut all = expected;
    for seq in all.len() as u64..all.len() as u64 + 3 {
        all.push(append_spec(&mut log, BatchSpec::new(seq), epoch_of(seq))?);
    }
    drop(log);
    manager.flush_all()?;
    drop(shared);
    drop(manager);

    let manager = open_manager(&dir, &config)?;
    let report = manager
        .recovery_report(&tp)
        .cloned()
        .context("no recovery report on the second reopen")?;
    ensure!(
        report.bytes_truncated == 0 && report.segments_deleted == 0,
        "the second reopen cut data from a recovered log: {report:?}"
    );
    let shared = manager
        .get(&tp)
        .context("partition lost on the second reopen")?;
    {
        let log = lock(&shared);
        verify_log(&log, &all)?;
        ensure!(
            log.epoch_entries() == expected_epochs(&all),
            "epoch cache changed on the second reopen: {:?}",
            log.epoch_entries()
        );
    }
    manager.shutdown()?;
    drop(shared);
    drop(manager);

    // And once more after a clean shutdown, which trusts the files instead of scanning them.
    let manager = open_manager(&dir, &config)?;
    ensure!(manager.had_clean_shutdown(), "shutdown wrote no marker");
    let shared = manager.get(&tp).context("partition lost after shutdown")?;
    verify_log(&lock(&shared), &all)?;
    Ok(())
}
