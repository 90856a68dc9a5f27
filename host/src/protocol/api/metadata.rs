//! Metadata: brokers, the controller, and topics with their partitions' leaders and ISR.
//! Auto-creates requested topics when both the request and `auto.create.topics.enable` allow.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::broker::topics::TopicRecord;

pub async fn handle(broker: &Broker, version: i16, request: MetadataRequest) -> MetadataResponse {
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
        Some(requested) => {
            let mut topics = Vec::with_capacity(requested.len());
            for wanted in requested {
                let by_name = wanted.name.as_ref().map(|name| name.0.to_string());
                let found = match &by_name {
                    Some(name) => {
                        match broker.topic_or_auto_create(name, allow_auto_create).await {
                            Err(error) if error.code == ResponseError::NotController => {
                                crate::protocol::forward::auto_create(broker, name).await
                            }
                            found => found,
                        }
                    }
                    None => broker.topic_by_id(wanted.topic_id).ok_or_else(|| {
                        crate::broker::ApiError::new(
                            ResponseError::UnknownTopicId,
                            "unknown topic id",
                        )
                    }),
                };
                topics.push(match found {
                    Ok(topic) => describe(broker, &topic),
                    Err(error) => MetadataResponseTopic::default()
                        .with_error_code(error.code.code())
                        .with_name(wanted.name.clone())
                        .with_topic_id(wanted.topic_id),
                });
            }
            topics
        }
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
    let ids = |brokers: &[i32]| brokers.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let partitions = (0..topic.partitions as i32)
        .filter_map(|index| {
            let registration = broker.partition_registration(&topic.name, index)?;
            Some(
                MetadataResponsePartition::default()
                    .with_partition_index(index)
                    .with_leader_id(BrokerId(registration.leader))
                    .with_leader_epoch(registration.leader_epoch)
                    .with_replica_nodes(ids(&registration.replicas))
                    .with_isr_nodes(ids(&registration.isr)),
            )
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id)
        .with_partitions(partitions)
}
