//! `weir consume`: kafka-console-consumer.sh. Finds the start offset of each partition
//! (ListOffsets, or `--offset`), then long-polls Fetch from each partition's leader and prints
//! every record, one per line, until `--max-messages` or `--timeout-ms` without a record.
//! With `--group G` it starts from G's committed offsets (where there are none, from the start
//! `--from-beginning` or the end, as `auto.offset.reset` would) and commits its position after
//! every fetch that printed records and on exit, as a standalone consumer (see `groups`), so the
//! next `weir consume --group G` continues where this one stopped.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::TimestampType;
use tokio::time::Instant;
use uuid::Uuid;

use super::client::Cluster;
use super::topics::DEFAULT_BOOTSTRAP_SERVER;
use super::{CliError, find_topic, parse_key_value};
use crate::storage::BatchHeader;
use crate::storage::records::{Record, decode_records};

/// How long a Fetch waits at the broker for data (the brief long poll of Kafka's consumer).
pub const FETCH_MAX_WAIT_MS: u64 = 500;
/// Bytes one Fetch may return in all (Kafka's `fetch.max.bytes`).
const FETCH_MAX_BYTES: i32 = 50 * 1024 * 1024;
/// Bytes one Fetch may return per partition (Kafka's `max.partition.fetch.bytes`).
const PARTITION_FETCH_MAX_BYTES: i32 = 1024 * 1024;
/// Fetch v13 and later name topics by id; a topic without a known id uses v12 at most.
const FETCH_BY_NAME_VERSION_MAX: i16 = 12;

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// The broker(s) to connect to: `host:port[,host:port...]`.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_BOOTSTRAP_SERVER)]
    pub bootstrap_server: String,
    /// The topic to read.
    #[arg(long)]
    pub topic: String,
    /// Start at the earliest offset instead of the end.
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Read only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Where to start in --partition: an offset, `earliest` or `latest`.
    #[arg(long, requires = "partition", conflicts_with = "group")]
    pub offset: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Stop after this long without a record.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Output options, as kafka-console-consumer.sh's: print.key, print.value, print.offset,
    /// print.partition, print.timestamp (true/false), key.separator, line.separator.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// The consumer group whose committed offsets to start from and commit to.
    #[arg(long)]
    pub group: Option<String>,
}

/// Where consumption starts in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartOffset {
    Earliest,
    Latest,
    At(i64),
}

impl StartOffset {
    fn parse(text: &str) -> Result<StartOffset, CliError> {
        match text {
            "earliest" => Ok(StartOffset::Earliest),
            "latest" => Ok(StartOffset::Latest),
            number => number
                .parse::<i64>()
                .ok()
                .filter(|offset| *offset >= 0)
                .map(StartOffset::At)
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "--offset must be a non-negative offset, 'earliest' or 'latest', not '{text}'"
                    ))
                }),
        }
    }
}

/// How each record is printed: kafka-console-consumer.sh's DefaultMessageFormatter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFormat {
    pub print_timestamp: bool,
    pub print_partition: bool,
    pub print_offset: bool,
    pub print_key: bool,
    pub print_value: bool,
    pub key_separator: Vec<u8>,
    pub line_separator: Vec<u8>,
}

impl Default for RecordFormat {
    fn default() -> Self {
        RecordFormat {
            print_timestamp: false,
            print_partition: false,
            print_offset: false,
            print_key: false,
            print_value: true,
            key_separator: b"\t".to_vec(),
            line_separator: b"\n".to_vec(),
        }
    }
}

