//! DescribeCluster (KIP-700): the brokers and the active controller; from v2 (KIP-1073) fenced
//! brokers too when asked, each marked.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: DescribeClusterRequest) -> DescribeClusterResponse {
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&broker.cluster_id()))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_brokers(
            broker
                .brokers(request.include_fenced_brokers)
                .into_iter()
                .map(|info| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(info.broker_id))
                        .with_host(str_bytes(&info.host))
                        .with_port(i32::from(info.port))
                        .with_rack(info.rack.as_deref().map(str_bytes))
                        .with_is_fenced(info.fenced)
                })
                .collect(),
        )
}
