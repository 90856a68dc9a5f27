//! The wasmtime engine every plugin runs in, compilation with a cache of precompiled artifacts,
//! and the sandbox of one call: a deadline in the guest's CPU time and a memory cap.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, OptLevel, ResourceLimiter, Store, UpdateDeadline};

use super::wit::election::weir::policy::log;
use crate::clock::thread_cpu_time_ns;

/// How often the epoch advances. A running guest looks at its CPU time once per tick, so a
/// runaway call overruns its budget by at most about this much CPU.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// A call may also never hold its thread longer than this many times its CPU budget in wall
/// time (counted from its first tick), even when it is preempted rather than running...
const WALL_CAP_FACTOR: u32 = 50;
/// ...but never less than this: a healthy call on a thread starved by load (or by the
/// hypervisor) must not be killed, and a starved thread is not freed sooner by killing its
/// call anyway. A runaway call is stopped by its CPU budget long before this.
const WALL_CAP_MIN: Duration = Duration::from_secs(1);

/// `WEIR_PLUGIN_PROFILE=perfmap` makes the plugins' compiled code visible to `perf`.
const PROFILE_ENV: &str = "WEIR_PLUGIN_PROFILE";

/// Log lines a plugin may write per second before the rest are dropped.
const LOG_LINES_PER_SECOND: u32 = 100;
/// Longest log line kept from a plugin.
const LOG_LINE_MAX_CHARS: usize = 512;

/// The limits of one plugin call.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// CPU time the guest may use per call.
    pub cpu_budget: Duration,
    /// Linear memory (and table) bytes an instance may grow to.
    pub memory_max_bytes: usize,
}

/// Why a call did not produce an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The guest trapped (unreachable, panic, out-of-bounds access, stack exhaustion, ...).
    Trap,
    /// The guest used its CPU budget.
    Timeout,
    /// The call held its thread past the wall-clock cap without using its CPU budget: the
    /// thread was starved (by load or by the hypervisor) rather than the guest running away.
    WallClock,
    /// The guest tried to grow memory beyond `policy.memory.max.bytes`.
    Memory,
    /// The guest answered, but not within the contract.
    InvalidAnswer,
    /// A fresh instance could not be created.
    Instantiate,
}

