//! The example plugins (`examples/`) built to real components: each passes its kind's
//! conformance scenarios and a scenario of its own through `Policies::test`, installs, and once
//! activated answers with its own policy where it differs from the built-in default.

use std::sync::Arc;
use std::time::Duration;
use weir_tests::plugins::Components;

use weir::policy::conformance::{PartitionInput, Scenario, ScenarioInput};
use weir::policy::wit::acks::{Decision, ReplicaProgress, Request, Stage};
use weir::policy::wit::election::{BrokerStatus, ElectionReason, PartitionState, ReplicaState};
use weir::policy::{Policies, PolicyConfig, PolicyKind};

/// The broker's default sandbox limits (`policy.*` in `host/src/config.rs`).
const CONFIG: PolicyConfig = PolicyConfig {
    election_call_timeout: Duration::from_millis(10),
    call_timeout: Duration::from_millis(2),
    memory_max_bytes: 16 << 20,
};

const RACK_AWARE: &str = "weir-example-rack-aware-election";
const KEY_PREFIX: &str = "weir-example-key-prefix-partitioner";
const QUORUM: &str = "weir-example-quorum-acks";

/// The examples depend on the default plugins without their `component` feature: built in one
/// invocation of their own, never with the defaults (Cargo would unify the features and each
/// example would export the default's policy too).
const EXAMPLES: &[&str] = &[RACK_AWARE, KEY_PREFIX, QUORUM];

/// A component by package name, built once per test binary.
fn component(package: &str) -> &'static [u8] {
    static COMPONENTS: Components = Components::new(EXAMPLES);
    COMPONENTS.get(package)
}

fn open() -> (tempfile::TempDir, Arc<Policies>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = Policies::open(Some(dir.path()), CONFIG).expect("open policies");
    (dir, policies)
}

/// `Policies::test` with the kind's scenarios and `own`: every outcome passes.
fn passes_test(policies: &Policies, package: &str, kind: PolicyKind, own: &[Scenario]) {
    let (tested, outcomes) = policies
        .test(component(package), own)
        .unwrap_or_else(|error| panic!("{package}: {error:#}"));
    assert_eq!(tested, kind, "{package}");
    assert!(outcomes.len() > own.len(), "{package}: {outcomes:?}");
    for outcome in &outcomes {
        assert!(outcome.passed, "{package}: {outcome:?}");
    }
    for scenario in own {
        assert!(
            outcomes.iter().any(|o| o.name == scenario.name),
            "{package}: scenario {} did not run",
            scenario.name
        );
    }
}

/// Installs `package` as `name` and activates it for the topics that name it.
fn install_and_activate(policies: &Policies, name: &str, package: &str, kind: PolicyKind) {
    let info = policies
        .install(name, None, component(package), 0)
        .unwrap_or_else(|error| panic!("installing {package}: {error:#}"));
    assert_eq!(info.kind, kind);
    assert_eq!(info.versions.len(), 1);
    let info = policies
        .activate(name, None, false)
        .unwrap_or_else(|error| panic!("activating {package}: {error:#}"));
    assert_eq!(info.current_version.as_deref(), Some("1"));
}

#[test]
fn key_prefix_partitioner_routes_prefixed_keys() {
    let (_dir, policies) = open();
    let scenario = |name: &str, key: &str, expected: u32| Scenario {
        name: name.into(),
        input: ScenarioInput::Partition(PartitionInput {
            topic: "orders".into(),
            key: Some(key.into()),
            value_size: 10,
            partition_count: 4,
        }),
        expect: Some(serde_json::json!({ "partition": expected })),
    };
    passes_test(
        &policies,
        KEY_PREFIX,
        PolicyKind::Partitioner,
        &[
            scenario("eu: keys go to partition 0", "eu:order-1", 0),
            scenario("us: keys go to partition 1", "us:order-1", 1),
        ],
    );
    let name = "key-prefix";
    install_and_activate(&policies, name, KEY_PREFIX, PolicyKind::Partitioner);
    let bound = Some(name);
    for n in [2u32, 4, 12] {
        for i in 0..50 {
            let eu = format!("eu:order-{i}");
            let us = format!("us:order-{i}");
            let other = format!("ap:order-{i}");
            assert_eq!(policies.partition(bound, "t", Some(eu.as_bytes()), 1, n), 0);
            assert_eq!(policies.partition(bound, "t", Some(us.as_bytes()), 1, n), 1);
            // Any other key: Kafka's murmur2, as the built-in places it.
            assert_eq!(
                policies.partition(bound, "t", Some(other.as_bytes()), 1, n),
                policies.partition(None, "t", Some(other.as_bytes()), 1, n)
            );
        }
    }
    // The batch form agrees, one call for all records.
    let keys: Vec<Option<&[u8]>> = vec![Some(b"eu:a"), Some(b"us:b"), Some(b"eu:"), Some(b"x")];
    let batch = policies.partition_batch(bound, "t", &keys, &[1; 4], 8);
    assert_eq!(batch[..3], [0, 1, 0]);
    assert_eq!(batch[3], policies.partition(None, "t", Some(b"x"), 1, 8));
    // Without the binding, the built-in places an eu: key by murmur2 (here not on 0).
    assert_ne!(policies.partition(None, "t", Some(b"eu:order-3"), 1, 4), 0);
    assert_eq!(policies.failure_count(name), 0);
}

fn progress(broker_id: i32, in_isr: bool, log_end_offset: i64) -> ReplicaProgress {
    ReplicaProgress {
        broker_id,
        in_isr,
        log_end_offset,
        rack_id: None,
    }
}

