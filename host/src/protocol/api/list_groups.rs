//! ListGroups: every group this coordinator knows, filtered by state (v4+) and type (v5+;
//! every Weir group is a "classic" one).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;

/// The group type of KIP-848's ListGroups v5: Weir serves the classic protocol only.
const CLASSIC_GROUP_TYPE: &str = "classic";

pub fn handle(broker: &Broker, version: i16, request: ListGroupsRequest) -> ListGroupsResponse {
    let wanted = |filter: &[kafka_protocol::protocol::StrBytes], value: &str| {
        filter.is_empty()
            || filter
                .iter()
                .any(|wanted| wanted.as_str().eq_ignore_ascii_case(value))
    };
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|group| wanted(&request.states_filter, group.state.name()))
        .filter(|_| wanted(&request.types_filter, CLASSIC_GROUP_TYPE))
        .map(|group| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&group.group_id)))
                .with_protocol_type(str_bytes(&group.protocol_type));
            match version {
                0..=3 => listed,
                4 => listed.with_group_state(str_bytes(group.state.name())),
                _ => listed
                    .with_group_state(str_bytes(group.state.name()))
                    .with_group_type(str_bytes(CLASSIC_GROUP_TYPE)),
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
