//! Kafka's leader election: the first alive ISR replica in assigned order; for an unclean
//! election, the first alive replica in assigned order, and only when unclean election is
//! allowed. A preferred or rebalance election moves leadership only to the preferred replica
//! (the first assigned), and only when it is alive and in the ISR.

use weir_plugin_sdk::election::{
    BrokerStatus, Election, ElectionPolicy, ElectionReason, PartitionState, ReplicaState,
};

#[derive(Debug)]
pub struct DefaultElection;

fn alive(replica: &ReplicaState) -> bool {
    replica.status == BrokerStatus::Alive
}

/// The election, as plain Rust.
pub fn elect(state: &PartitionState) -> Election {
    let answer = |leader: Option<i32>, reason: &str| Election {
        leader,
        reason: reason.to_string(),
    };
    match state.reason {
        ElectionReason::Preferred | ElectionReason::Rebalance => {
            return match state.replicas.first() {
                Some(preferred) if alive(preferred) && preferred.in_isr => {
                    answer(Some(preferred.broker_id), "preferred replica")
                }
                _ => answer(None, "preferred replica is not alive and in the ISR"),
            };
        }
        ElectionReason::LeaderFailure
        | ElectionReason::ControlledShutdown
        | ElectionReason::Unclean => {}
    }
    // A replica shutting down is skipped by `alive`, which also covers a controlled shutdown.
    if let Some(replica) = state.replicas.iter().find(|r| alive(r) && r.in_isr) {
        return answer(Some(replica.broker_id), "first alive ISR replica");
    }
    if state.unclean_allowed
        && let Some(replica) = state.replicas.iter().find(|r| alive(r))
    {
        return answer(
            Some(replica.broker_id),
            "unclean: first alive replica outside the ISR",
        );
    }
    answer(None, "no alive ISR replica")
}

impl ElectionPolicy for DefaultElection {
    fn elect(state: PartitionState) -> Election {
        elect(&state)
    }
}

#[cfg(feature = "component")]
weir_plugin_sdk::export_election!(DefaultElection);

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(broker_id: i32, in_isr: bool, status: BrokerStatus) -> ReplicaState {
        ReplicaState {
            broker_id,
            in_isr,
            status,
            log_end_offset: 0,
            last_caught_up_ms: 0,
            rack: None,
        }
    }

    fn state(
        replicas: Vec<ReplicaState>,
        reason: ElectionReason,
        unclean_allowed: bool,
    ) -> PartitionState {
        PartitionState {
            topic: "t".into(),
            partition: 0,
            replicas,
            current_leader: None,
            leader_epoch: 3,
            reason,
            unclean_allowed,
        }
    }

    use BrokerStatus::{Alive, Fenced, ShuttingDown};

    #[test]
    fn first_alive_isr_replica_in_assigned_order() {
        let replicas = vec![
            replica(1, true, Fenced),
            replica(2, false, Alive),
            replica(3, true, Alive),
            replica(4, true, Alive),
        ];
        let answer = elect(&state(replicas, ElectionReason::LeaderFailure, true));
        assert_eq!(answer.leader, Some(3));
    }

    #[test]
    fn controlled_shutdown_skips_the_broker_going_down() {
        let replicas = vec![replica(1, true, ShuttingDown), replica(2, true, Alive)];
        let answer = elect(&state(replicas, ElectionReason::ControlledShutdown, false));
        assert_eq!(answer.leader, Some(2));
    }

    #[test]
    fn unclean_only_when_allowed() {
        let replicas = vec![replica(1, true, Fenced), replica(2, false, Alive)];
        let clean = elect(&state(
            replicas.clone(),
            ElectionReason::LeaderFailure,
            false,
        ));
        assert_eq!(clean.leader, None);
        let unclean = elect(&state(replicas, ElectionReason::Unclean, true));
        assert_eq!(unclean.leader, Some(2));
    }

    #[test]
    fn preferred_only_moves_to_the_first_assigned_replica() {
        let healthy = vec![replica(2, true, Alive), replica(1, true, Alive)];
        assert_eq!(
            elect(&state(healthy, ElectionReason::Preferred, false)).leader,
            Some(2)
        );
        let out_of_sync = vec![replica(2, false, Alive), replica(1, true, Alive)];
        assert_eq!(
            elect(&state(out_of_sync, ElectionReason::Rebalance, true)).leader,
            None
        );
    }

    #[test]
    fn no_replicas_no_leader() {
        assert_eq!(
            elect(&state(vec![], ElectionReason::LeaderFailure, true)).leader,
            None
        );
    }
}
