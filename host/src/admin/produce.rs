//! `POST /v1/topics/{topic}/records`: produce over HTTP.
//!
//! ```json
//! {"records": [{"key": "k", "value": "v", "headers": {"h": "x"}, "partition": 0}]}
//! ```
//!
//! Records without a `partition` are placed by the topic's partitioner plugin, all keys in one
//! call. Each partition's records then go through [`Partition::produce`], the path Kafka's
//! Produce takes, with acks=-1 and the topic's acks plugin deciding. The answer lists
//! `{"partition", "offset"}` in record order. A missing topic is 404 (UNKNOWN_TOPIC_OR_PARTITION):
//! as Kafka's Produce, this never creates a topic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use super::{AdminError, json_response, now_ms};
use crate::broker::Broker;
use crate::broker::topics::validate_topic_name;
use crate::policy::PolicyKind;
use crate::replication::Partition;
use crate::replication::partition::{ProduceAcks, ProduceError};
use crate::storage::Compression;
use crate::storage::records::{ProducerRecord, encode_producer_batch};

/// How long a produce waits for the acks policy (Kafka's producer `request.timeout.ms`).
pub const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
/// The acks an HTTP produce asks for: every in-sync replica.
const ACKS_ALL: i16 = -1;
/// Bytes a record adds to a batch beyond its key, value and header bytes (length varints,
/// attributes, timestamp and offset deltas), generously: used to keep batches under
/// `max.message.bytes`.
const RECORD_OVERHEAD_BYTES: usize = 32;
/// A batch's header (Kafka's `RECORD_BATCH_OVERHEAD`).
const BATCH_OVERHEAD_BYTES: usize = 61;
/// Bytes a header adds beyond its key and value (two length varints, generously).
const HEADER_OVERHEAD_BYTES: usize = 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProduceBody {
    records: Vec<HttpRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpRecord {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    headers: Option<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    partition: Option<i64>,
}

impl HttpRecord {
    fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .flatten()
            .map(|(key, value)| {
                key.len() + value.as_ref().map_or(0, String::len) + HEADER_OVERHEAD_BYTES
            })
            .sum();
        self.key.as_ref().map_or(0, String::len)
            + self.value.as_ref().map_or(0, String::len)
            + headers
            + RECORD_OVERHEAD_BYTES
    }
}

#[derive(Debug, Serialize)]
struct Placed {
    partition: u32,
    /// None for a record whose partition refused the produce.
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<i16>,
}

#[derive(Debug, Serialize)]
struct Offsets {
    offsets: Vec<Placed>,
}

/// A failure after some partitions may have taken their records: the error and every record's
/// outcome, so the client knows what was written.
#[derive(Debug, Serialize)]
struct PartialFailure {
    error: String,
    error_code: i16,
    offsets: Vec<Placed>,
}

