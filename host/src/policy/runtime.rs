//! [`Policies`]: the plugins this broker runs. Resolves which plugin version serves a call
//! (topic binding, then the broker-wide default, then the built-in), makes the call in the
//! sandbox, checks the answer, and falls back to the built-in default on any fault. Versions are
//! swapped atomically: a call holds the version it started on.
//!
//! What is installed and current comes from a [`Registry`]: in a broker the metadata log's,
//! published with [`Policies::publish`] as each entry applies (so every broker swaps at the
//! same offset); elsewhere (`weir plugin test`, `weir produce`) one kept here and changed with
//! `install`, `activate`, `rollback` and `remove`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use serde::Serialize;

use super::engine::{CallLimits, Fault, PolicyEngine};
use super::plugin::Plugin;
use super::registry::{InstalledVersion, Registry, builtin_kind, check_plugin_name, validate_name};
use super::wit::acks::{Decision, Request};
use super::wit::election::{Election, PartitionState};
use super::{PerKind, PolicyKind, conformance, defaults, validate};

/// Kafka's UNKNOWN_SERVER_ERROR: what a produce gets if even the built-in acks plugin fails.
const UNKNOWN_SERVER_ERROR: i16 = -1;

/// Failures in a row after which a plugin is quarantined (its calls go to the default).
pub const QUARANTINE_AFTER_FAILURES: u32 = 5;

/// Sandbox limits, from the broker's `policy.*` configs.
#[derive(Debug, Clone, Copy)]
pub struct PolicyConfig {
    /// CPU budget of an election call (`policy.election.call.timeout.ms`).
    pub election_call_timeout: Duration,
    /// CPU budget of a partitioner or acks call (`policy.call.timeout.ms`).
    pub call_timeout: Duration,
    /// Memory cap of an instance (`policy.memory.max.bytes`).
    pub memory_max_bytes: usize,
}

impl PolicyConfig {
    fn limits(&self, kind: PolicyKind) -> CallLimits {
        CallLimits {
            cpu_budget: match kind {
                PolicyKind::Election => self.election_call_timeout,
                PolicyKind::Partitioner | PolicyKind::Acks => self.call_timeout,
            },
            memory_max_bytes: self.memory_max_bytes,
        }
    }
}

/// What `list` and the admin API report of one plugin (and what the CLI reads back).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub kind: PolicyKind,
    pub builtin: bool,
    pub current_version: Option<String>,
    pub versions: Vec<InstalledVersion>,
    /// True when it is the broker-wide plugin of its kind.
    pub default_for_kind: bool,
    pub quarantined: bool,
    /// When its current version was activated: in a broker, the metadata offset every broker
    /// swapped at.
    #[serde(default)]
    pub activated_at: Option<u64>,
}

/// The versions calls resolve to; replaced as a whole on every change.
#[derive(Debug)]
struct Active {
    /// Per kind: the broker-wide plugin.
    defaults: PerKind<Arc<Plugin>>,
    /// Every installed plugin's current version, by name (built-ins included).
    by_name: HashMap<String, Arc<Plugin>>,
}

