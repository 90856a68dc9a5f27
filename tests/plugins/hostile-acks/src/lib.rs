//! An acks plugin that answers exactly as Kafka's default (so it passes conformance, whose
//! requests have `min.insync.replicas` 1 to 3) except when a request's `min.insync.replicas` is
//! one of the triggers below: then it misbehaves. `tests/policy_sandbox.rs` activates it and
//! sends the triggers to exercise the host's fallback on the hot path.

use weir_plugin_sdk::acks::{AcksPolicy, Decision, Request};
use weir_test_misbehave as misbehave;

/// Spins forever.
pub const SPIN: u32 = 1001;
/// Allocates memory without bound.
pub const BOMB: u32 = 1002;
/// Panics.
pub const PANIC: u32 = 1003;
/// Executes `unreachable`.
pub const UNREACHABLE: u32 = 1004;
/// Recurses until the stack runs out.
pub const RECURSE: u32 = 1005;
/// Answers `fail(0)`, which the contract forbids.
pub const FAIL_ZERO: u32 = 1006;
/// Answers `complete` whatever the stage (invalid before the leader holds the records).
pub const COMPLETE_EARLY: u32 = 1007;

#[derive(Debug)]
pub struct HostileAcks;

impl AcksPolicy for HostileAcks {
    fn decide(request: Request) -> Decision {
        match request.min_insync_replicas {
            SPIN => misbehave::spin(),
            BOMB => misbehave::bomb(),
            PANIC => misbehave::panic("acks trigger"),
            UNREACHABLE => misbehave::unreachable(),
            RECURSE => Decision::Fail(misbehave::recurse(0) as i16 | 1),
            FAIL_ZERO => Decision::Fail(0),
            COMPLETE_EARLY => Decision::Complete,
            _ => weir_acks_default::decide(&request),
        }
    }
}

weir_plugin_sdk::export_acks!(HostileAcks);
