//! AlterConfigs (legacy): replaces every override of a topic with the given set.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::describe_configs::RESOURCE_TOPIC;
use super::str_bytes;
use crate::broker::{ApiError, Broker};

pub async fn handle(broker: &Broker, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for resource in request.resources {
        responses.push(alter_one(broker, resource, request.validate_only).await);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

async fn alter_one(
    broker: &Broker,
    resource: AlterConfigsResource,
    validate_only: bool,
) -> AlterConfigsResourceResponse {
    let response = AlterConfigsResourceResponse::default()
        .with_resource_type(resource.resource_type)
        .with_resource_name(resource.resource_name.clone());
    let result = if resource.resource_type != RESOURCE_TOPIC {
        Err(ApiError::new(
            ResponseError::InvalidRequest,
            "only topic configs can be altered at run time",
        ))
    } else {
        let replacement: BTreeMap<String, String> = resource
            .configs
            .iter()
            .filter_map(|config| {
                config
                    .value
                    .as_ref()
                    .map(|value| (config.name.to_string(), value.to_string()))
            })
            .collect();
        broker
            .alter_topic_configs(
                resource.resource_name.as_str(),
                |configs| {
                    *configs = replacement;
                    Ok(())
                },
                validate_only,
            )
            .await
    };
    match result {
        Ok(()) => response,
        Err(error) => response
            .with_error_code(error.code.code())
            .with_error_message(Some(str_bytes(&error.message))),
    }
}
