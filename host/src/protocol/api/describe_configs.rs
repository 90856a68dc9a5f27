//! DescribeConfigs for topics (resource type 2) and this broker (resource type 4).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::broker::{Broker, ConfigSource};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

pub fn handle(broker: &Broker, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|key| key.as_str() == name))
            };
            let entries: Vec<(String, String, ConfigSource)> = match resource.resource_type {
                RESOURCE_TOPIC => match broker.topic(resource.resource_name.as_str()) {
                    Some(topic) => broker
                        .effective_topic_configs(&topic)
                        .into_iter()
                        .map(|config| (config.name.to_string(), config.value, config.source))
                        .collect(),
                    None => {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(&format!(
                                "topic '{}' does not exist",
                                resource.resource_name.as_str()
                            ))));
                    }
                },
                RESOURCE_BROKER => {
                    let name = resource.resource_name.as_str();
                    if !name.is_empty() && name != broker.config.node_id.to_string() {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(&format!(
                                "this is broker {}, not {name}",
                                broker.config.node_id
                            ))));
                    }
                    crate::config::KEYS
                        .iter()
                        .map(|(key, _, _)| {
                            let source = if broker.config.is_default(key) {
                                ConfigSource::Default
                            } else {
                                ConfigSource::StaticBroker
                            };
                            (
                                key.to_string(),
                                broker.config.get(key).unwrap_or_default(),
                                source,
                            )
                        })
                        .collect()
                }
                other => {
                    return result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(&format!(
                            "resource type {other} is not supported"
                        ))));
                }
            };
            let configs = entries
                .into_iter()
                .filter(|(name, _, _)| wanted(name))
                .map(|(name, value, source)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(&name))
                        .with_value(Some(str_bytes(&value)))
                        .with_config_source(source as i8)
                        .with_read_only(resource.resource_type == RESOURCE_BROKER)
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
