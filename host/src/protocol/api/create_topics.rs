//! CreateTopics, including validate_only.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::broker::Broker;

pub fn handle(broker: &Broker, version: i16, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let result = CreatableTopicResult::default().with_name(topic.name.clone());
            if !topic.assignments.is_empty() {
                return result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(
                        "manual replica assignment is not supported",
                    )));
            }
            let mut configs = BTreeMap::new();
            for config in &topic.configs {
                match &config.value {
                    Some(value) => configs.insert(config.name.to_string(), value.to_string()),
                    None => None,
                };
            }
            match broker.create_topic(
                topic.name.0.as_str(),
                topic.num_partitions,
                topic.replication_factor,
                configs,
                request.validate_only,
            ) {
                Ok(created) => {
                    let result = result
                        .with_topic_id(created.id)
                        .with_num_partitions(created.partitions as i32)
                        .with_replication_factor(created.replication_factor);
                    if version >= 5 {
                        result.with_configs(Some(effective_configs(broker, &created)))
                    } else {
                        result
                    }
                }
                Err(error) => result
                    .with_error_code(error.code.code())
                    .with_error_message(Some(str_bytes(&error.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

/// Every topic config with its effective value, as CreateTopics v5+ reports it.
fn effective_configs(
    broker: &Broker,
    topic: &crate::broker::topics::TopicRecord,
) -> Vec<CreatableTopicConfigs> {
    broker
        .effective_topic_configs(topic)
        .into_iter()
        .map(|config| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(config.name))
                .with_value(Some(str_bytes(&config.value)))
                .with_config_source(config.source as i8)
        })
        .collect()
}