impl RecordFormat {
    /// Reads `--property key=value` flags.
    pub fn from_properties(properties: &[String]) -> Result<RecordFormat, CliError> {
        let mut format = RecordFormat::default();
        for property in properties {
            let (key, value) = parse_key_value("--property", property)?;
            let flag = || match value.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(CliError::Usage(format!(
                    "--property {key} expects true or false, not '{value}'"
                ))),
            };
            match key.as_str() {
                "print.timestamp" => format.print_timestamp = flag()?,
                "print.partition" => format.print_partition = flag()?,
                "print.offset" => format.print_offset = flag()?,
                "print.key" => format.print_key = flag()?,
                "print.value" => format.print_value = flag()?,
                "key.separator" => format.key_separator = value.into_bytes(),
                "line.separator" => format.line_separator = value.into_bytes(),
                _ => {
                    return Err(CliError::Usage(format!(
                        "unknown --property '{key}' (known: print.key, print.value, print.offset, \
                         print.partition, print.timestamp, key.separator, line.separator)"
                    )));
                }
            }
        }
        Ok(format)
    }

    /// Writes one record: the chosen fields separated by `key.separator`, then `line.separator`.
    /// A null key or value prints as `null`, as Kafka's formatter prints it.
    pub fn write(
        &self,
        out: &mut impl Write,
        partition: i32,
        record: &Record,
    ) -> std::io::Result<()> {
        let mut fields: Vec<Vec<u8>> = Vec::with_capacity(5);
        if self.print_timestamp {
            let kind = match record.timestamp_type {
                TimestampType::Creation => "CreateTime",
                TimestampType::LogAppend => "LogAppendTime",
            };
            fields.push(format!("{kind}:{}", record.timestamp).into_bytes());
        }
        if self.print_partition {
            fields.push(format!("Partition:{partition}").into_bytes());
        }
        if self.print_offset {
            fields.push(format!("Offset:{}", record.offset).into_bytes());
        }
        let or_null = |bytes: &Option<bytes::Bytes>| {
            bytes
                .as_ref()
                .map_or_else(|| b"null".to_vec(), |bytes| bytes.to_vec())
        };
        if self.print_key {
            fields.push(or_null(&record.key));
        }
        if self.print_value {
            fields.push(or_null(&record.value));
        }
        out.write_all(&fields.join(&self.key_separator[..]))?;
        out.write_all(&self.line_separator)
    }
}

/// One partition being consumed.
#[derive(Debug)]
struct PartitionCursor {
    leader: i32,
    /// The next offset to print.
    position: i64,
}

/// The topic being consumed, as Fetch and ListOffsets name it.
#[derive(Debug)]
struct TopicTarget {
    name: String,
    topic_id: Uuid,
    start: StartOffset,
}