impl Fault {
    /// The `reason` label of `weir_policy_failures_total`.
    pub fn label(self) -> &'static str {
        match self {
            Fault::Trap => "trap",
            Fault::Timeout => "timeout",
            Fault::WallClock => "wall_clock",
            Fault::Memory => "memory",
            Fault::InvalidAnswer => "invalid_answer",
            Fault::Instantiate => "instantiate",
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum DeadlineExceeded {
    #[error("plugin call exceeded its deadline (CPU budget)")]
    CpuBudget,
    #[error("plugin call exceeded its deadline (wall-clock cap)")]
    WallClockCap,
}

#[derive(Debug, thiserror::Error)]
#[error("plugin tried to grow memory to {desired} bytes, above the cap of {max} bytes")]
struct MemoryCapExceeded {
    desired: usize,
    max: usize,
}

/// Classifies the error of a failed call.
pub fn classify(error: &wasmtime::Error) -> Fault {
    if let Some(deadline) = error.downcast_ref::<DeadlineExceeded>() {
        match deadline {
            DeadlineExceeded::CpuBudget => Fault::Timeout,
            DeadlineExceeded::WallClockCap => Fault::WallClock,
        }
    } else if error.downcast_ref::<MemoryCapExceeded>().is_some() {
        Fault::Memory
    } else {
        Fault::Trap
    }
}

/// Per-store state: the running call's deadline, the memory cap, and log rate limiting.
#[derive(Debug)]
pub struct StoreState {
    label: Arc<str>,
    limits: CallLimits,
    /// Thread CPU time and wall time at the running call's first epoch tick; none before it.
    call_first_tick: Option<(u64, Instant)>,
    log_window_start: Instant,
    log_lines_in_window: u32,
}

impl StoreState {
    /// Reads no clock: thread CPU time is a system call (it has no vDSO fast path), and nearly
    /// every call ends before the next tick, so the clock is read only once a tick arrives.
    fn begin_call(&mut self) {
        self.call_first_tick = None;
    }

    /// Called on every epoch tick while the guest runs. The budget counts from the call's first
    /// tick, so a runaway call is stopped after its budget plus at most one tick of CPU.
    fn check_deadline(&mut self) -> wasmtime::Result<UpdateDeadline> {
        let now = thread_cpu_time_ns();
        let (cpu_start, wall_start) = *self
            .call_first_tick
            .get_or_insert_with(|| (now, Instant::now()));
        if now.saturating_sub(cpu_start) >= self.limits.cpu_budget.as_nanos() as u64 {
            return Err(wasmtime::Error::new(DeadlineExceeded::CpuBudget));
        }
        // Wall time, preemption included (ticks missed while descheduled arrive as one callback).
        if wall_start.elapsed() >= (self.limits.cpu_budget * WALL_CAP_FACTOR).max(WALL_CAP_MIN) {
            return Err(wasmtime::Error::new(DeadlineExceeded::WallClockCap));
        }
        Ok(UpdateDeadline::Continue(1))
    }
}

impl ResourceLimiter for StoreState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let max = self.limits.memory_max_bytes;
        if desired > max {
            // An explicit error rather than `Ok(false)`: a guest allocator would treat a failed
            // grow as out-of-memory and abort with a less telling trap.
            return Err(wasmtime::Error::new(MemoryCapExceeded { desired, max }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Table elements are pointers: bound them by the same byte cap.
        let max = self.limits.memory_max_bytes / 8;
        if desired > max {
            return Err(wasmtime::Error::new(MemoryCapExceeded { desired, max }));
        }
        Ok(true)
    }
}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) {
        if self.log_window_start.elapsed() >= Duration::from_secs(1) {
            self.log_window_start = Instant::now();
            self.log_lines_in_window = 0;
        }
        self.log_lines_in_window += 1;
        if self.log_lines_in_window > LOG_LINES_PER_SECOND {
            return;
        }
        let message: String = message.chars().take(LOG_LINE_MAX_CHARS).collect();
        let plugin = &*self.label;
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// The engine shared by every plugin, and the thread that advances its epoch.
#[derive(Debug, Clone)]
pub struct PolicyEngine {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    ticker: Arc<Ticker>,
}

/// Ticks without a call after which the epoch thread parks: an idle broker should not wake a
/// thousand times a second for nothing.
const IDLE_TICKS_BEFORE_PARKING: u32 = 50;

/// The epoch thread's state, shared with every call.
#[derive(Debug)]
struct Ticker {
    /// Set by a call's start and by every deadline callback (a running guest), cleared by
    /// each tick: whether anything needs ticks.
    recent: AtomicBool,
    parked: AtomicBool,
    thread: std::sync::OnceLock<std::thread::Thread>,
}

impl Ticker {
    /// Marks activity and wakes a parked ticker. Costs one load when the ticker is running.
    fn touch(&self) {
        if !self.recent.load(Ordering::Relaxed) {
            // SeqCst pairs with the ticker's store of `parked` and load of `recent`: either it
            // sees this call, or this call sees it parked and wakes it.
            self.recent.store(true, Ordering::SeqCst);
            if self.parked.load(Ordering::SeqCst)
                && let Some(thread) = self.thread.get()
            {
                thread.unpark();
            }
        }
    }

    fn run(&self, engine: wasmtime::EngineWeak) {
        let mut idle_ticks = 0;
        loop {
            std::thread::sleep(EPOCH_TICK);
            match engine.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
            if self.recent.swap(false, Ordering::SeqCst) {
                idle_ticks = 0;
                continue;
            }
            idle_ticks += 1;
            if idle_ticks >= IDLE_TICKS_BEFORE_PARKING {
                self.parked.store(true, Ordering::SeqCst);
                if !self.recent.load(Ordering::SeqCst) {
                    // Bounded, so the thread notices within a second that its engine is gone.
                    std::thread::park_timeout(std::time::Duration::from_secs(1));
                }
                self.parked.store(false, Ordering::SeqCst);
                idle_ticks = 0;
            }
        }
    }
}

impl PolicyEngine {
    /// `cache_dir` holds precompiled artifacts (none: compile every time, e.g. the CLI).
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true)
            // Deep recursion must end in a trap long before it could touch the host's stack.
            .max_wasm_stack(512 * 1024);
        if std::env::var_os(PROFILE_ENV).is_some_and(|value| value == "perfmap") {
            // Names the plugins' compiled code for `perf report` (in /tmp/perf-<pid>.map).
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        let ticker = Arc::new(Ticker {
            recent: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        });
        let thread = {
            let engine = engine.weak();
            let ticker = ticker.clone();
            std::thread::Builder::new()
                .name("weir-policy-epoch".into())
                .spawn(move || ticker.run(engine))?
        };
        let _ = ticker.thread.set(thread.thread().clone());
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating plugin cache {}", dir.display()))?;
        }
        Ok(PolicyEngine {
            engine,
            cache_dir,
            ticker,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component, or loads the artifact this host precompiled for the same bytes,
    /// wasmtime version and engine configuration.
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        let Some(dir) = &self.cache_dir else {
            return Ok(Component::new(&self.engine, bytes)?);
        };
        let mut compatibility = std::hash::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut compatibility);
        let path = dir.join(format!(
            "{}-{:016x}.cwasm",
            sha256_hex(bytes),
            compatibility.finish()
        ));
        if path.exists() {
            match load_precompiled(&self.engine, &path) {
                Ok(component) => return Ok(component),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "precompiled plugin unreadable; compiling again");
                }
            }
        }
        let artifact = self.engine.precompile_component(bytes)?;
        // Loading the artifact just produced costs a fraction of compiling a second time.
        let component = deserialize_own_artifact(&self.engine, &artifact)?;
        let temporary = path.with_extension("tmp");
        if let Err(error) =
            std::fs::write(&temporary, &artifact).and_then(|()| std::fs::rename(&temporary, &path))
        {
            tracing::warn!(path = %path.display(), %error, "cannot cache a precompiled plugin");
        }
        Ok(component)
    }