pub async fn handle(
    State(broker): State<Arc<Broker>>,
    topic: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let arrived = Instant::now();
    let Path(topic) = topic.map_err(|r| AdminError::rejected(r.status(), r.body_text()))?;
    let body = body.map_err(|r| AdminError::rejected(r.status(), r.body_text()))?;
    let request: ProduceBody = serde_json::from_slice(&body).map_err(|error| {
        AdminError::bad_request(format!(
            "the body is not {{\"records\": [{{\"key\": ..., \"value\": ..., \"headers\": {{...}}, \"partition\": n}}]}}: {error}"
        ))
    })?;
    if request.records.is_empty() {
        return Err(AdminError::bad_request("`records` is empty"));
    }
    // A name no topic can have is the caller's mistake (400), told apart from a missing topic.
    validate_topic_name(&topic).map_err(|message| {
        AdminError::kafka(ResponseError::InvalidTopicException.code(), message)
    })?;
    let topic = broker.existing_topic(&topic)?;
    let partition_count = topic.partitions;
    for (index, record) in request.records.iter().enumerate() {
        if let Some(partition) = record.partition
            && !(0..i64::from(partition_count)).contains(&partition)
        {
            return Err(AdminError::kafka(
                ResponseError::UnknownTopicOrPartition.code(),
                format!(
                    "record {index}: partition {partition} does not exist: topic '{}' has {partition_count} partition(s)",
                    topic.name
                ),
            ));
        }
    }

    // Placement: one partitioner call for every record that names no partition.
    let unplaced: Vec<usize> = (0..request.records.len())
        .filter(|&index| request.records[index].partition.is_none())
        .collect();
    let mut partitions: Vec<u32> = request
        .records
        .iter()
        .map(|record| record.partition.unwrap_or(0) as u32)
        .collect();
    if !unplaced.is_empty() {
        let keys: Vec<Option<&[u8]>> = unplaced
            .iter()
            .map(|&index| request.records[index].key.as_deref().map(str::as_bytes))
            .collect();
        let value_sizes: Vec<u32> = unplaced
            .iter()
            .map(|&index| {
                request.records[index]
                    .value
                    .as_ref()
                    .map_or(0, |value| value.len().min(u32::MAX as usize) as u32)
            })
            .collect();
        let chosen = broker.policies.partition_batch(
            Broker::policy_binding(&topic, PolicyKind::Partitioner),
            &topic.name,
            &keys,
            &value_sizes,
            partition_count,
        );
        for (&index, partition) in unplaced.iter().zip(chosen) {
            partitions[index] = partition;
        }
    }
    let mut by_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (index, &partition) in partitions.iter().enumerate() {
        by_partition.entry(partition).or_default().push(index);
    }

    let terms = ProduceAcks {
        leader_id: broker.config.node_id,
        acks: ACKS_ALL,
        min_insync_replicas: broker.min_insync_replicas(&topic),
        timeout: PRODUCE_TIMEOUT,
        arrived,
    };
    let acks_binding = Broker::policy_binding(&topic, PolicyKind::Acks);
    let timestamp = now_ms();
    let mut outcomes: Vec<Option<Result<u64, ProduceError>>> =
        (0..request.records.len()).map(|_| None).collect();
    let mut first_error: Option<(u32, ProduceError)> = None;
    for (partition_index, indices) in by_partition {
        // Led elsewhere, not hosted here, or its log out of service: every record for it
        // fails alike.
        let writable = broker
            .led_partition(&topic.name, partition_index as i32)
            .map_err(|code| {
                ProduceError::kafka(
                    code,
                    format!("partition {partition_index} is not led by this broker"),
                )
            })
            .and_then(|partition| {
                let max_batch_bytes = partition.log()?.config().max_message_bytes;
                Ok((partition, max_batch_bytes))
            });
        let (partition, max_batch_bytes) = match writable {
            Ok(writable) => writable,
            Err(error) => {
                for &index in &indices {
                    outcomes[index] = Some(Err(error.clone()));
                }
                first_error.get_or_insert((partition_index, error));
                continue;
            }
        };
        for chunk in chunks(&request.records, &indices, max_batch_bytes) {
            let outcome = produce_chunk(
                &broker,
                &partition,
                &request.records,
                chunk,
                timestamp,
                &terms,
                acks_binding,
            )
            .await;
            match outcome {
                Ok(base_offset) => {
                    for (position, &index) in chunk.iter().enumerate() {
                        outcomes[index] = Some(Ok(base_offset + position as u64));
                    }
                }
                Err(error) => {
                    for &index in chunk {
                        outcomes[index] = Some(Err(error.clone()));
                    }
                    first_error.get_or_insert((partition_index, error));
                }
            }
        }
    }
    let offsets: Vec<Placed> = outcomes
        .into_iter()
        .zip(&partitions)
        .map(|(outcome, &partition)| match outcome {
            Some(Ok(offset)) => Placed {
                partition,
                offset: Some(offset),
                error: None,
                error_code: None,
            },
            Some(Err(error)) => Placed {
                partition,
                offset: None,
                error: Some(error.message),
                error_code: Some(error.code),
            },
            None => Placed {
                partition,
                offset: None,
                error: Some("not sent".to_string()),
                error_code: None,
            },
        })
        .collect();
    match first_error {
        None => Ok(json_response(StatusCode::OK, &Offsets { offsets })),
        Some((partition, error)) => Ok(json_response(
            super::status_of_kafka_code(error.code),
            &PartialFailure {
                error: format!(
                    "partition {partition} of topic '{}': {}",
                    topic.name, error.message
                ),
                error_code: error.code,
                offsets,
            },
        )),
    }
}

