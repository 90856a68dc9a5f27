//! Leader election as the controller performs it: build the election plugin's question from
//! the partition's assignment, ISR and the brokers' liveness, ask through [`LeaderElector`], and
//! turn the answer into a new leader and leader epoch.

use std::collections::HashMap;

use crate::policy::Policies;
use crate::policy::wit::election::{
    BrokerStatus, Election, ElectionReason, PartitionState, ReplicaState,
};

/// What the controller calls to choose a leader. Implemented by [`Policies`] (the election
/// plugin bound to the topic, else the broker-wide one, with fallback to the built-in).
pub trait LeaderElector: Send + Sync {
    fn elect(&self, binding: Option<&str>, state: &PartitionState) -> Election;
}

impl LeaderElector for Policies {
    fn elect(&self, binding: Option<&str>, state: &PartitionState) -> Election {
        Policies::elect(self, binding, state)
    }
}

/// A broker as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerView {
    pub status: BrokerStatus,
    pub rack: Option<String>,
}

/// A partition's replica set as the metadata holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub topic: String,
    pub partition: u32,
    /// Assigned replicas (AR) in preferred order.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    /// Each replica's log end offset as last reported (-1 unknown).
    pub log_end_offsets: HashMap<i32, i64>,
    /// When each replica last caught up with the leader, ms since the epoch (-1 unknown).
    pub last_caught_up_ms: HashMap<i32, i64>,
}

/// The outcome the controller writes to the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionOutcome {
    /// The leader after the election (unchanged when the answer is none for a preferred or
    /// rebalance election; none when the partition goes offline).
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    /// The ISR after the election: an unclean leader becomes the whole ISR, as in Kafka.
    pub isr: Vec<i32>,
    pub reason: String,
}

/// The election plugin's question for `view`.
pub fn partition_state(
    view: &PartitionView,
    brokers: &HashMap<i32, BrokerView>,
    reason: ElectionReason,
    unclean_allowed: bool,
) -> PartitionState {
    PartitionState {
        topic: view.topic.clone(),
        partition: view.partition,
        replicas: view
            .replicas
            .iter()
            .map(|&broker_id| {
                let broker = brokers.get(&broker_id);
                ReplicaState {
                    broker_id,
                    in_isr: view.isr.contains(&broker_id),
                    // A broker the controller does not know is not registered: fenced.
                    status: broker.map_or(BrokerStatus::Fenced, |b| b.status),
                    log_end_offset: view.log_end_offsets.get(&broker_id).copied().unwrap_or(-1),
                    last_caught_up_ms: view
                        .last_caught_up_ms
                        .get(&broker_id)
                        .copied()
                        .unwrap_or(-1),
                    rack: broker.and_then(|b| b.rack.clone()),
                }
            })
            .collect(),
        current_leader: view.leader,
        leader_epoch: view.leader_epoch,
        reason,
        // An operator's unclean election request is itself the permission.
        unclean_allowed: unclean_allowed || reason == ElectionReason::Unclean,
    }
}

/// Runs one election. The leader epoch grows whenever the leader changes or the partition goes
/// offline; a preferred or rebalance election that changes nothing leaves everything as it was.
pub fn elect(
    elector: &dyn LeaderElector,
    binding: Option<&str>,
    view: &PartitionView,
    brokers: &HashMap<i32, BrokerView>,
    reason: ElectionReason,
    unclean_allowed: bool,
) -> ElectionOutcome {
    let state = partition_state(view, brokers, reason, unclean_allowed);
    let answer = elector.elect(binding, &state);
    let keeps_leadership = matches!(
        reason,
        ElectionReason::Preferred | ElectionReason::Rebalance
    ) && answer.leader.is_none();
    if keeps_leadership || answer.leader == view.leader {
        return ElectionOutcome {
            leader: view.leader,
            leader_epoch: view.leader_epoch,
            isr: view.isr.clone(),
            reason: answer.reason,
        };
    }
    let isr = match answer.leader {
        Some(leader) if !view.isr.contains(&leader) => vec![leader],
        _ => view.isr.clone(),
    };
    ElectionOutcome {
        leader: answer.leader,
        leader_epoch: view.leader_epoch + 1,
        isr,
        reason: answer.reason,
    }
}

