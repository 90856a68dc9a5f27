//! CreatePartitions: grows topics.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for topic in request.topics {
        results.push(create_one(broker, topic, request.validate_only).await);
    }
    CreatePartitionsResponse::default().with_results(results)
}

async fn create_one(
    broker: &Broker,
    topic: CreatePartitionsTopic,
    validate_only: bool,
) -> CreatePartitionsTopicResult {
    let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
    if topic.assignments.is_some() {
        return result
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes(
                "manual replica assignment is not supported",
            )));
    }
    match broker
        .create_partitions(topic.name.0.as_str(), topic.count, validate_only)
        .await
    {
        Ok(()) => result,
        Err(error) => result
            .with_error_code(error.code.code())
            .with_error_message(Some(str_bytes(&error.message))),
    }
}
