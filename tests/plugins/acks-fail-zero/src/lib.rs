//! An acks plugin that fails every request with error code 0 (NONE), which the contract forbids:
//! install must refuse it.

use weir_plugin_sdk::acks::{AcksPolicy, Decision, Request};

#[derive(Debug)]
pub struct FailZero;

impl AcksPolicy for FailZero {
    fn decide(_request: Request) -> Decision {
        Decision::Fail(0)
    }
}

weir_plugin_sdk::export_acks!(FailZero);
