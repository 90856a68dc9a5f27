//! Heartbeat: keeps a member's session alive and tells it when to rejoin
//! (REBALANCE_IN_PROGRESS) or that it is gone (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION).

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    let error = broker.groups.heartbeat(
        request.group_id.0.as_str(),
        request.generation_id,
        request.member_id.as_str(),
        request.group_instance_id.as_deref(),
    );
    HeartbeatResponse::default().with_error_code(error.map_or(0, |error| error.code()))
}
