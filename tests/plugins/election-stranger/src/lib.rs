//! An election that elects broker 999, never among the replicas: install must refuse it.

use weir_plugin_sdk::election::{Election, ElectionPolicy, PartitionState};

#[derive(Debug)]
pub struct Stranger;

impl ElectionPolicy for Stranger {
    fn elect(_state: PartitionState) -> Election {
        Election {
            leader: Some(999),
            reason: "a stranger".into(),
        }
    }
}

weir_plugin_sdk::export_election!(Stranger);
