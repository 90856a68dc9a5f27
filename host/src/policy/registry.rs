//! The installed plugins and which version of each is current, persisted in the data directory
//! (`plugins/registry.json`, component bytes content-addressed beside it). The controller's
//! metadata log takes this over once there is one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::PolicyKind;

const REGISTRY_FILE: &str = "registry.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstalledVersion {
    pub version: String,
    pub sha256: String,
    pub installed_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub kind: PolicyKind,
    pub versions: Vec<InstalledVersion>,
    /// The version calls use; none until first activated.
    pub current: Option<String>,
    /// Earlier current versions, most recent last: what `rollback` returns to.
    #[serde(default)]
    pub history: Vec<String>,
}

impl Entry {
    pub fn version(&self, version: &str) -> Option<&InstalledVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    pub fn current_version(&self) -> Option<&InstalledVersion> {
        self.version(self.current.as_deref()?)
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Registry {
    pub plugins: BTreeMap<String, Entry>,
    /// The broker-wide plugin of each kind; absent means the built-in default.
    pub defaults: BTreeMap<PolicyKind, String>,
}

/// The registry with its directory; `None` keeps everything in memory (the CLI's `plugin test`,
/// and `weir produce` running a topic's partitioner).
#[derive(Debug)]
pub struct RegistryStore {
    dir: Option<PathBuf>,
    pub registry: Registry,
    /// Components by sha256 when there is no directory.
    in_memory: std::sync::Mutex<BTreeMap<String, Vec<u8>>>,
}

impl RegistryStore {
    pub fn open(dir: Option<&Path>) -> anyhow::Result<Self> {
        let Some(dir) = dir else {
            return Ok(RegistryStore {
                dir: None,
                registry: Registry::default(),
                in_memory: Default::default(),
            });
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(REGISTRY_FILE);
        let registry = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a valid plugin registry", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Registry::default(),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        Ok(RegistryStore {
            dir: Some(dir.to_path_buf()),
            registry,
            in_memory: Default::default(),
        })
    }

    /// Writes the registry atomically (temporary file, fsync, rename, fsync of the directory).
    pub fn save(&self) -> anyhow::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(&self.registry)?;
        crate::storage::files::write_atomically(&dir.join(REGISTRY_FILE), &bytes)
            .context("writing the plugin registry")
    }

    fn component_path(dir: &Path, sha256: &str) -> PathBuf {
        dir.join(format!("{sha256}.wasm"))
    }

    pub fn store_component(&self, sha256: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let Some(dir) = &self.dir else {
            self.memory().insert(sha256.to_string(), bytes.to_vec());
            return Ok(());
        };
        crate::storage::files::write_atomically(&Self::component_path(dir, sha256), bytes)
            .context("storing the component")
    }

    pub fn read_component(&self, sha256: &str) -> anyhow::Result<Vec<u8>> {
        let Some(dir) = &self.dir else {
            return self
                .memory()
                .get(sha256)
                .cloned()
                .with_context(|| format!("no component with sha256 {sha256}"));
        };
        let path = Self::component_path(dir, sha256);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let actual = super::engine::sha256_hex(&bytes);
        if actual != sha256 {
            bail!("{} is damaged: sha256 {actual}", path.display());
        }
        Ok(bytes)
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.in_memory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Deletes components no installed version refers to.
    pub fn delete_unreferenced(&self) {
        let referenced: std::collections::HashSet<&str> = self
            .registry
            .plugins
            .values()
            .flat_map(|entry| entry.versions.iter().map(|v| v.sha256.as_str()))
            .collect();
        let Some(dir) = &self.dir else {
            self.memory()
                .retain(|sha, _| referenced.contains(sha.as_str()));
            return;
        };
        let Ok(files) = std::fs::read_dir(dir) else {
            return;
        };
        for file in files.flatten() {
            let path = file.path();
            let is_component = path.extension().is_some_and(|e| e == "wasm");
            let sha = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            if is_component && !referenced.contains(sha) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}
