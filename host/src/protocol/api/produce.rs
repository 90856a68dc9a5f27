//! Produce: for each partition, find it (auto-creating the topic if allowed), append as leader,
//! answer with the base offset. acks=0 gets no response at all.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use crate::broker::Broker;

pub fn handle(broker: &Broker, version: i16, request: ProduceRequest) -> Option<ProduceResponse> {
    if request.transactional_id.is_some() {
        tracing::warn!("transactional produce refused: transactions are not supported");
    }
    let responses = request
        .topic_data
        .into_iter()
        .map(|topic_data| {
            // v13 names topics by id.
            let topic = if version >= 13 {
                broker.topic_by_id(topic_data.topic_id).ok_or_else(|| {
                    crate::broker::ApiError::new(ResponseError::UnknownTopicId, "unknown topic id")
                })
            } else {
                broker.topic_or_auto_create(topic_data.name.0.as_str(), true)
            };
            let partition_responses = topic_data
                .partition_data
                .into_iter()
                .map(|data| {
                    let response = PartitionProduceResponse::default().with_index(data.index);
                    let topic = match &topic {
                        Ok(topic) => topic,
                        Err(error) => return response.with_error_code(error.code.code()).with_error_message(Some(super::str_bytes(&error.message))),
                    };
                    if request.transactional_id.is_some() {
                        return response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
                    }
                    let Some(partition) = broker.partition(&topic.name, data.index) else {
                        return response.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let Some(records) = data.records else {
                        return response.with_error_code(ResponseError::CorruptMessage.code());
                    };
                    let min_insync_replicas = broker.min_insync_replicas(topic);
                    match partition.append_as_leader(&records, request.acks, min_insync_replicas) {
                        Ok(result) => response
                            .with_base_offset(result.base_offset as i64)
                            .with_log_start_offset(result.log_start_offset as i64)
                            .with_log_append_time_ms(-1),
                        Err(error) => {
                            tracing::debug!(partition = %partition.topic_partition, code = error.code, message = %error.message, "produce refused");
                            response
                                .with_error_code(error.code)
                                .with_base_offset(-1)
                                .with_log_start_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_error_message(Some(super::str_bytes(&error.message)))
                        }
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_topic_id(topic_data.topic_id)
                .with_partition_responses(partition_responses)
        })
        .collect();
    (request.acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}
