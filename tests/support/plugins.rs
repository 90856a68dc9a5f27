//! Plugin crates of this workspace built to components for the tests, in `<target>/plugins`:
//! the directory the host's build script uses, so builds are shared and cached.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Components of a fixed set of packages, built together on first use (once per test binary).
#[derive(Debug)]
pub struct Components {
    packages: &'static [&'static str],
    built: OnceLock<HashMap<&'static str, Vec<u8>>>,
}

impl Components {
    pub const fn new(packages: &'static [&'static str]) -> Self {
        Components {
            packages,
            built: OnceLock::new(),
        }
    }

    /// The component bytes of `package`, one of the set.
    pub fn get(&self, package: &str) -> &[u8] {
        let built = self.built.get_or_init(|| {
            let started = std::time::Instant::now();
            let paths = weir_plugin_build::Build {
                cargo: std::env::var_os("CARGO").map_or_else(|| "cargo".into(), PathBuf::from),
                rustc: std::env::var_os("RUSTC").map_or_else(|| "rustc".into(), PathBuf::from),
                manifest: Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"),
                packages: self.packages,
                target_dir: target_dir().join("plugins"),
            }
            .run()
            .unwrap_or_else(|error| panic!("building {:?}: {error:#}", self.packages));
            eprintln!("built {} plugins in {:?}", paths.len(), started.elapsed());
            self.packages
                .iter()
                .zip(paths)
                .map(|(package, path)| {
                    let bytes = std::fs::read(&path)
                        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
                    (*package, bytes)
                })
                .collect()
        });
        built
            .get(package)
            .unwrap_or_else(|| panic!("{package} is not among {:?}", self.packages))
    }
}

/// The cargo target directory this test binary was built in: `$CARGO_TARGET_DIR` when set (a
/// directory cargo did not create has no tag), else the nearest directory above it holding
/// cargo's `CACHEDIR.TAG`. Its depth differs between cargo's layouts
/// (`<target>/<profile>/deps/<bin>` before 1.100, `<target>/<profile>/build/<pkg>/<hash>/out/<bin>`
/// since), so it is found by the tag, not counted.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|binary| {
            binary
                .ancestors()
                .find(|dir| dir.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}
