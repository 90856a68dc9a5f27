//! FindCoordinator: on one node this broker coordinates every group. Transactions are not
//! supported, so a transaction coordinator is never available. (librdkafka also reads this API's
//! presence as "a modern broker" before it will compress with LZ4.)

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, this_broker};
use crate::broker::Broker;

const GROUP_KEY_TYPE: i8 = 0;

pub fn handle(
    broker: &Broker,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let error =
        (request.key_type != GROUP_KEY_TYPE).then_some(ResponseError::CoordinatorNotAvailable);
    let host = str_bytes(&broker.config.advertised_host);
    let port = i32::from(broker.config.advertised_port);
    if version < 4 {
        return match error {
            Some(error) => FindCoordinatorResponse::default()
                .with_error_code(error.code())
                .with_node_id(kafka_protocol::messages::BrokerId(-1))
                .with_host(StrBytes::default())
                .with_port(-1),
            None => FindCoordinatorResponse::default()
                .with_node_id(this_broker(broker))
                .with_host(host)
                .with_port(port),
        };
    }
    let coordinators = request
        .coordinator_keys
        .into_iter()
        .map(|key| match error {
            Some(error) => Coordinator::default()
                .with_key(key)
                .with_node_id(kafka_protocol::messages::BrokerId(-1))
                .with_port(-1)
                .with_error_code(error.code()),
            None => Coordinator::default()
                .with_key(key)
                .with_node_id(this_broker(broker))
                .with_host(host.clone())
                .with_port(port),
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}
