//! Tidy checks that run inside `cargo test`, so CI enforces them without extra steps
//! (rust-analyzer's habit): formatting, the code map, and reasons on ignored tests.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.ends_with("target") {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn code_is_formatted() {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["fmt", "--all", "--", "--check"])
        .current_dir(root())
        .output()
        .expect("run cargo fmt");
    assert!(
        output.status.success(),
        "cargo fmt --all -- --check failed; run `cargo fmt --all`:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every module of the storage, policy, group and controller rooms appears in ARCHITECTURE.md's
/// code map, so the map cannot silently rot.
#[test]
fn the_code_map_names_every_storage_policy_group_and_controller_module() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    for room in ["storage", "policy", "group", "controller"] {
        let mut files = Vec::new();
        rust_files(&root().join("host/src").join(room), &mut files);
        for file in files {
            let name = file
                .file_name()
                .and_then(|name| name.to_str())
                .expect("utf-8 file name");
            if name == "mod.rs" {
                continue;
            }
            assert!(
                map.contains(&format!("`{name}`")),
                "ARCHITECTURE.md does not mention host/src/{room}/{name}"
            );
        }
    }
}

/// An ignored test must say why, right there (`#[ignore = "reason"]`).
#[test]
fn ignored_tests_give_a_reason() {
    let mut files = Vec::new();
    for dir in ["host", "tests", "plugins", "examples"] {
        rust_files(&root().join(dir), &mut files);
    }
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for (number, line) in text.lines().enumerate() {
            assert!(
                line.trim() != "#[ignore]",
                "{}:{}: #[ignore] without a reason",
                file.display(),
                number + 1
            );
        }
    }
}