/// acks=all after the append: the leader and broker 2 hold offset 99, broker 3 (in the ISR)
/// has reached 50 only, so the high watermark is 50.
fn two_of_three_hold_it() -> Request {
    Request {
        stage: Stage::AfterAppend,
        acks: -1,
        min_insync_replicas: 2,
        replicas: vec![
            progress(1, true, 100),
            progress(2, true, 100),
            progress(3, true, 50),
        ],
        leader_log_end_offset: 100,
        high_watermark: 50,
        flushed_offset: 100,
        last_offset: 99,
        elapsed_ms: 3,
    }
}

#[test]
fn quorum_acks_completes_on_a_majority() {
    let (_dir, policies) = open();
    passes_test(
        &policies,
        QUORUM,
        PolicyKind::Acks,
        &[Scenario {
            name: "two of three replicas hold the records: complete".into(),
            input: ScenarioInput::Acks(two_of_three_hold_it()),
            expect: Some(serde_json::json!("Complete")),
        }],
    );
    let name = "quorum";
    install_and_activate(&policies, name, QUORUM, PolicyKind::Acks);
    let bound = Some(name);

    let request = two_of_three_hold_it();
    assert_eq!(policies.decide(bound, &request), Decision::Complete);
    assert_eq!(
        policies.decide(None, &request),
        Decision::Wait,
        "the built-in waits for the high watermark"
    );
    // One of three holding it is not a majority.
    let mut one_of_three = request.clone();
    one_of_three.replicas[1].log_end_offset = 60;
    assert_eq!(policies.decide(bound, &one_of_three), Decision::Wait);
    // A follower that caught up outside the ISR counts towards the majority.
    let mut outside_isr = request.clone();
    outside_isr.replicas[1].in_isr = false;
    assert_eq!(policies.decide(bound, &outside_isr), Decision::Complete);
    // Before the append: a majority of the replicas in the ISR is enough, whatever
    // min.insync.replicas says; fewer is NOT_ENOUGH_REPLICAS.
    let mut before = request.clone();
    before.stage = Stage::BeforeAppend;
    before.min_insync_replicas = 3;
    before.replicas[2].in_isr = false;
    assert_eq!(policies.decide(bound, &before), Decision::Wait);
    assert_eq!(policies.decide(None, &before), Decision::Fail(19));
    before.replicas[1].in_isr = false;
    assert_eq!(policies.decide(bound, &before), Decision::Fail(19));
    // acks=1 is the default's.
    let mut acks_one = request;
    acks_one.acks = 1;
    assert_eq!(policies.decide(bound, &acks_one), Decision::Complete);
    assert_eq!(policies.failure_count(name), 0);
}

fn replica(broker_id: i32, in_isr: bool, status: BrokerStatus, rack: &str) -> ReplicaState {
    ReplicaState {
        broker_id,
        in_isr,
        status,
        log_end_offset: 100,
        last_caught_up_ms: 0,
        rack: Some(rack.into()),
    }
}

/// A leader failure where the first alive ISR replica (1) is outside the preferred racks and the
/// second (2) is in one.
fn rack_state(reason: ElectionReason) -> PartitionState {
    PartitionState {
        topic: "t".into(),
        partition: 0,
        replicas: vec![
            replica(3, true, BrokerStatus::Fenced, "us-east-1a"),
            replica(1, true, BrokerStatus::Alive, "eu-west-1a"),
            replica(2, true, BrokerStatus::Alive, "us-east-1b"),
            replica(4, false, BrokerStatus::Alive, "us-east-1a"),
        ],
        current_leader: Some(3),
        leader_epoch: 9,
        reason,
        unclean_allowed: false,
    }
}

#[test]
fn rack_aware_election_prefers_its_racks() {
    let (_dir, policies) = open();
    passes_test(
        &policies,
        RACK_AWARE,
        PolicyKind::Election,
        &[Scenario {
            name: "leader failure: the alive ISR replica in a preferred rack".into(),
            input: ScenarioInput::Election(rack_state(ElectionReason::LeaderFailure)),
            expect: Some(serde_json::json!({ "leader": 2 })),
        }],
    );
    let name = "rack-aware";
    install_and_activate(&policies, name, RACK_AWARE, PolicyKind::Election);
    let bound = Some(name);

    let state = rack_state(ElectionReason::LeaderFailure);
    let answer = policies.elect(bound, &state);
    assert_eq!(answer.leader, Some(2), "{answer:?}");
    assert!(answer.reason.contains("preferred rack"), "{answer:?}");
    assert_eq!(
        policies.elect(None, &state).leader,
        Some(1),
        "the built-in takes the first alive ISR replica"
    );
    // Never outside the ISR, even in a preferred rack: without broker 2, Kafka's rule (1).
    let mut no_preferred = state.clone();
    no_preferred.replicas[2].in_isr = false;
    let answer = policies.elect(bound, &no_preferred);
    assert_eq!(answer.leader, Some(1), "{answer:?}");
    // No alive ISR replica at all and unclean not allowed: nobody.
    let mut nobody = no_preferred;
    nobody.replicas[1].status = BrokerStatus::Fenced;
    assert_eq!(policies.elect(bound, &nobody).leader, None);
    // A preferred election also moves leadership to the preferred racks.
    let preferred = rack_state(ElectionReason::Preferred);
    assert_eq!(policies.elect(bound, &preferred).leader, Some(2));
    assert_eq!(policies.failure_count(name), 0);
}
