//! An election that prefers an alive replica outside the ISR, whether or not unclean election
//! is allowed (else the first alive replica): install must refuse it.

use weir_plugin_sdk::election::{BrokerStatus, Election, ElectionPolicy, PartitionState};

#[derive(Debug)]
pub struct Unclean;

impl ElectionPolicy for Unclean {
    fn elect(state: PartitionState) -> Election {
        let alive = |r: &&weir_plugin_sdk::election::ReplicaState| r.status == BrokerStatus::Alive;
        let leader = state
            .replicas
            .iter()
            .filter(alive)
            .find(|r| !r.in_isr)
            .or_else(|| state.replicas.iter().find(alive))
            .map(|r| r.broker_id);
        Election {
            leader,
            reason: "outside the ISR first".into(),
        }
    }
}

weir_plugin_sdk::export_election!(Unclean);
