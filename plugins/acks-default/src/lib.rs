//! Kafka's ack semantics. acks=0 and acks=1 complete once the leader has the records. acks=all
//! refuses up front with NOT_ENOUGH_REPLICAS when the ISR is smaller than `min.insync.replicas`,
//! completes once the high watermark has passed the request's last offset, and then answers
//! NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below the minimum meanwhile (as Kafka's
//! `Partition.checkEnoughReplicasReachOffset`).
//!
//! When the outcome is already certain before the append (acks=0/1; acks=all with the leader as
//! the whole ISR, where the high watermark follows the leader's own log end offset) the answer
//! is `complete` at the before-append stage, so the host asks once per request, not twice.

use weir_plugin_sdk::acks::error_code::{NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND};
use weir_plugin_sdk::acks::{AcksPolicy, Decision, Request, Stage};

/// The decision, as plain Rust.
pub fn decide(request: &Request) -> Decision {
    if request.acks != -1 {
        return Decision::Complete;
    }
    let isr_size = request.replicas.iter().filter(|r| r.in_isr).count() as u32;
    let enough_replicas = isr_size >= request.min_insync_replicas;
    match request.stage {
        Stage::BeforeAppend if enough_replicas && isr_size == 1 => Decision::Complete,
        Stage::BeforeAppend if enough_replicas => Decision::Wait,
        Stage::BeforeAppend => Decision::Fail(NOT_ENOUGH_REPLICAS),
        Stage::AfterAppend if request.high_watermark <= request.last_offset => Decision::Wait,
        Stage::AfterAppend if enough_replicas => Decision::Complete,
        Stage::AfterAppend => Decision::Fail(NOT_ENOUGH_REPLICAS_AFTER_APPEND),
    }
}

#[derive(Debug)]
pub struct DefaultAcks;

impl AcksPolicy for DefaultAcks {
    fn decide(request: Request) -> Decision {
        decide(&request)
    }
}

#[cfg(feature = "component")]
weir_plugin_sdk::export_acks!(DefaultAcks);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::acks::ReplicaProgress;

    fn request(stage: Stage, acks: i16, isr: usize, high_watermark: i64) -> Request {
        let replicas = (0..3)
            .map(|i| ReplicaProgress {
                broker_id: i,
                in_isr: (i as usize) < isr,
                log_end_offset: 10,
                rack_id: None,
            })
            .collect();
        Request {
            stage,
            acks,
            min_insync_replicas: 2,
            replicas,
            leader_log_end_offset: 10,
            high_watermark,
            flushed_offset: 0,
            last_offset: 9,
            elapsed_ms: 0,
        }
    }

    #[test]
    fn acks_one_completes_on_local_append() {
        assert_eq!(
            decide(&request(Stage::BeforeAppend, 1, 1, 0)),
            Decision::Complete
        );
        assert_eq!(
            decide(&request(Stage::AfterAppend, 1, 1, 0)),
            Decision::Complete
        );
        assert_eq!(
            decide(&request(Stage::AfterAppend, 0, 1, 0)),
            Decision::Complete
        );
    }

    #[test]
    fn acks_all_waits_for_the_high_watermark() {
        assert_eq!(
            decide(&request(Stage::BeforeAppend, -1, 2, 0)),
            Decision::Wait
        );
        assert_eq!(
            decide(&request(Stage::AfterAppend, -1, 2, 9)),
            Decision::Wait
        );
        assert_eq!(
            decide(&request(Stage::AfterAppend, -1, 2, 10)),
            Decision::Complete
        );
    }

    #[test]
    fn acks_all_with_the_leader_as_the_whole_isr_is_decided_before_the_append() {
        let mut alone = request(Stage::BeforeAppend, -1, 1, 0);
        alone.min_insync_replicas = 1;
        assert_eq!(decide(&alone), Decision::Complete);
    }

    #[test]
    fn acks_all_fails_below_min_insync_replicas() {
        assert_eq!(
            decide(&request(Stage::BeforeAppend, -1, 1, 0)),
            Decision::Fail(NOT_ENOUGH_REPLICAS)
        );
        assert_eq!(
            decide(&request(Stage::AfterAppend, -1, 1, 10)),
            Decision::Fail(NOT_ENOUGH_REPLICAS_AFTER_APPEND)
        );
    }
}