pub async fn run(args: ConsumeArgs) -> Result<(), CliError> {
    let format = RecordFormat::from_properties(&args.properties)?;
    let start = match (&args.offset, args.from_beginning) {
        (Some(offset), _) => StartOffset::parse(offset)?,
        (None, true) => StartOffset::Earliest,
        (None, false) => StartOffset::Latest,
    };
    let mut cluster = Cluster::new(super::Client::bootstrap(&args.bootstrap_server).await?);
    let metadata = cluster
        .metadata(Some(&[args.topic.as_str()]), false)
        .await?;
    let found = find_topic(&metadata, &args.topic)?;
    let target = TopicTarget {
        name: args.topic.clone(),
        topic_id: found.topic_id,
        start,
    };
    let mut cursors: BTreeMap<i32, PartitionCursor> = found
        .partitions
        .iter()
        .filter(|partition| {
            args.partition
                .is_none_or(|wanted| wanted == partition.partition_index)
        })
        .map(|partition| {
            (
                partition.partition_index,
                PartitionCursor {
                    leader: partition.leader_id.0,
                    position: -1,
                },
            )
        })
        .collect();
    if let Some(partition) = args.partition
        && cursors.is_empty()
    {
        return Err(CliError::Usage(format!(
            "partition {partition} does not exist: topic '{}' has {} partition(s)",
            args.topic,
            found.partitions.len()
        )));
    }
    let partitions: Vec<i32> = cursors.keys().copied().collect();
    // With a group: its committed offsets, and a connection to its coordinator to commit on.
    let mut group = match &args.group {
        Some(name) => {
            let mut coordinator = super::groups::coordinator(&args.bootstrap_server, name).await?;
            let committed = super::groups::fetch_committed(
                &mut coordinator,
                name,
                Some((&args.topic, &partitions)),
            )
            .await?
            .remove(&args.topic)
            .unwrap_or_default();
            Some(GroupCommits {
                name: name.clone(),
                coordinator,
                committed,
            })
        }
        None => None,
    };
    let committed = group
        .as_ref()
        .map(|group| group.committed.clone())
        .unwrap_or_default();
    for (partition, offset) in &committed {
        if let Some(cursor) = cursors.get_mut(partition) {
            cursor.position = *offset;
        }
    }
    let unpositioned: Vec<i32> = partitions
        .iter()
        .copied()
        .filter(|partition| !committed.contains_key(partition))
        .collect();
    seek(&mut cluster, &target, &mut cursors, &unpositioned, start).await?;

    let mut out = std::io::BufWriter::new(std::io::stdout());
    // Where each partition stands in what has reached standard output: only this is committed,
    // never a position past records still in a buffer that failed to flush.
    let positions = |cursors: &BTreeMap<i32, PartitionCursor>| -> BTreeMap<i32, i64> {
        cursors
            .iter()
            .map(|(partition, cursor)| (*partition, cursor.position))
            .collect()
    };
    let mut delivered = positions(&cursors);
    let mut consumed = 0u64;
    let idle_timeout = args.timeout_ms.map(Duration::from_millis);
    let mut idle_deadline = idle_timeout.map(|timeout| Instant::now() + timeout);
    let outcome = loop {
        if args.max_messages.is_some_and(|max| consumed >= max) {
            break Ok(());
        }
        let max_wait = match idle_deadline {
            Some(deadline) => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break Ok(());
                }
                remaining.min(Duration::from_millis(FETCH_MAX_WAIT_MS))
            }
            None => Duration::from_millis(FETCH_MAX_WAIT_MS),
        };
        let remaining = args.max_messages.map(|max| max - consumed);
        let printed = match fetch_once(
            &mut cluster,
            &target,
            &mut cursors,
            max_wait,
            remaining,
            &format,
            &mut out,
        )
        .await
        {
            Ok(printed) => printed,
            Err(error) => break Err(error),
        };
        if let Err(error) = out.flush() {
            break Err(CliError::Stdout(error));
        }
        delivered = positions(&cursors);
        // Printed records are committed only once they are out (at least once, not at most).
        if printed > 0
            && let Some(group) = &mut group
            && let Err(error) = group.commit(&args.topic, &delivered).await
        {
            break Err(error);
        }
        consumed += printed;
        if printed > 0 {
            idle_deadline = idle_timeout.map(|timeout| Instant::now() + timeout);
        }
    };
    // A reader that went away (`| head`) ends consumption; it is not a failure.
    let outcome = match outcome {
        Err(CliError::Stdout(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    };
    // The final position, also of partitions that printed nothing (a start at the end is
    // remembered, as a Kafka consumer's commit on close remembers it).
    let committed = match (&mut group, &outcome) {
        (Some(group), Ok(())) => group.commit(&args.topic, &delivered).await,
        _ => Ok(()),
    };
    eprintln!("Processed a total of {consumed} messages");
    outcome.and(committed)
}

/// A consumer group's offsets as this run last committed them, and where to commit.
#[derive(Debug)]
struct GroupCommits {
    name: String,
    coordinator: super::Client,
    /// partition -> committed offset.
    committed: BTreeMap<i32, i64>,
}

impl GroupCommits {
    /// Commits the positions (partition -> next offset) that moved since the last commit.
    async fn commit(
        &mut self,
        topic: &str,
        positions: &BTreeMap<i32, i64>,
    ) -> Result<(), CliError> {
        let moved: BTreeMap<i32, i64> = positions
            .iter()
            .filter(|(partition, position)| {
                **position >= 0 && self.committed.get(partition) != Some(position)
            })
            .map(|(partition, position)| (*partition, *position))
            .collect();
        super::groups::commit(&mut self.coordinator, &self.name, topic, &moved).await?;
        self.committed.extend(moved);
        Ok(())
    }
}

/// Sets the position of `partitions` from ListOffsets (earliest or latest) or an explicit offset.
async fn seek(
    cluster: &mut Cluster,
    target: &TopicTarget,
    cursors: &mut BTreeMap<i32, PartitionCursor>,
    partitions: &[i32],
    start: StartOffset,
) -> Result<(), CliError> {
    let timestamp = match start {
        StartOffset::At(offset) => {
            for partition in partitions {
                if let Some(cursor) = cursors.get_mut(partition) {
                    cursor.position = offset;
                }
            }
            return Ok(());
        }
        StartOffset::Earliest => super::client::EARLIEST_TIMESTAMP,
        StartOffset::Latest => super::client::LATEST_TIMESTAMP,
    };
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for partition in partitions {
        if let Some(cursor) = cursors.get(partition) {
            by_leader.entry(cursor.leader).or_default().push(*partition);
        }
    }
    for (leader, partitions) in by_leader {
        require_leader(target, leader, &partitions)?;
        let client = cluster.node(leader).await?;
        let version = client.version(ApiKey::ListOffsets)?;
        let request = super::client::list_offsets_request(
            [(target.name.as_str(), &partitions[..])],
            timestamp,
        );
        let response = client.send(version, &request).await?;
        for topic in &response.topics {
            for answer in &topic.partitions {
                if answer.error_code != 0 {
                    return Err(partition_error(
                        target,
                        answer.partition_index,
                        answer.error_code,
                        "cannot find the start offset of",
                    ));
                }
                if let Some(cursor) = cursors.get_mut(&answer.partition_index) {
                    cursor.position = answer.offset;
                }
            }
        }
    }
    Ok(())
}

/// One Fetch per leader; prints what arrived (at most `remaining` records) and returns how many.
async fn fetch_once(
    cluster: &mut Cluster,
    target: &TopicTarget,
    cursors: &mut BTreeMap<i32, PartitionCursor>,
    max_wait: Duration,
    mut remaining: Option<u64>,
    format: &RecordFormat,
    out: &mut impl Write,
) -> Result<u64, CliError> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (partition, cursor) in cursors.iter() {
        by_leader.entry(cursor.leader).or_default().push(*partition);
    }
    let mut printed = 0;
    for (leader, partitions) in by_leader {
        require_leader(target, leader, &partitions)?;
        let client = cluster.node(leader).await?;
        let version = if target.topic_id.is_nil() {
            client.version_up_to(ApiKey::Fetch, FETCH_BY_NAME_VERSION_MAX)?
        } else {
            client.version(ApiKey::Fetch)?
        };
        let request = FetchRequest::default()
            .with_max_wait_ms(max_wait.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_MAX_BYTES)
            // Sessionless (KIP-227): every fetch names all its partitions.
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic_name(&target.name))
                    .with_topic_id(target.topic_id)
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|partition| {
                                FetchPartition::default()
                                    .with_partition(*partition)
                                    .with_fetch_offset(
                                        cursors.get(partition).map_or(0, |cursor| cursor.position),
                                    )
                                    .with_partition_max_bytes(PARTITION_FETCH_MAX_BYTES)
                            })
                            .collect(),
                    ),
            ]);
        let response = client.send(version, &request).await?;
        if response.error_code != 0 {
            return Err(CliError::kafka(
                format!("cannot fetch from topic '{}'", target.name),
                response.error_code,
                None,
            ));
        }
        let mut reset = Vec::new();
        for topic in &response.responses {
            for data in &topic.partitions {
                let partition = data.partition_index;
                match ResponseError::try_from_code(data.error_code) {
                    None => {}
                    // The position fell out of the log (retention) or past its end: start over
                    // where the consumer was told to start, as auto.offset.reset does.
                    Some(ResponseError::OffsetOutOfRange)
                        if !matches!(target.start, StartOffset::At(_)) =>
                    {
                        reset.push(partition);
                        continue;
                    }
                    Some(
                        ResponseError::UnknownTopicOrPartition | ResponseError::UnknownTopicId,
                    ) => {
                        return Err(CliError::TopicNotFound(target.name.clone()));
                    }
                    Some(_) => {
                        return Err(partition_error(
                            target,
                            partition,
                            data.error_code,
                            "cannot fetch",
                        ));
                    }
                }
                let Some(cursor) = cursors.get_mut(&partition) else {
                    continue;
                };
                let records = data.records.as_deref().unwrap_or_default();
                let count = print_records(records, partition, cursor, remaining, format, out)?;
                printed += count;
                remaining = remaining.map(|remaining| remaining - count);
            }
        }
        if !reset.is_empty() {
            eprintln!(
                "weir consume: offset out of range in partition(s) {reset:?} of topic '{}'; resetting",
                target.name
            );
            seek(cluster, target, cursors, &reset, target.start).await?;
        }
        if remaining == Some(0) {
            break;
        }
    }
    Ok(printed)
}

