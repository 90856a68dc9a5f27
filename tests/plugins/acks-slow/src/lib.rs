//! Kafka's acks after burning about 0.3 ms of CPU per call: slow but within the 2 ms budget, so
//! the host must never kill it, even on a loaded machine (its budget is CPU time, not wall time).

use weir_plugin_sdk::acks::{AcksPolicy, Decision, Request};

/// Rounds of xorshift per call: about 0.3 ms on a current x86-64 core under wasmtime
/// (`tests/policy_sandbox.rs` measures it and checks the order of magnitude).
pub const BURN_ITERATIONS: u32 = 130_000;

#[derive(Debug)]
pub struct SlowAcks;

impl AcksPolicy for SlowAcks {
    fn decide(request: Request) -> Decision {
        if weir_test_misbehave::burn(BURN_ITERATIONS) == 0 {
            // Never true (xorshift never reaches 0): keeps the burn from being optimised out.
            return Decision::Wait;
        }
        weir_acks_default::decide(&request)
    }
}

weir_plugin_sdk::export_acks!(SlowAcks);
