//! An acks plugin whose decide spins forever: install must refuse it (timeout).

use weir_plugin_sdk::acks::{AcksPolicy, Decision, Request};

#[derive(Debug)]
pub struct Spin;

impl AcksPolicy for Spin {
    fn decide(_request: Request) -> Decision {
        weir_test_misbehave::spin()
    }
}

weir_plugin_sdk::export_acks!(Spin);
