//! ListOffsets: earliest (-2), latest (-1, the high watermark), max timestamp (-3), earliest
//! local (-4), or the first offset at or after a timestamp.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub fn handle(broker: &Broker, version: i16, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .into_iter()
                .map(|wanted| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(wanted.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    let partition = match super::leader_partition(
                        broker,
                        topic.name.0.as_str(),
                        wanted.partition_index,
                        wanted.current_leader_epoch,
                    ) {
                        Ok(partition) => partition,
                        Err(error) => return response.with_error_code(error.code()),
                    };
                    let epoch = partition.leader_epoch();
                    let high_watermark = partition.high_watermark();
                    let log = match partition.log() {
                        Ok(log) => log,
                        Err(error) => {
                            return response.with_error_code(error.kafka_error_code().code());
                        }
                    };
                    let found = match wanted.timestamp {
                        LATEST => Ok(Some((high_watermark, -1))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
                        MAX_TIMESTAMP => log.max_timestamp_and_offset(),
                        timestamp if timestamp >= 0 => log.offset_for_timestamp(timestamp),
                        _ => return response.with_error_code(ResponseError::InvalidRequest.code()),
                    };
                    match found {
                        // Only committed records are visible to consumers.
                        Ok(Some((offset, timestamp))) if offset <= high_watermark => response
                            .with_offset(offset as i64)
                            .with_timestamp(timestamp)
                            // The field exists from v4; the codec refuses it below.
                            .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                        Ok(_) => response,
                        Err(error) => response.with_error_code(error.kafka_error_code().code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