/// Prints the records of a fetched record set from the cursor's position on (a fetch may start
/// inside a batch, and may end with a partial batch, which is fetched again next time), and
/// moves the cursor past every whole batch. Control batches (transaction markers) print nothing.
fn print_records(
    records: &[u8],
    partition: i32,
    cursor: &mut PartitionCursor,
    remaining: Option<u64>,
    format: &RecordFormat,
    out: &mut impl Write,
) -> Result<u64, CliError> {
    let mut printed = 0u64;
    let mut rest = records;
    while let Some(header) = BatchHeader::parse(rest) {
        let size = header.total_size();
        if size > rest.len() {
            break;
        }
        let (batch, after) = rest.split_at(size);
        rest = after;
        if header.next_offset() <= cursor.position {
            continue;
        }
        if !header.is_control() {
            let decoded = decode_records(batch).map_err(|message| {
                CliError::Client(super::ClientError::Protocol {
                    address: format!("partition {partition}"),
                    what: format!("record batch at offset {}", header.base_offset),
                    message,
                })
            })?;
            let from = cursor.position;
            for record in decoded.iter().filter(|record| record.offset >= from) {
                if remaining.is_some_and(|remaining| printed >= remaining) {
                    return Ok(printed);
                }
                format
                    .write(out, partition, record)
                    .map_err(CliError::Stdout)?;
                printed += 1;
                cursor.position = record.offset + 1;
            }
        }
        cursor.position = cursor.position.max(header.next_offset());
    }
    Ok(printed)
}

