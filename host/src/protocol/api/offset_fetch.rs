//! OffsetFetch: a group's committed offsets, for the partitions asked (offset -1 where nothing
//! is committed) or, with no topic list, every partition the group committed. v8+ asks for
//! several groups in one request.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::group::FetchedOffsets;
use crate::group::offsets::CommittedOffset;

/// v8 is the first version asking for several groups.
const MULTI_GROUP_VERSION: i16 = 8;

/// What a partition without a committed offset answers (Kafka's INVALID_OFFSET, empty metadata).
const NO_OFFSET: i64 = -1;
const NO_LEADER_EPOCH: i32 = -1;

fn fetch(
    broker: &Broker,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> FetchedOffsets {
    broker.groups.fetch_offsets(group_id, topics)
}

fn offset_fields(offset: Option<CommittedOffset>) -> (i64, i32, StrBytes) {
    match offset {
        Some(offset) => (
            offset.offset,
            offset.leader_epoch,
            str_bytes(offset.metadata.as_deref().unwrap_or_default()),
        ),
        None => (NO_OFFSET, NO_LEADER_EPOCH, StrBytes::default()),
    }
}

pub fn handle(broker: &Broker, version: i16, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if version < MULTI_GROUP_VERSION {
        let topics = request.topics.map(|topics| {
            topics
                .into_iter()
                .map(|topic| (topic.name.0.to_string(), topic.partition_indexes))
                .collect()
        });
        let found = fetch(broker, request.group_id.0.as_str(), topics);
        let topics = found
            .into_iter()
            .map(|(name, partitions)| {
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(index, offset)| {
                                let (offset, leader_epoch, metadata) = offset_fields(offset);
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(leader_epoch)
                                    .with_metadata(Some(metadata))
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    }
    // v9's member id and epoch belong to KIP-848 groups; a classic group's offsets are
    // readable by anyone, as Kafka's are.
    let groups = request
        .groups
        .into_iter()
        .map(|group| {
            let topics = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|topic| (topic.name.0.to_string(), topic.partition_indexes))
                    .collect()
            });
            let found = fetch(broker, group.group_id.0.as_str(), topics);
            let topics = found
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(topic_name(&name))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(index, offset)| {
                                    let (offset, leader_epoch, metadata) = offset_fields(offset);
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(leader_epoch)
                                        .with_metadata(Some(metadata))
                                })
                                .collect(),
                        )
                })
                .collect();
            OffsetFetchResponseGroup::default()
                .with_group_id(group.group_id)
                .with_topics(topics)
        })
        .collect();
    OffsetFetchResponse::default().with_groups(groups)
}
