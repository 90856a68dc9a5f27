//! DescribeQuorum (KIP-595, KIP-853): the controller quorum's leader, epoch, high watermark and
//! each voter's and observer's progress, as `kafka-metadata-quorum.sh describe --status` shows
//! it. Only the active controller knows every member's progress: other brokers forward the
//! request to it (`protocol/forward.rs`), and answer NOT_LEADER_OR_FOLLOWER naming the leader
//! they know only when it cannot be reached.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::controller::quorum::METADATA_DIR;

/// The only partition a quorum has: `__cluster_metadata-0`.
const METADATA_PARTITION: i32 = 0;

pub fn handle(
    broker: &Broker,
    version: i16,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let status = broker.quorum.status();
    let leader_id = status.leader.map_or(BrokerId(-1), as_broker_id);
    let is_leader = status.leader == Some(status.node_id);
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let error = if topic.topic_name.0.as_str() != METADATA_DIR
                        || partition.partition_index != METADATA_PARTITION
                    {
                        Some(ResponseError::UnknownTopicOrPartition)
                    } else if !is_leader {
                        Some(ResponseError::NotLeaderOrFollower)
                    } else {
                        None
                    };
                    let data = PartitionData::default()
                        .with_partition_index(partition.partition_index)
                        .with_leader_id(leader_id);
                    match error {
                        Some(error) => data.with_error_code(error.code()),
                        None => data
                            .with_leader_epoch(i32::try_from(status.term).unwrap_or(i32::MAX))
                            .with_high_watermark(status.high_watermark as i64)
                            .with_current_voters(replica_states(&status.voters))
                            .with_observers(replica_states(&status.observers)),
                    }
                })
                .collect();
            TopicData::default()
                .with_topic_name(topic.topic_name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let mut response = DescribeQuorumResponse::default().with_topics(topics);
    if version >= 2 {
        let listener_name = broker
            .config
            .get("controller.listener.names")
            .and_then(|names| names.split(',').next().map(|name| name.trim().to_string()))
            .unwrap_or_default();
        response = response.with_nodes(
            status
                .voters
                .iter()
                .filter_map(|voter| {
                    let (host, port) = voter.address.rsplit_once(':')?;
                    Some(
                        Node::default()
                            .with_node_id(as_broker_id(voter.node_id))
                            .with_listeners(vec![
                                Listener::default()
                                    .with_name(str_bytes(&listener_name))
                                    .with_host(str_bytes(host))
                                    .with_port(port.parse().ok()?),
                            ]),
                    )
                })
                .collect(),
        );
    }
    response
}

/// A quorum node id on Kafka's wire (-1 if it does not fit).
fn as_broker_id(id: u64) -> BrokerId {
    BrokerId(i32::try_from(id).unwrap_or(-1))
}

/// Each member's progress as DescribeQuorum reports it. Weir does not track fetch times per
/// member: -1 is Kafka's "unknown".
fn replica_states(members: &[crate::controller::quorum::VoterStatus]) -> Vec<ReplicaState> {
    members
        .iter()
        .map(|member| {
            ReplicaState::default()
                .with_replica_id(as_broker_id(member.node_id))
                .with_log_end_offset(member.log_end_offset.map_or(-1, |offset| offset as i64))
                .with_last_fetch_timestamp(-1)
                .with_last_caught_up_timestamp(-1)
        })
        .collect()
}
