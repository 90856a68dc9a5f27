//! Running third-party clients (Python, kcat, Node.js) from the broker tests.
//!
//! The clients are not Rust dependencies, so a machine may lack them. Under CI (`CI` set) or
//! with `WEIR_REQUIRE_CLIENTS=1` a missing client fails the test; elsewhere the test prints why
//! it skipped and passes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Whether missing clients are a failure here rather than a reason to skip.
pub fn clients_required() -> bool {
    std::env::var_os("CI").is_some_and(|value| !value.is_empty() && value != "false")
        || std::env::var("WEIR_REQUIRE_CLIENTS").is_ok_and(|value| value == "1")
}

/// Fails under CI; elsewhere prints why the test is skipped.
pub fn missing(reason: String) -> anyhow::Result<()> {
    if clients_required() {
        bail!("{reason} (required because CI or WEIR_REQUIRE_CLIENTS=1 is set)");
    }
    eprintln!("skipping: {reason}");
    Ok(())
}

/// Runs `program args` to completion within `timeout`, returning (success, stdout + stderr).
pub fn run(program: &Path, args: &[&str], timeout: Duration) -> anyhow::Result<(bool, String)> {
    let directory = tempfile::tempdir()?;
    let output_path = directory.path().join("output");
    let output = std::fs::File::create(&output_path)?;
    // Output goes to a file rather than a pipe, so a chatty child can never block on a full
    // pipe while this side only polls for its exit.
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .env("PYTHONUNBUFFERED", "1")
        // cargo points LD_LIBRARY_PATH at build outputs, among them the librdkafka.so that
        // rdkafka-sys builds; kcat would load that one instead of the system's and test a
        // different client than a user runs.
        .env_remove("LD_LIBRARY_PATH")
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&output_path).unwrap_or_default();
    match status {
        Some(status) => Ok((status.success(), text)),
        None => bail!(
            "{} {args:?} did not finish within {timeout:?}:\n{text}",
            program.display()
        ),
    }
}
