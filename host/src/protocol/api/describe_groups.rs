//! DescribeGroups: a group's state, protocol and members (with their metadata and assignment
//! once the group is Stable), as kafka-consumer-groups.sh --describe reads them.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::GroupState;

/// From v6 an unknown group is GROUP_ID_NOT_FOUND; before, a Dead group without error.
const GROUP_ID_NOT_FOUND_VERSION: i16 = 6;

pub fn handle(
    broker: &Broker,
    version: i16,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|group_id| {
            if group_id.0.is_empty() {
                return DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_group_state(str_bytes(GroupState::Dead.name()))
                    .with_error_code(ResponseError::InvalidGroupId.code());
            }
            let Some(found) = broker.groups.describe(group_id.0.as_str()) else {
                let described = DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_group_state(str_bytes(GroupState::Dead.name()));
                return if version >= GROUP_ID_NOT_FOUND_VERSION {
                    described
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(str_bytes("the group does not exist")))
                } else {
                    described
                };
            };
            let members = found
                .members
                .into_iter()
                .map(|member| {
                    DescribedGroupMember::default()
                        .with_member_id(str_bytes(&member.member_id))
                        // The field exists from v4.
                        .with_group_instance_id(if version >= 4 {
                            member.group_instance_id.as_deref().map(str_bytes)
                        } else {
                            None
                        })
                        .with_client_id(str_bytes(&member.client_id))
                        .with_client_host(str_bytes(&member.client_host))
                        .with_member_metadata(member.metadata)
                        .with_member_assignment(member.assignment)
                })
                .collect();
            DescribedGroup::default()
                .with_group_id(group_id)
                .with_group_state(str_bytes(found.state.name()))
                .with_protocol_type(str_bytes(&found.protocol_type))
                .with_protocol_data(str_bytes(&found.protocol_name))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
