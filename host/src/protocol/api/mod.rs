//! One file per Kafka API, each the same shape: take the decoded request, call the broker,
//! build the response. [`handle`] routes; [`SUPPORTED`] is the one list of what Weir serves.

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;

use kafka_protocol::messages::{ApiKey, BrokerId, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::broker::Broker;

/// The APIs Weir serves and the versions of each, within what the codec crate knows.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::FindCoordinator, 0, 6),
    // Consumer groups (the classic protocol). OffsetCommit v10 and OffsetFetch v10 name topics
    // by id, which the codec's requests stop short of.
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
];

/// (min, max) version of `api_key`, or `None` when Weir does not serve it.
pub fn supported_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|(_, min, max)| {
            let codec = api_key.valid_versions();
            ((*min).max(codec.min), (*max).min(codec.max))
        })
}

/// Runs the request's handler. `None` means no response at all (a produce with acks=0).
pub async fn handle(broker: &Broker, request: Request) -> Option<ResponseKind> {
    let version = request.header.request_api_version;
    Some(match request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::Metadata(body) => {
            ResponseKind::Metadata(metadata::handle(broker, version, body))
        }
        RequestKind::Produce(body) => {
            return produce::handle(broker, version, body)
                .await
                .map(ResponseKind::Produce);
        }
        RequestKind::Fetch(body) => ResponseKind::Fetch(fetch::handle(broker, version, body).await),
        RequestKind::ListOffsets(body) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, version, body))
        }
        RequestKind::CreateTopics(body) => {
            ResponseKind::CreateTopics(create_topics::handle(broker, version, body))
        }
        RequestKind::DeleteTopics(body) => {
            ResponseKind::DeleteTopics(delete_topics::handle(broker, version, body))
        }
        RequestKind::InitProducerId(body) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, body))
        }
        RequestKind::OffsetForLeaderEpoch(body) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(broker, body))
        }
        RequestKind::DescribeCluster(body) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(broker, body))
        }
        RequestKind::DescribeConfigs(body) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(broker, body))
        }
        RequestKind::AlterConfigs(body) => {
            ResponseKind::AlterConfigs(alter_configs::handle(broker, body))
        }
        RequestKind::IncrementalAlterConfigs(body) => {
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(broker, body))
        }
        RequestKind::CreatePartitions(body) => {
            ResponseKind::CreatePartitions(create_partitions::handle(broker, body))
        }
        RequestKind::DeleteRecords(body) => {
            ResponseKind::DeleteRecords(delete_records::handle(broker, body))
        }
        RequestKind::FindCoordinator(body) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, version, body))
        }
        RequestKind::JoinGroup(body) => {
            let client_id = request.header.client_id.as_deref().unwrap_or_default();
            ResponseKind::JoinGroup(join_group::handle(broker, version, client_id, body).await)
        }
        RequestKind::SyncGroup(body) => {
            ResponseKind::SyncGroup(sync_group::handle(broker, version, body).await)
        }
        RequestKind::Heartbeat(body) => ResponseKind::Heartbeat(heartbeat::handle(broker, body)),
        RequestKind::LeaveGroup(body) => {
            ResponseKind::LeaveGroup(leave_group::handle(broker, version, body))
        }
        RequestKind::OffsetCommit(body) => {
            ResponseKind::OffsetCommit(offset_commit::handle(broker, body))
        }
        RequestKind::OffsetFetch(body) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(broker, version, body))
        }
        RequestKind::ListGroups(body) => {
            ResponseKind::ListGroups(list_groups::handle(broker, version, body))
        }
        RequestKind::DescribeGroups(body) => {
            ResponseKind::DescribeGroups(describe_groups::handle(broker, version, body))
        }
        RequestKind::DeleteGroups(body) => {
            ResponseKind::DeleteGroups(delete_groups::handle(broker, body))
        }
        other => {
            // decode_request refuses APIs missing from SUPPORTED, so this is a routing bug.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a supported API");
            return None;
        }
    })
}

