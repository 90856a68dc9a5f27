//! Conformance scenarios: what every plugin of a kind must do before `install` accepts it, and
//! the user's own scenarios (`weir plugin test FILE.wasm --scenarios FILE.json`).
//!
//! The built-in scenarios check the contract, not one policy: answers are valid (the same rules
//! as [`validate`], which the runtime enforces on every call), deterministic, and live (a plugin
//! must elect someone when an alive ISR replica exists, must complete a fully replicated produce).
//! Generated groups report one outcome each with the first counter-example.

use serde::{Deserialize, Serialize};

use super::PolicyKind;
use super::engine::Fault;
use super::plugin::Plugin;
use super::validate;
use super::wit::acks::{Decision, ReplicaProgress, Request, Stage};
use super::wit::election::{BrokerStatus, Election, ElectionReason, PartitionState, ReplicaState};

/// A user scenario: a name, one input (`election`, `partition` or `acks`, shaped as the WIT
/// record), and optionally the expected answer (its fields are compared; others are ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    #[serde(flatten)]
    pub input: ScenarioInput,
    #[serde(default)]
    pub expect: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioInput {
    Election(PartitionState),
    Partition(PartitionInput),
    Acks(Request),
}

/// A partitioner call; `key` is UTF-8 text, null for a null key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionInput {
    #[serde(default)]
    pub topic: String,
    pub key: Option<String>,
    #[serde(default)]
    pub value_size: u32,
    pub partition_count: u32,
}

/// The scenarios file: `{"scenarios": [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioFile {
    pub scenarios: Vec<Scenario>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    /// The plugin's answer (for a generated group: how many cases ran).
    pub decision: String,
    pub passed: bool,
    pub problem: Option<String>,
}

fn outcome(name: impl Into<String>, decision: String, problem: Option<String>) -> Outcome {
    Outcome {
        name: name.into(),
        decision,
        passed: problem.is_none(),
        problem,
    }
}

fn fault_problem(fault: Fault) -> String {
    format!("the call failed: {}", fault.label())
}

/// The kind's built-in scenarios.
pub fn run_builtin(plugin: &Plugin) -> Vec<Outcome> {
    match plugin.kind {
        PolicyKind::Election => election_scenarios(plugin),
        PolicyKind::Partitioner => partitioner_scenarios(plugin),
        PolicyKind::Acks => acks_scenarios(plugin),
    }
}

/// The user's scenarios; an input of another kind than the plugin's is an error.
pub fn run_user(plugin: &Plugin, scenarios: &[Scenario]) -> anyhow::Result<Vec<Outcome>> {
    scenarios
        .iter()
        .map(|scenario| {
            let answer: Result<serde_json::Value, Fault> = match (&scenario.input, plugin.kind) {
                (ScenarioInput::Election(state), PolicyKind::Election) => {
                    plugin.elect(state).and_then(|answer| {
                        validate::election(state, &answer).map_err(|_| Fault::InvalidAnswer)?;
                        Ok(serde_json::to_value(answer).unwrap_or_default())
                    })
                }
                (ScenarioInput::Partition(input), PolicyKind::Partitioner) => plugin
                    .partition(
                        &input.topic,
                        input.key.as_deref().map(str::as_bytes),
                        input.value_size,
                        input.partition_count,
                    )
                    .and_then(|partition| {
                        validate::partition(partition, input.partition_count)
                            .map_err(|_| Fault::InvalidAnswer)?;
                        Ok(serde_json::json!({ "partition": partition }))
                    }),
                (ScenarioInput::Acks(request), PolicyKind::Acks) => {
                    plugin.decide(request).and_then(|answer| {
                        validate::decision(request, &answer).map_err(|_| Fault::InvalidAnswer)?;
                        Ok(serde_json::to_value(answer).unwrap_or_default())
                    })
                }
                _ => anyhow::bail!(
                    "scenario `{}` is not a {} scenario",
                    scenario.name,
                    plugin.kind.interface()
                ),
            };
            Ok(match answer {
                Err(fault) => outcome(&scenario.name, "-".into(), Some(fault_problem(fault))),
                Ok(answer) => {
                    let problem = scenario
                        .expect
                        .as_ref()
                        .and_then(|expected| mismatch(expected, &answer));
                    outcome(&scenario.name, answer.to_string(), problem)
                }
            })
        })
        .collect()
}

