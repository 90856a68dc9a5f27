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
pub mod describe_quorum;
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

use std::net::IpAddr;

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
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeQuorum, 0, 2),
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

/// Runs the request's handler for a client at `peer`, or forwards it to the active controller
/// when only the controller may answer it. `None` means no response at all (a produce with
/// acks=0).
pub async fn handle(broker: &Broker, request: Request, peer: IpAddr) -> Option<ResponseKind> {
    if super::forward::is_forwarded(request.api_key) && !broker.quorum.is_active_controller() {
        match super::forward::to_controller(broker, &request).await {
            Ok(response) => return Some(response),
            // No controller known, or it cannot be reached: answered here, which refuses with
            // NOT_CONTROLLER (retriable) unless this node became controller meanwhile.
            Err(error) => {
                tracing::debug!(api = ?request.api_key, %error, "forwarding to the controller failed")
            }
        }
    }
    dispatch(broker, request, peer).await
}

/// Runs the request's handler here.
pub async fn dispatch(broker: &Broker, request: Request, peer: IpAddr) -> Option<ResponseKind> {
    let version = request.header.request_api_version;
    Some(match request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::Metadata(body) => {
            ResponseKind::Metadata(metadata::handle(broker, version, body).await)
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
            ResponseKind::CreateTopics(create_topics::handle(broker, version, body).await)
        }
        RequestKind::DeleteTopics(body) => {
            ResponseKind::DeleteTopics(delete_topics::handle(broker, version, body).await)
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
        RequestKind::DescribeQuorum(body) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(broker, version, body))
        }
        RequestKind::DescribeConfigs(body) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(broker, body))
        }
        RequestKind::AlterConfigs(body) => {
            ResponseKind::AlterConfigs(alter_configs::handle(broker, body).await)
        }
        RequestKind::IncrementalAlterConfigs(body) => ResponseKind::IncrementalAlterConfigs(
            incremental_alter_configs::handle(broker, body).await,
        ),
        RequestKind::CreatePartitions(body) => {
            ResponseKind::CreatePartitions(create_partitions::handle(broker, body).await)
        }
        RequestKind::DeleteRecords(body) => {
            ResponseKind::DeleteRecords(delete_records::handle(broker, body))
        }
        RequestKind::FindCoordinator(body) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, version, body))
        }
        RequestKind::JoinGroup(body) => {
            let client_id = request.header.client_id.as_deref().unwrap_or_default();
            ResponseKind::JoinGroup(
                join_group::handle(broker, version, client_id, peer, body).await,
            )
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
    let partition = broker.led_partition(topic, index)?;
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
            ApiKey::DescribeQuorum => RequestKind::DescribeQuorum(Default::default()),
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
        let broker = Broker::start(config).await.expect("broker");
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
                handle(&broker, request, IpAddr::from([127, 0, 0, 1]))
                    .await
                    .is_some(),
                "{api_key:?} has no handler"
            );
        }
    }

    /// Every advertised version of every group API answers without error, and its response
    /// encodes at that version and decodes back whole: a field set that an old version lacks
    /// only shows with a client speaking that version, so each version is called here.
    #[tokio::test]
    async fn group_apis_answer_at_every_advertised_version() {
        use bytes::Bytes;
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::Decodable;

        let dir = tempfile::tempdir().expect("tempdir");
        let config = BrokerConfig::load(
            None,
            &[
                format!("log.dirs={}", dir.path().display()),
                "group.initial.rebalance.delay.ms=0".to_string(),
            ],
        )
        .expect("config");
        let broker = Broker::start(config).await.expect("broker");
        broker
            .create_topic("t", 1, 1, Default::default(), false)
            .await
            .expect("topic");
        let versions = |api: ApiKey| {
            let (min, max) = supported_versions(api).expect("supported");
            min..=max
        };
        async fn call(
            broker: &Broker,
            api: ApiKey,
            version: i16,
            body: RequestKind,
        ) -> ResponseKind {
            let request = Request {
                header: RequestHeader::default()
                    .with_request_api_key(api as i16)
                    .with_request_api_version(version)
                    .with_client_id(Some(str_bytes("sweep"))),
                api_key: api,
                body,
            };
            let response = handle(broker, request, IpAddr::from([127, 0, 0, 1]))
                .await
                .expect("a response");
            let mut encoded = crate::protocol::encode_response(7, api, version, &response)
                .unwrap_or_else(|error| panic!("{api:?} v{version}: {error}"))
                .freeze()
                .slice(4..);
            kafka_protocol::messages::ResponseHeader::decode(
                &mut encoded,
                api.response_header_version(version),
            )
            .expect("header");
            let decoded = ResponseKind::decode(api, &mut encoded, version)
                .unwrap_or_else(|error| panic!("{api:?} v{version} decodes: {error}"));
            assert!(encoded.is_empty(), "{api:?} v{version}: bytes left");
            decoded
        }
        let group = |name: String| GroupId(str_bytes(&name));
        let join_body = |name: &str, member_id: &str, version: i16| {
            JoinGroupRequest::default()
                .with_group_id(group(name.to_string()))
                .with_member_id(str_bytes(member_id))
                .with_group_instance_id(
                    (version >= 5 && name.starts_with("join")).then(|| str_bytes("instance")),
                )
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(str_bytes("consumer"))
                .with_protocols(vec![
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(str_bytes("range"))
                        .with_metadata(Bytes::from_static(b"subscription")),
                ])
        };
        // A member of a new generation of `name`: (member id, generation).
        let join = |name: String, version: i16| {
            let broker = &broker;
            async move {
                let mut member_id = String::new();
                for _ in 0..2 {
                    let ResponseKind::JoinGroup(answer) = call(
                        broker,
                        ApiKey::JoinGroup,
                        version,
                        RequestKind::JoinGroup(join_body(&name, &member_id, version)),
                    )
                    .await
                    else {
                        panic!("not a JoinGroup response");
                    };
                    if answer.error_code == kafka_protocol::ResponseError::MemberIdRequired.code() {
                        member_id = answer.member_id.to_string();
                        continue;
                    }
                    assert_eq!(answer.error_code, 0, "JoinGroup v{version}");
                    assert_eq!(
                        answer.members.len(),
                        1,
                        "JoinGroup v{version}: the leader's list"
                    );
                    return (answer.member_id.to_string(), answer.generation_id);
                }
                panic!("JoinGroup v{version}: no member id after MEMBER_ID_REQUIRED");
            }
        };
        let sync_body = |name: &str, member_id: &str, generation: i32, version: i16| {
            let request = SyncGroupRequest::default()
                .with_group_id(group(name.to_string()))
                .with_generation_id(generation)
                .with_member_id(str_bytes(member_id))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(str_bytes(member_id))
                        .with_assignment(Bytes::from_static(b"assignment")),
                ]);
            if version >= 5 {
                request
                    .with_protocol_type(Some(str_bytes("consumer")))
                    .with_protocol_name(Some(str_bytes("range")))
            } else {
                request
            }
        };
        for version in versions(ApiKey::JoinGroup) {
            join(format!("join-v{version}"), version).await;
        }
        for version in versions(ApiKey::SyncGroup) {
            let name = format!("sync-v{version}");
            let (member_id, generation) = join(name.clone(), 9).await;
            let ResponseKind::SyncGroup(answer) = call(
                &broker,
                ApiKey::SyncGroup,
                version,
                RequestKind::SyncGroup(sync_body(&name, &member_id, generation, version)),
            )
            .await
            else {
                panic!("not a SyncGroup response");
            };
            assert_eq!(answer.error_code, 0, "SyncGroup v{version}");
            assert_eq!(answer.assignment, Bytes::from_static(b"assignment"));
        }
        // One stable group for the rest.
        let (member_id, generation) = join("stable".to_string(), 9).await;
        call(
            &broker,
            ApiKey::SyncGroup,
            5,
            RequestKind::SyncGroup(sync_body("stable", &member_id, generation, 5)),
        )
        .await;
        for version in versions(ApiKey::Heartbeat) {
            let request = HeartbeatRequest::default()
                .with_group_id(group("stable".to_string()))
                .with_generation_id(generation)
                .with_member_id(str_bytes(&member_id));
            let ResponseKind::Heartbeat(answer) = call(
                &broker,
                ApiKey::Heartbeat,
                version,
                RequestKind::Heartbeat(request),
            )
            .await
            else {
                panic!("not a Heartbeat response");
            };
            assert_eq!(answer.error_code, 0, "Heartbeat v{version}");
        }
        for version in versions(ApiKey::OffsetCommit) {
            let request = OffsetCommitRequest::default()
                .with_group_id(group("stable".to_string()))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(str_bytes(&member_id))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic_name("t"))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(i64::from(version))
                                .with_committed_metadata(Some(str_bytes("m"))),
                        ]),
                ]);
            let ResponseKind::OffsetCommit(answer) = call(
                &broker,
                ApiKey::OffsetCommit,
                version,
                RequestKind::OffsetCommit(request),
            )
            .await
            else {
                panic!("not an OffsetCommit response");
            };
            let codes: Vec<i16> = answer
                .topics
                .iter()
                .flat_map(|topic| topic.partitions.iter().map(|p| p.error_code))
                .collect();
            assert_eq!(codes, vec![0], "OffsetCommit v{version}");
        }
        let last_commit = i64::from(*versions(ApiKey::OffsetCommit).end());
        for version in versions(ApiKey::OffsetFetch) {
            let request = if version >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(group("stable".to_string()))
                        .with_topics(Some(vec![
                            offset_fetch_request::OffsetFetchRequestTopics::default()
                                .with_name(topic_name("t"))
                                .with_partition_indexes(vec![0, 1]),
                        ])),
                ])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(group("stable".to_string()))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(topic_name("t"))
                            .with_partition_indexes(vec![0, 1]),
                    ]))
            };
            let ResponseKind::OffsetFetch(answer) = call(
                &broker,
                ApiKey::OffsetFetch,
                version,
                RequestKind::OffsetFetch(request),
            )
            .await
            else {
                panic!("not an OffsetFetch response");
            };
            let offsets: Vec<(i64, i16)> = if version >= 8 {
                answer.groups[0].topics[0]
                    .partitions
                    .iter()
                    .map(|p| (p.committed_offset, p.error_code))
                    .collect()
            } else {
                answer.topics[0]
                    .partitions
                    .iter()
                    .map(|p| (p.committed_offset, p.error_code))
                    .collect()
            };
            assert_eq!(
                offsets,
                vec![(last_commit, 0), (-1, 0)],
                "OffsetFetch v{version}"
            );
        }
        for version in versions(ApiKey::ListGroups) {
            let ResponseKind::ListGroups(answer) = call(
                &broker,
                ApiKey::ListGroups,
                version,
                RequestKind::ListGroups(Default::default()),
            )
            .await
            else {
                panic!("not a ListGroups response");
            };
            assert_eq!(answer.error_code, 0);
            assert!(
                answer
                    .groups
                    .iter()
                    .any(|listed| listed.group_id.0.as_str() == "stable"),
                "ListGroups v{version}"
            );
        }
        for version in versions(ApiKey::DescribeGroups) {
            let request =
                DescribeGroupsRequest::default().with_groups(vec![group("stable".to_string())]);
            let ResponseKind::DescribeGroups(answer) = call(
                &broker,
                ApiKey::DescribeGroups,
                version,
                RequestKind::DescribeGroups(request),
            )
            .await
            else {
                panic!("not a DescribeGroups response");
            };
            let described = &answer.groups[0];
            assert_eq!(described.error_code, 0, "DescribeGroups v{version}");
            assert_eq!(described.group_state.as_str(), "Stable");
            assert_eq!(described.protocol_data.as_str(), "range");
            assert_eq!(
                described.members[0].member_assignment.as_ref(),
                b"assignment"
            );
        }
        for version in versions(ApiKey::LeaveGroup) {
            let name = format!("leave-v{version}");
            let (member_id, _) = join(name.clone(), 9).await;
            let request = LeaveGroupRequest::default().with_group_id(group(name));
            let request = if version >= 3 {
                request.with_members(vec![
                    leave_group_request::MemberIdentity::default()
                        .with_member_id(str_bytes(&member_id)),
                ])
            } else {
                request.with_member_id(str_bytes(&member_id))
            };
            let ResponseKind::LeaveGroup(answer) = call(
                &broker,
                ApiKey::LeaveGroup,
                version,
                RequestKind::LeaveGroup(request),
            )
            .await
            else {
                panic!("not a LeaveGroup response");
            };
            assert_eq!(answer.error_code, 0, "LeaveGroup v{version}");
            assert!(answer.members.iter().all(|member| member.error_code == 0));
        }
        for version in versions(ApiKey::DeleteGroups) {
            let name = format!("delete-v{version}");
            broker
                .groups
                .commit(crate::group::CommitRequest {
                    group_id: name.clone(),
                    generation_id: -1,
                    ..Default::default()
                })
                .expect("a standalone commit creates the group");
            let request = DeleteGroupsRequest::default().with_groups_names(vec![group(name)]);
            let ResponseKind::DeleteGroups(answer) = call(
                &broker,
                ApiKey::DeleteGroups,
                version,
                RequestKind::DeleteGroups(request),
            )
            .await
            else {
                panic!("not a DeleteGroups response");
            };
            assert_eq!(answer.results[0].error_code, 0, "DeleteGroups v{version}");
        }
    }
}
