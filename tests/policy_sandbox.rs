//! The policy sandbox against hostile plugins (`tests/plugins/*`), built to real components.
//!
//! - Install refuses every plugin that misbehaves during its kind's conformance scenarios (spins,
//!   allocates without bound, traps, recurses, answers out of contract, answers millions of
//!   partitions) and every component importing anything outside `weir:policy`, with a message
//!   that says why.
//! - On the hot path, plugins that pass conformance and misbehave only on a trigger input (a
//!   topic name, a `min.insync.replicas` value) are answered for by the built-in default: the
//!   caller gets the default's answer within a bounded time, the failure is counted under the
//!   right `reason`, five failures in a row quarantine the plugin (its calls then go to the
//!   default without entering it), and activating it again lifts the quarantine.
//! - A slow but honest plugin (about 0.3 ms of CPU per call) is never killed at its 2 ms budget,
//!   even with busy threads competing for the cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use weir_tests::plugins::Components;

use weir::clock::thread_cpu_time_ns;
use weir::policy::wit::acks::{Decision, ReplicaProgress, Request, Stage};
use weir::policy::wit::election::{
    BrokerStatus, Election, ElectionReason, PartitionState, ReplicaState,
};
use weir::policy::{Policies, PolicyConfig, PolicyKind};

/// The broker's default sandbox limits (`policy.*` in `host/src/config.rs`).
const CONFIG: PolicyConfig = PolicyConfig {
    election_call_timeout: Duration::from_millis(10),
    call_timeout: Duration::from_millis(2),
    memory_max_bytes: 16 << 20,
};

/// A safety bound on one partitioner or acks call into a misbehaving plugin, fallback included:
/// the CPU budget is 2 ms, so anything near this means the sandbox did not stop the guest.
const CALL_BOUND: Duration = Duration::from_millis(500);
/// The same for an election: its CPU budget is 10 ms, and a loaded machine (these tests run in
/// parallel, one of them with busy threads) stretches that in wall time.
const ELECTION_CALL_BOUND: Duration = Duration::from_millis(900);

/// Failures in a row that quarantine a plugin (`runtime::QUARANTINE_AFTER_FAILURES`).
const QUARANTINE_AFTER: u32 = 5;

const HOSTILE_PLUGINS: &[&str] = &[
    "weir-test-hostile-election",
    "weir-test-hostile-partitioner",
    "weir-test-hostile-acks",
    "weir-test-acks-spin",
    "weir-test-acks-fail-zero",
    "weir-test-acks-slow",
    "weir-test-partitioner-bomb",
    "weir-test-partitioner-big-static",
    "weir-test-partitioner-recurse",
    "weir-test-partitioner-out-of-range",
    "weir-test-partitioner-huge-batch",
    "weir-test-election-panic",
    "weir-test-election-stranger",
    "weir-test-election-unclean",
    "weir-test-election-huge-reason",
    "weir-test-import-socket",
];

/// A component by package name, built once per test binary.
fn component(package: &str) -> &'static [u8] {
    static COMPONENTS: Components = Components::new(HOSTILE_PLUGINS);
    COMPONENTS.get(package)
}

/// What a test holds while it runs: its data directory, and its share of the machine.
struct Held {
    _dir: tempfile::TempDir,
    _turn: Turn,
}

enum Turn {
    Shared {
        _guard: std::sync::RwLockReadGuard<'static, ()>,
    },
    Alone {
        _guard: std::sync::RwLockWriteGuard<'static, ()>,
    },
}

/// The other tests compile dozens of components with Cranelift at once, a memory-hungry load
/// the timing test does not mean to measure: it loads the cores with busy threads of its own
/// and runs alone.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn open() -> (Held, Arc<Policies>) {
    open_with(Turn::Shared {
        _guard: MACHINE
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    })
}

fn open_alone() -> (Held, Arc<Policies>) {
    open_with(Turn::Alone {
        _guard: MACHINE
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    })
}

fn open_with(turn: Turn) -> (Held, Arc<Policies>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = Policies::open(Some(dir.path()), CONFIG).expect("open policies");
    (
        Held {
            _dir: dir,
            _turn: turn,
        },
        policies,
    )
}

