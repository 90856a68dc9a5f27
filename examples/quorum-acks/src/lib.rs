//! Quorum acknowledgement, an example Weir acks plugin (the idea of KIP-250, `acks=quorum`).
//!
//! For `acks=all` (-1), a produce request completes once a majority of the partition's
//! *assigned* replicas hold its last record (`log_end_offset > last_offset`), counting replicas
//! outside the ISR that have caught up: it does not wait for the slowest ISR member to move the
//! high watermark. The leader must always hold the records itself first.
//!
//! Before the append, the request is refused with NOT_ENOUGH_REPLICAS when fewer than a majority
//! of the assigned replicas are in the ISR: the in-sync replicas could not form a majority, so
//! nothing is written. `min.insync.replicas` is not consulted; the majority takes its place.
//! After the append the plugin never fails a request: it waits until a majority holds the records
//! or the request times out (REQUEST_TIMED_OUT, from the host).
//!
//! `acks=0` and `acks=1` behave exactly as the default acks plugin (`weir-acks-default`, reused
//! rather than copied): complete once the leader has appended.

use weir_plugin_sdk::acks::error_code::NOT_ENOUGH_REPLICAS;
use weir_plugin_sdk::acks::{AcksPolicy, Decision, Request, Stage};

/// The smallest majority of `replicas` replicas: 1 of 1, 2 of 2 or 3, 3 of 4 or 5.
pub fn majority(replicas: usize) -> usize {
    replicas / 2 + 1
}

/// The decision, as plain Rust.
pub fn decide(request: &Request) -> Decision {
    let decision = if request.acks == -1 {
        decide_quorum(request)
    } else {
        weir_acks_default::decide(request)
    };
    // Whatever the rule, a request never completes before the leader holds its records (and so
    // never before the append).
    let leader_has_it =
        request.stage == Stage::AfterAppend && request.leader_log_end_offset > request.last_offset;
    match decision {
        Decision::Complete if !leader_has_it => Decision::Wait,
        decision => decision,
    }
}

fn decide_quorum(request: &Request) -> Decision {
    let quorum = majority(request.replicas.len());
    match request.stage {
        Stage::BeforeAppend => {
            let in_sync = request.replicas.iter().filter(|r| r.in_isr).count();
            if in_sync < quorum {
                Decision::Fail(NOT_ENOUGH_REPLICAS)
            } else {
                Decision::Wait
            }
        }
        Stage::AfterAppend => {
            let holding = request
                .replicas
                .iter()
                .filter(|r| r.log_end_offset > request.last_offset)
                .count();
            if holding >= quorum {
                Decision::Complete
            } else {
                Decision::Wait
            }
        }
    }
}

#[derive(Debug)]
pub struct QuorumAcks;

impl AcksPolicy for QuorumAcks {
    fn decide(request: Request) -> Decision {
        decide(&request)
    }
}

