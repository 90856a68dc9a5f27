//! An election that answers as Kafka's default (so it passes conformance, whose topic is
//! `conformance`) except for partitions of the trigger topics below: then it misbehaves.
//! `tests/policy_sandbox.rs` activates it and elects partitions of those topics to exercise the
//! host's fallback.

use weir_plugin_sdk::election::{BrokerStatus, Election, ElectionPolicy, PartitionState};
use weir_test_misbehave as misbehave;

/// Spins forever.
pub const SPIN: &str = "spin";
/// Allocates memory without bound.
pub const BOMB: &str = "bomb";
/// Panics.
pub const PANIC: &str = "panic";
/// Recurses until the stack runs out.
pub const RECURSE: &str = "recurse";
/// Elects broker [`STRANGER`], which is not among the replicas.
pub const STRANGER_TOPIC: &str = "stranger";
pub const STRANGER: i32 = 999;
/// Elects the first alive replica outside the ISR, even when unclean election is not allowed.
pub const UNCLEAN: &str = "unclean";
/// Kafka's leader, with a reason of [`HUGE_REASON_BYTES`].
pub const HUGE_REASON: &str = "huge-reason";
/// 8 MiB: under the tests' 16 MiB memory cap, so the string reaches the host.
pub const HUGE_REASON_BYTES: usize = 8 << 20;

#[derive(Debug)]
pub struct HostileElection;

impl ElectionPolicy for HostileElection {
    fn elect(state: PartitionState) -> Election {
        match state.topic.as_str() {
            SPIN => misbehave::spin(),
            BOMB => misbehave::bomb(),
            PANIC => misbehave::panic("election trigger"),
            RECURSE => Election {
                leader: None,
                reason: misbehave::recurse(0).to_string(),
            },
            STRANGER_TOPIC => Election {
                leader: Some(STRANGER),
                reason: "a stranger".into(),
            },
            UNCLEAN => Election {
                leader: state
                    .replicas
                    .iter()
                    .find(|r| !r.in_isr && r.status == BrokerStatus::Alive)
                    .map(|r| r.broker_id),
                reason: "outside the ISR".into(),
            },
            HUGE_REASON => Election {
                leader: weir_election_default::elect(&state).leader,
                reason: "x".repeat(HUGE_REASON_BYTES),
            },
            _ => weir_election_default::elect(&state),
        }
    }
}

weir_plugin_sdk::export_election!(HostileElection);
