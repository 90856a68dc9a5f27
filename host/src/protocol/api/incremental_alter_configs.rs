//! IncrementalAlterConfigs (KIP-339): SET, DELETE, APPEND and SUBTRACT on a topic's overrides.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::describe_configs::RESOURCE_TOPIC;
use super::str_bytes;
use crate::broker::{ApiError, Broker};

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub async fn handle(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for resource in request.resources {
        responses.push(alter_one(broker, resource, request.validate_only).await);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
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
        broker.alter_topic_configs(
            resource.resource_name.as_str(),
            |configs| {
                for change in &resource.configs {
                    let name = change.name.to_string();
                    let value = change.value.as_ref().map(|value| value.to_string());
                    match (change.config_operation, value) {
                        (SET, Some(value)) => {
                            configs.insert(name, value);
                        }
                        (DELETE, _) => {
                            configs.remove(&name);
                        }
                        (APPEND | SUBTRACT, _) => {
                            // Every topic config Weir knows is a single value, not a list.
                            return Err(ApiError::new(
                                ResponseError::InvalidConfig,
                                format!("{name} is not a list config; APPEND and SUBTRACT do not apply"),
                            ));
                        }
                        (operation, value) => {
                            return Err(ApiError::new(
                                ResponseError::InvalidRequest,
                                format!("operation {operation} with value {value:?} on {name} is invalid"),
                            ));
                        }
                    }
                }
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
