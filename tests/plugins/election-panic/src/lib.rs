//! An election that panics: install must refuse it (trap).

use weir_plugin_sdk::election::{Election, ElectionPolicy, PartitionState};

#[derive(Debug)]
pub struct Panic;

impl ElectionPolicy for Panic {
    fn elect(_state: PartitionState) -> Election {
        weir_test_misbehave::panic("election")
    }
}

weir_plugin_sdk::export_election!(Panic);
