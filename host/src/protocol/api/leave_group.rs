//! LeaveGroup: members leave (v0-v2 one by member id; v3+ several, by member id or static
//! instance id, each with its own error) and the rest rebalance at once instead of waiting for
//! the leavers' sessions to run out.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::Broker;
use crate::group::LeavingMember;

/// v3 is the first version naming several members.
const BATCH_VERSION: i16 = 3;

pub fn handle(broker: &Broker, version: i16, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let group_id = request.group_id.0.to_string();
    if version < BATCH_VERSION {
        let leaving = [LeavingMember {
            member_id: request.member_id.to_string(),
            group_instance_id: None,
        }];
        let error = broker.groups.leave(&group_id, &leaving).pop().flatten();
        return LeaveGroupResponse::default()
            .with_error_code(error.map_or(0, |error| error.code()));
    }
    let leaving: Vec<LeavingMember> = request
        .members
        .iter()
        .map(|member| LeavingMember {
            member_id: member.member_id.to_string(),
            group_instance_id: member.group_instance_id.as_ref().map(|id| id.to_string()),
        })
        .collect();
    let errors = broker.groups.leave(&group_id, &leaving);
    let members = request
        .members
        .into_iter()
        .zip(errors)
        .map(|(member, error)| {
            MemberResponse::default()
                .with_member_id(member.member_id)
                .with_group_instance_id(member.group_instance_id)
                .with_error_code(error.map_or(0, |error| error.code()))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}
