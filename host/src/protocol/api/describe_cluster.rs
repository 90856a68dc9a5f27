//! DescribeCluster (KIP-700): the brokers and the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;

pub fn handle(broker: &Broker, _request: DescribeClusterRequest) -> DescribeClusterResponse {
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&broker.cluster_id()))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_brokers(
            broker
                .live_brokers()
                .into_iter()
                .map(|(id, host, port, rack)| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(id))
                        .with_host(str_bytes(&host))
                        .with_port(i32::from(port))
                        .with_rack(rack.as_deref().map(str_bytes))
                })
                .collect(),
        )
}
