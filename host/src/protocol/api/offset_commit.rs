//! OffsetCommit: a consumer's position per partition, kept by the group room. Members commit
//! within their generation; a standalone consumer (generation -1, no member id) commits to a
//! group without members. Partitions that do not exist, or metadata over
//! `offset.metadata.max.bytes`, are refused one by one; the rest commit together.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};

use crate::broker::Broker;
use crate::group::CommitRequest;
use crate::group::offsets::CommittedOffset;

/// A topic's partitions and their errors, in request order; `None` waits for the commit.
type Answers = Vec<(TopicName, Vec<(i32, Option<ResponseError>)>)>;

pub fn handle(broker: &Broker, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let metadata_max_bytes = broker.config.group.offset_metadata_max_bytes;
    let commit_timestamp_ms = crate::group::wall_clock_ms();
    let mut answers: Answers = Vec::with_capacity(request.topics.len());
    let mut accepted = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let partitions = topic
            .partitions
            .into_iter()
            .map(|partition| {
                let index = partition.partition_index;
                let error = if group_id.is_empty() {
                    Some(ResponseError::InvalidGroupId)
                } else if broker.partition(&name, index).is_none() {
                    Some(ResponseError::UnknownTopicOrPartition)
                } else if partition
                    .committed_metadata
                    .as_ref()
                    .is_some_and(|metadata| metadata.len() > metadata_max_bytes)
                {
                    Some(ResponseError::OffsetMetadataTooLarge)
                } else {
                    accepted.push((
                        name.clone(),
                        index,
                        CommittedOffset {
                            offset: partition.committed_offset,
                            leader_epoch: partition.committed_leader_epoch,
                            metadata: partition.committed_metadata.map(|m| m.to_string()),
                            commit_timestamp_ms,
                        },
                    ));
                    None
                };
                (index, error)
            })
            .collect();
        answers.push((topic.name, partitions));
    }
    let outcome = if group_id.is_empty() {
        Ok(())
    } else {
        broker.groups.commit(CommitRequest {
            group_id,
            generation_id: request.generation_id_or_member_epoch,
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|id| id.to_string()),
            offsets: accepted,
        })
    };
    let topics = answers
        .into_iter()
        .map(|(name, partitions)| {
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, error)| {
                            let error = error.or(outcome.err());
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(error.map_or(0, |error| error.code()))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
