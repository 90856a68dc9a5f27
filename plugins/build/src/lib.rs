//! Builds plugin crates to WebAssembly components: `cargo build --target wasm32-unknown-unknown`
//! with the toolchain's own `wasm-component-ld` as the linker, which turns the core module into a
//! component with no WASI imports (DESIGN.md section 4). Used by the host's build script (the
//! default plugins it embeds) and by tests that build example and hostile plugins.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The plugins' target. Listed in `rust-toolchain.toml`, so rustup installs it by itself.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// The environment variable naming the linker for [`TARGET`].
const LINKER_VAR: &str = "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER";

/// Path of `wasm-component-ld` in the sysroot of `rustc`.
pub fn component_linker(rustc: &Path) -> anyhow::Result<PathBuf> {
    let output = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .with_context(|| format!("running {} --print sysroot", rustc.display()))?;
    if !output.status.success() {
        bail!("{} --print sysroot failed", rustc.display());
    }
    let sysroot = PathBuf::from(String::from_utf8(output.stdout)?.trim());
    let host = host_triple(rustc)?;
    let linker = sysroot
        .join("lib/rustlib")
        .join(host)
        .join("bin/wasm-component-ld");
    if !linker.exists() {
        bail!(
            "{} not found: the toolchain in rust-toolchain.toml ships it from Rust 1.82",
            linker.display()
        );
    }
    Ok(linker)
}

fn host_triple(rustc: &Path) -> anyhow::Result<String> {
    let output = Command::new(rustc).arg("-vV").output()?;
    let text = String::from_utf8(output.stdout)?;
    text.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV printed no host triple")
}

/// What to build.
#[derive(Debug)]
pub struct Build<'a> {
    /// The `cargo` to run (a build script passes `$CARGO`).
    pub cargo: PathBuf,
    /// The `rustc` whose sysroot holds the linker.
    pub rustc: PathBuf,
    /// The manifest of the workspace or package holding the plugin crates.
    pub manifest: PathBuf,
    /// Package names to build.
    pub packages: &'a [&'a str],
    /// A target directory of their own: a build script must not share the outer build's.
    pub target_dir: PathBuf,
}

impl Build<'_> {
    /// Runs the build; returns each package's component (`<target>/wasm32-unknown-unknown/release/<crate>.wasm`).
    pub fn run(&self) -> anyhow::Result<Vec<PathBuf>> {
        let linker = component_linker(&self.rustc)?;
        let mut command = Command::new(&self.cargo);
        command
            .arg("build")
            .arg("--release")
            .arg("--target")
            .arg(TARGET)
            .arg("--manifest-path")
            .arg(&self.manifest)
            .arg("--target-dir")
            .arg(&self.target_dir)
            .env(LINKER_VAR, &linker)
            .env("RUSTC", &self.rustc);
        for package in self.packages {
            command.arg("-p").arg(package);
        }
        // The outer build's flags are for the host (and instrumentation such as coverage would
        // not link for wasm), so none of them is passed on.
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
        ] {
            command.env_remove(var);
        }
        // A plugin is shipped inside the broker and to every broker of a cluster: no debug info
        // (the workspace's release profile keeps line tables for the host's profiles).
        command
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
        let status = command
            .status()
            .with_context(|| format!("running {}", self.cargo.display()))?;
        if !status.success() {
            bail!(
                "building plugins {:?} for {TARGET} failed ({status})",
                self.packages
            );
        }
        let out = self.target_dir.join(TARGET).join("release");
        self.packages
            .iter()
            .map(|package| {
                let path = out.join(format!("{}.wasm", package.replace('-', "_")));
                if path.exists() {
                    Ok(path)
                } else {
                    bail!("{} was not produced", path.display())
                }
            })
            .collect()
    }
}
