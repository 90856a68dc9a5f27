//! What a valid answer is, for each kind. One place: the runtime falls back when an answer fails
//! these checks, and the conformance scenarios hold plugins to the same rules before install.

use super::wit::acks::{Decision, Request, Stage};
use super::wit::election::{BrokerStatus, Election, PartitionState};

/// Longest election reason (bytes) a valid answer may carry: it is logged, never trusted.
pub const REASON_MAX_BYTES: usize = 256;

pub fn election(state: &PartitionState, answer: &Election) -> Result<(), String> {
    if answer.reason.len() > REASON_MAX_BYTES {
        return Err(format!(
            "the reason is {} bytes; at most {REASON_MAX_BYTES}",
            answer.reason.len()
        ));
    }
    let Some(leader) = answer.leader else {
        return Ok(());
    };
    let Some(replica) = state.replicas.iter().find(|r| r.broker_id == leader) else {
        return Err(format!("leader {leader} is not an assigned replica"));
    };
    if replica.status != BrokerStatus::Alive {
        return Err(format!(
            "leader {leader} is {:?}, not alive",
            replica.status
        ));
    }
    if !replica.in_isr && !state.unclean_allowed {
        return Err(format!(
            "leader {leader} is outside the ISR and unclean election is not allowed"
        ));
    }
    Ok(())
}

pub fn partition(partition: u32, partition_count: u32) -> Result<(), String> {
    if partition >= partition_count {
        return Err(format!(
            "partition {partition} is out of range (the topic has {partition_count})"
        ));
    }
    Ok(())
}

pub fn partitions(answer: &[u32], records: usize, partition_count: u32) -> Result<(), String> {
    if answer.len() != records {
        return Err(format!("{} partitions for {records} records", answer.len()));
    }
    // One pass without an early exit, which the compiler vectorises (this runs on every batch
    // of keys), says whether any answer is out of range; only a bad batch is walked again for
    // the message.
    if !answer.iter().fold(false, |out_of_range, &p| {
        out_of_range | (p >= partition_count)
    }) {
        return Ok(());
    }
    answer
        .iter()
        .try_for_each(|&p| partition(p, partition_count))
}

pub fn decision(request: &Request, answer: &Decision) -> Result<(), String> {
    match answer {
        Decision::Fail(0) => Err("fail with error code 0 (NONE)".into()),
        Decision::Complete
            if request.stage == Stage::AfterAppend
                && request.leader_log_end_offset <= request.last_offset =>
        {
            Err("complete before the leader holds the records".into())
        }
        // Completing before the append means completing on the leader's copy alone.
        Decision::Complete
            if request.stage == Stage::BeforeAppend
                && request.acks == -1
                && request.replicas.iter().filter(|r| r.in_isr).count() > 1 =>
        {
            Err("acks=all completed before the append while other replicas are in the ISR".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answer_is_refused_for_any_partition_out_of_range_or_a_wrong_count() {
        assert_eq!(partitions(&[], 0, 3), Ok(()));
        assert_eq!(partitions(&[0, 2, 1, 2], 4, 3), Ok(()));
        let long: Vec<u32> = (0..1000).map(|i| i % 7).collect();
        assert_eq!(partitions(&long, 1000, 7), Ok(()));
        for bad_at in [0, 1, 500, 999] {
            let mut answer = long.clone();
            answer[bad_at] = 7;
            assert_eq!(
                partitions(&answer, 1000, 7),
                Err("partition 7 is out of range (the topic has 7)".to_string()),
                "bad answer at {bad_at}"
            );
        }
        assert_eq!(
            partitions(&[u32::MAX], 1, 3),
            Err(format!(
                "partition {} is out of range (the topic has 3)",
                u32::MAX
            ))
        );
        assert!(
            partitions(&[0, 1], 3, 3).is_err(),
            "two answers for three records"
        );
    }
}