    /// A store for one instance of a plugin, with its limits and deadline callback installed.
    pub fn new_store(&self, label: Arc<str>, limits: CallLimits) -> Store<StoreState> {
        let now = Instant::now();
        let mut store = Store::new(
            &self.engine,
            StoreState {
                label,
                limits,
                call_first_tick: None,
                log_window_start: now,
                log_lines_in_window: 0,
            },
        );
        store.limiter(|state| state);
        let ticker = self.ticker.clone();
        store.epoch_deadline_callback(move |mut context| {
            // A running guest keeps the ticker awake; one that was descheduled while the
            // ticker parked wakes it here, on its first check after resuming.
            ticker.touch();
            context.data_mut().check_deadline()
        });
        store.set_epoch_deadline(1);
        store
    }

    /// Arms the deadline for the call about to run in `store`.
    pub fn begin_call(&self, store: &mut Store<StoreState>) {
        self.ticker.touch();
        store.data_mut().begin_call();
        store.set_epoch_deadline(1);
    }
}

/// Loads an artifact from this host's own cache directory.
#[allow(unsafe_code)]
fn load_precompiled(engine: &Engine, path: &std::path::Path) -> anyhow::Result<Component> {
    // SAFETY: only artifacts this host wrote itself (precompile_component into its own data
    // directory) are loaded, under a name keyed by the engine's compatibility hash; wasmtime
    // also checks the artifact's header against the engine before using it.
    Ok(unsafe { Component::deserialize_file(engine, path) }?)
}

/// Loads an artifact this engine produced a moment ago, in memory.
#[allow(unsafe_code)]
fn deserialize_own_artifact(engine: &Engine, artifact: &[u8]) -> anyhow::Result<Component> {
    // SAFETY: `artifact` comes straight from `engine.precompile_component`, never from outside.
    Ok(unsafe { Component::deserialize(engine, artifact) }?)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}
