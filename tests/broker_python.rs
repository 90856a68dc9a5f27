//! Third-party clients against a real broker: `tests/clients/python_clients.py` drives
//! confluent-kafka, kafka-python and kcat against a `weir serve` started here.
//!
//! The clients are not Rust dependencies, so a machine may lack them. Under CI (`CI` set) or
//! with `WEIR_REQUIRE_CLIENTS=1` a missing client fails the test; elsewhere the test prints why
//! it skipped and passes. Python comes from `WEIR_PYTHON`, else `.venv/bin/python` at the repo
//! root; kcat from `PATH`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use weir_tests::broker::BrokerProcess;
use weir_tests::clients::{client_scripts_dir, missing, python_with_clients, run, venv_python};

/// Bound on one run of the script; its own client calls time out well before.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn script() -> PathBuf {
    client_scripts_dir().join("python_clients.py")
}

/// Starts a broker and runs the script's `sections` with `python`.
fn run_sections(python: &Path, sections: &str) -> anyhow::Result<()> {
    let broker = BrokerProcess::start(&[])?;
    let script = script();
    let script = script.to_str().context("the script path is not UTF-8")?;
    let bootstrap = broker.bootstrap();
    let (success, output) = run(
        python,
        &[script, "--bootstrap", &bootstrap, "--sections", sections],
        SCRIPT_TIMEOUT,
    )?;
    // Shown on failure, and with --nocapture: which checks ran and how long each took.
    println!("{output}");
    if !success {
        bail!(
            "python_clients.py --sections {sections} failed:\n{output}\nbroker log:\n{}",
            broker.log()
        );
    }
    Ok(())
}

#[test]
fn confluent_kafka_and_kafka_python() -> anyhow::Result<()> {
    let Some(python) = python_with_clients()? else {
        return Ok(());
    };
    run_sections(&python, "confluent,kafka-python")
}

#[test]
fn kcat() -> anyhow::Result<()> {
    let kcat_found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("kcat").is_file()));
    if !kcat_found {
        return missing("kcat is not on PATH (apt-get install kcat)".to_string());
    }
    // The kcat section needs only the standard library: any python 3 will do.
    let python = venv_python().unwrap_or_else(|| PathBuf::from("python3"));
    run_sections(&python, "kcat")
}