/// KIP-320: a request naming the leader epoch it believes in is refused when that epoch is
/// stale (FENCED_LEADER_EPOCH) or from the future (UNKNOWN_LEADER_EPOCH); -1 opts out.
pub(crate) fn leader_epoch_error(
    requested: i32,
    current: i32,
) -> Option<kafka_protocol::ResponseError> {
    use kafka_protocol::ResponseError;
    match requested {
        requested if requested < 0 || requested == current => None,
        requested if requested > current => Some(ResponseError::UnknownLeaderEpoch),
        _ => Some(ResponseError::FencedLeaderEpoch),
    }
}

/// The partition a per-partition request names, checked as its leader would check it: unknown
/// partitions and stale or future leader epochs become the error to answer with.
pub(crate) fn leader_partition(
    broker: &Broker,
    topic: &str,
    index: i32,
    current_leader_epoch: i32,
) -> Result<std::sync::Arc<crate::replication::Partition>, kafka_protocol::ResponseError> {
    let partition = broker
        .partition(topic, index)
        .ok_or(kafka_protocol::ResponseError::UnknownTopicOrPartition)?;
    match leader_epoch_error(current_leader_epoch, partition.leader_epoch()) {
        Some(error) => Err(error),
        None => Ok(partition),
    }
}

pub(crate) fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

pub(crate) fn topic_name(text: &str) -> TopicName {
    TopicName(str_bytes(text))
}

pub(crate) fn this_broker(broker: &Broker) -> BrokerId {
    BrokerId(broker.config.node_id)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{ProduceRequest, RequestHeader};

    use super::*;
    use crate::config::BrokerConfig;

    /// An empty request of each supported API. A new entry in SUPPORTED without a case here
    /// fails the test, so no API can be advertised without a route.
    fn empty_request(api_key: ApiKey) -> Option<RequestKind> {
        Some(match api_key {
            ApiKey::Produce => RequestKind::Produce(ProduceRequest::default().with_acks(1)),
            ApiKey::Fetch => RequestKind::Fetch(Default::default()),
            ApiKey::ListOffsets => RequestKind::ListOffsets(Default::default()),
            ApiKey::Metadata => RequestKind::Metadata(Default::default()),
            ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
            ApiKey::CreateTopics => RequestKind::CreateTopics(Default::default()),
            ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
            ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
            ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(Default::default()),
            ApiKey::DescribeCluster => RequestKind::DescribeCluster(Default::default()),
            ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(Default::default()),
            ApiKey::AlterConfigs => RequestKind::AlterConfigs(Default::default()),
            ApiKey::IncrementalAlterConfigs => {
                RequestKind::IncrementalAlterConfigs(Default::default())
            }
            ApiKey::CreatePartitions => RequestKind::CreatePartitions(Default::default()),
            ApiKey::DeleteRecords => RequestKind::DeleteRecords(Default::default()),
            ApiKey::FindCoordinator => RequestKind::FindCoordinator(Default::default()),
            ApiKey::JoinGroup => RequestKind::JoinGroup(Default::default()),
            ApiKey::SyncGroup => RequestKind::SyncGroup(Default::default()),
            ApiKey::Heartbeat => RequestKind::Heartbeat(Default::default()),
            ApiKey::LeaveGroup => RequestKind::LeaveGroup(Default::default()),
            ApiKey::OffsetCommit => RequestKind::OffsetCommit(Default::default()),
            ApiKey::OffsetFetch => RequestKind::OffsetFetch(Default::default()),
            ApiKey::ListGroups => RequestKind::ListGroups(Default::default()),
            ApiKey::DescribeGroups => RequestKind::DescribeGroups(Default::default()),
            ApiKey::DeleteGroups => RequestKind::DeleteGroups(Default::default()),
            _ => return None,
        })
    }

    #[tokio::test]
    async fn every_supported_api_is_routed_to_a_handler() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = BrokerConfig::load(None, &[format!("log.dirs={}", dir.path().display())])
            .expect("config");
        let broker = Broker::open(config).expect("broker");
        for (api_key, _, _) in SUPPORTED {
            let (_, max) = supported_versions(*api_key).expect("supported");
            let body = empty_request(*api_key)
                .unwrap_or_else(|| panic!("no test request for {api_key:?}"));
            let request = Request {
                header: RequestHeader::default()
                    .with_request_api_key(*api_key as i16)
                    .with_request_api_version(max),
                api_key: *api_key,
                body,
            };
            assert!(
                handle(&broker, request).await.is_some(),
                "{api_key:?} has no handler"
            );
        }
    }
}
