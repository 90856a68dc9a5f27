//! One loaded plugin version: its component checked against its kind's world, pre-instantiated,
//! and a pool of live instances (each in its own store) that calls reuse.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use super::PolicyKind;
use super::engine::{CallLimits, Fault, PolicyEngine, StoreState, classify};
use super::wit::{acks, election, partitioner};

/// The package every import must come from.
const POLICY_PACKAGE_PREFIX: &str = "weir:policy/";
const POLICY_PACKAGE_VERSION: &str = "@0.1.0";

/// Who a plugin is: the labels of its metrics and log lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PluginId {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

impl std::fmt::Display for PluginId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

enum Pre {
    Election(election::ElectionPolicyPre<StoreState>),
    Partitioner(partitioner::PartitionerPolicyPre<StoreState>),
    Acks(acks::AcksPolicyPre<StoreState>),
}

enum Bindings {
    Election(election::ElectionPolicy),
    Partitioner(partitioner::PartitionerPolicy),
    Acks(acks::AcksPolicy),
}

struct Instance {
    store: Store<StoreState>,
    bindings: Bindings,
}

/// A loaded, checked plugin version.
pub struct Plugin {
    pub id: PluginId,
    pub kind: PolicyKind,
    engine: PolicyEngine,
    pre: Pre,
    limits: CallLimits,
    label: Arc<str>,
    /// Idle instances; a call takes one (or instantiates) and gives it back unless it faulted,
    /// since a trap leaves a store unusable.
    idle: Mutex<Vec<Instance>>,
    consecutive_failures: AtomicU32,
    quarantined: AtomicBool,
    /// `weir_policy_calls_total` of this version.
    calls: Arc<AtomicU64>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("quarantined", &self.is_quarantined())
            .finish_non_exhaustive()
    }
}

/// Most idle instances kept per plugin version: one per thread that calls at once is enough.
const MAX_IDLE_INSTANCES: usize = 64;

/// The kind whose interface a component exports, after checking that it imports nothing beyond
/// the policy package.
pub fn inspect(engine: &PolicyEngine, component: &Component) -> anyhow::Result<PolicyKind> {
    let component_type = component.component_type();
    for (name, _) in component_type.imports(engine.engine()) {
        let allowed = name
            .strip_prefix(POLICY_PACKAGE_PREFIX)
            .and_then(|rest| rest.strip_suffix(POLICY_PACKAGE_VERSION))
            .is_some_and(|interface| matches!(interface, "types" | "log"));
        if !allowed {
            bail!(
                "the component imports `{name}`; a policy plugin may import only \
                 weir:policy/log and weir:policy/types (no WASI, files, network, clocks or randomness)"
            );
        }
    }
    let mut kinds = component_type
        .exports(engine.engine())
        .filter_map(|(name, _)| {
            let interface = name
                .strip_prefix(POLICY_PACKAGE_PREFIX)?
                .strip_suffix(POLICY_PACKAGE_VERSION)?;
            PolicyKind::ALL
                .into_iter()
                .find(|kind| kind.interface() == interface)
        })
        .collect::<Vec<_>>();
    kinds.dedup();
    match kinds.as_slice() {
        [kind] => Ok(*kind),
        [] => {
            bail!("the component exports none of weir:policy/election, partitioner or acks @0.1.0")
        }
        _ => bail!("the component exports more than one policy interface; build one per kind"),
    }
}

impl Plugin {
    /// Compiles (or loads from the cache) and type-checks `bytes` against its kind's world.
    pub fn load(
        engine: &PolicyEngine,
        name: &str,
        version: &str,
        bytes: &[u8],
        limits: CallLimits,
        calls: Arc<AtomicU64>,
    ) -> anyhow::Result<Plugin> {
        let component = engine.compile(bytes).context("compiling the component")?;
        let kind = inspect(engine, &component)?;
        let id = PluginId {
            name: name.to_string(),
            version: version.to_string(),
            sha256: super::engine::sha256_hex(bytes),
        };
        Plugin::from_component(engine, component, kind, id, limits, calls)
    }

