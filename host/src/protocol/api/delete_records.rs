//! DeleteRecords: moves partitions' log start offsets forward (offset -1: to the high watermark).

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .into_iter()
                .map(|wanted| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(wanted.partition_index);
                    match broker.delete_records(
                        topic.name.0.as_str(),
                        wanted.partition_index,
                        wanted.offset,
                    ) {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark as i64),
                        Err(error) => result
                            .with_low_watermark(-1)
                            .with_error_code(error.code.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
