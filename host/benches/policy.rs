//! What running policies as WebAssembly costs, against the same logic compiled natively.
//!
//! Every figure is printed beside a reference measured in the same run, because the machine's
//! load moves both alike. The native references are the default plugins' own crates
//! (`weir_election_default::elect`, `weir_partitioner_default::{partition, partition_for_key}`,
//! `weir_acks_default::decide`) linked into this binary: the exact logic the built-in components
//! run, minus the sandbox.
//!
//! 1. Per-call latency of each built-in through [`Policies`] (`elect`, `partition`, `decide`)
//!    against the native function on inputs already in the SDK's types. The acks call is also
//!    taken apart layer by layer: a bare wasmtime call on a dedicated instance (request lists of
//!    0, 1 and 3 replicas), plus arming the call's deadline (`PolicyEngine::begin_call`), plus
//!    the instance pool (`Plugin::decide`), plus resolution, counters and validation
//!    (`Policies`).
//! 2. The partitioner on 1000 keys: 1000 single calls, one `partition_batch` call, and native
//!    murmur2 per key (target: the batch within 2x of native per key), with the batch call taken
//!    apart: packing the keys, the bare wasmtime call, and the guest's batch code run natively.
//!
//!    Parts 1 and 2 run twice: under criterion (its report, then its means), and by hand in
//!    interleaved rounds, every routine timed in every round with the starting one rotating. The
//!    table takes the interleaved figures, each routine's fastest round: on a machine other
//!    processes load, a criterion run of one function can land in a busy second and the next in
//!    a quiet one, while interleaving hands every routine the same conditions.
//! 3. Plugin life cycle: compiling a built-in (`PolicyEngine::compile` without a cache, with a
//!    cold cache, and with a warm one), `Policies::open` on a fresh directory and again on the
//!    same one (cached artifacts), instantiation (a fresh store and instance from the
//!    pre-instantiated component, through wasmtime and the public bindings, as `Plugin`'s
//!    private `instantiate` does), `Plugin::from_component` and dropping a `Plugin`, install,
//!    and swaps: `Policies::activate` of an installed version and of the built-in, the first
//!    call on the new version, and what a thread calling all along sees meanwhile.
//! 4. Produce throughput in process: a real broker (`Broker::start` in a temporary directory),
//!    batches of 1 KiB records through `Partition::produce` with the WASM acks plugin and with
//!    the native acks logic (`weir_acks_default::decide` behind a field-by-field conversion),
//!    acks=1 and acks=-1, on a tokio current-thread runtime, for two batch sizes: 16 KiB (the
//!    Java client's `batch.size`, the least work per decide call) and 960 KiB (about librdkafka's).
//!    The four variants alternate in blocks of 4 MiB of records on the same partition (a fresh
//!    topic per round), and each variant's median block rate is compared, per second of wall
//!    time and per second of the thread's CPU time. Target: WASM >= 0.95 x native.
//!
//! `cargo bench -p weir --bench policy` runs it all (about a minute on 2 cores).
//! Under `cargo test --benches` (no `--bench`) criterion runs each function once, the manual
//! parts shrink to a smoke pass, and no ratio means anything. `WEIR_BENCH_DIR` picks the parent of
//! the temporary directory (default: the system's). `WEIR_BENCH_ONLY=<part>` runs one part:
//! `per-call` (parts 1 and 2), `lifecycle` (3) or `produce` (4).

#[path = "support/criterion.rs"]
mod criterion_estimates;
#[path = "support/table.rs"]
mod table;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, ensure};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use criterion_estimates::{criterion_dir, mean_ns};
use table::{Row, print_table, verdict};
use wasmtime::component::{HasSelf, Linker};
use weir::broker::Broker;
use weir::config::BrokerConfig;
use weir::policy::engine::{CallLimits, PolicyEngine, StoreState};
use weir::policy::plugin::Plugin;
use weir::policy::wit::{acks, election, partitioner};
use weir::policy::{Policies, PolicyConfig, PolicyKind, defaults};
use weir::replication::Partition;
use weir::replication::partition::ProduceAcks;
use weir::storage::Compression;
use weir::storage::records::{ProducerRecord, encode_producer_batch};
use weir_plugin_sdk as sdk;

const KIB: usize = 1024;
/// Keys in the partitioner batch comparison.
const BATCH_KEYS: usize = 1000;
/// Partitions the partitioner spreads over.
const PARTITION_COUNT: u32 = 12;
/// Records per produced batch, each `RECORD_VALUE_BYTES` of value.
/// Records per produced batch, each `RECORD_VALUE_BYTES` of value: 16 KiB, the Java client's
/// `batch.size` default and the hardest case (the least work per decide call), and 960 KiB, about
/// librdkafka's `batch.size` default (1,000,000 bytes), which a loaded producer fills.
const RECORDS_PER_BATCH: [usize; 2] = [16, 960];
const RECORD_VALUE_BYTES: usize = KIB;
/// `partition_batch` per key within this multiple of native murmur2 per key.
const TARGET_BATCH_VS_NATIVE: f64 = 2.0;
/// Produce throughput with the WASM acks plugin at this fraction of the native one, or better.
const TARGET_PRODUCE_RATIO: f64 = 0.95;

/// How much the hand-timed parts do (criterion sizes its own runs).
#[derive(Debug, Clone, Copy)]
struct Scale {
    benchmarking: bool,
    /// Repetitions of every life-cycle measurement (compile, open, activate, ...).
    lifecycle_reps: usize,
    /// Fresh instances timed for the instantiation figure.
    instantiations: usize,
    /// How long the concurrent caller runs alone, and then during swaps.
    caller_window: Duration,
    /// Produce rounds, each on a fresh topic.
    produce_rounds: usize,
    /// Blocks per variant per round; the four variants' blocks alternate.
    produce_blocks: usize,
    /// Record bytes per block (a block is as many batches as this takes, at least one).
    produce_block_bytes: usize,
}

