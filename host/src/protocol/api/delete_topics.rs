//! DeleteTopics, by name (v1-5) or by name or id (v6).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::{str_bytes, topic_name};
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let wanted: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|topic| (topic.name, topic.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|name| (Some(name), uuid::Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::new();
    for (name, topic_id) in wanted {
        responses.push(delete_one(broker, (name, topic_id)).await);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

async fn delete_one(
    broker: &Broker,
    (name, topic_id): (Option<TopicName>, uuid::Uuid),
) -> DeletableTopicResult {
    let name = match name {
        Some(name) => Some(name.0.to_string()),
        None => broker.topic_by_id(topic_id).map(|topic| topic.name),
    };
    let result = DeletableTopicResult::default().with_topic_id(topic_id);
    let Some(name) = name else {
        return result.with_error_code(ResponseError::UnknownTopicId.code());
    };
    match broker.delete_topic(&name).await {
        Ok(deleted) => result
            .with_name(Some(topic_name(&name)))
            .with_topic_id(deleted.id),
        Err(error) => result
            .with_name(Some(topic_name(&name)))
            .with_error_code(error.code.code())
            .with_error_message(Some(str_bytes(&error.message))),
    }
}