#[cfg(test)]
mod tests {
    //! Scenarios from the source documents' replication model, through the real (WASM) default
    //! election plugin.

    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::policy::PolicyConfig;

    fn policies() -> Arc<Policies> {
        Policies::open(
            None,
            PolicyConfig {
                election_call_timeout: Duration::from_millis(10),
                call_timeout: Duration::from_millis(2),
                memory_max_bytes: 16 << 20,
            },
        )
        .expect("policies")
    }

    fn brokers(statuses: &[(i32, BrokerStatus)]) -> HashMap<i32, BrokerView> {
        statuses
            .iter()
            .map(|&(id, status)| {
                (
                    id,
                    BrokerView {
                        status,
                        rack: Some(format!("rack-{}", id % 2)),
                    },
                )
            })
            .collect()
    }

    fn view(replicas: &[i32], isr: &[i32], leader: Option<i32>) -> PartitionView {
        PartitionView {
            topic: "orders".into(),
            partition: 3,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 4,
            log_end_offsets: replicas.iter().map(|&r| (r, 100)).collect(),
            last_caught_up_ms: HashMap::new(),
        }
    }

    use BrokerStatus::{Alive, Fenced, ShuttingDown};

    #[test]
    fn leader_failure_elects_the_next_isr_replica_in_assigned_order() {
        let policies = policies();
        let outcome = elect(
            policies.as_ref(),
            None,
            &view(&[1, 2, 3], &[1, 3, 2], Some(1)),
            &brokers(&[(1, Fenced), (2, Alive), (3, Alive)]),
            ElectionReason::LeaderFailure,
            false,
        );
        // Assigned order (2 before 3), not ISR order.
        assert_eq!(outcome.leader, Some(2));
        assert_eq!(outcome.leader_epoch, 5);
        assert_eq!(outcome.isr, vec![1, 3, 2]);
    }

    #[test]
    fn no_alive_isr_replica_takes_the_partition_offline_unless_unclean_is_allowed() {
        let policies = policies();
        let partition = view(&[1, 2], &[1], Some(1));
        let cluster = brokers(&[(1, Fenced), (2, Alive)]);
        let clean = elect(
            policies.as_ref(),
            None,
            &partition,
            &cluster,
            ElectionReason::LeaderFailure,
            false,
        );
        assert_eq!(clean.leader, None);
        assert_eq!(
            clean.leader_epoch, 5,
            "going offline is a leadership change"
        );
        let unclean = elect(
            policies.as_ref(),
            None,
            &partition,
            &cluster,
            ElectionReason::LeaderFailure,
            true,
        );
        assert_eq!(unclean.leader, Some(2));
        assert_eq!(unclean.isr, vec![2], "an unclean leader is the whole ISR");
    }

    #[test]
    fn controlled_shutdown_moves_leadership_off_the_broker() {
        let policies = policies();
        let outcome = elect(
            policies.as_ref(),
            None,
            &view(&[1, 2, 3], &[1, 2, 3], Some(1)),
            &brokers(&[(1, ShuttingDown), (2, Alive), (3, Alive)]),
            ElectionReason::ControlledShutdown,
            false,
        );
        assert_eq!(outcome.leader, Some(2));
    }

    #[test]
    fn preferred_election_returns_leadership_to_the_first_assigned_replica_when_in_sync() {
        let policies = policies();
        let cluster = brokers(&[(1, Alive), (2, Alive)]);
        let moved = elect(
            policies.as_ref(),
            None,
            &view(&[1, 2], &[1, 2], Some(2)),
            &cluster,
            ElectionReason::Preferred,
            false,
        );
        assert_eq!((moved.leader, moved.leader_epoch), (Some(1), 5));
        let unchanged = elect(
            policies.as_ref(),
            None,
            &view(&[1, 2], &[2], Some(2)),
            &cluster,
            ElectionReason::Rebalance,
            false,
        );
        assert_eq!((unchanged.leader, unchanged.leader_epoch), (Some(2), 4));
    }

    #[test]
    fn an_unknown_broker_is_never_elected() {
        let policies = policies();
        let outcome = elect(
            policies.as_ref(),
            None,
            &view(&[7, 1], &[7, 1], Some(1)),
            &brokers(&[(1, Fenced)]),
            ElectionReason::LeaderFailure,
            true,
        );
        assert_eq!(outcome.leader, None);
    }
}
