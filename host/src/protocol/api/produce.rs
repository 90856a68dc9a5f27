//! Produce: for each partition, find it (never creating a topic: only Metadata does), append as
//! leader with the acks policy deciding completion, answer with the base offset. acks=0 gets no
//! response at all.

use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use crate::broker::Broker;
use crate::policy::PolicyKind;
use crate::replication::partition::ProduceAcks;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: ProduceRequest,
) -> Option<ProduceResponse> {
    let arrived = Instant::now();
    if request.transactional_id.is_some() {
        tracing::warn!("transactional produce refused: transactions are not supported");
    }
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        // v13 names topics by id.
        let topic = if version >= 13 {
            broker.topic_by_id(topic_data.topic_id).ok_or_else(|| {
                crate::broker::ApiError::new(ResponseError::UnknownTopicId, "unknown topic id")
            })
        } else {
            broker.existing_topic(topic_data.name.0.as_str())
        };
        let mut partition_responses = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let response = PartitionProduceResponse::default().with_index(data.index);
            let topic = match &topic {
                Ok(topic) => topic,
                Err(error) => {
                    partition_responses.push(
                        response
                            .with_error_code(error.code.code())
                            .with_error_message(Some(super::str_bytes(&error.message))),
                    );
                    continue;
                }
            };
            if request.transactional_id.is_some() {
                partition_responses.push(
                    response
                        .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
                );
                continue;
            }
            let partition = match broker.led_partition(&topic.name, data.index) {
                Ok(partition) => partition,
                Err(error) => {
                    partition_responses.push(response.with_error_code(error.code()));
                    continue;
                }
            };
            let Some(records) = data.records else {
                partition_responses
                    .push(response.with_error_code(ResponseError::CorruptMessage.code()));
                continue;
            };
            let terms = ProduceAcks {
                leader_id: broker.config.node_id,
                acks: request.acks,
                min_insync_replicas: broker.min_insync_replicas(topic),
                timeout,
                arrived,
            };
            let binding = Broker::policy_binding(topic, PolicyKind::Acks);
            let outcome = partition
                .produce(&records, &terms, |question| {
                    broker.policies.decide(binding, question)
                })
                .await;
            partition_responses.push(match outcome {
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
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_topic_id(topic_data.topic_id)
                .with_partition_responses(partition_responses),
        );
    }
    (request.acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}
