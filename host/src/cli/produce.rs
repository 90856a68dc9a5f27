//! `weir produce`: kafka-console-producer.sh. Reads lines from standard input (optionally
//! `key<SEP>value`), batches them per partition and sends Produce requests to each partition's
//! leader. A batch goes out when it reaches [`BATCH_SIZE_BYTES`], after [`LINGER_MS`] without
//! filling, and at end of input.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use super::client::{Cluster, REQUEST_TIMEOUT_MS};
use super::topics::DEFAULT_BOOTSTRAP_SERVER;
use super::{CliError, find_topic};
use crate::storage::Compression;
use crate::storage::records::{ProducerRecord, encode_producer_batch};

/// Bytes of keys and values buffered before a send (Kafka's producer `batch.size`).
pub const BATCH_SIZE_BYTES: usize = 16 * 1024;
/// How long a started batch waits for more lines (Kafka's `linger.ms`, kept short so a person
/// typing sees each line go out at once).
pub const LINGER_MS: u64 = 10;
/// Lines read ahead of the sender; bounds memory when the broker is slower than standard input.
const LINES_QUEUED_MAX: usize = 1024;
/// Metadata attempts while a topic is being auto-created (LEADER_NOT_AVAILABLE meanwhile).
const METADATA_ATTEMPTS_MAX: u32 = 10;
/// Pause between those attempts (Kafka's `retry.backoff.ms`).
const METADATA_RETRY_BACKOFF_MS: u64 = 100;
/// Produce v13 names topics by id; a topic without a known id uses v12 at most.
const PRODUCE_BY_NAME_VERSION_MAX: i16 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionType {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<CompressionType> for Compression {
    fn from(value: CompressionType) -> Compression {
        match value {
            CompressionType::None => Compression::None,
            CompressionType::Gzip => Compression::Gzip,
            CompressionType::Snappy => Compression::Snappy,
            CompressionType::Lz4 => Compression::Lz4,
            CompressionType::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// The broker(s) to connect to: `host:port[,host:port...]`.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_BOOTSTRAP_SERVER)]
    pub bootstrap_server: String,
    /// The topic to write to.
    #[arg(long)]
    pub topic: String,
    /// Split each line at the first SEP into key and value (Kafka's parse.key + key.separator).
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Write every record to this partition instead of choosing one per key.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Compression codec of the batches.
    #[arg(long, value_enum, default_value = "none")]
    pub compression: CompressionType,
    /// Acknowledgements to wait for: -1 (or all) = every in-sync replica, 1 = the leader, 0 = none.
    #[arg(long, default_value = "-1", allow_hyphen_values = true, value_parser = parse_acks)]
    pub acks: i16,
}

fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(format!("'{text}' is not one of -1, all, 0, 1")),
    }
}

/// What the default partition choice remembers between records.
#[derive(Debug, Default)]
pub struct PartitionerState {
    /// The next round-robin position for records without a key.
    next_unkeyed: u32,
}

/// The partition for a record: Kafka's Java default for keyed records,
/// `toPositive(murmur2(key)) % partition_count`, so keys land where Java clients put them;
/// round-robin for records without a key. `partition_count` must be at least 1.
///
/// This is the one place the choice is made, so a partitioner plugin can replace it.
pub fn choose_partition(
    key: Option<&[u8]>,
    partition_count: i32,
    state: &mut PartitionerState,
) -> i32 {
    let partition_count = partition_count.max(1);
    match key {
        Some(key) => to_positive(murmur2(key)) % partition_count,
        None => {
            let position = state.next_unkeyed;
            state.next_unkeyed = state.next_unkeyed.wrapping_add(1);
            // As Kafka's RoundRobinPartitioner: a wrapped counter stays non-negative.
            to_positive(position as i32) % partition_count
        }
    }
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which overflows on i32::MIN).
fn to_positive(number: i32) -> i32 {
    number & 0x7fff_ffff
}

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with Kafka's seed, bit for bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    // Java mixes the length in as an int.
    let mut h = SEED ^ (length as u32);
    let mut words = data.chunks_exact(4);
    for word in words.by_ref() {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    // Java's switch falls through from case 3 to case 1.
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// One line waiting for its batch.
#[derive(Debug)]
struct PendingRecord {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    timestamp: i64,
}

/// The topic as the producer needs it: its id and each partition's leader.
#[derive(Debug)]
struct TopicTarget {
    name: String,
    topic_id: Uuid,
    leaders: HashMap<i32, i32>,
    partition_count: i32,
}

pub async fn run(args: ProduceArgs) -> Result<(), CliError> {
    let mut cluster = Cluster::new(super::Client::bootstrap(&args.bootstrap_server).await?);
    let target = topic_target(&mut cluster, &args.topic).await?;
    if let Some(partition) = args.partition
        && !(0..target.partition_count).contains(&partition)
    {
        return Err(CliError::Usage(format!(
            "partition {partition} does not exist: topic '{}' has {} partition(s)",
            target.name, target.partition_count
        )));
    }
    let separator = match args.key_separator.as_deref() {
        Some("") => {
            return Err(CliError::Usage(
                "--key-separator cannot be empty".to_string(),
            ));
        }
        other => other.map(|separator| separator.as_bytes().to_vec()),
    };
    let mut lines = spawn_line_reader();
    let mut pending: BTreeMap<i32, Vec<PendingRecord>> = BTreeMap::new();
    let mut pending_bytes = 0usize;
    let mut linger_deadline = Instant::now();
    let mut partitioner = PartitionerState::default();
    let mut line_number = 0u64;
    loop {
        let next = if pending.is_empty() {
            lines.recv().await
        } else {
            match tokio::time::timeout_at(linger_deadline, lines.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    send_pending(&mut cluster, &target, &args, &mut pending).await?;
                    pending_bytes = 0;
                    continue;
                }
            }
        };
        let line = match next {
            None => break,
            Some(Err(error)) => {
                send_pending(&mut cluster, &target, &args, &mut pending).await?;
                return Err(CliError::Stdin(error));
            }
            Some(Ok(line)) => line,
        };
        line_number += 1;
        let (key, value) = match &separator {
            None => (None, line),
            Some(separator) => match split_once(&line, separator) {
                Some((key, value)) => (Some(key.to_vec()), value.to_vec()),
                None => {
                    // Kafka's LineMessageReader refuses such a line; earlier lines still go out.
                    send_pending(&mut cluster, &target, &args, &mut pending).await?;
                    return Err(CliError::Usage(format!(
                        "line {line_number} has no key separator '{}'",
                        String::from_utf8_lossy(separator)
                    )));
                }
            },
        };
        let partition = args.partition.unwrap_or_else(|| {
            choose_partition(key.as_deref(), target.partition_count, &mut partitioner)
        });
        if pending.is_empty() {
            linger_deadline = Instant::now() + Duration::from_millis(LINGER_MS);
        }
        pending_bytes += key.as_ref().map_or(0, Vec::len) + value.len();
        pending.entry(partition).or_default().push(PendingRecord {
            key,
            value,
            timestamp: now_ms(),
        });
        if pending_bytes >= BATCH_SIZE_BYTES {
            send_pending(&mut cluster, &target, &args, &mut pending).await?;
            pending_bytes = 0;
        }
    }
    send_pending(&mut cluster, &target, &args, &mut pending).await
}

/// The topic's metadata, auto-creating it where the broker allows (as Kafka's producer does).
async fn topic_target(cluster: &mut Cluster, topic: &str) -> Result<TopicTarget, CliError> {
    let mut attempt = 1;
    loop {
        let metadata = cluster.metadata(Some(&[topic]), true).await?;
        let found = match find_topic(&metadata, topic) {
            Ok(found) => found,
            Err(CliError::Kafka { code, .. })
                if attempt < METADATA_ATTEMPTS_MAX
                    && kafka_protocol::ResponseError::try_from_code(code)
                        .is_some_and(|error| error.is_retriable()) =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(METADATA_RETRY_BACKOFF_MS)).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        if found.partitions.is_empty() {
            return Err(CliError::Usage(format!(
                "topic '{topic}' has no partitions"
            )));
        }
        return Ok(TopicTarget {
            name: topic.to_string(),
            topic_id: found.topic_id,
            leaders: found
                .partitions
                .iter()
                .map(|partition| (partition.partition_index, partition.leader_id.0))
                .collect(),
            partition_count: found.partitions.len() as i32,
        });
    }
}

/// Sends every pending batch, one Produce request per leader, and empties `pending`.
/// Per-partition errors are collected, so each is reported with its Kafka name.
async fn send_pending(
    cluster: &mut Cluster,
    target: &TopicTarget,
    args: &ProduceArgs,
    pending: &mut BTreeMap<i32, Vec<PendingRecord>>,
) -> Result<(), CliError> {
    let mut by_leader: BTreeMap<i32, Vec<PartitionProduceData>> = BTreeMap::new();
    let mut errors = Vec::new();
    for (partition, records) in std::mem::take(pending) {
        let leader = target.leaders.get(&partition).copied().unwrap_or(-1);
        if leader < 0 {
            errors.push(format!(
                "partition {partition} of topic '{}': LEADER_NOT_AVAILABLE: no leader",
                target.name
            ));
            continue;
        }
        let producer_records: Vec<ProducerRecord<'_>> = records
            .iter()
            .map(|record| ProducerRecord {
                key: record.key.as_deref(),
                value: Some(&record.value),
                headers: &[],
                timestamp: record.timestamp,
            })
            .collect();
        let batch = encode_producer_batch(&producer_records, args.compression.into()).map_err(
            |message| CliError::Usage(format!("cannot build a record batch: {message}")),
        )?;
        by_leader.entry(leader).or_default().push(
            PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(batch))),
        );
    }
    for (leader, partitions) in by_leader {
        let client = cluster.node(leader).await?;
        let version = if target.topic_id.is_nil() {
            client.version_up_to(ApiKey::Produce, PRODUCE_BY_NAME_VERSION_MAX)?
        } else {
            client.version(ApiKey::Produce)?
        };
        let request = ProduceRequest::default()
            .with_acks(args.acks)
            .with_timeout_ms(REQUEST_TIMEOUT_MS as i32)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(target.name.clone())))
                    .with_topic_id(target.topic_id)
                    .with_partition_data(partitions),
            ]);
        if args.acks == 0 {
            client.send_without_response(version, &request).await?;
            continue;
        }
        let response = client.send(version, &request).await?;
        for topic in &response.responses {
            for partition in &topic.partition_responses {
                if partition.error_code != 0 {
                    let message = partition
                        .error_message
                        .as_deref()
                        .filter(|message| !message.is_empty())
                        .map(|message| format!(": {message}"))
                        .unwrap_or_default();
                    errors.push(format!(
                        "partition {} of topic '{}': {}{message}",
                        partition.index,
                        target.name,
                        super::error_name(partition.error_code)
                    ));
                }
            }
        }
    }
    match errors.len() {
        0 => Ok(()),
        _ => Err(CliError::Many(errors)),
    }
}