/// The records of one partition (`indices`, in order) cut into runs whose batch stays under
/// `max_batch_bytes`; a record too large on its own is a run of one, which the log refuses.
fn chunks<'a>(
    records: &[HttpRecord],
    indices: &'a [usize],
    max_batch_bytes: usize,
) -> Vec<&'a [usize]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = BATCH_OVERHEAD_BYTES;
    for (position, &index) in indices.iter().enumerate() {
        let size = records[index].size();
        if position > start && bytes + size > max_batch_bytes {
            runs.push(&indices[start..position]);
            start = position;
            bytes = BATCH_OVERHEAD_BYTES;
        }
        bytes += size;
    }
    if start < indices.len() {
        runs.push(&indices[start..]);
    }
    runs
}

/// A record header as a batch carries it.
type Header<'a> = (&'a str, Option<&'a [u8]>);

/// Encodes `chunk` as one batch and produces it; the base offset of its first record.
async fn produce_chunk(
    broker: &Broker,
    partition: &Partition,
    records: &[HttpRecord],
    chunk: &[usize],
    timestamp: i64,
    terms: &ProduceAcks,
    acks_binding: Option<&str>,
) -> Result<u64, ProduceError> {
    let headers: Vec<Vec<Header<'_>>> = chunk
        .iter()
        .map(|&index| {
            records[index]
                .headers
                .iter()
                .flatten()
                .map(|(key, value)| (key.as_str(), value.as_deref().map(str::as_bytes)))
                .collect()
        })
        .collect();
    let producer_records: Vec<ProducerRecord<'_>> = chunk
        .iter()
        .zip(&headers)
        .map(|(&index, headers)| ProducerRecord {
            key: records[index].key.as_deref().map(str::as_bytes),
            value: records[index].value.as_deref().map(str::as_bytes),
            headers,
            timestamp,
        })
        .collect();
    let batch = encode_producer_batch(&producer_records, Compression::None).map_err(|message| {
        ProduceError::kafka(
            ResponseError::InvalidRecord,
            format!("cannot build a record batch: {message}"),
        )
    })?;
    let result = partition
        .produce(&batch, terms, |question| {
            broker.policies.decide(acks_binding, question)
        })
        .await?;
    Ok(result.base_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value_len: usize) -> HttpRecord {
        HttpRecord {
            key: None,
            value: Some("x".repeat(value_len)),
            headers: None,
            partition: None,
        }
    }

    #[test]
    fn batches_stay_under_the_message_size_limit() {
        let records: Vec<HttpRecord> = (0..10).map(|_| record(100)).collect();
        let indices: Vec<usize> = (0..10).collect();
        assert_eq!(chunks(&records, &indices, 1 << 20), vec![&indices[..]]);
        let runs = chunks(&records, &indices, 400);
        assert!(runs.len() > 1);
        assert_eq!(runs.concat(), indices);
        for run in runs {
            let bytes: usize = run.iter().map(|&i| records[i].size()).sum();
            assert!(bytes + BATCH_OVERHEAD_BYTES <= 400, "{run:?}");
        }
        // A record larger than the limit goes alone (and the log refuses it).
        let big = vec![record(10), record(1000), record(10)];
        assert_eq!(chunks(&big, &[0, 1, 2], 400), vec![&[0][..], &[1], &[2]]);
    }

    #[test]
    fn records_parse_strictly() {
        let body: ProduceBody = serde_json::from_str(
            r#"{"records": [{"key": null, "value": "v"}, {"key": "k", "headers": {"h": "x"}, "partition": 2}]}"#,
        )
        .expect("valid");
        assert_eq!(body.records.len(), 2);
        assert_eq!(body.records[1].partition, Some(2));
        assert!(serde_json::from_str::<ProduceBody>(r#"{"records": [{"val": "v"}]}"#).is_err());
        assert!(serde_json::from_str::<ProduceBody>(r#"{"records": [{"key": 5}]}"#).is_err());
    }
}
