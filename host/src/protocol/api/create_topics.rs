//! CreateTopics, including validate_only.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut topics = Vec::new();
    for topic in request.topics {
        topics.push(create_one(broker, topic, version, request.validate_only).await);
    }
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

async fn create_one(
    broker: &Broker,
    topic: CreatableTopic,
    version: i16,
    validate_only: bool,
) -> CreatableTopicResult {
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
    match broker
        .create_topic(
            topic.name.0.as_str(),
            topic.num_partitions,
            topic.replication_factor,
            configs,
            validate_only,
        )
        .await
    {
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
}
