//! The installed plugins and which version of each is current: a pure model with the four
//! operations (install, activate, rollback, remove), each checked and applied in one step.
//!
//! In a broker the metadata log is the registry: every node applies the same operations in log
//! order (`controller::image`), so each runs the same versions and swaps at the same offset.
//! `weir plugin test` and `weir produce` keep one in memory. A data directory from before the
//! controller has `plugins/registry.json` with the components beside it; [`read_legacy`] reads
//! it once, so the broker can move it into the log.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::PolicyKind;

/// The registry file of a pre-controller data directory.
pub const LEGACY_REGISTRY_FILE: &str = "registry.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstalledVersion {
    pub version: String,
    pub sha256: String,
    pub installed_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub kind: PolicyKind,
    pub versions: Vec<InstalledVersion>,
    /// The version calls use; none until first activated.
    pub current: Option<String>,
    /// Earlier current versions, most recent last: what `rollback` returns to.
    #[serde(default)]
    pub history: Vec<String>,
    /// When the current version was last activated or rolled back to (the metadata offset in a
    /// broker): a runtime reloads the plugin when this changes, which also lifts a quarantine.
    #[serde(default)]
    pub activated_at: Option<u64>,
}

impl Entry {
    pub fn version(&self, version: &str) -> Option<&InstalledVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    pub fn current_version(&self) -> Option<&InstalledVersion> {
        self.version(self.current.as_deref()?)
    }
}

/// A component's bytes, shared by every copy of the registry that holds them.
pub type ComponentBytes = Arc<[u8]>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Registry {
    pub plugins: BTreeMap<String, Entry>,
    /// The broker-wide plugin of each kind; absent means the built-in default.
    pub defaults: BTreeMap<PolicyKind, String>,
    /// Components by sha256: exactly those some installed version names.
    pub components: BTreeMap<String, ComponentBytes>,
    /// When a built-in was last activated (its quarantine lifted), by name.
    pub builtins_activated_at: BTreeMap<String, u64>,
}

/// The built-in plugin called `name`, if it is one.
pub fn builtin_kind(name: &str) -> Option<PolicyKind> {
    super::defaults::BUILTIN
        .iter()
        .find(|(_, builtin, _)| *builtin == name)
        .map(|(kind, _, _)| *kind)
}

/// Plugin names and versions go into metric labels, URLs and file names.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        bail!(
            "`{name}` is not a valid plugin name or version (1-64 of a-z, A-Z, 0-9, '-', '_', '.')"
        );
    }
    Ok(())
}

/// A name a new plugin may be installed under: valid, and not a built-in's.
pub fn check_plugin_name(name: &str) -> anyhow::Result<()> {
    validate_name(name)?;
    if builtin_kind(name).is_some() {
        bail!("`{name}` is the name of a built-in plugin; choose another name");
    }
    Ok(())
}

