//! Kafka's election with a reason string of 2 MiB on every answer (the contract asks for "a
//! short human-readable reason"; the host keeps 256 characters).

use weir_plugin_sdk::election::{Election, ElectionPolicy, PartitionState};

/// 2 MiB: many times what the host keeps, yet cheap enough to make on every one of the ~4000
/// conformance calls (the trigger plugin `hostile-election` answers 8 MiB once).
pub const HUGE_REASON_BYTES: usize = 2 << 20;

#[derive(Debug)]
pub struct HugeReason;

impl ElectionPolicy for HugeReason {
    fn elect(state: PartitionState) -> Election {
        Election {
            leader: weir_election_default::elect(&state).leader,
            reason: "x".repeat(HUGE_REASON_BYTES),
        }
    }
}

weir_plugin_sdk::export_election!(HugeReason);
