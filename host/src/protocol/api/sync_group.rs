//! SyncGroup: the second half of a rebalance. The leader sends every member's assignment;
//! followers park in the group room until it does, then each gets its own.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::SyncRequest;

/// v5 is the first version carrying the protocol type and name.
const PROTOCOL_FIELDS_VERSION: i16 = 5;

pub async fn handle(broker: &Broker, version: i16, request: SyncGroupRequest) -> SyncGroupResponse {
    let sync = SyncRequest {
        group_id: request.group_id.0.to_string(),
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
        protocol_type: request.protocol_type.map(|name| name.to_string()),
        protocol_name: request.protocol_name.map(|name| name.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|assignment| (assignment.member_id.to_string(), assignment.assignment))
            .collect(),
    };
    let answer = broker.groups.sync(sync).await;
    let response = SyncGroupResponse::default()
        .with_error_code(answer.error.map_or(0, |error| error.code()))
        .with_assignment(answer.assignment);
    if version < PROTOCOL_FIELDS_VERSION {
        return response;
    }
    response
        .with_protocol_type(answer.protocol_type.as_deref().map(str_bytes))
        .with_protocol_name(answer.protocol_name.as_deref().map(str_bytes))
}
