//! Rack-aware leader election, an example Weir election plugin.
//!
//! The leader is the first replica, in assigned order, that is alive, in the ISR and on one of
//! [`PREFERRED_RACKS`]. When no replica qualifies, the answer is Kafka's own rule, taken from the
//! default election plugin (`weir-election-default`) rather than copied:
//!
//! - leader failure or controlled shutdown: the first alive ISR replica in assigned order;
//! - preferred or rebalance election: the first assigned replica, only if it is alive and in the
//!   ISR (otherwise no change);
//! - unclean: the first alive ISR replica, else the first alive replica, only when
//!   `unclean_allowed`.
//!
//! The rack preference applies to every election reason, so a preferred or rebalance election
//! moves leadership to (or keeps it on) a replica in a preferred rack. It never picks a replica
//! that is not alive or not in the ISR: a replica outside the ISR is only ever chosen by the
//! fallback, and only when unclean election is allowed.

use weir_plugin_sdk::election::{
    BrokerStatus, Election, ElectionPolicy, PartitionState, ReplicaState,
};

/// The racks (`broker.rack` values, compared exactly) whose replicas should lead. All racks in
/// the list are equally preferred; among their replicas the assigned order decides.
///
/// Plugins import nothing but the broker's log, so there is no configuration to read at run
/// time: edit this list and rebuild the plugin.
pub const PREFERRED_RACKS: &[&str] = &["us-east-1a", "us-east-1b"];

fn in_preferred_rack(replica: &ReplicaState, preferred_racks: &[&str]) -> bool {
    replica
        .rack
        .as_deref()
        .is_some_and(|rack| preferred_racks.contains(&rack))
}

/// The election with an explicit rack list, as plain Rust (the component uses
/// [`PREFERRED_RACKS`]).
pub fn elect_with_racks(state: &PartitionState, preferred_racks: &[&str]) -> Election {
    let preferred = state.replicas.iter().find(|replica| {
        replica.status == BrokerStatus::Alive
            && replica.in_isr
            && in_preferred_rack(replica, preferred_racks)
    });
    match preferred {
        Some(replica) => Election {
            leader: Some(replica.broker_id),
            reason: format!(
                "first alive ISR replica in a preferred rack ({})",
                replica.rack.as_deref().unwrap_or_default()
            ),
        },
        None => {
            let fallback = weir_election_default::elect(state);
            Election {
                leader: fallback.leader,
                reason: format!(
                    "no alive ISR replica in a preferred rack; {}",
                    fallback.reason
                ),
            }
        }
    }
}

/// The election, as plain Rust.
pub fn elect(state: &PartitionState) -> Election {
    elect_with_racks(state, PREFERRED_RACKS)
}

#[derive(Debug)]
pub struct RackAwareElection;

impl ElectionPolicy for RackAwareElection {
    fn elect(state: PartitionState) -> Election {
        elect(&state)
    }
}

