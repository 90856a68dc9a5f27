//! OffsetForLeaderEpoch (KIP-101): where a leader epoch ended in this log, so a returning
//! replica (or a consumer validating its position, KIP-320) can truncate or detect divergence.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::broker::Broker;

pub fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .into_iter()
                .map(|wanted| {
                    let response = EpochEndOffset::default()
                        .with_partition(wanted.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let partition = match super::leader_partition(
                        broker,
                        topic.topic.0.as_str(),
                        wanted.partition,
                        wanted.current_leader_epoch,
                    ) {
                        Ok(partition) => partition,
                        Err(error) => return response.with_error_code(error.code()),
                    };
                    let (end_epoch, end_offset) = match partition.log() {
                        Ok(log) => log.end_offset_for_epoch(wanted.leader_epoch),
                        Err(error) => {
                            return response.with_error_code(error.kafka_error_code().code());
                        }
                    };
                    response
                        .with_leader_epoch(end_epoch)
                        .with_end_offset(end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