/// The first field of `expected` that `answer` does not match.
fn mismatch(expected: &serde_json::Value, answer: &serde_json::Value) -> Option<String> {
    match (expected, answer) {
        (serde_json::Value::Object(fields), serde_json::Value::Object(actual)) => fields
            .iter()
            .find_map(|(key, value)| match actual.get(key) {
                Some(got) if got == value => None,
                got => Some(format!(
                    "expected {key} = {value}, got {}",
                    got.map_or("nothing".into(), |g| g.to_string())
                )),
            }),
        _ if expected == answer => None,
        _ => Some(format!("expected {expected}, got {answer}")),
    }
}

/// A small deterministic generator, so the scenarios are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

fn replica(broker_id: i32, in_isr: bool, status: BrokerStatus, rack: &str) -> ReplicaState {
    ReplicaState {
        broker_id,
        in_isr,
        status,
        log_end_offset: 100,
        last_caught_up_ms: 0,
        rack: Some(rack.to_string()),
    }
}

const REASONS: [ElectionReason; 5] = [
    ElectionReason::LeaderFailure,
    ElectionReason::ControlledShutdown,
    ElectionReason::Preferred,
    ElectionReason::Unclean,
    ElectionReason::Rebalance,
];

fn election_scenarios(plugin: &Plugin) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let state = |replicas: Vec<ReplicaState>, reason, unclean_allowed| PartitionState {
        topic: "conformance".into(),
        partition: 0,
        replicas,
        current_leader: Some(1),
        leader_epoch: 7,
        reason,
        unclean_allowed,
    };
    use BrokerStatus::{Alive, Fenced, ShuttingDown};
    let named = [
        (
            "leader failure, first replica fenced: elect an alive ISR replica",
            state(
                vec![
                    replica(1, true, Fenced, "a"),
                    replica(2, true, Alive, "b"),
                    replica(3, true, Alive, "c"),
                ],
                ElectionReason::LeaderFailure,
                false,
            ),
        ),
        (
            "controlled shutdown of the leader: move to an alive ISR replica",
            state(
                vec![
                    replica(1, true, ShuttingDown, "a"),
                    replica(2, true, Alive, "b"),
                ],
                ElectionReason::ControlledShutdown,
                false,
            ),
        ),
        (
            "no alive ISR replica, unclean not allowed: no leader",
            state(
                vec![replica(1, true, Fenced, "a"), replica(2, false, Alive, "b")],
                ElectionReason::LeaderFailure,
                false,
            ),
        ),
        (
            "single replica, alive and in ISR",
            state(
                vec![replica(1, true, Alive, "a")],
                ElectionReason::LeaderFailure,
                false,
            ),
        ),
    ];
    for (name, state) in named {
        let problem = match plugin.elect(&state) {
            Err(fault) => Some(fault_problem(fault)),
            Ok(answer) => validate::election(&state, &answer)
                .err()
                .or_else(|| election_liveness(&state, &answer)),
        };
        let decision = plugin
            .elect(&state)
            .map(|a| format!("leader {:?} ({})", a.leader, a.reason))
            .unwrap_or_else(|fault| fault.label().to_string());
        outcomes.push(outcome(name, decision, problem));
    }

    let mut random = Lcg(0x5eed);
    let statuses = [Alive, Alive, Fenced, ShuttingDown];
    let mut cases = 0;
    let mut problem = None;
    for _ in 0..2000 {
        let count = 1 + random.next(5) as i32;
        let replicas = (0..count)
            .map(|i| {
                replica(
                    10 + i,
                    random.next(3) != 0,
                    statuses[random.next(4) as usize],
                    ["a", "b", "c"][random.next(3) as usize],
                )
            })
            .collect();
        let state = state(
            replicas,
            REASONS[random.next(5) as usize],
            random.next(2) == 0,
        );
        cases += 1;
        let first = plugin.elect(&state);
        let second = plugin.elect(&state);
        let found = match (&first, &second) {
            (Err(fault), _) | (_, Err(fault)) => Some(fault_problem(*fault)),
            (Ok(a), Ok(b)) if a.leader != b.leader => Some(format!(
                "not deterministic: {:?} then {:?}",
                a.leader, b.leader
            )),
            (Ok(answer), _) => validate::election(&state, answer)
                .err()
                .or_else(|| election_liveness(&state, answer)),
        };
        if let Some(found) = found {
            problem = Some(format!("{found}; state: {}", to_json(&state)));
            break;
        }
    }
    outcomes.push(outcome(
        "generated states: valid, deterministic, live",
        format!("{cases} cases"),
        problem,
    ));
    outcomes
}