weir_plugin_sdk::export_acks!(QuorumAcks);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::acks::ReplicaProgress;

    /// The request's records are offsets 95..=99 (`last_offset` 99); the leader is replica 0.
    const LAST: i64 = 99;

    fn replica(broker_id: i32, in_isr: bool, log_end_offset: i64) -> ReplicaProgress {
        ReplicaProgress {
            broker_id,
            in_isr,
            log_end_offset,
            rack_id: None,
        }
    }

    fn request(stage: Stage, acks: i16, replicas: Vec<ReplicaProgress>) -> Request {
        let leader_log_end_offset = replicas.first().map_or(0, |r| r.log_end_offset);
        // The high watermark is the smallest log end offset in the ISR.
        let high_watermark = replicas
            .iter()
            .filter(|r| r.in_isr)
            .map(|r| r.log_end_offset)
            .min()
            .unwrap_or(0);
        Request {
            stage,
            acks,
            min_insync_replicas: 2,
            replicas,
            leader_log_end_offset,
            high_watermark,
            flushed_offset: 0,
            last_offset: LAST,
            elapsed_ms: 5,
        }
    }

    #[test]
    fn majority_sizes() {
        assert_eq!([1, 2, 3, 4, 5, 6, 7].map(majority), [1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn completes_at_a_majority_without_waiting_for_the_slowest_isr_replica() {
        // Leader and replica 1 have the records; replica 2 (in the ISR) lags behind, so the high
        // watermark (95) has not passed the request yet.
        let replicas = vec![
            replica(0, true, 100),
            replica(1, true, 100),
            replica(2, true, 95),
        ];
        let req = request(Stage::AfterAppend, -1, replicas);
        assert!(req.high_watermark <= LAST);
        assert_eq!(decide(&req), Decision::Complete);
        // The default policy would still wait for the high watermark.
        assert_eq!(weir_acks_default::decide(&req), Decision::Wait);
    }

    #[test]
    fn waits_while_only_a_minority_holds_the_records() {
        let replicas = vec![
            replica(0, true, 100),
            replica(1, true, 99),
            replica(2, true, 95),
        ];
        assert_eq!(
            decide(&request(Stage::AfterAppend, -1, replicas)),
            Decision::Wait
        );
        // Five replicas: two holding is not enough, three is.
        let two = vec![
            replica(0, true, 100),
            replica(1, true, 120),
            replica(2, true, 99),
            replica(3, true, 50),
            replica(4, true, -1),
        ];
        assert_eq!(
            decide(&request(Stage::AfterAppend, -1, two)),
            Decision::Wait
        );
        let three = vec![
            replica(0, true, 100),
            replica(1, true, 120),
            replica(2, true, 100),
            replica(3, true, 50),
            replica(4, true, -1),
        ];
        assert_eq!(
            decide(&request(Stage::AfterAppend, -1, three)),
            Decision::Complete
        );
    }

    #[test]
    fn caught_up_replicas_outside_the_isr_count_towards_the_majority() {
        // Replica 2 is out of the ISR but has fetched past the request.
        let replicas = vec![
            replica(0, true, 100),
            replica(1, true, 90),
            replica(2, false, 100),
        ];
        assert_eq!(
            decide(&request(Stage::AfterAppend, -1, replicas)),
            Decision::Complete
        );
    }

    #[test]
    fn never_completes_before_the_leader_has_the_records() {
        // Followers report offsets past the request, but the leader's log end offset does not
        // include it (a stale view): wait.
        let replicas = vec![
            replica(0, true, 99),
            replica(1, true, 100),
            replica(2, true, 100),
        ];
        for acks in [-1, 0, 1] {
            let req = request(Stage::AfterAppend, acks, replicas.clone());
            assert_eq!(decide(&req), Decision::Wait, "acks={acks}");
        }
        // Nor before the append, whatever the followers say.
        let ahead = vec![
            replica(0, true, 200),
            replica(1, true, 200),
            replica(2, true, 200),
        ];
        for acks in [-1, 0, 1] {
            let req = request(Stage::BeforeAppend, acks, ahead.clone());
            assert_eq!(decide(&req), Decision::Wait, "acks={acks}");
        }
    }

    #[test]
    fn refuses_before_append_when_the_isr_is_not_a_majority_of_assigned_replicas() {
        let one_of_three = vec![
            replica(0, true, 90),
            replica(1, false, 90),
            replica(2, false, 90),
        ];
        assert_eq!(
            decide(&request(Stage::BeforeAppend, -1, one_of_three)),
            Decision::Fail(NOT_ENOUGH_REPLICAS)
        );
        let two_of_five = vec![
            replica(0, true, 90),
            replica(1, true, 90),
            replica(2, false, 90),
            replica(3, false, 90),
            replica(4, false, 90),
        ];
        assert_eq!(
            decide(&request(Stage::BeforeAppend, -1, two_of_five)),
            Decision::Fail(NOT_ENOUGH_REPLICAS)
        );
        // Two of three in sync is a majority, although min.insync.replicas is 3 here.
        let mut two_of_three = request(
            Stage::BeforeAppend,
            -1,
            vec![
                replica(0, true, 90),
                replica(1, true, 90),
                replica(2, false, 90),
            ],
        );
        two_of_three.min_insync_replicas = 3;
        assert_eq!(decide(&two_of_three), Decision::Wait);
    }

    #[test]
    fn a_single_replica_partition_is_its_own_majority() {
        let alone = vec![replica(0, true, 90)];
        assert_eq!(
            decide(&request(Stage::BeforeAppend, -1, alone)),
            Decision::Wait
        );
        let appended = vec![replica(0, true, 100)];
        assert_eq!(
            decide(&request(Stage::AfterAppend, -1, appended)),
            Decision::Complete
        );
    }

    #[test]
    fn does_not_fail_after_the_append_when_the_isr_shrinks() {
        // The ISR is down to the leader; the request waits for replicas to catch up (or for the
        // host's timeout) instead of failing, and completes once a majority holds it.
        let behind = vec![
            replica(0, true, 100),
            replica(1, false, 97),
            replica(2, false, 97),
        ];
        assert_eq!(
            decide(&request(Stage::AfterAppend, -1, behind)),
            Decision::Wait
        );
        let caught_up = vec![
            replica(0, true, 100),
            replica(1, false, 100),
            replica(2, false, 97),
        ];
        assert_eq!(
            decide(&request(Stage::AfterAppend, -1, caught_up)),
            Decision::Complete
        );
    }

    #[test]
    fn acks_zero_and_one_behave_as_the_default() {
        let cases = [
            vec![
                replica(0, true, 100),
                replica(1, false, 10),
                replica(2, false, 10),
            ],
            vec![
                replica(0, true, 100),
                replica(1, true, 100),
                replica(2, true, 100),
            ],
            vec![replica(0, true, 100)],
        ];
        for replicas in cases {
            for acks in [0, 1] {
                let before = request(Stage::BeforeAppend, acks, replicas.clone());
                assert_eq!(decide(&before), Decision::Wait, "acks={acks}");
                let after = request(Stage::AfterAppend, acks, replicas.clone());
                assert_eq!(decide(&after), Decision::Complete, "acks={acks}");
                assert_eq!(decide(&after), weir_acks_default::decide(&after));
            }
        }
    }

    #[test]
    fn the_exported_policy_is_the_quorum_rule() {
        let replicas = vec![
            replica(0, true, 100),
            replica(1, true, 100),
            replica(2, true, 95),
        ];
        let req = request(Stage::AfterAppend, -1, replicas);
        assert_eq!(<QuorumAcks as AcksPolicy>::decide(req), Decision::Complete);
    }
}