impl Registry {
    /// The version a new install of `name` gets when none is given: one more than the newest
    /// numeric version.
    pub fn next_version(&self, name: &str) -> String {
        let newest = self
            .plugins
            .get(name)
            .into_iter()
            .flat_map(|entry| &entry.versions)
            .filter_map(|v| v.version.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        (newest + 1).to_string()
    }

    /// Adds `version` of `name` (a checked component of `kind`). The same bytes under the same
    /// version again change nothing (`Ok(false)`); other bytes under it are refused.
    pub fn install(
        &mut self,
        name: &str,
        kind: PolicyKind,
        installed: InstalledVersion,
        component: ComponentBytes,
    ) -> anyhow::Result<bool> {
        check_plugin_name(name)?;
        validate_name(&installed.version)?;
        let actual = super::engine::sha256_hex(&component);
        if actual != installed.sha256 {
            bail!(
                "the component's sha256 is {actual}, not {}",
                installed.sha256
            );
        }
        if let Some(entry) = self.plugins.get(name) {
            if entry.kind != kind {
                bail!(
                    "`{name}` is installed as a {} plugin; this component is a {} plugin",
                    entry.kind.interface(),
                    kind.interface()
                );
            }
            if let Some(existing) = entry.version(&installed.version) {
                if existing.sha256 == installed.sha256 {
                    return Ok(false);
                }
                bail!(
                    "`{name}` version {} is already installed with different bytes",
                    installed.version
                );
            }
        }
        self.components.insert(installed.sha256.clone(), component);
        self.plugins
            .entry(name.to_string())
            .or_insert_with(|| Entry {
                kind,
                versions: Vec::new(),
                current: None,
                history: Vec::new(),
                activated_at: None,
            })
            .versions
            .push(installed);
        Ok(true)
    }

    /// Makes `version` of `name` current and, when `broker_wide`, the broker-wide plugin of
    /// its kind; `at` stamps the activation. A built-in has one version; activating it
    /// broker-wide makes it its kind's default again.
    pub fn activate(
        &mut self,
        name: &str,
        version: &str,
        broker_wide: bool,
        at: u64,
    ) -> anyhow::Result<()> {
        if let Some(kind) = builtin_kind(name) {
            if broker_wide {
                self.defaults.remove(&kind);
            }
            self.builtins_activated_at.insert(name.to_string(), at);
            return Ok(());
        }
        let Some(entry) = self.plugins.get_mut(name) else {
            bail!("no plugin named `{name}` is installed");
        };
        if entry.version(version).is_none() {
            bail!("`{name}` has no version {version}");
        }
        if entry.current.as_deref() != Some(version)
            && let Some(previous) = entry.current.replace(version.to_string())
        {
            entry.history.push(previous);
        }
        entry.activated_at = Some(at);
        if broker_wide {
            let kind = entry.kind;
            self.defaults.insert(kind, name.to_string());
        }
        Ok(())
    }

    /// Returns `name` to the version current before its last activation.
    pub fn rollback(&mut self, name: &str, at: u64) -> anyhow::Result<String> {
        if builtin_kind(name).is_some() {
            bail!("`{name}` is built in and has one version; there is nothing to roll back to");
        }
        let Some(entry) = self.plugins.get_mut(name) else {
            bail!("no plugin named `{name}` is installed");
        };
        let Some(previous) = entry.history.last().cloned() else {
            bail!("`{name}` has no earlier version to roll back to");
        };
        if entry.version(&previous).is_none() {
            bail!("`{name}`'s earlier version {previous} is no longer installed");
        }
        entry.history.pop();
        entry.current = Some(previous.clone());
        entry.activated_at = Some(at);
        Ok(previous)
    }

    /// Uninstalls every version of `name`. Refused while it is its kind's broker-wide plugin
    /// or `bound_topics` (topics whose `policy.<kind>` names it) is not empty.
    pub fn remove(&mut self, name: &str, bound_topics: &[String]) -> anyhow::Result<()> {
        if builtin_kind(name).is_some() {
            bail!("`{name}` is built in and cannot be removed");
        }
        let Some(entry) = self.plugins.get(name) else {
            bail!("no plugin named `{name}` is installed");
        };
        let kind = entry.kind;
        if self.defaults.get(&kind).map(String::as_str) == Some(name) {
            bail!(
                "`{name}` is the broker-wide {} plugin; activate another one first",
                kind.interface()
            );
        }
        if !bound_topics.is_empty() {
            bail!(
                "`{name}` is bound to topics {}; change their policy.{} first",
                bound_topics.join(", "),
                kind.interface()
            );
        }
        self.plugins.remove(name);
        let referenced: std::collections::HashSet<&str> = self
            .plugins
            .values()
            .flat_map(|entry| entry.versions.iter().map(|v| v.sha256.as_str()))
            .collect();
        self.components
            .retain(|sha256, _| referenced.contains(sha256.as_str()));
        Ok(())
    }

    /// Restores one plugin's state as a snapshot recorded it (after its versions are installed).
    pub fn restore(
        &mut self,
        name: &str,
        current: Option<String>,
        history: Vec<String>,
        activated_at: Option<u64>,
        broker_wide: bool,
    ) -> anyhow::Result<()> {
        let Some(entry) = self.plugins.get_mut(name) else {
            bail!("no plugin named `{name}` is installed");
        };
        if let Some(missing) = current
            .iter()
            .chain(&history)
            .find(|version| entry.version(version).is_none())
        {
            bail!("`{name}` has no version {missing}");
        }
        entry.current = current;
        entry.history = history;
        entry.activated_at = activated_at;
        if broker_wide {
            let kind = entry.kind;
            self.defaults.insert(kind, name.to_string());
        }
        Ok(())
    }
}

/// The registry of a pre-controller data directory (`dir` is `<log.dirs>/plugins`) with its
/// components, or `None` when there is none.
pub fn read_legacy(dir: &Path) -> anyhow::Result<Option<Registry>> {
    #[derive(Deserialize)]
    struct Legacy {
        plugins: BTreeMap<String, Entry>,
        defaults: BTreeMap<PolicyKind, String>,
    }
    let path = dir.join(LEGACY_REGISTRY_FILE);
    let legacy: Legacy = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid plugin registry", path.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let mut components = BTreeMap::new();
    for installed in legacy.plugins.values().flat_map(|entry| &entry.versions) {
        let path = dir.join(format!("{}.wasm", installed.sha256));
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let actual = super::engine::sha256_hex(&bytes);
        if actual != installed.sha256 {
            bail!("{} is damaged: sha256 {actual}", path.display());
        }
        components.insert(installed.sha256.clone(), ComponentBytes::from(bytes));
    }
    Ok(Some(Registry {
        plugins: legacy.plugins,
        defaults: legacy.defaults,
        components,
        builtins_activated_at: BTreeMap::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(version: &str, bytes: &[u8]) -> InstalledVersion {
        InstalledVersion {
            version: version.into(),
            sha256: crate::policy::engine::sha256_hex(bytes),
            installed_at_ms: 0,
        }
    }

    #[test]
    fn operations_check_then_apply() {
        let mut registry = Registry::default();
        let (a, b) = (b"component a".as_slice(), b"component b".as_slice());
        let kind = PolicyKind::Partitioner;
        assert!(
            registry
                .install("p", kind, version("1", a), a.into())
                .expect("accepted")
        );
        assert!(
            !registry
                .install("p", kind, version("1", a), a.into())
                .expect("accepted")
        );
        assert!(
            registry
                .install("p", kind, version("1", b), b.into())
                .is_err()
        );
        assert!(
            registry
                .install("p", PolicyKind::Acks, version("2", b), b.into())
                .is_err()
        );
        assert!(
            registry
                .install("partitioner-default", kind, version("1", a), a.into())
                .is_err()
        );
        let mut wrong_sha = version("2", a);
        wrong_sha.sha256 = "00".into();
        assert!(registry.install("p", kind, wrong_sha, a.into()).is_err());
        assert_eq!(registry.next_version("p"), "2");
        assert!(
            registry
                .install("p", kind, version("2", b), b.into())
                .expect("accepted")
        );

        assert!(registry.activate("p", "3", true, 10).is_err());
        registry.activate("p", "1", true, 10).expect("accepted");
        registry.activate("p", "2", false, 11).expect("accepted");
        let entry = &registry.plugins["p"];
        assert_eq!(
            (entry.current.as_deref(), entry.history.as_slice()),
            (Some("2"), &["1".to_string()][..])
        );
        assert_eq!(entry.activated_at, Some(11));
        assert_eq!(registry.defaults.get(&kind).map(String::as_str), Some("p"));

        assert_eq!(registry.rollback("p", 12).expect("accepted"), "1");
        assert!(registry.rollback("p", 13).is_err(), "history is empty now");
        assert!(
            registry.remove("p", &[]).is_err(),
            "still the broker-wide plugin"
        );
        registry
            .activate("partitioner-default", "builtin", true, 14)
            .expect("accepted");
        assert!(registry.defaults.is_empty());
        assert!(
            registry.remove("p", &["orders".into()]).is_err(),
            "bound to a topic"
        );
        registry.remove("p", &[]).expect("accepted");
        assert!(registry.plugins.is_empty() && registry.components.is_empty());
    }
}