impl Scale {
    /// Mirrors criterion's own choice: it benchmarks only under `--bench` without `--test`.
    fn from_args() -> Scale {
        if criterion_estimates::benchmarking() {
            Scale {
                benchmarking: true,
                lifecycle_reps: 10,
                instantiations: 300,
                caller_window: Duration::from_millis(300),
                produce_rounds: 8,
                produce_blocks: 16,
                produce_block_bytes: 4 << 20,
            }
        } else {
            Scale {
                benchmarking: false,
                lifecycle_reps: 2,
                instantiations: 5,
                caller_window: Duration::from_millis(20),
                produce_rounds: 1,
                produce_blocks: 2,
                produce_block_bytes: 32 << 10,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs, and the WIT <-> SDK conversions the native side needs.
// ---------------------------------------------------------------------------------------------

/// A leader failure on three replicas: the first is fenced, the second out of the ISR, so the
/// default elects the third.
fn election_state() -> election::PartitionState {
    use election::{BrokerStatus, ElectionReason, ReplicaState};
    let replica = |broker_id, in_isr, status, rack: &str| ReplicaState {
        broker_id,
        in_isr,
        status,
        log_end_offset: 1_000,
        last_caught_up_ms: 1_700_000_000_000,
        rack: Some(rack.to_string()),
    };
    election::PartitionState {
        topic: "orders".into(),
        partition: 7,
        replicas: vec![
            replica(1, true, BrokerStatus::Fenced, "rack-a"),
            replica(2, false, BrokerStatus::Alive, "rack-b"),
            replica(3, true, BrokerStatus::Alive, "rack-c"),
        ],
        current_leader: Some(1),
        leader_epoch: 4,
        reason: ElectionReason::LeaderFailure,
        unclean_allowed: false,
    }
}

/// An acks=all produce after its append on three in-sync replicas, the high watermark past it:
/// the default completes it.
fn acks_request() -> acks::Request {
    acks::Request {
        stage: acks::Stage::AfterAppend,
        acks: -1,
        min_insync_replicas: 2,
        replicas: (1..=3)
            .map(|broker_id| acks::ReplicaProgress {
                broker_id,
                in_isr: true,
                log_end_offset: 1_016,
                rack_id: Some(broker_id as u32),
            })
            .collect(),
        leader_log_end_offset: 1_016,
        high_watermark: 1_016,
        flushed_offset: 1_000,
        last_offset: 1_015,
        elapsed_ms: 1,
    }
}

fn sdk_partition_state(state: &election::PartitionState) -> sdk::election::PartitionState {
    sdk::election::PartitionState {
        topic: state.topic.clone(),
        partition: state.partition,
        replicas: state
            .replicas
            .iter()
            .map(|replica| sdk::election::ReplicaState {
                broker_id: replica.broker_id,
                in_isr: replica.in_isr,
                status: match replica.status {
                    election::BrokerStatus::Alive => sdk::election::BrokerStatus::Alive,
                    election::BrokerStatus::Fenced => sdk::election::BrokerStatus::Fenced,
                    election::BrokerStatus::ShuttingDown => {
                        sdk::election::BrokerStatus::ShuttingDown
                    }
                },
                log_end_offset: replica.log_end_offset,
                last_caught_up_ms: replica.last_caught_up_ms,
                rack: replica.rack.clone(),
            })
            .collect(),
        current_leader: state.current_leader,
        leader_epoch: state.leader_epoch,
        reason: match state.reason {
            election::ElectionReason::LeaderFailure => sdk::election::ElectionReason::LeaderFailure,
            election::ElectionReason::ControlledShutdown => {
                sdk::election::ElectionReason::ControlledShutdown
            }
            election::ElectionReason::Preferred => sdk::election::ElectionReason::Preferred,
            election::ElectionReason::Unclean => sdk::election::ElectionReason::Unclean,
            election::ElectionReason::Rebalance => sdk::election::ElectionReason::Rebalance,
        },
        unclean_allowed: state.unclean_allowed,
    }
}

fn host_election(answer: sdk::election::Election) -> election::Election {
    election::Election {
        leader: answer.leader,
        reason: answer.reason,
    }
}

fn sdk_request(request: &acks::Request) -> sdk::acks::Request {
    sdk::acks::Request {
        stage: match request.stage {
            acks::Stage::BeforeAppend => sdk::acks::Stage::BeforeAppend,
            acks::Stage::AfterAppend => sdk::acks::Stage::AfterAppend,
        },
        acks: request.acks,
        min_insync_replicas: request.min_insync_replicas,
        replicas: request
            .replicas
            .iter()
            .map(|replica| sdk::acks::ReplicaProgress {
                broker_id: replica.broker_id,
                in_isr: replica.in_isr,
                log_end_offset: replica.log_end_offset,
                rack_id: replica.rack_id,
            })
            .collect(),
        leader_log_end_offset: request.leader_log_end_offset,
        high_watermark: request.high_watermark,
        flushed_offset: request.flushed_offset,
        last_offset: request.last_offset,
        elapsed_ms: request.elapsed_ms,
    }
}

fn host_decision(decision: sdk::acks::Decision) -> acks::Decision {
    match decision {
        sdk::acks::Decision::Wait => acks::Decision::Wait,
        sdk::acks::Decision::Complete => acks::Decision::Complete,
        sdk::acks::Decision::Fail(code) => acks::Decision::Fail(code),
    }
}

/// The native acks baseline of the produce comparison: the default's logic on the host's request,
/// converted field by field as a native host policy taking these types would not need to.
fn native_decide(request: &acks::Request) -> acks::Decision {
    host_decision(weir_acks_default::decide(&sdk_request(request)))
}

/// The sandbox limits a default broker runs plugins under.
fn policy_config() -> PolicyConfig {
    BrokerConfig::default().policy
}

fn call_limits(config: &PolicyConfig) -> CallLimits {
    CallLimits {
        cpu_budget: config.call_timeout,
        memory_max_bytes: config.memory_max_bytes,
    }
}

// ---------------------------------------------------------------------------------------------
// Parts 1 and 2: criterion micro-benchmarks.
// ---------------------------------------------------------------------------------------------

/// The functions criterion actually ran (a filter may skip some), as `group/function`.
#[derive(Debug, Default)]
struct Ran(RefCell<BTreeSet<String>>);

impl Ran {
    fn bench(
        &self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        group_name: &str,
        function: &str,
        mut routine: impl FnMut(),
    ) {
        group.bench_function(function, |bencher| {
            self.0
                .borrow_mut()
                .insert(format!("{group_name}/{function}"));
            bencher.iter(&mut routine);
        });
    }

    /// Criterion's mean in ns per iteration, when the function ran in benchmark mode.
    fn mean_ns(&self, scale: Scale, group: &str, function: &str) -> Option<f64> {
        if !scale.benchmarking || !self.0.borrow().contains(&format!("{group}/{function}")) {
            return None;
        }
        mean_ns(&criterion_dir(), group, function)
    }
}

/// A pre-instantiated acks component, for the layers below `Plugin`.
struct BareAcks {
    engine: PolicyEngine,
    store: wasmtime::Store<StoreState>,
    bindings: acks::AcksPolicy,
}

impl BareAcks {
    fn new(
        engine: &PolicyEngine,
        pre: &acks::AcksPolicyPre<StoreState>,
        limits: CallLimits,
    ) -> Self {
        let mut store = engine.new_store(Arc::from("bench-bare"), limits);
        engine.begin_call(&mut store);
        let bindings = pre.instantiate(&mut store).expect("instantiating acks");
        // The bare call never re-arms its deadline: push it out of reach (about 35 years of
        // 1 ms epoch ticks), so the deadline callback never runs.
        store.set_epoch_deadline(1 << 40);
        BareAcks {
            engine: engine.clone(),
            store,
            bindings,
        }
    }

    fn decide(&mut self, request: &acks::Request) -> acks::Decision {
        self.bindings
            .weir_policy_acks()
            .call_decide(&mut self.store, request)
            .expect("a bare decide call")
    }

    /// As `Plugin` calls: arms the deadline first.
    fn decide_with_deadline(&mut self, request: &acks::Request) -> acks::Decision {
        self.engine.begin_call(&mut self.store);
        self.decide(request)
    }
}

/// A pre-instantiated partitioner on a store whose deadline is out of reach, as [`BareAcks`].
struct BarePartitioner {
    store: wasmtime::Store<StoreState>,
    bindings: partitioner::PartitionerPolicy,
}

impl BarePartitioner {
    fn new(engine: &PolicyEngine, limits: CallLimits) -> anyhow::Result<Self> {
        let pre = partitioner::PartitionerPolicyPre::new(link(engine, defaults::PARTITIONER)?)?;
        let mut store = engine.new_store(Arc::from("bench-bare"), limits);
        engine.begin_call(&mut store);
        let bindings = pre.instantiate(&mut store)?;
        store.set_epoch_deadline(1 << 40);
        Ok(BarePartitioner { store, bindings })
    }

    fn partition_batch(&mut self, keys: &[u8], ends: &[u32], value_sizes: &[u32]) -> Vec<u32> {
        self.bindings
            .weir_policy_partitioner()
            .call_partition_batch(
                &mut self.store,
                "orders",
                keys,
                ends,
                value_sizes,
                PARTITION_COUNT,
            )
            .expect("a bare partition_batch call")
    }
}

/// Compiles and links a built-in as `Plugin::from_component` does, up to the pre-instantiation.
fn link(
    engine: &PolicyEngine,
    bytes: &[u8],
) -> anyhow::Result<wasmtime::component::InstancePre<StoreState>> {
    let component = engine.compile(bytes)?;
    let mut linker = Linker::<StoreState>::new(engine.engine());
    election::weir::policy::log::add_to_linker::<StoreState, HasSelf<StoreState>>(
        &mut linker,
        |state| state,
    )?;
    Ok(linker.instantiate_pre(&component)?)
}

fn acks_pre(engine: &PolicyEngine) -> anyhow::Result<acks::AcksPolicyPre<StoreState>> {
    Ok(acks::AcksPolicyPre::new(link(engine, defaults::ACKS)?)?)
}

fn micro_benchmarks(
    criterion: &mut Criterion,
    policies: &Policies,
    ran: &Ran,
) -> anyhow::Result<()> {
    use std::hint::black_box;

    // elect
    let state = election_state();
    let sdk_state = sdk_partition_state(&state);
    let wasm_answer = policies.elect(None, &state);
    let native_answer = host_election(weir_election_default::elect(&sdk_state));
    ensure!(
        wasm_answer == native_answer && wasm_answer.leader == Some(3),
        "elect: WASM {wasm_answer:?}, native {native_answer:?}"
    );
    let mut group = criterion.benchmark_group("elect");
    ran.bench(&mut group, "elect", "policies", || {
        black_box(policies.elect(None, black_box(&state)));
    });
    ran.bench(&mut group, "elect", "native", || {
        black_box(weir_election_default::elect(black_box(&sdk_state)));
    });
    group.finish();

    // partition (one keyed record)
    let key: &[u8] = b"order-00000042";
    let sticky = weir_partitioner_default::Sticky::new();
    ensure!(
        policies.partition(None, "orders", Some(key), 1024, PARTITION_COUNT)
            == weir_partitioner_default::partition(&sticky, Some(key), 1024, PARTITION_COUNT),
        "partition: WASM and native disagree"
    );
    let mut group = criterion.benchmark_group("partition");
    ran.bench(&mut group, "partition", "policies", || {
        black_box(policies.partition(
            None,
            black_box("orders"),
            black_box(Some(key)),
            1024,
            PARTITION_COUNT,
        ));
    });
    ran.bench(&mut group, "partition", "native", || {
        black_box(weir_partitioner_default::partition(
            &sticky,
            black_box(Some(key)),
            1024,
            PARTITION_COUNT,
        ));
    });
    group.finish();

    // decide
    let request = acks_request();
    let sdk_req = sdk_request(&request);
    ensure!(
        policies.decide(None, &request) == native_decide(&request),
        "decide: WASM and native disagree"
    );
    let mut group = criterion.benchmark_group("decide");
    ran.bench(&mut group, "decide", "policies", || {
        black_box(policies.decide(None, black_box(&request)));
    });
    ran.bench(&mut group, "decide", "native", || {
        black_box(weir_acks_default::decide(black_box(&sdk_req)));
    });
    group.finish();

    // partitioner, 1000 keys
    let keys: Vec<Vec<u8>> = (0..BATCH_KEYS)
        .map(|i| format!("order-{i:08}").into_bytes())
        .collect();
    let key_refs: Vec<Option<&[u8]>> = keys.iter().map(|key| Some(key.as_slice())).collect();
    let value_sizes = vec![RECORD_VALUE_BYTES as u32; BATCH_KEYS];
    let native: Vec<u32> = keys
        .iter()
        .map(|key| weir_partitioner_default::partition_for_key(key, PARTITION_COUNT))
        .collect();
    ensure!(
        policies.partition_batch(None, "orders", &key_refs, &value_sizes, PARTITION_COUNT)
            == native,
        "partition_batch: WASM and native disagree"
    );
    let mut group = criterion.benchmark_group("partition_1000_keys");
    group.throughput(Throughput::Elements(BATCH_KEYS as u64));
    ran.bench(&mut group, "partition_1000_keys", "single_calls", || {
        for (key, &size) in key_refs.iter().zip(&value_sizes) {
            black_box(policies.partition(None, "orders", *key, size, PARTITION_COUNT));
        }
    });
    ran.bench(&mut group, "partition_1000_keys", "batch_call", || {
        black_box(policies.partition_batch(
            None,
            "orders",
            black_box(&key_refs),
            &value_sizes,
            PARTITION_COUNT,
        ));
    });
    ran.bench(&mut group, "partition_1000_keys", "native_murmur2", || {
        for key in &keys {
            black_box(weir_partitioner_default::partition_for_key(
                black_box(key),
                PARTITION_COUNT,
            ));
        }
    });
    group.finish();
    Ok(())
}

/// Criterion's same-run means, printed after its report (the table uses the interleaved figures).
fn print_criterion_means(ran: &Ran, scale: Scale) {
    let mean = |group: &str, function: &str| ran.mean_ns(scale, group, function);
    let mut lines = Vec::new();
    for kind in ["elect", "partition", "decide"] {
        let (wasm, native) = (mean(kind, "policies"), mean(kind, "native"));
        if let (Some(wasm), Some(native)) = (wasm, native) {
            lines.push(format!(
                "  {kind}: Policies {} native {} ratio {:.1}",
                ns(wasm),
                ns(native),
                wasm / native
            ));
        }
    }
    let group = "partition_1000_keys";
    let per_key = |function: &str| mean(group, function).map(|ns| ns / BATCH_KEYS as f64);
    if let (Some(single), Some(batch), Some(native)) = (
        per_key("single_calls"),
        per_key("batch_call"),
        per_key("native_murmur2"),
    ) {
        lines.push(format!(
            "  1000 keys, per key: single calls {} batch {} native murmur2 {} (batch/native {:.2})",
            ns(single),
            ns(batch),
            ns(native),
            batch / native
        ));
    }
    if !lines.is_empty() {
        println!("criterion means, same run:");
        for line in lines {
            println!("{line}");
        }
    }
}

/// A routine timed by [`interleaved`]: `calls` runs per round, each worth `units` of what is
/// reported (1000 for a loop over 1000 keys reported per key).
struct Layer<'a> {
    name: &'static str,
    calls: usize,
    units: usize,
    routine: Box<dyn FnMut() + 'a>,
}

impl<'a> Layer<'a> {
    fn new(name: &'static str, calls: usize, routine: impl FnMut() + 'a) -> Self {
        Layer {
            name,
            calls,
            units: 1,
            routine: Box::new(routine),
        }
    }

    fn per(mut self, units: usize) -> Self {
        self.units = units;
        self
    }
}

/// Times `layers` in interleaved rounds (the starting layer rotating) and returns each one's ns
/// per unit: (fastest round, median round). Interleaving makes load from other processes fall
/// on every layer alike; the fastest round is the one nobody preempted, which keeps the
/// differences between layers additive.
fn interleaved(layers: &mut [Layer<'_>], rounds: usize) -> Vec<(f64, f64)> {
    let mut samples = vec![Vec::with_capacity(rounds); layers.len()];
    for round in 0..rounds {
        for offset in 0..layers.len() {
            let index = (round + offset) % layers.len();
            let layer = &mut layers[index];
            let started = Instant::now();
            for _ in 0..layer.calls {
                (layer.routine)();
            }
            samples[index]
                .push(started.elapsed().as_nanos() as f64 / (layer.calls * layer.units) as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut layer| {
            layer.sort_by(f64::total_cmp);
            (layer[0], layer[layer.len() / 2])
        })
        .collect()
}

/// Parts 1 and 2 by hand, interleaved: each built-in through `Policies` beside its native logic;
/// where a `decide` call's time goes, layer by layer (a bare wasmtime call with request lists of
/// 0, 1 and 3 replicas, plus arming the deadline, plus the instance pool (`Plugin`), plus
/// resolution, counters and validation (`Policies`)); and the partitioner on 1000 keys.
/// Returns the steady `Policies::decide` latency in ns.
fn per_call_comparison(
    scale: Scale,
    policies: &Policies,
    config: PolicyConfig,
    rows: &mut Vec<Row>,
) -> anyhow::Result<f64> {
    use std::hint::black_box;
    let state = election_state();
    let sdk_state = sdk_partition_state(&state);
    let key: &[u8] = b"order-00000042";
    let sticky = weir_partitioner_default::Sticky::new();
    let request = acks_request();
    let with_replicas = |count: usize| acks::Request {
        replicas: request.replicas[..count].to_vec(),
        ..request.clone()
    };
    let (request_0, request_1) = (with_replicas(0), with_replicas(1));
    let sdk_req = sdk_request(&request);
    let engine = PolicyEngine::new(None)?;
    let limits = call_limits(&config);
    let pre = acks_pre(&engine)?;
    let mut bare = BareAcks::new(&engine, &pre, limits);
    let mut armed = BareAcks::new(&engine, &pre, limits);
    let plugin = Plugin::load(
        &engine,
        "acks-bench",
        "1",
        defaults::ACKS,
        limits,
        Arc::new(AtomicU64::new(0)),
    )?;
    let expected = native_decide(&request);
    ensure!(
        expected == acks::Decision::Complete
            && bare.decide(&request) == expected
            && armed.decide_with_deadline(&request) == expected
            && plugin.decide(&request) == Ok(expected)
            && policies.decide(None, &request) == expected,
        "decide: the layers disagree"
    );
    let keys: Vec<Vec<u8>> = (0..BATCH_KEYS)
        .map(|i| format!("order-{i:08}").into_bytes())
        .collect();
    let key_refs: Vec<Option<&[u8]>> = keys.iter().map(|key| Some(key.as_slice())).collect();
    let value_sizes = vec![RECORD_VALUE_BYTES as u32; BATCH_KEYS];
    let (packed, ends) = sdk::partitioner::pack_keys(key_refs.iter().copied());
    let mut bare_partitioner = BarePartitioner::new(&engine, limits)?;
    let guest_code_natively = || {
        use sdk::partitioner::Partitioner;
        weir_partitioner_default::DefaultPartitioner::partition_batch(
            "orders",
            sdk::partitioner::BatchKeys {
                bytes: &packed,
                ends: &ends,
            },
            &value_sizes,
            PARTITION_COUNT,
        )
    };
    let native: Vec<u32> = keys
        .iter()
        .map(|key| weir_partitioner_default::partition_for_key(key, PARTITION_COUNT))
        .collect();
    ensure!(
        bare_partitioner.partition_batch(&packed, &ends, &value_sizes) == native
            && guest_code_natively() == native,
        "partition_batch: the layers disagree"
    );

    let bare = RefCell::new(bare);
    let n = if scale.benchmarking { 2000 } else { 5 };
    let k = if scale.benchmarking { 40 } else { 1 };
    let mut layers = vec![
        // 0-1: elect
        Layer::new("elect: Policies (WASM)", n, || {
            black_box(policies.elect(None, black_box(&state)));
        }),
        Layer::new("elect: native", n, || {
            black_box(weir_election_default::elect(black_box(&sdk_state)));
        }),
        // 2-3: partition
        Layer::new("partition: Policies (WASM)", n, || {
            black_box(policies.partition(
                None,
                "orders",
                black_box(Some(key)),
                1024,
                PARTITION_COUNT,
            ));
        }),
        Layer::new("partition: native", n, || {
            black_box(weir_partitioner_default::partition(
                &sticky,
                black_box(Some(key)),
                1024,
                PARTITION_COUNT,
            ));
        }),
        // 4-5: decide
        Layer::new("decide: Policies (WASM)", n, || {
            black_box(policies.decide(None, black_box(&request)));
        }),
        Layer::new("decide: native", n, || {
            black_box(weir_acks_default::decide(black_box(&sdk_req)));
        }),
        // 6-13: decide layers
        Layer::new("native incl. WIT->SDK conversion", n, || {
            black_box(native_decide(black_box(&request)));
        }),
        Layer::new("bare wasmtime call, 0 replicas", n, || {
            black_box(bare.borrow_mut().decide(black_box(&request_0)));
        }),
        Layer::new("bare wasmtime call, 1 replica", n, || {
            black_box(bare.borrow_mut().decide(black_box(&request_1)));
        }),
        Layer::new("bare wasmtime call, 3 replicas", n, || {
            black_box(bare.borrow_mut().decide(black_box(&request)));
        }),
        Layer::new("+ deadline arming (begin_call)", n, || {
            black_box(armed.decide_with_deadline(black_box(&request)));
        }),
        Layer::new("+ instance pool (Plugin::decide)", n, || {
            black_box(plugin.decide(black_box(&request)).ok());
        }),
        Layer::new("= + resolve/count/check (Policies)", n, || {
            black_box(policies.decide(None, black_box(&request)));
        }),
        Layer::new("thread CPU clock read (reference)", n, || {
            black_box(weir::clock::thread_cpu_time_ns());
        }),
        // 14-16: 1000 keys
        Layer::new("1000 keys: single calls", (k / 10).max(1), || {
            for (key, &size) in key_refs.iter().zip(&value_sizes) {
                black_box(policies.partition(None, "orders", *key, size, PARTITION_COUNT));
            }
        })
        .per(BATCH_KEYS),
        Layer::new("1000 keys: one batch call", k, || {
            black_box(policies.partition_batch(
                None,
                "orders",
                black_box(&key_refs),
                &value_sizes,
                PARTITION_COUNT,
            ));
        })
        .per(BATCH_KEYS),
        Layer::new("1000 keys: native murmur2", k, || {
            for key in &keys {
                black_box(weir_partitioner_default::partition_for_key(
                    black_box(key),
                    PARTITION_COUNT,
                ));
            }
        })
        .per(BATCH_KEYS),
        // 17-19: where the batch call's time goes
        Layer::new("1000 keys: pack_keys (host side)", k, || {
            black_box(sdk::partitioner::pack_keys(
                black_box(&key_refs).iter().copied(),
            ));
        })
        .per(BATCH_KEYS),
        Layer::new("1000 keys: bare partition_batch call", k, || {
            black_box(bare_partitioner.partition_batch(black_box(&packed), &ends, &value_sizes));
        })
        .per(BATCH_KEYS),
        Layer::new("1000 keys: the guest's batch code, native", k, || {
            black_box(guest_code_natively());
        })
        .per(BATCH_KEYS),
    ];
    let rounds = if scale.benchmarking { 50 } else { 2 };
    let figures = interleaved(&mut layers, rounds);
    println!(
        "per call, ns (fastest / median of {rounds} interleaved rounds; decide on a 3-replica \
         request unless said; 1000-key figures per key):"
    );
    for (layer, (fastest, median)) in layers.iter().zip(&figures) {
        println!(
            "  {:<38} {:>10} / {:>10}",
            layer.name,
            ns(*fastest),
            ns(*median)
        );
    }
    let fastest = |index: usize| figures[index].0;
    let row = |what: &str, value: f64, reference: f64, label: &str| Row {
        what: what.into(),
        value: ns(value),
        reference: format!("{} {label}", ns(reference)),
        ratio: format!("{:.2}", value / reference),
        target: "-".into(),
        verdict: String::new(),
    };
    for (wasm, what) in [(0, "elect"), (2, "partition"), (4, "decide")] {
        rows.push(row(
            &format!("{what}: Policies (WASM) per call"),
            fastest(wasm),
            fastest(wasm + 1),
            "native",
        ));
    }
    // Each decide layer against the one it adds to.
    let native = fastest(5);
    for (index, reference, label) in [
        (6, native, "native"),
        (7, native, "native"),
        (8, native, "native"),
        (9, native, "native"),
        (10, fastest(9), "bare"),
        (11, fastest(10), "armed"),
        (12, fastest(11), "Plugin"),
        (13, native, "native"),
    ] {
        rows.push(row(
            &format!("  decide: {}", layers[index].name),
            fastest(index),
            reference,
            label,
        ));
    }
    let murmur2 = fastest(16);
    rows.push(row(
        "1000 keys: single calls, per key",
        fastest(14),
        murmur2,
        "murmur2",
    ));
    let mut batch = row(
        "1000 keys: one batch call, per key",
        fastest(15),
        murmur2,
        "murmur2",
    );
    batch.target = format!("<= {TARGET_BATCH_VS_NATIVE:.1}x native");
    batch.verdict = verdict(fastest(15) / murmur2 <= TARGET_BATCH_VS_NATIVE);
    rows.push(batch);
    for index in [17, 18, 19] {
        rows.push(row(
            &format!("  {}", layers[index].name.replace("1000 keys: ", "")),
            fastest(index),
            murmur2,
            "murmur2",
        ));
    }
    Ok(fastest(4))
}

// ---------------------------------------------------------------------------------------------
// Part 3: compile, instantiate, install, swap.
// ---------------------------------------------------------------------------------------------

fn time<R>(work: impl FnOnce() -> R) -> (Duration, R) {
    let started = Instant::now();
    let result = work();
    (started.elapsed(), result)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index]
}

fn lifecycle(
    scale: Scale,
    config: PolicyConfig,
    scratch: &Path,
    steady_decide_ns: Option<f64>,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let reps = scale.lifecycle_reps;

    // Compile each built-in: no cache; a cold cache (compiles for the artifact and again for the
    // component, then writes the artifact); a warm cache (deserializes the artifact).
    let plain = PolicyEngine::new(None)?;
    for (_, name, bytes) in defaults::BUILTIN {
        let uncached = median(
            (0..reps)
                .map(|_| time(|| plain.compile(bytes).expect("compiling")).0)
                .collect(),
        );
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for rep in 0..reps {
            let dir = scratch.join(format!("compile-cache-{name}-{rep}"));
            let engine = PolicyEngine::new(Some(dir.clone()))?;
            cold.push(time(|| engine.compile(bytes).expect("compiling")).0);
            warm.push(time(|| engine.compile(bytes).expect("loading the artifact")).0);
            drop(engine);
            std::fs::remove_dir_all(&dir)?;
        }
        let (cold, warm) = (median(cold), median(warm));
        println!(
            "compile {name} ({} KiB): no cache {}, cold cache {}, cached {}",
            bytes.len() / KIB,
            dur(uncached),
            dur(cold),
            dur(warm)
        );
        rows.push(Row {
            what: format!("compile {name}, no cache"),
            value: dur(uncached),
            reference: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            verdict: String::new(),
        });
        rows.push(Row {
            what: "  same, cold cache (compile+write)".into(),
            value: dur(cold),
            reference: format!("{} no cache", dur(uncached)),
            ratio: format!("{:.2}", secs(cold) / secs(uncached)),
            target: "-".into(),
            verdict: String::new(),
        });
        rows.push(Row {
            what: "  same, cached artifact".into(),
            value: dur(warm),
            reference: format!("{} no cache", dur(uncached)),
            ratio: format!("{:.3}", secs(warm) / secs(uncached)),
            target: "-".into(),
            verdict: String::new(),
        });
    }

    // Policies::open twice on the same directory: the second finds every artifact cached.
    let mut first = Vec::new();
    let mut second = Vec::new();
    for rep in 0..reps {
        let dir = scratch.join(format!("open-{rep}"));
        let (elapsed, policies) = time(|| Policies::open(Some(&dir), config));
        drop(policies?);
        first.push(elapsed);
        let (elapsed, policies) = time(|| Policies::open(Some(&dir), config));
        drop(policies?);
        second.push(elapsed);
        std::fs::remove_dir_all(&dir)?;
    }
    let (first, second) = (median(first), median(second));
    println!(
        "Policies::open (3 built-ins): fresh directory {}, again (cached) {}",
        dur(first),
        dur(second)
    );
    rows.push(Row {
        what: "Policies::open, fresh dir (3 built-ins)".into(),
        value: dur(first),
        reference: "-".into(),
        ratio: "-".into(),
        target: "-".into(),
        verdict: String::new(),
    });
    rows.push(Row {
        what: "Policies::open, again (cached)".into(),
        value: dur(second),
        reference: format!("{} fresh", dur(first)),
        ratio: format!("{:.3}", secs(second) / secs(first)),
        target: "-".into(),
        verdict: String::new(),
    });

    // Instantiation, isolated: `Plugin`'s own `instantiate` is private, so this does what it does
    // (a new store with its limits, then the pre-instantiated component's instantiate) through
    // the public engine and bindings. Dropping the instance is timed apart.
    let limits = call_limits(&config);
    let pre = acks_pre(&plain)?;
    let mut created = Vec::new();
    let mut dropped = Vec::new();
    for _ in 0..scale.instantiations {
        let (elapsed, instance) = time(|| {
            let mut store = plain.new_store(Arc::from("bench-instantiate"), limits);
            plain.begin_call(&mut store);
            let bindings = pre.instantiate(&mut store).expect("instantiating");
            (store, bindings)
        });
        created.push(elapsed);
        dropped.push(time(|| drop(instance)).0);
    }
    let (instantiate, drop_instance) = (median(created), median(dropped));
    // Linking and pre-instantiating as well (what a load adds to compiling).
    let component = plain.compile(defaults::ACKS)?;
    let mut loads = Vec::new();
    let mut unloads = Vec::new();
    for _ in 0..reps {
        let id = weir::policy::plugin::PluginId {
            name: "acks-bench".into(),
            version: "1".into(),
            sha256: String::new(),
        };
        let (elapsed, plugin) = time(|| {
            Plugin::from_component(
                &plain,
                component.clone(),
                PolicyKind::Acks,
                id,
                limits,
                Arc::new(AtomicU64::new(0)),
            )
        });
        let plugin = plugin?;
        loads.push(elapsed);
        // What the last holder of a retired version pays (possibly a caller, after a swap).
        unloads.push(time(|| drop(plugin)).0);
    }
    let (from_component, unload) = (median(loads), median(unloads));
    println!(
        "acks instance: instantiate {} (drop {}); Plugin::from_component {} (drop {})",
        dur(instantiate),
        dur(drop_instance),
        dur(from_component),
        dur(unload)
    );
    let steady = steady_decide_ns.map(|ns| Duration::from_nanos(ns as u64));
    rows.push(Row {
        what: "instantiate acks (new store + instance)".into(),
        value: dur(instantiate),
        reference: steady.map_or("n/a".into(), |d| format!("{} call", dur(d))),
        ratio: steady.map_or("-".into(), |d| {
            format!("{:.0}", secs(instantiate) / secs(d))
        }),
        target: "-".into(),
        verdict: String::new(),
    });
    rows.push(Row {
        what: "  Plugin::from_component (link+pre+1st)".into(),
        value: dur(from_component),
        reference: format!("{} instantiate", dur(instantiate)),
        ratio: format!("{:.1}", secs(from_component) / secs(instantiate)),
        target: "-".into(),
        verdict: String::new(),
    });
    rows.push(Row {
        what: "  drop a loaded Plugin (1 idle instance)".into(),
        value: dur(unload),
        reference: format!("{} instance drop", dur(drop_instance)),
        ratio: format!("{:.1}", secs(unload) / secs(drop_instance)),
        target: "-".into(),
        verdict: String::new(),
    });

    swaps(scale, config, scratch, steady, rows)
}

/// The calls version `version` of `name` has served so far, from the metrics.
fn calls_of(policies: &Policies, name: &str, version: &str) -> u64 {
    let mut out = String::new();
    policies.render_metrics(&mut out);
    let needle = format!("plugin=\"{name}\",version=\"{version}\"}} ");
    out.lines()
        .filter(|line| line.starts_with("weir_policy_calls_total"))
        .find_map(|line| line.split_once(&needle))
        .and_then(|(_, count)| count.trim().parse().ok())
        .unwrap_or(0)
}

fn swaps(
    scale: Scale,
    config: PolicyConfig,
    scratch: &Path,
    steady: Option<Duration>,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let reps = scale.lifecycle_reps;
    let dir = scratch.join("swap");
    let policies = Policies::open(Some(&dir), config)?;
    let request = acks_request();
    const NAME: &str = "acks-bench";

    // Install: the conformance scenarios, then the component and the registry written (fsync).
    let versions: Vec<String> = (1..=reps.max(2)).map(|v| v.to_string()).collect();
    let install = median(
        versions
            .iter()
            .map(|version| {
                time(|| {
                    policies
                        .install(NAME, Some(version), defaults::ACKS, 0)
                        .expect("install")
                })
                .0
            })
            .collect(),
    );

    // Activate each installed version in turn (load from the cached artifact, registry fsync,
    // pointer swap), then back to the built-in (registry fsync and swap only). The call right
    // after an activation must be served by the new version.
    let mut activations = Vec::new();
    let mut builtin = Vec::new();
    let mut first_calls = Vec::new();
    for version in &versions {
        let before = calls_of(&policies, NAME, version);
        activations.push(
            time(|| {
                policies
                    .activate(NAME, Some(version), true)
                    .expect("activate")
            })
            .0,
        );
        first_calls.push(time(|| policies.decide(None, &request)).0);
        ensure!(
            calls_of(&policies, NAME, version) == before + 1,
            "the first call after activating {NAME} {version} did not go to it"
        );
        builtin.push(
            time(|| {
                policies
                    .activate("acks-default", None, true)
                    .expect("activate the built-in")
            })
            .0,
        );
    }
    let (activate, builtin, first_call) =
        (median(activations), median(builtin), median(first_calls));
    println!(
        "swap: install {}, activate an installed version {}, activate the built-in {}, first call \
         on the new version {}",
        dur(install),
        dur(activate),
        dur(builtin),
        dur(first_call)
    );

    // A caller on another thread all along: alone, then while versions are activated back and
    // forth. Calls started before a swap finish on the version they started on.
    let caller = |policies: Arc<Policies>, stop: Arc<AtomicBool>| {
        let request = acks_request();
        std::thread::spawn(move || {
            let mut latencies = Vec::with_capacity(1 << 20);
            while !stop.load(Ordering::Relaxed) {
                latencies.push(time(|| policies.decide(None, &request)).0);
            }
            latencies.sort_unstable();
            latencies
        })
    };
    let run_caller = |during: &dyn Fn()| -> anyhow::Result<Vec<Duration>> {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = caller(policies.clone(), stop.clone());
        during();
        stop.store(true, Ordering::Relaxed);
        handle
            .join()
            .map_err(|_| anyhow!("the caller thread panicked"))
    };
    let alone = run_caller(&|| std::thread::sleep(scale.caller_window))?;
    let swapping_count = AtomicU64::new(0);
    let swapping = run_caller(&|| {
        let started = Instant::now();
        let mut index = 0;
        while started.elapsed() < scale.caller_window || index < 2 {
            let version = &versions[index % versions.len()];
            policies
                .activate(NAME, Some(version), true)
                .expect("activate");
            index += 1;
            swapping_count.fetch_add(1, Ordering::Relaxed);
        }
    })?;
    policies.activate("acks-default", None, true)?;
    let summary = |sorted: &[Duration]| {
        format!(
            "p50 {} p99 {} max {}",
            dur(percentile(sorted, 0.5)),
            dur(percentile(sorted, 0.99)),
            dur(percentile(sorted, 1.0))
        )
    };
    println!(
        "concurrent caller: alone {} ({} calls); during {} swaps {} ({} calls)",
        summary(&alone),
        alone.len(),
        swapping_count.load(Ordering::Relaxed),
        summary(&swapping),
        swapping.len()
    );

    rows.push(Row {
        what: "install (conformance + fsync)".into(),
        value: dur(install),
        reference: "-".into(),
        ratio: "-".into(),
        target: "-".into(),
        verdict: String::new(),
    });
    rows.push(Row {
        what: "activate installed version".into(),
        value: dur(activate),
        reference: format!("{} built-in", dur(builtin)),
        ratio: format!("{:.2}", secs(activate) / secs(builtin)),
        target: "-".into(),
        verdict: String::new(),
    });
    rows.push(Row {
        what: "  first call on the new version".into(),
        value: dur(first_call),
        reference: steady.map_or("n/a".into(), |d| format!("{} steady", dur(d))),
        ratio: steady.map_or("-".into(), |d| format!("{:.1}", secs(first_call) / secs(d))),
        target: "-".into(),
        verdict: String::new(),
    });
    rows.push(Row {
        what: "  visible to calls after".into(),
        value: dur(activate + first_call),
        reference: "activate + 1st call".into(),
        ratio: "-".into(),
        target: "-".into(),
        verdict: String::new(),
    });
    let p99 = |sorted: &[Duration]| percentile(sorted, 0.99);
    rows.push(Row {
        what: "  concurrent caller p99 during swaps".into(),
        value: dur(p99(&swapping)),
        reference: format!("{} alone", dur(p99(&alone))),
        ratio: format!("{:.2}", secs(p99(&swapping)) / secs(p99(&alone))),
        target: "-".into(),
        verdict: String::new(),
    });
    rows.push(Row {
        what: "  concurrent caller max during swaps".into(),
        value: dur(percentile(&swapping, 1.0)),
        reference: format!("{} alone", dur(percentile(&alone, 1.0))),
        ratio: format!(
            "{:.2}",
            secs(percentile(&swapping, 1.0)) / secs(percentile(&alone, 1.0))
        ),
        target: "-".into(),
        verdict: String::new(),
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Part 4: produce throughput, WASM acks vs native acks.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Acks {
    Wasm,
    Native,
}

/// `records_per_batch` records of `RECORD_VALUE_BYTES` values with short keys, as one batch.
fn producer_batch(records_per_batch: usize) -> anyhow::Result<Vec<u8>> {
    let keys: Vec<String> = (0..records_per_batch).map(|i| format!("key-{i}")).collect();
    let value = vec![b'v'; RECORD_VALUE_BYTES];
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let records: Vec<ProducerRecord<'_>> = keys
        .iter()
        .map(|key| ProducerRecord {
            key: Some(key.as_bytes()),
            value: Some(&value),
            headers: &[],
            timestamp,
        })
        .collect();
    encode_producer_batch(&records, Compression::None).map_err(anyhow::Error::msg)
}

/// Produces `batches` copies of `batch` one after another, as one connection's requests would
/// be, and returns how long it took: wall time, and this thread's CPU time (everything runs on
/// it: the runtime is current-thread and no produce waits), which preemption does not inflate.
async fn produce_batches(
    partition: &Partition,
    batch: &[u8],
    terms: ProduceAcks,
    batches: usize,
    decide: impl Fn(&acks::Request) -> acks::Decision,
) -> anyhow::Result<(Duration, Duration)> {
    let cpu_started = weir::clock::thread_cpu_time_ns();
    let started = Instant::now();
    for _ in 0..batches {
        let terms = ProduceAcks {
            arrived: Instant::now(),
            ..terms
        };
        partition
            .produce(batch, &terms, &decide)
            .await
            .map_err(|error| anyhow!("produce failed: {} {}", error.code, error.message))?;
    }
    let wall = started.elapsed();
    let cpu = weir::clock::thread_cpu_time_ns().saturating_sub(cpu_started);
    Ok((wall, Duration::from_nanos(cpu)))
}

fn produce_throughput(scale: Scale, scratch: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let data = scratch.join("broker");
    let config = BrokerConfig::load(None, &[format!("log.dirs={}", data.display())])?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let broker = runtime.block_on(Broker::start(config))?;
    for records_per_batch in RECORDS_PER_BATCH {
        let batch = producer_batch(records_per_batch)?;
        let batches_per_block = (scale.produce_block_bytes / batch.len()).max(1);
        let samples = runtime.block_on(produce_rounds(
            scale,
            &broker,
            &batch,
            records_per_batch,
            batches_per_block,
        ))?;
        report_produce(scale, records_per_batch, batches_per_block, &samples, rows);
    }
    drop(broker);
    Ok(())
}

/// Records per second of wall time and of CPU time, per (acks, variant), one per block.
type ProduceSamples = BTreeMap<(i16, Acks), Vec<(f64, f64)>>;

async fn produce_rounds(
    scale: Scale,
    broker: &Broker,
    batch: &[u8],
    records_per_batch: usize,
    batches_per_block: usize,
) -> anyhow::Result<ProduceSamples> {
    let variants = [
        (1i16, Acks::Wasm),
        (1, Acks::Native),
        (-1, Acks::Wasm),
        (-1, Acks::Native),
    ];
    let mut samples = ProduceSamples::new();
    for round in 0..scale.produce_rounds {
        // A fresh topic per round bounds the log (and the page cache it dirties); all four
        // variants append to the same partition, so they share its state.
        let name = format!("produce-{records_per_batch}-{round}");
        broker
            .create_topic(&name, 1, 1, BTreeMap::new(), false)
            .await
            .map_err(|error| anyhow!("creating {name}: {}", error.message))?;
        let topic = broker.topic(&name).context("the topic just created")?;
        let partition = broker.partition(&name, 0).context("partition 0")?;
        let binding = Broker::policy_binding(&topic, PolicyKind::Acks);
        let policies = &broker.policies;
        let wasm = |request: &acks::Request| policies.decide(binding, request);
        let terms = |acks| ProduceAcks {
            leader_id: broker.config.node_id,
            acks,
            min_insync_replicas: broker.min_insync_replicas(&topic),
            timeout: Duration::from_secs(30),
            arrived: Instant::now(),
        };
        // A leader's first append in an epoch fsyncs its epoch checkpoint: untimed.
        produce_batches(&partition, batch, terms(1), 1, native_decide).await?;
        for block in 0..scale.produce_blocks * variants.len() {
            // Rotating order: every variant runs before and after every other one.
            let (acks, variant) = variants[(block + block / variants.len()) % variants.len()];
            let (wall, cpu) = match variant {
                Acks::Wasm => {
                    produce_batches(&partition, batch, terms(acks), batches_per_block, wasm).await?
                }
                Acks::Native => {
                    produce_batches(
                        &partition,
                        batch,
                        terms(acks),
                        batches_per_block,
                        native_decide,
                    )
                    .await?
                }
            };
            let records = (batches_per_block * records_per_batch) as f64;
            samples
                .entry((acks, variant))
                .or_default()
                .push((records / wall.as_secs_f64(), records / cpu.as_secs_f64()));
        }
        drop(partition);
        broker
            .delete_topic(&name)
            .await
            .map_err(|error| anyhow!("deleting {name}: {}", error.message))?;
    }
    Ok(samples)
}

fn report_produce(
    scale: Scale,
    records_per_batch: usize,
    batches_per_block: usize,
    samples: &ProduceSamples,
    rows: &mut Vec<Row>,
) {
    let median_rate = |acks: i16, variant: Acks, cpu: bool| {
        let mut rates: Vec<f64> = samples
            .get(&(acks, variant))
            .map(|runs| {
                runs.iter()
                    .map(|&(wall, cpu_rate)| if cpu { cpu_rate } else { wall })
                    .collect()
            })
            .unwrap_or_default();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(0.0)
    };
    let size = if records_per_batch * RECORD_VALUE_BYTES >= KIB * KIB {
        format!(
            "{} MiB",
            records_per_batch * RECORD_VALUE_BYTES / (KIB * KIB)
        )
    } else {
        format!("{} KiB", records_per_batch * RECORD_VALUE_BYTES / KIB)
    };
    for acks in [1i16, -1] {
        for (clock_name, cpu) in [("wall", false), ("thread CPU", true)] {
            let wasm = median_rate(acks, Acks::Wasm, cpu);
            let native = median_rate(acks, Acks::Native, cpu);
            let ratio = wasm / native;
            // What the plugin adds to each batch (one decide call: acks=1, and acks=-1 with an
            // ISR of one, settle before the append).
            let extra_ns = (1.0 / wasm - 1.0 / native) * records_per_batch as f64 * 1e9;
            println!(
                "produce {size} batches ({records_per_batch} x 1 KiB) acks={acks}, per \
                 {clock_name} second: WASM acks {wasm:.0} records/s, native {native:.0} \
                 records/s, ratio {ratio:.3}; WASM adds {} per batch (median of {} blocks of \
                 {batches_per_block} batches)",
                ns(extra_ns),
                scale.produce_rounds * scale.produce_blocks,
            );
            rows.push(Row {
                what: format!("produce {size} batches acks={acks}, WASM acks, {clock_name}"),
                value: format!("{:.0}k rec/s", wasm / 1e3),
                reference: format!("{:.0}k native", native / 1e3),
                ratio: format!("{ratio:.3}"),
                target: format!(">= {TARGET_PRODUCE_RATIO} x native"),
                verdict: verdict(ratio >= TARGET_PRODUCE_RATIO),
            });
            rows.push(Row {
                what: "  WASM's extra time per batch (1 decide)".into(),
                value: ns(extra_ns),
                reference: format!("{} per batch", ns(1e9 * records_per_batch as f64 / native)),
                ratio: format!(
                    "{:.3}",
                    extra_ns * native / (1e9 * records_per_batch as f64)
                ),
                target: "-".into(),
                verdict: String::new(),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output.
// ---------------------------------------------------------------------------------------------

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// A time in ns, with a unit that keeps it readable.
fn ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn dur(duration: Duration) -> String {
    ns(duration.as_nanos() as f64)
}

fn main() -> anyhow::Result<()> {
    let scale = Scale::from_args();
    let base = std::env::var_os("WEIR_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::Builder::new()
        .prefix("weir-bench-policy-")
        .tempdir_in(&base)
        .with_context(|| format!("a temporary directory in {}", base.display()))?;
    // Other processes on the machine move every figure; the load average says how busy it was.
    let loadavg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "weir policy benchmark ({} mode) in {}; load average at start: {}",
        if scale.benchmarking {
            "benchmark"
        } else {
            "smoke"
        },
        scratch.path().display(),
        loadavg().trim()
    );
    let config = policy_config();
    // Defaults first, so `--sample-size`, `--measurement-time` and friends still override them.
    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let only = std::env::var("WEIR_BENCH_ONLY").ok();
    let selected = |part: &str| only.as_deref().is_none_or(|only| part.contains(only));
    let mut rows = Vec::new();
    let mut steady_decide = None;
    if selected("per-call") {
        let policies = Policies::open(None, config)?;
        let ran = Ran::default();
        micro_benchmarks(&mut criterion, &policies, &ran)?;
        criterion.final_summary();
        print_criterion_means(&ran, scale);
        steady_decide = Some(per_call_comparison(scale, &policies, config, &mut rows)?);
    }
    if selected("lifecycle") {
        lifecycle(scale, config, scratch.path(), steady_decide, &mut rows)?;
    }
    if selected("produce") {
        produce_throughput(scale, scratch.path(), &mut rows)?;
    }
    println!("load average at end: {}", loadavg().trim());
    print_table(&rows, scale.benchmarking);
    Ok(())
}