weir_plugin_sdk::export_election!(RackAwareElection);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::election::ElectionReason;

    use BrokerStatus::{Alive, Fenced, ShuttingDown};

    const RACKS: &[&str] = &["a", "b"];

    fn replica(broker_id: i32, in_isr: bool, status: BrokerStatus, rack: &str) -> ReplicaState {
        ReplicaState {
            broker_id,
            in_isr,
            status,
            log_end_offset: 100,
            last_caught_up_ms: 0,
            rack: (!rack.is_empty()).then(|| rack.to_string()),
        }
    }

    fn state(
        replicas: Vec<ReplicaState>,
        reason: ElectionReason,
        unclean_allowed: bool,
    ) -> PartitionState {
        PartitionState {
            topic: "orders".into(),
            partition: 7,
            replicas,
            current_leader: None,
            leader_epoch: 4,
            reason,
            unclean_allowed,
        }
    }

    fn leader(replicas: Vec<ReplicaState>, reason: ElectionReason, unclean: bool) -> Option<i32> {
        elect_with_racks(&state(replicas, reason, unclean), RACKS).leader
    }

    #[test]
    fn prefers_a_replica_in_a_preferred_rack_over_assigned_order() {
        let replicas = vec![
            replica(1, true, Alive, "c"),
            replica(2, true, Alive, "b"),
            replica(3, true, Alive, "a"),
        ];
        // 2 is the first assigned replica on a preferred rack; the list order of the racks
        // ("a" before "b") does not rank them.
        assert_eq!(
            leader(replicas, ElectionReason::LeaderFailure, false),
            Some(2)
        );
    }

    #[test]
    fn skips_preferred_rack_replicas_that_are_not_alive_or_not_in_sync() {
        let replicas = vec![
            replica(1, true, Fenced, "a"),
            replica(2, true, ShuttingDown, "a"),
            replica(3, false, Alive, "b"),
            replica(4, true, Alive, "c"),
            replica(5, true, Alive, "b"),
        ];
        assert_eq!(
            leader(replicas.clone(), ElectionReason::ControlledShutdown, true),
            Some(5)
        );
        // Even an unclean election takes an in-sync replica in a preferred rack first.
        assert_eq!(leader(replicas, ElectionReason::Unclean, true), Some(5));
    }

    #[test]
    fn falls_back_to_the_first_alive_isr_replica() {
        let replicas = vec![
            replica(1, true, Fenced, "a"),
            replica(2, false, Alive, "b"),
            replica(3, true, Alive, "c"),
            replica(4, true, Alive, ""),
        ];
        let answer = elect_with_racks(&state(replicas, ElectionReason::LeaderFailure, true), RACKS);
        assert_eq!(answer.leader, Some(3));
        assert!(
            answer.reason.contains("first alive ISR replica"),
            "{}",
            answer.reason
        );
    }

    #[test]
    fn replicas_without_a_rack_are_never_preferred() {
        let replicas = vec![replica(1, true, Alive, ""), replica(2, true, Alive, "a")];
        assert_eq!(
            leader(replicas, ElectionReason::LeaderFailure, false),
            Some(2)
        );
        let no_racks = vec![replica(1, true, Alive, ""), replica(2, true, Alive, "")];
        assert_eq!(
            leader(no_racks, ElectionReason::LeaderFailure, false),
            Some(1)
        );
    }

    #[test]
    fn rack_names_match_exactly() {
        let replicas = vec![replica(1, true, Alive, "A"), replica(2, true, Alive, "ab")];
        // Neither "A" nor "ab" is "a": the fallback picks the first alive ISR replica.
        let answer = elect_with_racks(
            &state(replicas, ElectionReason::LeaderFailure, false),
            RACKS,
        );
        assert_eq!(answer.leader, Some(1));
        assert!(
            answer
                .reason
                .starts_with("no alive ISR replica in a preferred rack")
        );
    }

    #[test]
    fn preferred_and_rebalance_fall_back_to_the_first_assigned_replica_only() {
        // No preferred-rack candidate: the first assigned replica, if alive and in sync.
        let healthy = vec![replica(1, true, Alive, "c"), replica(2, true, Alive, "d")];
        assert_eq!(leader(healthy, ElectionReason::Preferred, false), Some(1));
        // The first assigned replica is out of sync: leadership stays (None), even though
        // replica 2 is alive and in sync.
        let lagging = vec![replica(1, false, Alive, "c"), replica(2, true, Alive, "d")];
        assert_eq!(leader(lagging, ElectionReason::Rebalance, true), None);
        // A preferred-rack replica is chosen even when it is not the first assigned.
        let racked = vec![replica(1, true, Alive, "c"), replica(2, true, Alive, "a")];
        assert_eq!(leader(racked, ElectionReason::Rebalance, false), Some(2));
    }

    #[test]
    fn unclean_only_when_allowed_and_never_a_dead_replica() {
        let replicas = vec![
            replica(1, true, Fenced, "a"),
            replica(2, false, Fenced, "a"),
            replica(3, false, Alive, "a"),
            replica(4, false, Alive, "c"),
        ];
        assert_eq!(
            leader(replicas.clone(), ElectionReason::LeaderFailure, false),
            None
        );
        assert_eq!(
            leader(replicas.clone(), ElectionReason::Unclean, false),
            None
        );
        assert_eq!(leader(replicas, ElectionReason::Unclean, true), Some(3));
        let all_down = vec![
            replica(1, true, Fenced, "a"),
            replica(2, false, ShuttingDown, "b"),
        ];
        assert_eq!(leader(all_down, ElectionReason::Unclean, true), None);
    }

    #[test]
    fn no_replicas_no_leader() {
        assert_eq!(leader(vec![], ElectionReason::LeaderFailure, true), None);
        assert_eq!(leader(vec![], ElectionReason::Preferred, true), None);
    }

    #[test]
    fn the_compiled_in_list_is_used_by_elect() {
        let rack = PREFERRED_RACKS[0];
        let replicas = vec![
            replica(1, true, Alive, "not-a-preferred-rack"),
            replica(2, true, Alive, rack),
        ];
        let answer = elect(&state(replicas, ElectionReason::LeaderFailure, false));
        assert_eq!(answer.leader, Some(2));
        assert!(answer.reason.contains(rack), "{}", answer.reason);
    }

    /// Every combination of three replicas (status x ISR x rack), every reason, with and without
    /// unclean permission: the answer is always a member that is alive, and in the ISR unless
    /// unclean election is allowed; and whenever an alive ISR replica sits in a preferred rack,
    /// the answer is the first such replica.
    #[test]
    fn never_elects_an_ineligible_replica_exhaustively() {
        let statuses = [Alive, Fenced, ShuttingDown];
        let racks = ["a", "b", "c", ""];
        let reasons = [
            ElectionReason::LeaderFailure,
            ElectionReason::ControlledShutdown,
            ElectionReason::Preferred,
            ElectionReason::Unclean,
            ElectionReason::Rebalance,
        ];
        let mut options = Vec::new();
        for status in statuses {
            for in_isr in [false, true] {
                for rack in racks {
                    options.push((status, in_isr, rack));
                }
            }
        }
        let mut checked = 0;
        for &a in &options {
            for &b in &options {
                for &c in &options {
                    let replicas: Vec<_> = [a, b, c]
                        .iter()
                        .enumerate()
                        .map(|(i, &(status, in_isr, rack))| {
                            replica(i as i32 + 1, in_isr, status, rack)
                        })
                        .collect();
                    let first_racked = replicas
                        .iter()
                        .find(|r| {
                            let racked = r.rack.as_deref().is_some_and(|x| RACKS.contains(&x));
                            r.status == Alive && r.in_isr && racked
                        })
                        .map(|r| r.broker_id);
                    for reason in reasons {
                        for unclean in [false, true] {
                            let s = state(replicas.clone(), reason, unclean);
                            let answer = elect_with_racks(&s, RACKS);
                            if let Some(id) = answer.leader {
                                let chosen = replicas
                                    .iter()
                                    .find(|r| r.broker_id == id)
                                    .expect("the leader is an assigned replica");
                                assert_eq!(chosen.status, Alive, "{replicas:?} {reason:?}");
                                assert!(chosen.in_isr || unclean, "{replicas:?} {reason:?}");
                            }
                            if first_racked.is_some() {
                                assert_eq!(answer.leader, first_racked, "{replicas:?}");
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 24usize.pow(3) * 5 * 2);
    }
}
