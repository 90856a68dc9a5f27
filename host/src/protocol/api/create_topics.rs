//! CreateTopics, including validate_only.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::broker::Broker;

/// Kafka's config source for a topic-level override and for a broker default.
const TOPIC_CONFIG: i8 = 1;
const DEFAULT_CONFIG: i8 = 5;

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
                        result.with_configs(Some(effective_configs(broker, &created.configs)))
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
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    crate::storage::LogConfig::KEYS
        .iter()
        .map(|key| {
            let (value, source) = match overrides.get(*key) {
                Some(value) => (value.clone(), TOPIC_CONFIG),
                None => (
                    broker.config.log_defaults.get(key).unwrap_or_default(),
                    DEFAULT_CONFIG,
                ),
            };
            CreatableTopicConfigs::default()
                .with_name(str_bytes(key))
                .with_value(Some(str_bytes(&value)))
                .with_config_source(source)
        })
        .collect()
}