/// A failure or shutdown election with an alive ISR replica must elect someone.
fn election_liveness(state: &PartitionState, answer: &Election) -> Option<String> {
    let must_elect = matches!(
        state.reason,
        ElectionReason::LeaderFailure | ElectionReason::ControlledShutdown
    ) && state
        .replicas
        .iter()
        .any(|r| r.in_isr && r.status == BrokerStatus::Alive);
    (must_elect && answer.leader.is_none())
        .then(|| "no leader although an alive ISR replica exists".to_string())
}

fn partitioner_scenarios(plugin: &Plugin) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for (key, count) in [
        ("order-42", 8u32),
        ("", 3),
        ("a-much-longer-key-for-the-hash", 1),
    ] {
        let name = format!("key {key:?} over {count} partitions");
        let answer = plugin.partition("conformance", Some(key.as_bytes()), 100, count);
        let (decision, problem) = match answer {
            Err(fault) => ("-".into(), Some(fault_problem(fault))),
            Ok(p) => (
                format!("partition {p}"),
                validate::partition(p, count).err(),
            ),
        };
        outcomes.push(outcome(name, decision, problem));
    }
    let mut random = Lcg(0xba7c4);
    let mut problem = None;
    let mut cases = 0;
    'groups: for &count in &[1u32, 2, 3, 7, 16, 100] {
        let keys: Vec<Option<Vec<u8>>> = (0..200)
            .map(|i| {
                (i % 10 != 0).then(|| {
                    let len = random.next(40) as usize;
                    (0..len).map(|_| random.next(256) as u8).collect()
                })
            })
            .collect();
        let borrowed: Vec<Option<&[u8]>> = keys.iter().map(|k| k.as_deref()).collect();
        let (bytes, ends) = weir_plugin_sdk::partitioner::pack_keys(borrowed.iter().copied());
        let sizes = vec![100u32; keys.len()];
        let batch = match plugin.partition_batch("conformance", &bytes, &ends, &sizes, count) {
            Ok(batch) => batch,
            Err(fault) => {
                problem = Some(format!("batch call: {}", fault_problem(fault)));
                break;
            }
        };
        if let Err(found) = validate::partitions(&batch, keys.len(), count) {
            problem = Some(format!("batch: {found}"));
            break;
        }
        for (key, &batched) in borrowed.iter().zip(&batch) {
            cases += 1;
            let single = match plugin.partition("conformance", *key, 100, count) {
                Ok(p) => p,
                Err(fault) => {
                    problem = Some(fault_problem(fault));
                    break 'groups;
                }
            };
            if let Err(found) = validate::partition(single, count) {
                problem = Some(found);
                break 'groups;
            }
            if key.is_some() && single != batched {
                problem = Some(format!(
                    "key {key:?}: partition {single} alone but {batched} in a batch"
                ));
                break 'groups;
            }
        }
    }
    outcomes.push(outcome(
        "generated keys: in range, keyed records placed the same alone and in a batch",
        format!("{cases} cases"),
        problem,
    ));
    outcomes
}

