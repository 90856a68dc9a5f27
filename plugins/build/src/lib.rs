//! Builds plugin crates to WebAssembly components: `cargo build --target wasm32-unknown-unknown`
//! with the toolchain's own `wasm-component-ld` as the linker, which turns the core module into a
//! component with no WASI imports (DESIGN.md section 4). Used by the host's build script (the
//! default plugins it embeds) and by tests that build example and hostile plugins.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The plugins' target. Listed in `rust-toolchain.toml`, but rustup applies that list only when it
/// installs the toolchain itself: a machine that already had the pinned toolchain lacks it, so
/// [`Build::run`] adds it ([`ensure_target`]).
pub const TARGET: &str = "wasm32-unknown-unknown";

/// The environment variable naming the linker for [`TARGET`].
const LINKER_VAR: &str = "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER";

/// Path of `wasm-component-ld` in the sysroot of `rustc`.
pub fn component_linker(rustc: &Path) -> anyhow::Result<PathBuf> {
    let sysroot = sysroot(rustc)?;
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

/// Makes sure the standard library for [`TARGET`] is installed for `rustc`, adding it with rustup
/// when it is not: the README's commands must work on a machine where nobody ran
/// `rustup target add` first. Returns whether it had to install it.
pub fn ensure_target(rustc: &Path) -> anyhow::Result<bool> {
    let libdir = target_libdir(rustc)?;
    if has_core(&libdir) {
        return Ok(false);
    }
    // The sysroot of a rustup toolchain is `<RUSTUP_HOME>/toolchains/<name>`; asking for that
    // name adds the target to exactly the toolchain this build runs, whatever the overrides.
    let sysroot = sysroot(rustc)?;
    let toolchain = sysroot
        .file_name()
        .and_then(|name| name.to_str())
        .filter(|_| sysroot.parent().and_then(Path::file_name) == Some(OsStr::new("toolchains")))
        .with_context(|| {
            format!(
                "the {TARGET} standard library is missing from {} and this rustc is not a rustup \
                 toolchain: install the target for it (rustup target add {TARGET})",
                sysroot.display()
            )
        })?;
    // rustup is not safe to run twice at once on one toolchain, and two builds (a terminal and
    // an editor, two target directories) can both find the target missing: one adds it while
    // the other waits, then finds it there.
    let lock_path = std::env::temp_dir().join(format!("weir-rustup-target-add-{toolchain}.lock"));
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if has_core(&libdir) {
        return Ok(false);
    }
    // rustup's progress goes to stderr: a build script's stdout is read by cargo as directives.
    let status = Command::new(rustup())
        .args(["target", "add", "--toolchain", toolchain, TARGET])
        .stdout(std::io::stderr())
        .status()
        .with_context(|| {
            format!("running rustup to add {TARGET} to {toolchain}: is rustup on the PATH?")
        })?;
    if !status.success() {
        bail!("rustup target add --toolchain {toolchain} {TARGET} failed ({status})");
    }
    if !has_core(&libdir) {
        bail!(
            "rustup added {TARGET} to {toolchain} but {} still holds no libcore",
            libdir.display()
        );
    }
    Ok(true)
}

/// `rustup` beside the proxies in `$CARGO_HOME/bin` when that is where it lives, else the PATH's.
fn rustup() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(|home| PathBuf::from(home).join("bin/rustup"))
        .filter(|path| path.exists())
        .unwrap_or_else(|| "rustup".into())
}

fn sysroot(rustc: &Path) -> anyhow::Result<PathBuf> {
    print(rustc, &["--print", "sysroot"]).map(PathBuf::from)
}

fn target_libdir(rustc: &Path) -> anyhow::Result<PathBuf> {
    print(rustc, &["--print", "target-libdir", "--target", TARGET]).map(PathBuf::from)
}

fn has_core(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libcore-") && name.ends_with(".rlib")
        })
    })
}

/// The trimmed standard output of `rustc <args>`.
fn print(rustc: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(rustc)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", rustc.display(), args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "{} {} failed: {}",
            rustc.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_string())
}

fn host_triple(rustc: &Path) -> anyhow::Result<String> {
    print(rustc, &["-vV"])?
        .lines()
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
        ensure_target(&self.rustc)?;
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
