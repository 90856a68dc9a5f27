//! DescribeCluster (KIP-700): the brokers and the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};

use super::{str_bytes, this_broker};
use crate::broker::Broker;

pub fn handle(broker: &Broker, _request: DescribeClusterRequest) -> DescribeClusterResponse {
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&broker.cluster_id()))
        .with_controller_id(this_broker(broker))
        .with_brokers(vec![
            DescribeClusterBroker::default()
                .with_broker_id(this_broker(broker))
                .with_host(str_bytes(&broker.config.advertised_host))
                .with_port(i32::from(broker.config.advertised_port)),
        ])
}
