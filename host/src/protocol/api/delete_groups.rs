//! DeleteGroups: a group without members goes, with its committed offsets
//! (GROUP_ID_NOT_FOUND for an unknown one, NON_EMPTY_GROUP while members remain).

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = request
        .groups_names
        .into_iter()
        .map(|group_id| {
            let outcome = broker.groups.delete(group_id.0.as_str());
            if outcome.is_ok() {
                tracing::info!(group = %group_id.0.as_str(), "deleted group");
            }
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(outcome.err().map_or(0, |error| error.code()))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
