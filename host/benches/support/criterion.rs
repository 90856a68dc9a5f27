//! Reading criterion's own estimates back, for the summary tables. Included with `#[path]`.

use std::path::{Path, PathBuf};

/// Whether this run measures for real, decided as criterion decides it: `--bench` without
/// `--test` (`cargo bench`); `cargo test --benches` runs each routine once as a smoke test.
pub fn benchmarking() -> bool {
    let has = |flag: &str| std::env::args().any(|arg| arg == flag);
    has("--bench") && !has("--test")
}

/// Where criterion keeps its estimates, found the way criterion finds it: `$CRITERION_HOME`,
/// `$CARGO_TARGET_DIR/criterion`, else the nearest `criterion` directory above this binary.
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .map(|dir| dir.join("criterion"))
                .find(|dir| dir.is_dir())
        })
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Mean time per iteration in ns from criterion's `<group>/<function>/new/estimates.json`.
pub fn mean_ns(criterion_dir: &Path, group: &str, function: &str) -> Option<f64> {
    let path = criterion_dir
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let json = std::fs::read_to_string(path).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&json).ok()?;
    estimates["mean"]["point_estimate"].as_f64()
}
