//! JoinGroup: the first half of a rebalance. The request parks in the group room until the join
//! phase completes (or answers at once: errors, KIP-394's MEMBER_ID_REQUIRED on a v4+ first
//! join, a generation that is already settled); the leader's answer lists every member.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::broker::Broker;
use crate::group::JoinRequest;

/// v4 is the first version whose first join must come back with the member id it was given.
const MEMBER_ID_REQUIRED_VERSION: i16 = 4;

pub async fn handle(
    broker: &Broker,
    version: i16,
    client_id: &str,
    peer: std::net::IpAddr,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    let join = JoinRequest {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
        client_id: client_id.to_string(),
        // As Kafka shows it (InetAddress.toString of a resolved-free address).
        client_host: format!("/{peer}"),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout bounds the join phase.
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|protocol| (protocol.name.to_string(), protocol.metadata))
            .collect(),
        require_known_member_id: version >= MEMBER_ID_REQUIRED_VERSION,
    };
    let answer = broker.groups.join(join).await;
    let members = answer
        .members
        .into_iter()
        .map(|member| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&member.member_id))
                // The field exists from v5.
                .with_group_instance_id(if version >= 5 {
                    member.group_instance_id.as_deref().map(str_bytes)
                } else {
                    None
                })
                .with_metadata(member.metadata)
        })
        .collect();
    let protocol_name = match answer.protocol_name {
        Some(name) => Some(str_bytes(&name)),
        // Nullable from v7; before, an empty string.
        None if version >= 7 => None,
        None => Some(StrBytes::default()),
    };
    JoinGroupResponse::default()
        .with_error_code(answer.error.map_or(0, |error| error.code()))
        .with_generation_id(answer.generation_id)
        .with_protocol_type(answer.protocol_type.as_deref().map(str_bytes))
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(&answer.leader))
        .with_member_id(str_bytes(&answer.member_id))
        .with_members(members)
}