    /// Links and pre-instantiates a compiled component already checked by [`inspect`].
    pub fn from_component(
        engine: &PolicyEngine,
        component: Component,
        kind: PolicyKind,
        id: PluginId,
        limits: CallLimits,
        calls: Arc<AtomicU64>,
    ) -> anyhow::Result<Plugin> {
        let mut linker = Linker::<StoreState>::new(engine.engine());
        election::weir::policy::log::add_to_linker::<StoreState, HasSelf<StoreState>>(
            &mut linker,
            |state| state,
        )?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|error| anyhow::anyhow!("linking the component: {error}"))?;
        let pre = match kind {
            PolicyKind::Election => Pre::Election(election::ElectionPolicyPre::new(instance_pre)?),
            PolicyKind::Partitioner => {
                Pre::Partitioner(partitioner::PartitionerPolicyPre::new(instance_pre)?)
            }
            PolicyKind::Acks => Pre::Acks(acks::AcksPolicyPre::new(instance_pre)?),
        };
        let plugin = Plugin {
            label: Arc::from(id.to_string()),
            id,
            kind,
            engine: engine.clone(),
            pre,
            limits,
            calls,
            idle: Mutex::new(Vec::new()),
            consecutive_failures: AtomicU32::new(0),
            quarantined: AtomicBool::new(false),
        };
        // Instantiate once now: a component whose start-up traps is refused at load, and the
        // first real call finds an instance ready.
        let instance = plugin
            .instantiate()
            .map_err(|error| anyhow::anyhow!("instantiating the component: {error}"))?;
        plugin.give_back(instance);
        plugin.warm_up();
        Ok(plugin)
    }

    /// One throwaway call, so the guest's lazy start-up (its allocator, first-touched pages)
    /// is paid at load rather than by the first produce request after a swap. Its outcome is
    /// not judged: conformance does that at install.
    fn warm_up(&self) {
        let _ = match self.kind {
            PolicyKind::Election => self
                .elect(&election::PartitionState {
                    topic: String::new(),
                    partition: 0,
                    replicas: Vec::new(),
                    current_leader: None,
                    leader_epoch: 0,
                    reason: election::ElectionReason::LeaderFailure,
                    unclean_allowed: false,
                })
                .map(drop),
            PolicyKind::Partitioner => self.partition_batch("", b"k", &[1], &[0], 1).map(drop),
            PolicyKind::Acks => self
                .decide(&acks::Request {
                    stage: acks::Stage::AfterAppend,
                    acks: 1,
                    min_insync_replicas: 1,
                    replicas: Vec::new(),
                    leader_log_end_offset: 1,
                    high_watermark: 1,
                    flushed_offset: 1,
                    last_offset: 0,
                    elapsed_ms: 0,
                })
                .map(drop),
        };
    }

    fn instantiate(&self) -> wasmtime::Result<Instance> {
        let mut store = self.engine.new_store(self.label.clone(), self.limits);
        self.engine.begin_call(&mut store);
        let bindings = match &self.pre {
            Pre::Election(pre) => Bindings::Election(pre.instantiate(&mut store)?),
            Pre::Partitioner(pre) => Bindings::Partitioner(pre.instantiate(&mut store)?),
            Pre::Acks(pre) => Bindings::Acks(pre.instantiate(&mut store)?),
        };
        Ok(Instance { store, bindings })
    }

    fn give_back(&self, instance: Instance) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_INSTANCES {
            idle.push(instance);
        }
    }

    /// Runs `call` on an idle instance (or a fresh one) under the call's deadline.
    fn with_instance<R>(
        &self,
        call: impl FnOnce(&mut Instance) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut instance = match pooled {
            Some(instance) => instance,
            None => self.instantiate().map_err(|error| {
                tracing::debug!(plugin = %self.id, %error, "instantiation failed");
                match classify(&error) {
                    Fault::Trap => Fault::Instantiate,
                    other => other,
                }
            })?,
        };
        self.engine.begin_call(&mut instance.store);
        match call(&mut instance) {
            Ok(answer) => {
                self.give_back(instance);
                Ok(answer)
            }
            Err(error) => {
                tracing::debug!(plugin = %self.id, %error, "plugin call failed");
                Err(classify(&error))
            }
        }
    }

    pub fn elect(&self, state: &election::PartitionState) -> Result<election::Election, Fault> {
        self.with_instance(|instance| match &instance.bindings {
            Bindings::Election(bindings) => bindings
                .weir_policy_election()
                .call_elect(&mut instance.store, state),
            _ => Err(wasmtime::Error::msg("not an election plugin")),
        })
    }

    pub fn partition(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value_size: u32,
        partition_count: u32,
    ) -> Result<u32, Fault> {
        self.with_instance(|instance| match &instance.bindings {
            Bindings::Partitioner(bindings) => bindings.weir_policy_partitioner().call_partition(
                &mut instance.store,
                topic,
                key,
                value_size,
                partition_count,
            ),
            _ => Err(wasmtime::Error::msg("not a partitioner plugin")),
        })
    }

    pub fn partition_batch(
        &self,
        topic: &str,
        keys: &[u8],
        key_ends: &[u32],
        value_sizes: &[u32],
        partition_count: u32,
    ) -> Result<Vec<u32>, Fault> {
        self.with_instance(|instance| match &instance.bindings {
            Bindings::Partitioner(bindings) => {
                bindings.weir_policy_partitioner().call_partition_batch(
                    &mut instance.store,
                    topic,
                    keys,
                    key_ends,
                    value_sizes,
                    partition_count,
                )
            }
            _ => Err(wasmtime::Error::msg("not a partitioner plugin")),
        })
    }

    pub fn decide(&self, request: &acks::Request) -> Result<acks::Decision, Fault> {
        self.with_instance(|instance| match &instance.bindings {
            Bindings::Acks(bindings) => bindings
                .weir_policy_acks()
                .call_decide(&mut instance.store, request),
            _ => Err(wasmtime::Error::msg("not an acks plugin")),
        })
    }

    /// Counts a call's outcome; true when this failure is the one that quarantines the plugin.
    pub fn record_outcome(&self, ok: bool, quarantine_after: u32) -> bool {
        if ok {
            // Read first: a store on every call would bounce the cache line between threads.
            if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        failures == quarantine_after && !self.quarantined.swap(true, Ordering::AcqRel)
    }

    pub fn count_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Acquire)
    }

    /// Lifts a quarantine (re-activation).
    pub fn reinstate(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.quarantined.store(false, Ordering::Release);
    }
}
