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

/// The repository's root (the `weir-tests` package's directory).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The python the client tests use (`WEIR_PYTHON`, else the repository's `.venv`), if it exists.
pub fn venv_python() -> Option<std::path::PathBuf> {
    match std::env::var_os("WEIR_PYTHON") {
        Some(path) => Some(path.into()),
        None => {
            let path = repo_root().join(".venv/bin/python");
            path.exists().then_some(path)
        }
    }
}

/// A python that imports confluent-kafka and kafka-python; `None` when the test should be
/// skipped (an error instead when clients are required).
pub fn python_with_clients() -> anyhow::Result<Option<std::path::PathBuf>> {
    let Some(python) = venv_python() else {
        missing(format!(
            "no python with the clients: set WEIR_PYTHON or create {}",
            repo_root().join(".venv").display()
        ))?;
        return Ok(None);
    };
    let (has_modules, output) = run(
        &python,
        &["-c", "import confluent_kafka, kafka"],
        Duration::from_secs(30),
    )?;
    if !has_modules {
        missing(format!(
            "{} cannot import confluent_kafka and kafka (pip install confluent-kafka \
             kafka-python):\n{output}",
            python.display()
        ))?;
        return Ok(None);
    }
    Ok(Some(python))
}

/// Where the client scripts live (`tests/clients`: Python, and Node.js with `node_modules` after
/// `npm ci`).
pub fn client_scripts_dir() -> std::path::PathBuf {
    repo_root().join("tests/clients")
}

/// `node`, when it is on PATH and kafkajs is installed in [`client_scripts_dir`]; `None` when the
/// test should be skipped (an error instead when clients are required).
pub fn node_with_kafkajs() -> anyhow::Result<Option<std::path::PathBuf>> {
    let node = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("node"))
            .find(|candidate| candidate.is_file())
    });
    let Some(node) = node else {
        missing("node is not on PATH".to_string())?;
        return Ok(None);
    };
    if !client_scripts_dir().join("node_modules/kafkajs").is_dir() {
        missing(format!(
            "kafkajs is not installed (npm ci --prefix {})",
            client_scripts_dir().display()
        ))?;
        return Ok(None);
    }
    Ok(Some(node))
}