type CounterKey = (PolicyKind, String, String, &'static str);

#[derive(Debug, Default)]
struct Metrics {
    calls: Mutex<BTreeMap<(PolicyKind, String, String), Arc<AtomicU64>>>,
    failures: Mutex<BTreeMap<CounterKey, u64>>,
}

impl Metrics {
    /// The call counter of a plugin version: shared by every load of the same version, so a
    /// reload never makes a Prometheus counter go backwards.
    fn call_counter(&self, kind: PolicyKind, name: &str, version: &str) -> Arc<AtomicU64> {
        lock(&self.calls)
            .entry((kind, name.to_string(), version.to_string()))
            .or_default()
            .clone()
    }
}

#[derive(Debug)]
pub struct Policies {
    engine: PolicyEngine,
    config: PolicyConfig,
    /// The registry the active versions were built from.
    registry: ArcSwap<Registry>,
    /// Serialises publications, so two never interleave their loads and swaps.
    publishing: Mutex<()>,
    /// Serialises changes to a registry kept here (read, change, publish), so none is lost.
    changing: Mutex<()>,
    /// The stamp a registry kept here gives its next activation (a broker's come from the
    /// metadata log's offsets).
    local_stamp: AtomicU64,
    builtin: PerKind<Arc<Plugin>>,
    active: ArcSwap<Active>,
    metrics: Metrics,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Policies {
    /// Loads the built-in plugins, with an empty registry. `dir` is the plugins' directory
    /// (`<log.dirs>/plugins`), which holds the precompiled-artifact cache; `None` keeps
    /// nothing on disk.
    pub fn open(dir: Option<&Path>, config: PolicyConfig) -> anyhow::Result<Arc<Policies>> {
        let engine = PolicyEngine::new(dir.map(|d| d.join("cache")))?;
        let metrics = Metrics::default();
        let mut loaded_builtins = Vec::new();
        for (kind, name, bytes) in defaults::BUILTIN {
            let plugin = Plugin::load(
                &engine,
                name,
                defaults::VERSION,
                bytes,
                config.limits(kind),
                metrics.call_counter(kind, name, defaults::VERSION),
            )
            .with_context(|| format!("loading the built-in {name}"))?;
            if plugin.kind != kind {
                bail!("the built-in {name} is a {:?} plugin", plugin.kind);
            }
            loaded_builtins.push(Arc::new(plugin));
        }
        anyhow::ensure!(
            loaded_builtins.iter().map(|p| p.kind).eq(PolicyKind::ALL),
            "defaults::BUILTIN must list one plugin per kind, in PolicyKind::ALL order"
        );
        let builtin = PerKind::new(
            loaded_builtins
                .try_into()
                .map_err(|_| anyhow::anyhow!("one built-in per kind"))?,
        );
        Ok(Arc::new(Policies {
            engine,
            config,
            registry: ArcSwap::from_pointee(Registry::default()),
            publishing: Mutex::new(()),
            changing: Mutex::new(()),
            local_stamp: AtomicU64::new(0),
            active: ArcSwap::from_pointee(Active {
                defaults: builtin.clone(),
                by_name: HashMap::new(),
            }),
            builtin,
            metrics,
        }))
    }

    /// The registry the active versions come from.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// Makes `registry` the one calls resolve through: current versions that changed (another
    /// version, or activated again) are loaded, the rest keep their loaded instances, and the
    /// new set is swapped in at once. A version that cannot load is logged and its calls use
    /// the default, as a faulting plugin's do.
    pub fn publish(&self, registry: Arc<Registry>) {
        let _publishing = lock(&self.publishing);
        let previous = self.registry.load_full();
        if Arc::ptr_eq(&previous, &registry) {
            return;
        }
        let active = self.active.load_full();
        let mut loaded = HashMap::new();
        for (name, entry) in &registry.plugins {
            let Some(current) = entry.current_version() else {
                continue;
            };
            let unchanged = previous.plugins.get(name).is_some_and(|before| {
                before.current_version() == Some(current)
                    && before.activated_at == entry.activated_at
            });
            if unchanged && let Some(plugin) = active.by_name.get(name) {
                loaded.insert(name.clone(), plugin.clone());
                continue;
            }
            let outcome = registry
                .components
                .get(&current.sha256)
                .context("its component is missing from the registry")
                .and_then(|bytes| self.load(name, &current.version, bytes));
            match outcome {
                Ok(plugin) => {
                    tracing::info!(plugin = %name, version = %current.version, "plugin version loaded");
                    loaded.insert(name.clone(), Arc::new(plugin));
                }
                Err(error) => {
                    tracing::error!(plugin = %name, version = %current.version, "cannot load installed plugin; its calls use the default: {error:#}");
                }
            }
        }
        for plugin in self.builtin.values() {
            let stamp = registry.builtins_activated_at.get(&plugin.id.name);
            if stamp.is_some() && stamp != previous.builtins_activated_at.get(&plugin.id.name) {
                plugin.reinstate();
            }
        }
        let next = self.build_active(&registry, loaded);
        self.active.store(Arc::new(next));
        self.registry.store(registry);
    }

    /// Checks a component for installing as `name`: a valid name that is not a built-in's, a
    /// component that compiles and passes its kind's conformance scenarios. Its kind and the
    /// version it is installed as (`version`, or one more than the newest numeric one).
    pub fn check_install(
        &self,
        name: &str,
        version: Option<&str>,
        bytes: &[u8],
        now_ms: i64,
    ) -> anyhow::Result<(PolicyKind, InstalledVersion)> {
        check_plugin_name(name)?;
        let (kind, outcomes) = self.test(bytes, &[])?;
        let failed: Vec<String> = outcomes
            .iter()
            .filter(|o| !o.passed)
            .map(|o| format!("{}: {}", o.name, o.problem.as_deref().unwrap_or("failed")))
            .collect();
        if !failed.is_empty() {
            bail!(
                "the plugin fails {} of {} {} conformance scenarios: {}",
                failed.len(),
                outcomes.len(),
                kind.interface(),
                failed.join("; ")
            );
        }
        let version = match version {
            Some(version) => {
                validate_name(version)?;
                version.to_string()
            }
            None => self.registry().next_version(name),
        };
        let installed = InstalledVersion {
            version,
            sha256: super::engine::sha256_hex(bytes),
            installed_at_ms: now_ms,
        };
        Ok((kind, installed))
    }

    /// The version an activation of `name` means (`version`, or the newest installed), checked
    /// to load here before anyone is asked to run it; a built-in's one version.
    pub fn check_activate(&self, name: &str, version: Option<&str>) -> anyhow::Result<String> {
        if builtin_kind(name).is_some() {
            return Ok(super::defaults::VERSION.to_string());
        }
        let registry = self.registry();
        let Some(entry) = registry.plugins.get(name) else {
            bail!("no plugin named `{name}` is installed");
        };
        let version = match version {
            Some(version) => version.to_string(),
            None => entry
                .versions
                .last()
                .map(|v| v.version.clone())
                .context("the plugin has no versions")?,
        };
        let Some(installed) = entry.version(&version) else {
            bail!("`{name}` has no version {version}");
        };
        let bytes = registry
            .components
            .get(&installed.sha256)
            .context("its component is missing from the registry")?;
        self.load_counted(name, &version, bytes, false)?;
        Ok(version)
    }

    /// Changes the registry kept here with `change` (on a copy) and publishes the result.
    fn change_local<R>(
        &self,
        change: impl FnOnce(&mut Registry, u64) -> anyhow::Result<R>,
    ) -> anyhow::Result<R> {
        let _changing = lock(&self.changing);
        let mut registry = (*self.registry()).clone();
        let stamp = self.local_stamp.fetch_add(1, Ordering::Relaxed) + 1;
        let result = change(&mut registry, stamp)?;
        self.publish(Arc::new(registry));
        Ok(result)
    }

    fn load(&self, name: &str, version: &str, bytes: &[u8]) -> anyhow::Result<Plugin> {
        self.load_counted(name, version, bytes, true)
    }

    /// `counted`: whether its calls show in `weir_policy_calls_total` (not for a candidate
    /// under test, which would leave a series behind forever).
    fn load_counted(
        &self,
        name: &str,
        version: &str,
        bytes: &[u8],
        counted: bool,
    ) -> anyhow::Result<Plugin> {
        let component = self
            .engine
            .compile(bytes)
            .context("compiling the component")?;
        let kind = super::plugin::inspect(&self.engine, &component)?;
        Plugin::from_component(
            &self.engine,
            component,
            kind,
            super::plugin::PluginId {
                name: name.to_string(),
                version: version.to_string(),
                sha256: super::engine::sha256_hex(bytes),
            },
            self.config.limits(kind),
            if counted {
                self.metrics.call_counter(kind, name, version)
            } else {
                Arc::default()
            },
        )
    }

    fn build_active(
        &self,
        registry: &super::registry::Registry,
        mut by_name: HashMap<String, Arc<Plugin>>,
    ) -> Active {
        for plugin in self.builtin.values() {
            by_name.insert(plugin.id.name.clone(), plugin.clone());
        }
        let defaults = PerKind::from_fn(|kind| {
            registry
                .defaults
                .get(&kind)
                .and_then(|name| by_name.get(name))
                .filter(|plugin| plugin.kind == kind)
                .unwrap_or(&self.builtin[kind])
                .clone()
        });
        Active { defaults, by_name }
    }

    /// The plugin serving a call of `kind`, given the topic's binding (its `policy.<kind>`).
    fn resolve<'a>(
        &'a self,
        active: &'a Active,
        kind: PolicyKind,
        binding: Option<&str>,
    ) -> &'a Arc<Plugin> {
        let bound = binding
            .and_then(|name| active.by_name.get(name))
            .filter(|plugin| plugin.kind == kind && !plugin.is_quarantined());
        match bound {
            Some(plugin) => plugin,
            None if active.defaults[kind].is_quarantined() => &self.builtin[kind],
            None => &active.defaults[kind],
        }
    }

    /// Records a failed call: counter, warning, and quarantine after repeated failures.
    fn failed(&self, plugin: &Plugin, fault: Fault, detail: &str) {
        *lock(&self.metrics.failures)
            .entry((
                plugin.kind,
                plugin.id.name.clone(),
                plugin.id.version.clone(),
                fault.label(),
            ))
            .or_default() += 1;
        tracing::warn!(policy = plugin.kind.interface(), plugin = %plugin.id, reason = fault.label(), "plugin call failed, using the default plugin's answer: {detail}");
        if plugin.record_outcome(false, QUARANTINE_AFTER_FAILURES) {
            tracing::error!(policy = plugin.kind.interface(), plugin = %plugin.id, "plugin quarantined after {QUARANTINE_AFTER_FAILURES} failures in a row; its calls use the default until it is activated again");
        }
    }

    /// Runs `call` on the resolved plugin; on a fault or an invalid answer, on the built-in
    /// default, and if even that fails (a host limit set too low), answers `last_resort`: the
    /// safe answer (no leader, a retriable produce error, the key's murmur2 partition).
    fn call<R>(
        &self,
        kind: PolicyKind,
        binding: Option<&str>,
        call: impl Fn(&Plugin) -> Result<R, Fault>,
        check: impl Fn(&R) -> Result<(), String>,
        last_resort: impl FnOnce() -> R,
    ) -> R {
        // The guard keeps this version set alive for the call: a swap meanwhile publishes a new
        // set without disturbing this one, and no reference count is touched.
        let active = self.active.load();
        let resolved = self.resolve(&active, kind, binding);
        let builtin = &self.builtin[kind];
        // The built-in is tried second only when the resolved plugin is not already it.
        let fallback = (!Arc::ptr_eq(resolved, builtin)).then_some(builtin.as_ref());
        for plugin in std::iter::once(resolved.as_ref()).chain(fallback) {
            plugin.count_call();
            let outcome = call(plugin)
                .map_err(|fault| (fault, String::new()))
                .and_then(|answer| match check(&answer) {
                    Ok(()) => Ok(answer),
                    Err(problem) => Err((Fault::InvalidAnswer, problem)),
                });
            match outcome {
                Ok(answer) => {
                    plugin.record_outcome(true, QUARANTINE_AFTER_FAILURES);
                    return answer;
                }
                Err((fault, detail)) => self.failed(plugin, fault, &detail),
            }
        }
        last_resort()
    }

    /// The leader of a partition.
    pub fn elect(&self, binding: Option<&str>, state: &PartitionState) -> Election {
        self.call(
            PolicyKind::Election,
            binding,
            |plugin| plugin.elect(state),
            |answer| validate::election(state, answer),
            || Election {
                leader: None,
                reason: "the built-in election plugin failed".into(),
            },
        )
    }

    /// The partition of one record.
    pub fn partition(
        &self,
        binding: Option<&str>,
        topic: &str,
        key: Option<&[u8]>,
        value_size: u32,
        partition_count: u32,
    ) -> u32 {
        self.call(
            PolicyKind::Partitioner,
            binding,
            |plugin| plugin.partition(topic, key, value_size, partition_count),
            |&answer| validate::partition(answer, partition_count),
            || {
                key.map_or(0, |key| {
                    weir_partitioner_default::partition_for_key(key, partition_count)
                })
            },
        )
    }

    /// The partitions of many records, in one call into the sandbox.
    pub fn partition_batch(
        &self,
        binding: Option<&str>,
        topic: &str,
        keys: &[Option<&[u8]>],
        value_sizes: &[u32],
        partition_count: u32,
    ) -> Vec<u32> {
        let (bytes, ends) = weir_plugin_sdk::partitioner::pack_keys(keys.iter().copied());
        self.call(
            PolicyKind::Partitioner,
            binding,
            |plugin| plugin.partition_batch(topic, &bytes, &ends, value_sizes, partition_count),
            |answer| validate::partitions(answer, keys.len(), partition_count),
            || {
                keys.iter()
                    .map(|key| {
                        key.map_or(0, |key| {
                            weir_partitioner_default::partition_for_key(key, partition_count)
                        })
                    })
                    .collect()
            },
        )
    }

    /// The fate of a produce request to one partition.
    pub fn decide(&self, binding: Option<&str>, request: &Request) -> Decision {
        self.call(
            PolicyKind::Acks,
            binding,
            |plugin| plugin.decide(request),
            |answer| validate::decision(request, answer),
            // The producer retries a retriable error; nothing is acknowledged that should not be.
            || Decision::Fail(UNKNOWN_SERVER_ERROR),
        )
    }

    /// The name of the broker-wide plugin of `kind`.
    pub fn default_plugin(&self, kind: PolicyKind) -> String {
        self.active.load().defaults[kind].id.name.clone()
    }

    /// The kind of an installed (or built-in) plugin.
    pub fn kind_of(&self, name: &str) -> Option<PolicyKind> {
        builtin_kind(name).or_else(|| self.registry().plugins.get(name).map(|entry| entry.kind))
    }

    /// Checks a component without installing it: compile, world, conformance scenarios.
    pub fn test(
        &self,
        bytes: &[u8],
        scenarios: &[conformance::Scenario],
    ) -> anyhow::Result<(PolicyKind, Vec<conformance::Outcome>)> {
        let plugin = self.load_counted("candidate", "test", bytes, false)?;
        let mut outcomes = conformance::run_builtin(&plugin);
        outcomes.extend(conformance::run_user(&plugin, scenarios)?);
        Ok((plugin.kind, outcomes))
    }

    /// Installs a version of a plugin after it passes its kind's conformance scenarios, in the
    /// registry kept here. It does not run until activated.
    pub fn install(
        &self,
        name: &str,
        version: Option<&str>,
        bytes: &[u8],
        now_ms: i64,
    ) -> anyhow::Result<PluginInfo> {
        let (kind, installed) = self.check_install(name, version, bytes, now_ms)?;
        let version = installed.version.clone();
        self.change_local(|registry, _| {
            registry.install(name, kind, installed, bytes.to_vec().into())
        })?;
        tracing::info!(plugin = name, %version, kind = kind.interface(), "plugin installed");
        self.info(name)
    }

    /// Makes `version` (default: the newest installed) the current version of `name`, and, when
    /// `broker_wide`, the broker-wide plugin of its kind, in the registry kept here.
    /// Re-activating lifts a quarantine.
    pub fn activate(
        &self,
        name: &str,
        version: Option<&str>,
        broker_wide: bool,
    ) -> anyhow::Result<PluginInfo> {
        let version = self.check_activate(name, version)?;
        self.change_local(|registry, stamp| registry.activate(name, &version, broker_wide, stamp))?;
        tracing::info!(plugin = name, %version, broker_wide, "plugin activated");
        self.info(name)
    }

    /// The component of `name`'s current version (a built-in's embedded one), for a client
    /// that runs the plugin itself: `weir produce` places records as the broker would.
    pub fn component(&self, name: &str) -> anyhow::Result<(String, Vec<u8>)> {
        if let Some((_, _, bytes)) = defaults::BUILTIN
            .iter()
            .find(|(_, builtin, _)| *builtin == name)
        {
            return Ok((defaults::VERSION.to_string(), bytes.to_vec()));
        }
        let registry = self.registry();
        let Some(entry) = registry.plugins.get(name) else {
            bail!("no plugin named `{name}` is installed");
        };
        let Some(installed) = entry.current_version() else {
            bail!("`{name}` is installed but has never been activated");
        };
        let bytes = registry
            .components
            .get(&installed.sha256)
            .context("its component is missing from the registry")?;
        Ok((installed.version.clone(), bytes.to_vec()))
    }

    /// Returns `name` to the version that was current before the last activation, in the
    /// registry kept here.
    pub fn rollback(&self, name: &str) -> anyhow::Result<PluginInfo> {
        let version = self.change_local(|registry, stamp| registry.rollback(name, stamp))?;
        tracing::info!(plugin = name, %version, "plugin rolled back");
        self.info(name)
    }

    /// Uninstalls every version of `name` from the registry kept here. Refused while it is the
    /// broker-wide plugin of its kind or `bound_topics` (topics whose `policy.<kind>` names it)
    /// is not empty.
    pub fn remove(&self, name: &str, bound_topics: &[String]) -> anyhow::Result<()> {
        self.change_local(|registry, _| registry.remove(name, bound_topics))
    }

    pub fn info(&self, name: &str) -> anyhow::Result<PluginInfo> {
        self.list()
            .into_iter()
            .find(|info| info.name == name)
            .with_context(|| format!("no plugin named `{name}`"))
    }

    /// Every plugin: the built-ins first, then the installed ones by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        let registry = self.registry();
        let active = self.active.load();
        let mut infos: Vec<PluginInfo> = PolicyKind::ALL
            .into_iter()
            .map(|kind| {
                let plugin = &self.builtin[kind];
                PluginInfo {
                    name: plugin.id.name.clone(),
                    kind,
                    builtin: true,
                    current_version: Some(plugin.id.version.clone()),
                    versions: vec![InstalledVersion {
                        version: plugin.id.version.clone(),
                        sha256: plugin.id.sha256.clone(),
                        installed_at_ms: 0,
                    }],
                    default_for_kind: !registry.defaults.contains_key(&kind),
                    quarantined: plugin.is_quarantined(),
                    activated_at: registry.builtins_activated_at.get(&plugin.id.name).copied(),
                }
            })
            .collect();
        infos.extend(registry.plugins.iter().map(|(name, entry)| {
            PluginInfo {
                name: name.clone(),
                kind: entry.kind,
                builtin: false,
                current_version: entry.current.clone(),
                versions: entry.versions.clone(),
                default_for_kind: registry.defaults.get(&entry.kind) == Some(name),
                quarantined: active
                    .by_name
                    .get(name)
                    .is_some_and(|plugin| plugin.is_quarantined()),
                activated_at: entry.activated_at,
            }
        }));
        infos
    }

    /// `weir_policy_calls_total` and `weir_policy_failures_total` in Prometheus' text format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP weir_policy_calls_total Calls into policy plugins.\n# TYPE weir_policy_calls_total counter"
        );
        for ((kind, plugin, version), count) in lock(&self.metrics.calls).iter() {
            let _ = writeln!(
                out,
                "weir_policy_calls_total{{policy=\"{}\",plugin=\"{plugin}\",version=\"{version}\"}} {}",
                kind.interface(),
                count.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP weir_policy_failures_total Plugin calls that failed and used the default plugin's answer.\n# TYPE weir_policy_failures_total counter"
        );
        for ((kind, plugin, version, reason), count) in lock(&self.metrics.failures).iter() {
            let _ = writeln!(
                out,
                "weir_policy_failures_total{{policy=\"{}\",plugin=\"{plugin}\",version=\"{version}\",reason=\"{reason}\"}} {count}",
                kind.interface()
            );
        }
    }

    /// Failures counted so far for `name` (all versions and reasons), for tests and `list`.
    pub fn failure_count(&self, name: &str) -> u64 {
        lock(&self.metrics.failures)
            .iter()
            .filter(|((_, plugin, _, _), _)| plugin == name)
            .map(|(_, count)| count)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::wit::acks::{ReplicaProgress, Stage};
    use crate::policy::wit::election::{BrokerStatus, ElectionReason, ReplicaState};

    pub(crate) fn test_config() -> PolicyConfig {
        PolicyConfig {
            election_call_timeout: Duration::from_millis(10),
            call_timeout: Duration::from_millis(2),
            memory_max_bytes: 16 << 20,
        }
    }

    #[test]
    fn builtins_run_as_wasm_and_answer_like_kafka() {
        let policies = Policies::open(None, test_config()).expect("open");
        let state = PartitionState {
            topic: "t".into(),
            partition: 0,
            replicas: [(1, false), (2, true), (3, true)]
                .into_iter()
                .map(|(broker_id, in_isr)| ReplicaState {
                    broker_id,
                    in_isr,
                    status: BrokerStatus::Alive,
                    log_end_offset: 0,
                    last_caught_up_ms: 0,
                    rack: None,
                })
                .collect(),
            current_leader: Some(1),
            leader_epoch: 0,
            reason: ElectionReason::LeaderFailure,
            unclean_allowed: false,
        };
        assert_eq!(policies.elect(None, &state).leader, Some(2));

        for n in [1u32, 3, 12] {
            let key = b"user-17";
            assert_eq!(
                policies.partition(None, "t", Some(key), 10, n),
                weir_partitioner_default::partition_for_key(key, n)
            );
        }
        let keys: Vec<Option<&[u8]>> = vec![Some(b"a"), None, Some(b"bb")];
        let batch = policies.partition_batch(None, "t", &keys, &[1, 1, 1], 5);
        assert_eq!(
            batch[0],
            weir_partitioner_default::partition_for_key(b"a", 5)
        );
        assert_eq!(
            batch[2],
            weir_partitioner_default::partition_for_key(b"bb", 5)
        );

        let request = Request {
            stage: Stage::BeforeAppend,
            acks: -1,
            min_insync_replicas: 2,
            replicas: vec![ReplicaProgress {
                broker_id: 1,
                in_isr: true,
                log_end_offset: 10,
                rack_id: None,
            }],
            leader_log_end_offset: 10,
            high_watermark: 10,
            flushed_offset: 0,
            last_offset: 9,
            elapsed_ms: 0,
        };
        assert_eq!(policies.decide(None, &request), Decision::Fail(19));
        let mut out = String::new();
        policies.render_metrics(&mut out);
        assert!(
            out.contains("weir_policy_calls_total{policy=\"acks\",plugin=\"acks-default\""),
            "{out}"
        );
        assert_eq!(policies.failure_count("acks-default"), 0);
    }

    #[test]
    fn builtins_pass_their_own_conformance_scenarios() {
        let policies = Policies::open(None, test_config()).expect("open");
        for (kind, _, bytes) in defaults::BUILTIN {
            let (tested, outcomes) = policies.test(bytes, &[]).expect("test");
            assert_eq!(tested, kind);
            assert!(outcomes.len() >= 2);
            for outcome in outcomes {
                assert!(outcome.passed, "{kind:?}: {outcome:?}");
            }
        }
    }

    #[test]
    fn install_activate_rollback_remove() {
        let policies = Policies::open(None, test_config()).expect("open");
        let bytes = defaults::PARTITIONER;
        let info = policies.install("mine", None, bytes, 1).expect("install");
        assert_eq!(info.versions.len(), 1);
        assert_eq!(
            info.current_version, None,
            "install alone does not activate"
        );
        policies
            .install("mine", Some("2"), bytes, 2)
            .expect("second version");
        assert!(
            policies
                .install("mine", Some("2"), defaults::ACKS, 3)
                .is_err()
        );
        assert!(
            policies
                .install("election-default", None, bytes, 3)
                .is_err()
        );
        policies
            .activate("mine", Some("1"), true)
            .expect("activate 1");
        let info = policies
            .activate("mine", None, true)
            .expect("activate newest");
        assert_eq!(info.current_version.as_deref(), Some("2"));
        assert!(info.default_for_kind);
        let info = policies.rollback("mine").expect("rollback");
        assert_eq!(info.current_version.as_deref(), Some("1"));
        assert!(policies.rollback("mine").is_err(), "nothing earlier");
        assert!(policies.remove("mine", &[]).is_err(), "still the default");
        assert_eq!(policies.partition(None, "t", Some(b"k"), 1, 4), {
            weir_partitioner_default::partition_for_key(b"k", 4)
        });
        policies
            .activate("partitioner-default", None, true)
            .expect("back to built-in");
        assert!(policies.remove("mine", &["t".into()]).is_err(), "bound");
        policies.remove("mine", &[]).expect("remove");
        assert!(policies.info("mine").is_err());
    }

    #[test]
    fn a_component_of_the_wrong_shape_is_refused() {
        let policies = Policies::open(None, test_config()).expect("open");
        let error = policies
            .install("junk", None, b"\0asm not really", 0)
            .expect_err("junk");
        assert!(error.to_string().contains("compiling"), "{error:#}");
        assert!(
            policies
                .install("bad name!", None, defaults::ACKS, 0)
                .is_err()
        );
    }
}
