//! Fetch: whole batches from each partition below the high watermark. Long-polls: when fewer
//! than `min_bytes` are available it waits, up to `max_wait_ms`, and wakes the moment any
//! requested partition gets an append. Fetch sessions (KIP-227) are declined (session id 0), so
//! every fetch is a full, sessionless one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::time::Instant;

use crate::broker::Broker;
use crate::replication::Partition;

/// Kafka's READ_COMMITTED isolation level.
const READ_COMMITTED: i8 = 1;

/// A requested partition, resolved once per request: the partition, or the error to answer.
type Target = Result<Arc<Partition>, ResponseError>;

pub async fn handle(broker: &Broker, version: i16, request: FetchRequest) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    // Resolve every requested partition once; a topic deleted meanwhile answers with an error.
    let targets: Vec<(usize, Target)> = request
        .topics
        .iter()
        .enumerate()
        .flat_map(|(topic_index, topic)| {
            let name = if version >= 13 {
                broker.topic_by_id(topic.topic_id).map(|record| record.name)
            } else {
                Some(topic.topic.0.to_string())
            };
            topic
                .partitions
                .iter()
                .map(move |fetch| {
                    let partition = match name.as_deref() {
                        // Consumers fetch from the leader (follower fetching is not served):
                        // another broker answers NOT_LEADER_OR_FOLLOWER.
                        Some(name) => broker.led_partition(name, fetch.partition),
                        None if version >= 13 => Err(ResponseError::UnknownTopicId),
                        None => Err(ResponseError::UnknownTopicOrPartition),
                    };
                    (topic_index, partition)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    loop {
        // Arm the wake-ups before reading: an append between the read and the wait still wakes us.
        let mut wakeups: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = targets
            .iter()
            .filter_map(|(_, partition)| partition.as_ref().ok())
            .map(|partition| {
                let mut notified = Box::pin(partition.data_arrived().notified());
                notified.as_mut().enable();
                notified
            })
            .collect();
        let (response, bytes, has_error) = read_once(version, &request, &targets);
        let now = Instant::now();
        if bytes >= request.min_bytes.max(0) as usize
            || has_error
            || now >= deadline
            || wakeups.is_empty()
        {
            return response;
        }
        let any_append = std::future::poll_fn(|context| {
            for wakeup in wakeups.iter_mut() {
                if wakeup.as_mut().poll(context).is_ready() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        });
        if tokio::time::timeout_at(deadline, any_append).await.is_err() {
            // The wait ran out: answer with whatever there is now.
            return read_once(version, &request, &targets).0;
        }
    }
}

fn read_once(
    version: i16,
    request: &FetchRequest,
    targets: &[(usize, Target)],
) -> (FetchResponse, usize, bool) {
    let mut remaining = if version >= 3 {
        request.max_bytes.max(0) as usize
    } else {
        usize::MAX
    };
    let mut total_bytes = 0;
    let mut has_error = false;
    let mut target = targets.iter();
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|fetch| {
                    let partition = target.next().map_or(
                        Err(ResponseError::UnknownTopicOrPartition),
                        |(_, partition)| partition.clone(),
                    );
                    let response = PartitionData::default().with_partition_index(fetch.partition);
                    let partition = match partition {
                        Ok(partition) => partition,
                        Err(code) => {
                            has_error = true;
                            return response
                                .with_error_code(code.code())
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1);
                        }
                    };
                    let epoch = partition.leader_epoch();
                    if let Some(error) =
                        super::leader_epoch_error(fetch.current_leader_epoch, epoch)
                    {
                        has_error = true;
                        return response.with_error_code(error.code());
                    }
                    let high_watermark = partition.high_watermark();
                    let limit = if total_bytes == 0 {
                        // The first batch found is returned even past max_bytes, so a consumer
                        // can never stall behind a batch larger than its fetch size.
                        fetch.partition_max_bytes.max(0) as usize
                    } else {
                        (fetch.partition_max_bytes.max(0) as usize).min(remaining)
                    };
                    let (log_start_offset, read) = match partition.log() {
                        Ok(log) => (
                            log.log_start_offset(),
                            if limit == 0 {
                                Ok(Bytes::new())
                            } else {
                                log.read_up_to(
                                    fetch.fetch_offset.max(0) as u64,
                                    limit,
                                    high_watermark,
                                )
                            },
                        ),
                        Err(error) => (0, Err(error)),
                    };
                    let read = if fetch.fetch_offset < 0 {
                        Err(ResponseError::OffsetOutOfRange.code())
                    } else {
                        read.map_err(|error| error.kafka_error_code().code())
                    };
                    let response = response
                        .with_high_watermark(high_watermark as i64)
                        .with_last_stable_offset(high_watermark as i64)
                        .with_log_start_offset(log_start_offset as i64)
                        .with_aborted_transactions(
                            (request.isolation_level == READ_COMMITTED).then(Vec::new),
                        );
                    match read {
                        Ok(records) => {
                            total_bytes += records.len();
                            remaining = remaining.saturating_sub(records.len());
                            response.with_records(Some(records))
                        }
                        Err(code) => {
                            has_error = true;
                            response.with_error_code(code)
                        }
                    }
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    (
        FetchResponse::default()
            .with_session_id(0)
            .with_responses(responses),
        total_bytes,
        has_error,
    )
}