/// Installs version 1 of `package` as `name` and activates it (bound to topics only, unless
/// `broker_wide`).
fn install_and_activate(policies: &Policies, name: &str, package: &str, broker_wide: bool) {
    policies
        .install(name, Some("1"), component(package), 0)
        .unwrap_or_else(|error| panic!("installing {package}: {error:#}"));
    let info = policies
        .activate(name, None, broker_wide)
        .unwrap_or_else(|error| panic!("activating {package}: {error:#}"));
    assert_eq!(info.current_version.as_deref(), Some("1"));
    assert!(!info.quarantined);
}

fn timed<R>(call: impl FnOnce() -> R) -> (R, Duration) {
    let started = Instant::now();
    let answer = call();
    (answer, started.elapsed())
}

/// The value of one series of `render_metrics` (0 when absent).
fn metric(policies: &Policies, series: &str) -> u64 {
    let mut text = String::new();
    policies.render_metrics(&mut text);
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

fn calls_series(kind: PolicyKind, plugin: &str) -> String {
    format!(
        "weir_policy_calls_total{{policy=\"{}\",plugin=\"{plugin}\",version=\"1\"}} ",
        kind.interface()
    )
}

fn failures_series(kind: PolicyKind, plugin: &str, reason: &str) -> String {
    format!(
        "weir_policy_failures_total{{policy=\"{}\",plugin=\"{plugin}\",version=\"1\",reason=\"{reason}\"}} ",
        kind.interface()
    )
}

fn election_state(topic: &str) -> PartitionState {
    let replica = |broker_id, in_isr, status| ReplicaState {
        broker_id,
        in_isr,
        status,
        log_end_offset: 100,
        last_caught_up_ms: 0,
        rack: None,
    };
    PartitionState {
        topic: topic.into(),
        partition: 0,
        // The default elects 1; 2 is alive but outside the ISR; 3 is fenced.
        replicas: vec![
            replica(1, true, BrokerStatus::Alive),
            replica(2, false, BrokerStatus::Alive),
            replica(3, true, BrokerStatus::Fenced),
        ],
        current_leader: Some(3),
        leader_epoch: 4,
        reason: ElectionReason::LeaderFailure,
        unclean_allowed: false,
    }
}

fn acks_request(stage: Stage, min_insync_replicas: u32) -> Request {
    Request {
        stage,
        acks: -1,
        min_insync_replicas,
        replicas: (1..=3)
            .map(|broker_id| ReplicaProgress {
                broker_id,
                in_isr: true,
                log_end_offset: 100,
                rack_id: None,
            })
            .collect(),
        leader_log_end_offset: 100,
        high_watermark: 100,
        flushed_offset: 100,
        last_offset: 99,
        elapsed_ms: 1,
    }
}

#[test]
fn install_refuses_every_hostile_plugin_with_a_clear_message() {
    let (_dir, policies) = open();
    let cases: &[(&str, &[&str])] = &[
        (
            "weir-test-acks-spin",
            &["conformance", "the call failed: timeout"],
        ),
        (
            "weir-test-partitioner-bomb",
            &["conformance", "the call failed: memory"],
        ),
        (
            "weir-test-partitioner-big-static",
            &[
                "instantiating the component",
                "above the cap of 16777216 bytes",
            ],
        ),
        (
            "weir-test-election-panic",
            &["conformance", "the call failed: trap"],
        ),
        (
            "weir-test-partitioner-recurse",
            &["conformance", "the call failed: trap"],
        ),
        (
            "weir-test-partitioner-out-of-range",
            &["conformance", "out of range"],
        ),
        (
            "weir-test-partitioner-huge-batch",
            // 8 MiB of answer: refused for its length, or for the CPU it takes to produce and
            // lift it (the lift counts against the budget, checked again in post-return).
            &[
                "conformance",
                "batch: 2097152 partitions for 200 records|batch call: the call failed: timeout",
            ],
        ),
        (
            "weir-test-election-stranger",
            &["conformance", "999 is not an assigned replica"],
        ),
        (
            "weir-test-election-unclean",
            &[
                "conformance",
                "outside the ISR and unclean election is not allowed",
            ],
        ),
        ("weir-test-acks-fail-zero", &["conformance", "error code 0"]),
        (
            "weir-test-import-socket",
            &["imports `evil:net/socket", "weir:policy/log"],
        ),
    ];
    for &(package, expected) in cases {
        let name = package.trim_start_matches("weir-test-");
        let (outcome, took) = timed(|| policies.install(name, None, component(package), 0));
        let error = match outcome {
            Ok(info) => panic!("install accepted {package}: {info:?}"),
            Err(error) => format!("{error:#}"),
        };
        eprintln!("{package}: refused in {took:?}: {error}");
        for fragment in expected {
            assert!(
                fragment.split('|').any(|choice| error.contains(choice)),
                "{package}: the refusal does not say `{fragment}`: {error}"
            );
        }
        assert!(
            took < Duration::from_secs(30),
            "{package}: refusing took {took:?}"
        );
        assert!(
            policies.info(name).is_err(),
            "{package}: a refused plugin must not be listed"
        );
    }
    // Nothing a refused plugin did is held against anyone: no call was on the hot path.
    for kind in PolicyKind::ALL {
        let builtin = format!("{}-default", kind.interface());
        assert_eq!(policies.failure_count(&builtin), 0);
    }
}

/// One trigger on the hot path: the answer is the default's, one failure is counted under
/// `reason` (or one of `a|b`), the call is bounded, and a normal call afterwards is the plugin's again (which also
/// resets the run of failures, so a table of triggers never quarantines).
fn check_fallback<R: PartialEq + std::fmt::Debug>(
    policies: &Policies,
    kind: PolicyKind,
    plugin: &str,
    trigger: &str,
    reason: &str,
    hostile: impl FnOnce() -> R,
    default: impl FnOnce() -> R,
) {
    let failures = policies.failure_count(plugin);
    let labelled = |policies: &Policies| -> Vec<u64> {
        reason
            .split('|')
            .map(|reason| metric(policies, &failures_series(kind, plugin, reason)))
            .collect()
    };
    let before = labelled(policies);
    let (answer, took) = timed(hostile);
    let after = labelled(policies);
    eprintln!("{plugin} on {trigger}: {reason} {before:?} -> {after:?} after {took:?}");
    assert_eq!(
        answer,
        default(),
        "{plugin} on {trigger}: not the default's answer"
    );
    let bound = match kind {
        PolicyKind::Election => ELECTION_CALL_BOUND,
        PolicyKind::Partitioner | PolicyKind::Acks => CALL_BOUND,
    };
    assert!(
        took < bound,
        "{plugin} on {trigger}: the call took {took:?}"
    );
    assert_eq!(
        policies.failure_count(plugin),
        failures + 1,
        "{plugin} on {trigger}: failure_count"
    );
    assert_eq!(
        after.iter().sum::<u64>(),
        before.iter().sum::<u64>() + 1,
        "{plugin} on {trigger}: not counted under reason {reason}"
    );
    let info = policies.info(plugin).expect("info");
    assert!(!info.quarantined, "{plugin}: quarantined after one failure");
}

#[test]
fn acks_faults_on_the_hot_path_fall_back_to_the_default() {
    let (_dir, policies) = open();
    let name = "hostile-acks";
    install_and_activate(&policies, name, "weir-test-hostile-acks", false);
    let calls = calls_series(PolicyKind::Acks, name);
    let triggers: &[(&str, u32, Stage, &str)] = &[
        ("spin", 1001, Stage::BeforeAppend, "timeout"),
        ("bomb", 1002, Stage::BeforeAppend, "memory"),
        ("panic", 1003, Stage::AfterAppend, "trap"),
        ("unreachable", 1004, Stage::BeforeAppend, "trap"),
        ("recurse", 1005, Stage::AfterAppend, "trap"),
        ("fail(0)", 1006, Stage::BeforeAppend, "invalid_answer"),
        (
            "complete before the leader has the records",
            1007,
            Stage::AfterAppend,
            "invalid_answer",
        ),
    ];
    for &(trigger, min_insync_replicas, stage, reason) in triggers {
        let mut request = acks_request(stage, min_insync_replicas);
        if trigger.starts_with("complete") {
            request.leader_log_end_offset = request.last_offset;
            request.high_watermark = request.last_offset;
        }
        check_fallback(
            &policies,
            PolicyKind::Acks,
            name,
            trigger,
            reason,
            || policies.decide(Some(name), &request),
            || policies.decide(None, &request),
        );
        // The plugin answers a normal request itself (a fresh instance after a trap).
        let before = metric(&policies, &calls);
        let normal = acks_request(Stage::AfterAppend, 2);
        assert_eq!(policies.decide(Some(name), &normal), Decision::Complete);
        assert_eq!(metric(&policies, &calls), before + 1);
    }
    assert_eq!(policies.failure_count("acks-default"), 0);
}

#[test]
fn partitioner_faults_on_the_hot_path_fall_back_to_the_default() {
    let (_dir, policies) = open();
    let name = "hostile-partitioner";
    install_and_activate(&policies, name, "weir-test-hostile-partitioner", false);
    let key: &[u8] = b"user-17";
    for (topic, reason) in [
        ("spin", "timeout"),
        ("bomb", "memory"),
        ("panic", "trap"),
        ("unreachable", "trap"),
        ("recurse", "trap"),
        ("out-of-range", "invalid_answer"),
    ] {
        check_fallback(
            &policies,
            PolicyKind::Partitioner,
            name,
            topic,
            reason,
            || policies.partition(Some(name), topic, Some(key), 10, 6),
            || policies.partition(None, topic, Some(key), 10, 6),
        );
        assert_eq!(
            policies.partition(Some(name), "fine", Some(key), 10, 6),
            policies.partition(None, "fine", Some(key), 10, 6)
        );
    }
    // The batch form: the same faults once per batch, and millions of answers for three records.
    let keys: Vec<Option<&[u8]>> = vec![Some(b"a"), None, Some(b"user-17")];
    for (topic, reason) in [
        ("spin", "timeout"),
        ("bomb", "memory"),
        ("out-of-range", "invalid_answer"),
        // 8 MiB of answer: invalid for its length, or over budget producing and lifting it.
        ("huge-batch", "invalid_answer|timeout"),
    ] {
        check_fallback(
            &policies,
            PolicyKind::Partitioner,
            name,
            &format!("{topic} (batch)"),
            reason,
            || policies.partition_batch(Some(name), topic, &keys, &[1, 1, 1], 6),
            || policies.partition_batch(None, topic, &keys, &[1, 1, 1], 6),
        );
        assert_eq!(
            policies.partition_batch(Some(name), "fine", &keys[..1], &[1], 6),
            policies.partition_batch(None, "fine", &keys[..1], &[1], 6)
        );
    }
    assert_eq!(policies.failure_count("partitioner-default"), 0);
}

#[test]
fn election_faults_fall_back_to_the_default() {
    let (_dir, policies) = open();
    let name = "hostile-election";
    install_and_activate(&policies, name, "weir-test-hostile-election", false);
    for (topic, reason) in [
        ("spin", "timeout"),
        ("bomb", "memory"),
        ("panic", "trap"),
        ("recurse", "trap"),
        ("stranger", "invalid_answer"),
        ("unclean", "invalid_answer"),
    ] {
        let state = election_state(topic);
        check_fallback(
            &policies,
            PolicyKind::Election,
            name,
            topic,
            reason,
            || policies.elect(Some(name), &state),
            || policies.elect(None, &state),
        );
        assert_eq!(
            policies.elect(None, &state).leader,
            Some(1),
            "the default elects the first alive ISR replica"
        );
        let normal: Election = policies.elect(Some(name), &election_state("fine"));
        assert_eq!(normal.leader, Some(1));
    }
    assert_eq!(policies.failure_count("election-default"), 0);
}

#[test]
fn a_huge_election_reason_is_an_invalid_answer() {
    let (_dir, policies) = open();
    let name = "hostile-election";
    install_and_activate(&policies, name, "weir-test-hostile-election", false);
    let state = election_state("huge-reason");
    let default_answer = policies.elect(None, &state);
    for _ in 0..3 {
        let (answer, took) = timed(|| policies.elect(Some(name), &state));
        assert!(took < ELECTION_CALL_BOUND, "took {took:?}");
        // An 8 MiB reason breaks the contract (at most 256 bytes): the default answers, whether
        // the plugin finished (invalid answer) or writing 8 MiB used up its CPU budget first.
        assert_eq!(answer, default_answer);
    }
    let invalid = metric(
        &policies,
        &failures_series(PolicyKind::Election, name, "invalid_answer"),
    );
    let timeouts = metric(
        &policies,
        &failures_series(PolicyKind::Election, name, "timeout"),
    );
    assert_eq!(
        invalid + timeouts,
        3,
        "every call is counted as one or the other"
    );
}

#[test]
fn install_refuses_a_plugin_whose_every_reason_is_megabytes() {
    // The contract asks for a reason of at most 256 bytes; conformance holds plugins to it, in
    // bounded time although each answer lifts 2 MiB out of the sandbox.
    let (_dir, policies) = open();
    let (outcome, took) = timed(|| {
        policies.install(
            "huge-reason",
            None,
            component("weir-test-election-huge-reason"),
            0,
        )
    });
    assert!(took < Duration::from_secs(120), "install took {took:?}");
    let error = outcome.expect_err("a 2 MiB reason must be refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("reason") || message.contains("timeout"),
        "{message}"
    );
}

#[test]
fn five_failures_in_a_row_quarantine_until_activated_again() {
    let (_dir, policies) = open();
    let name = "hostile-acks";
    // Broker-wide: the quarantine must also apply where no topic names the plugin.
    install_and_activate(&policies, name, "weir-test-hostile-acks", true);
    let calls = calls_series(PolicyKind::Acks, name);
    let panic = acks_request(Stage::BeforeAppend, 1003);
    let normal = acks_request(Stage::AfterAppend, 2);
    let default_answer = Decision::Fail(19);
    for failure in 1..=QUARANTINE_AFTER {
        let (answer, took) = timed(|| policies.decide(None, &panic));
        assert_eq!(answer, default_answer);
        assert!(took < CALL_BOUND);
        let quarantined = policies.info(name).expect("info").quarantined;
        assert_eq!(
            quarantined,
            failure == QUARANTINE_AFTER,
            "after {failure} failures in a row"
        );
    }
    assert_eq!(policies.failure_count(name), u64::from(QUARANTINE_AFTER));
    let entered = metric(&policies, &calls);
    // Quarantined: every call is the default's, and the plugin is not entered at all.
    for _ in 0..20 {
        assert_eq!(policies.decide(None, &panic), default_answer);
        assert_eq!(policies.decide(Some(name), &panic), default_answer);
        assert_eq!(policies.decide(None, &normal), Decision::Complete);
    }
    assert_eq!(
        metric(&policies, &calls),
        entered,
        "a quarantined plugin was called"
    );
    assert_eq!(policies.failure_count(name), u64::from(QUARANTINE_AFTER));

    let info = policies.activate(name, None, true).expect("activate again");
    assert!(!info.quarantined, "activation lifts the quarantine");
    assert_eq!(policies.decide(None, &normal), Decision::Complete);
    assert_eq!(
        metric(&policies, &calls),
        entered + 1,
        "the plugin answers again"
    );
    assert_eq!(policies.decide(None, &panic), default_answer);
    assert_eq!(
        policies.failure_count(name),
        u64::from(QUARANTINE_AFTER) + 1
    );
    assert!(!policies.info(name).expect("info").quarantined);
}

#[test]
fn a_bound_plugin_is_quarantined_too_and_a_success_resets_the_run() {
    let (_dir, policies) = open();
    let name = "hostile-partitioner";
    install_and_activate(&policies, name, "weir-test-hostile-partitioner", false);
    let calls = calls_series(PolicyKind::Partitioner, name);
    let key: &[u8] = b"k";
    // Four failures, a success, four more: never five in a row.
    for _ in 0..2 {
        for _ in 0..QUARANTINE_AFTER - 1 {
            policies.partition(Some(name), "panic", Some(key), 0, 4);
        }
        policies.partition(Some(name), "fine", Some(key), 0, 4);
    }
    assert!(!policies.info(name).expect("info").quarantined);
    for _ in 0..QUARANTINE_AFTER {
        let (answer, took) = timed(|| policies.partition(Some(name), "spin", Some(key), 0, 4));
        assert_eq!(answer, policies.partition(None, "spin", Some(key), 0, 4));
        assert!(took < CALL_BOUND, "took {took:?}");
    }
    assert!(policies.info(name).expect("info").quarantined);
    let entered = metric(&policies, &calls);
    // The trigger no longer reaches the plugin: the built-in answers, and the plugin's call
    // counter stands still.
    let (answer, took) = timed(|| policies.partition(Some(name), "spin", Some(key), 0, 4));
    assert_eq!(answer, policies.partition(None, "spin", Some(key), 0, 4));
    assert!(took < CALL_BOUND, "a quarantined call took {took:?}");
    assert_eq!(metric(&policies, &calls), entered);
    policies
        .activate(name, Some("1"), false)
        .expect("activate again");
    assert!(!policies.info(name).expect("info").quarantined);
    policies.partition(Some(name), "fine", Some(key), 0, 4);
    assert_eq!(metric(&policies, &calls), entered + 1);
}

#[test]
fn a_slow_but_honest_plugin_is_never_killed_on_a_loaded_machine() {
    let (_dir, policies) = open_alone();
    let name = "slow-acks";
    let (installed, took) =
        timed(|| policies.install(name, Some("1"), component("weir-test-acks-slow"), 0));
    installed.unwrap_or_else(|error| panic!("installing the slow plugin: {error:#}"));
    eprintln!("the slow plugin passed conformance in {took:?}");
    policies.activate(name, None, true).expect("activate");

    let request = acks_request(Stage::AfterAppend, 2);
    // How slow it is, in this thread's CPU time (not wall time, which load inflates).
    let mut cpu = Vec::new();
    for _ in 0..50 {
        let start = thread_cpu_time_ns();
        assert_eq!(policies.decide(None, &request), Decision::Complete);
        cpu.push(thread_cpu_time_ns() - start);
    }
    cpu.sort_unstable();
    let median = Duration::from_nanos(cpu[cpu.len() / 2]);
    eprintln!("the slow plugin's median call: {median:?} of CPU");
    assert!(
        median >= Duration::from_micros(100) && median < Duration::from_micros(1500),
        "the slow plugin should burn about 0.3 ms per call, not {median:?}"
    );

    // Busy threads compete for the (two) cores while callers run the slow plugin.
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let policies = policies.clone();
            let request = request.clone();
            std::thread::spawn(move || {
                let mut answered = 0u32;
                while answered < 400 && Instant::now() < deadline {
                    assert_eq!(policies.decide(None, &request), Decision::Complete);
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let answered: u32 = callers
        .into_iter()
        .map(|caller| caller.join().expect("caller thread"))
        .sum();
    stop.store(true, Ordering::Relaxed);
    for thread in busy {
        thread.join().expect("busy thread");
    }
    eprintln!("{answered} slow calls under load");
    assert!(answered >= 300, "only {answered} calls within a minute");
    let failures = policies.failure_count(name);
    if failures > 0 {
        let mut metrics = String::new();
        policies.render_metrics(&mut metrics);
        let reasons: Vec<&str> = metrics
            .lines()
            .filter(|line| line.starts_with("weir_policy_failures_total") && line.contains(name))
            .collect();
        panic!("the slow plugin was killed under load {failures} time(s): {reasons:#?}");
    }
    assert!(!policies.info(name).expect("info").quarantined);
}