fn acks_request(
    stage: Stage,
    acks: i16,
    min_insync_replicas: u32,
    follower_offsets: &[(i64, bool)],
    high_watermark: i64,
) -> Request {
    let leader_log_end_offset = 100;
    let mut replicas = vec![ReplicaProgress {
        broker_id: 1,
        in_isr: true,
        log_end_offset: leader_log_end_offset,
        rack_id: Some(0),
    }];
    replicas.extend(
        follower_offsets
            .iter()
            .enumerate()
            .map(|(i, &(leo, in_isr))| ReplicaProgress {
                broker_id: 2 + i as i32,
                in_isr,
                log_end_offset: leo,
                rack_id: Some(1 + i as u32),
            }),
    );
    Request {
        stage,
        acks,
        min_insync_replicas,
        replicas,
        leader_log_end_offset,
        high_watermark,
        flushed_offset: high_watermark,
        last_offset: 99,
        elapsed_ms: 5,
    }
}

fn acks_scenarios(plugin: &Plugin) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let decision_text = |answer: &Result<Decision, Fault>| match answer {
        Ok(decision) => format!("{decision:?}"),
        Err(fault) => fault.label().to_string(),
    };
    type Expectation = fn(&Decision) -> bool;
    let named: [(&str, Request, Expectation); 3] = [
        (
            "acks=all, every replica has the records and the high watermark passed them: complete",
            acks_request(Stage::AfterAppend, -1, 2, &[(100, true), (100, true)], 100),
            |d| matches!(d, Decision::Complete),
        ),
        (
            "acks=1 on a single replica after append and flush: complete",
            acks_request(Stage::AfterAppend, 1, 1, &[], 100),
            |d| matches!(d, Decision::Complete),
        ),
        (
            "acks=all, only the leader has the records: do not complete",
            acks_request(Stage::AfterAppend, -1, 2, &[(50, true), (50, true)], 50),
            |d| !matches!(d, Decision::Complete),
        ),
    ];
    for (name, request, expected) in named {
        let answer = plugin.decide(&request);
        let problem = match &answer {
            Err(fault) => Some(fault_problem(*fault)),
            Ok(decision) => validate::decision(&request, decision)
                .err()
                .or_else(|| (!expected(decision)).then(|| format!("answered {decision:?}"))),
        };
        outcomes.push(outcome(name, decision_text(&answer), problem));
    }
    let mut random = Lcg(0xac45);
    let mut problem = None;
    let mut cases = 0;
    for _ in 0..2000 {
        let followers: Vec<(i64, bool)> = (0..random.next(4))
            .map(|_| (50 + random.next(51) as i64, random.next(3) != 0))
            .collect();
        let stage = if random.next(2) == 0 {
            Stage::BeforeAppend
        } else {
            Stage::AfterAppend
        };
        let acks = [0i16, 1, -1][random.next(3) as usize];
        let high_watermark = followers
            .iter()
            .filter(|(_, in_isr)| *in_isr)
            .map(|(leo, _)| *leo)
            .min()
            .unwrap_or(100);
        let request = acks_request(
            stage,
            acks,
            1 + random.next(3) as u32,
            &followers,
            high_watermark,
        );
        cases += 1;
        let first = plugin.decide(&request);
        let second = plugin.decide(&request);
        let found = match (&first, &second) {
            (Err(fault), _) | (_, Err(fault)) => Some(fault_problem(*fault)),
            (Ok(a), Ok(b)) if a != b => Some(format!("not deterministic: {a:?} then {b:?}")),
            (Ok(decision), _) => validate::decision(&request, decision).err().or_else(|| {
                // acks=all must not complete while only the leader holds the records and
                // other replicas are in sync (with an ISR of one, Kafka itself completes).
                let followers = &request.replicas[1..];
                let only_leader = followers.iter().any(|r| r.in_isr)
                    && followers
                        .iter()
                        .all(|r| r.log_end_offset <= request.last_offset);
                (request.acks == -1
                    && request.stage == Stage::AfterAppend
                    && only_leader
                    && matches!(decision, Decision::Complete))
                .then(|| "acks=all completed with the records on the leader only".to_string())
            }),
        };
        if let Some(found) = found {
            problem = Some(format!("{found}; request: {}", to_json(&request)));
            break;
        }
    }
    outcomes.push(outcome(
        "generated requests: valid, deterministic, acks=all never on the leader alone",
        format!("{cases} cases"),
        problem,
    ));
    outcomes
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
