//! Builds the default policy plugins (`plugins/*-default`) to WebAssembly components and leaves
//! them in `OUT_DIR`, where `policy::defaults` embeds them: the ordinary `cargo build` makes the
//! broker and its plugins together, with no manual step.

use std::path::{Path, PathBuf};

/// The embedded plugins, by package name; `policy::defaults` includes `<crate_name>.wasm`.
const DEFAULT_PLUGINS: &[&str] = &[
    "weir-election-default",
    "weir-partitioner-default",
    "weir-acks-default",
];

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or_else(|| anyhow::anyhow!("host/ has no parent"))?;
    for watched in ["wit", "plugins/sdk", "Cargo.lock"] {
        println!(
            "cargo::rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    for package in DEFAULT_PLUGINS {
        let dir = package.trim_start_matches("weir-");
        println!(
            "cargo::rerun-if-changed={}",
            workspace.join("plugins").join(dir).display()
        );
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let build = weir_plugin_build::Build {
        cargo: std::env::var_os("CARGO")
            .map(PathBuf::from)
            .unwrap_or_else(|| "cargo".into()),
        rustc: std::env::var_os("RUSTC")
            .map(PathBuf::from)
            .unwrap_or_else(|| "rustc".into()),
        manifest: workspace.join("Cargo.toml"),
        packages: DEFAULT_PLUGINS,
        target_dir: plugins_target_dir(&out_dir, workspace),
    };
    for component in build.run()? {
        let name = component
            .file_name()
            .ok_or_else(|| anyhow::anyhow!("no file name"))?;
        std::fs::copy(&component, out_dir.join(name))?;
    }
    Ok(())
}

/// `<target>/plugins`, shared by every profile's build of the host, so the plugins are built
/// once, not per profile. The target directory is the nearest above OUT_DIR holding cargo's
/// `CACHEDIR.TAG`: OUT_DIR's depth below it differs between cargo's layouts
/// (`<profile>/build/weir-<hash>/out` before 1.100, `<profile>/build/weir/<hash>/out` since).
fn plugins_target_dir(out_dir: &Path, workspace: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|target| target.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace.join("target"))
        .join("plugins")
}
