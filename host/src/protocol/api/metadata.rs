//! Metadata: brokers, the controller, and topics with their partitions' leaders and ISR.
//! Auto-creates requested topics when both the request and `auto.create.topics.enable` allow.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{str_bytes, this_broker, topic_name};
use crate::broker::Broker;
use crate::broker::topics::TopicRecord;

pub fn handle(broker: &Broker, version: i16, request: MetadataRequest) -> MetadataResponse {
    // v0: an empty list means every topic; v1+: null means every topic, empty means none.
    let requested: Option<Vec<_>> = match request.topics {
        Some(topics) if version == 0 && topics.is_empty() => None,
        other => other,
    };
    // Before v4 there is no flag and auto-creation follows the broker config.
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let topics = match requested {
        None => broker
            .topics()
            .iter()
            .map(|topic| describe(broker, topic))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|wanted| {
                let by_name = wanted.name.as_ref().map(|name| name.0.to_string());
                let found = match &by_name {
                    Some(name) => broker.topic_or_auto_create(name, allow_auto_create),
                    None => broker.topic_by_id(wanted.topic_id).ok_or_else(|| {
                        crate::broker::ApiError::new(
                            ResponseError::UnknownTopicId,
                            "unknown topic id",
                        )
                    }),
                };
                match found {
                    Ok(topic) => describe(broker, &topic),
                    Err(error) => MetadataResponseTopic::default()
                        .with_error_code(error.code.code())
                        .with_name(wanted.name.clone())
                        .with_topic_id(wanted.topic_id),
                }
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(
            broker
                .brokers(false)
                .into_iter()
                .map(|info| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(info.broker_id))
                        .with_host(str_bytes(&info.host))
                        .with_port(i32::from(info.port))
                        .with_rack(info.rack.as_deref().map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(&broker.cluster_id())))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_topics(topics)
}

fn describe(broker: &Broker, topic: &TopicRecord) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|index| {
            let leader_epoch = broker
                .partition(&topic.name, index as i32)
                .map_or(0, |partition| partition.leader_epoch());
            MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_id(this_broker(broker))
                .with_leader_epoch(leader_epoch)
                .with_replica_nodes(vec![this_broker(broker)])
                .with_isr_nodes(vec![this_broker(broker)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id)
        .with_partitions(partitions)
}