/// Standard input, line by line, on its own thread (reads block), through a bounded channel.
/// Lines are bytes: values need not be UTF-8. The line ending (`\n` or `\r\n`) is dropped, as
/// Java's `readLine` drops it.
fn spawn_line_reader() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (sender, receiver) = mpsc::channel(LINES_QUEUED_MAX);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut reader = stdin.lock();
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if sender.blocking_send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            }
        }
    });
    receiver
}

fn split_once<'a>(line: &'a [u8], separator: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = line
        .windows(separator.len())
        .position(|window| window == separator)?;
    Some((&line[..at], &line[at + separator.len()..]))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
    /// `testMurmur2`).
    #[test]
    fn murmur2_matches_kafka() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key),
                *expected,
                "murmur2({:?})",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn keyed_records_go_where_javas_default_partitioner_puts_them() {
        let mut state = PartitionerState::default();
        // toPositive(-973932308) = 1173551340; 1173551340 % 3 = 0, % 7 = 3.
        assert_eq!(choose_partition(Some(b"21"), 3, &mut state), 0);
        assert_eq!(choose_partition(Some(b"21"), 7, &mut state), 3);
        // toPositive(-790332482) = 1357151166; % 4 = 2.
        assert_eq!(choose_partition(Some(b"foobar"), 4, &mut state), 2);
        // 479470107 is positive already; % 10 = 7.
        assert_eq!(choose_partition(Some(b"abc"), 10, &mut state), 7);
        // The same key always lands on the same partition, and keys never move the round robin.
        assert_eq!(choose_partition(Some(b"abc"), 10, &mut state), 7);
        assert_eq!(state.next_unkeyed, 0);
        // An empty key is a key (murmur2 of nothing), not a missing one.
        let empty = to_positive(murmur2(b"")) % 5;
        assert_eq!(choose_partition(Some(b""), 5, &mut state), empty);
    }

    #[test]
    fn records_without_a_key_go_round_robin() {
        let mut state = PartitionerState::default();
        let chosen: Vec<i32> = (0..7)
            .map(|_| choose_partition(None, 3, &mut state))
            .collect();
        assert_eq!(chosen, [0, 1, 2, 0, 1, 2, 0]);
        // Past i32::MAX the counter wraps but the partition stays in range.
        let mut state = PartitionerState {
            next_unkeyed: i32::MAX as u32,
        };
        assert_eq!(choose_partition(None, 3, &mut state), i32::MAX % 3);
        assert_eq!(choose_partition(None, 3, &mut state), 0);
    }

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(
            split_once(b"k::v::w", b"::"),
            Some((&b"k"[..], &b"v::w"[..]))
        );
        assert_eq!(split_once(b":v", b":"), Some((&b""[..], &b"v"[..])));
        assert_eq!(split_once(b"no separator", b":"), None);
    }

    #[test]
    fn acks_accept_kafkas_spellings() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
        assert_eq!(parse_acks("1"), Ok(1));
        assert!(parse_acks("2").is_err());
    }
}