fn require_leader(target: &TopicTarget, leader: i32, partitions: &[i32]) -> Result<(), CliError> {
    if leader < 0 {
        return Err(CliError::kafka(
            format!(
                "partition(s) {partitions:?} of topic '{}' have no leader",
                target.name
            ),
            ResponseError::LeaderNotAvailable.code(),
            None,
        ));
    }
    Ok(())
}

fn partition_error(target: &TopicTarget, partition: i32, code: i16, action: &str) -> CliError {
    CliError::kafka(
        format!("{action} partition {partition} of topic '{}'", target.name),
        code,
        None,
    )
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Compression;
    use crate::storage::records::{ProducerRecord, encode_producer_batch};

    /// A batch as a broker returns it: the producer's batch with its base offset set.
    fn stored_batch(base_offset: i64, values: &[&str]) -> Vec<u8> {
        let records: Vec<ProducerRecord<'_>> = values
            .iter()
            .map(|value| ProducerRecord {
                key: Some(b"k"),
                value: Some(value.as_bytes()),
                headers: &[],
                timestamp: 5,
            })
            .collect();
        let mut batch = encode_producer_batch(&records, Compression::None).expect("batch");
        batch[..8].copy_from_slice(&base_offset.to_be_bytes());
        batch
    }

    #[test]
    fn prints_from_the_position_and_skips_a_trailing_partial_batch() {
        let mut records = stored_batch(10, &["a", "b", "c"]);
        records.extend(stored_batch(13, &["d"]));
        let partial = stored_batch(14, &["e"]);
        records.extend(&partial[..partial.len() - 1]);
        let mut cursor = PartitionCursor {
            leader: 1,
            position: 11,
        };
        let mut out = Vec::new();
        let printed = print_records(
            &records,
            0,
            &mut cursor,
            None,
            &RecordFormat::default(),
            &mut out,
        )
        .expect("print");
        assert_eq!(printed, 3);
        assert_eq!(out, b"b\nc\nd\n");
        assert_eq!(cursor.position, 14, "the partial batch is fetched again");
    }

    #[test]
    fn stops_at_the_remaining_count() {
        let records = stored_batch(0, &["a", "b", "c"]);
        let mut cursor = PartitionCursor {
            leader: 1,
            position: 0,
        };
        let mut out = Vec::new();
        let printed = print_records(
            &records,
            0,
            &mut cursor,
            Some(2),
            &RecordFormat::default(),
            &mut out,
        )
        .expect("print");
        assert_eq!(printed, 2);
        assert_eq!(out, b"a\nb\n");
        assert_eq!(cursor.position, 2);
    }

    #[test]
    fn properties_choose_the_fields_like_kafkas_formatter() {
        let format = RecordFormat::from_properties(&[
            "print.key=true".to_string(),
            "print.offset=true".to_string(),
            "print.partition=true".to_string(),
            "print.timestamp=true".to_string(),
        ])
        .expect("valid");
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 42,
            sequence: -1,
            timestamp: 1000,
            key: None,
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: Default::default(),
        };
        let mut out = Vec::new();
        format.write(&mut out, 3, &record).expect("write");
        assert_eq!(out, b"CreateTime:1000\tPartition:3\tOffset:42\tnull\tv\n");
        assert!(RecordFormat::from_properties(&["print.key=yes".to_string()]).is_err());
        assert!(RecordFormat::from_properties(&["print.everything=true".to_string()]).is_err());
    }

    #[test]
    fn start_offsets_parse() {
        assert_eq!(
            StartOffset::parse("earliest").expect("ok"),
            StartOffset::Earliest
        );
        assert_eq!(StartOffset::parse("7").expect("ok"), StartOffset::At(7));
        assert!(StartOffset::parse("-3").is_err());
        assert!(StartOffset::parse("soon").is_err());
    }
}
