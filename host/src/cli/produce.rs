//! `weir produce`: kafka-console-producer.sh. Reads lines from standard input (optionally
//! `key<SEP>value`), batches them per partition and sends Produce requests to each partition's
//! leader. A batch goes out when it reaches [`BATCH_SIZE_BYTES`], after [`LINGER_MS`] without
//! filling, and at end of input.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use super::client::{Cluster, REQUEST_TIMEOUT_MS};
use super::topics::DEFAULT_BOOTSTRAP_SERVER;
use super::{CliError, find_topic};
use crate::policy::{Policies, PolicyKind, defaults};
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
    /// The broker's HTTP admin API, where a topic's own partitioner plugin is fetched from.
    #[arg(long, value_name = "URL", default_value = super::plugin::DEFAULT_ADMIN_URL)]
    pub admin_url: String,
}

fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(format!("'{text}' is not one of -1, all, 0, 1")),
    }
}

/// Where records go when `--partition` names none: the topic's partitioner plugin, run here in
/// the plugin runtime, one call per batch of lines read. That is the embedded default,
/// `partitioner-default` (murmur2 for keys as Kafka's Java client, sticky placement for null
/// keys), unless the topic (or the broker) uses another, which is fetched from the admin API.
#[derive(Debug)]
pub struct Placement {
    policies: Arc<Policies>,
}

impl Placement {
    /// Starts the plugin runtime with the built-in plugins only.
    pub fn open() -> Result<Placement, CliError> {
        let policies = Policies::open(None, crate::config::BrokerConfig::default().policy)
            .map_err(|error| {
                CliError::Plugin(format!("cannot start the partitioner plugin: {error:#}"))
            })?;
        Ok(Placement { policies })
    }

    /// Runs `plugin` (a component and its version) here as the partitioner, after the same
    /// conformance scenarios an install runs.
    pub fn with_plugin(name: &str, version: &str, component: &[u8]) -> Result<Placement, CliError> {
        let placement = Placement::open()?;
        let load = || -> anyhow::Result<()> {
            placement
                .policies
                .install(name, Some(version), component, now_ms())?;
            placement.policies.activate(name, Some(version), true)?;
            Ok(())
        };
        load().map_err(|error| {
            CliError::Plugin(format!(
                "cannot run the partitioner plugin '{name}' version {version}: {error:#}"
            ))
        })?;
        Ok(placement)
    }

    /// The placement of `topic`'s records: its partitioner plugin as the broker reports it
    /// (DescribeConfigs), fetched from `admin_url` when it is not the built-in.
    async fn for_topic(
        client: &mut super::Client,
        topic: &str,
        admin_url: &str,
    ) -> Result<Placement, CliError> {
        let builtin = defaults::BUILTIN
            .iter()
            .find(|(kind, _, _)| *kind == PolicyKind::Partitioner)
            .map(|(_, name, _)| *name);
        let plugin = match topic_partitioner(client, topic).await {
            Some(plugin) if Some(plugin.as_str()) != builtin => plugin,
            // The built-in, or a broker that does not say (an older one): murmur2.
            _ => return Placement::open(),
        };
        let (admin_url, name) = (admin_url.to_string(), plugin.clone());
        let fetched =
            tokio::task::spawn_blocking(move || super::plugin::fetch_component(&admin_url, &name))
                .await
                .map_err(|error| CliError::Plugin(format!("fetching the partitioner: {error}")))?;
        let (version, component) = fetched.map_err(|error| {
            CliError::Plugin(format!(
                "topic '{topic}' places records with the partitioner plugin '{plugin}', which could not be fetched ({error}); pass the broker's --admin-url, or choose a partition with --partition"
            ))
        })?;
        Placement::with_plugin(&plugin, &version, &component)
    }

    /// The partitions of `keys` (with their values' sizes) in a topic of `partition_count`.
    pub fn partitions(
        &self,
        topic: &str,
        keys: &[Option<&[u8]>],
        value_sizes: &[u32],
        partition_count: u32,
    ) -> Vec<u32> {
        self.policies
            .partition_batch(None, topic, keys, value_sizes, partition_count)
    }
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
    let placement = match args.partition {
        Some(_) => None,
        None => {
            Some(Placement::for_topic(cluster.bootstrap(), &target.name, &args.admin_url).await?)
        }
    };
    let mut sender = Sender {
        cluster,
        target,
        args: &args,
        placement,
    };
    let mut lines = spawn_line_reader();
    let mut pending: Vec<PendingRecord> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut linger_deadline = Instant::now();
    let mut line_number = 0u64;
    loop {
        let next = if pending.is_empty() {
            lines.recv().await
        } else {
            match tokio::time::timeout_at(linger_deadline, lines.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    sender.send(&mut pending).await?;
                    pending_bytes = 0;
                    continue;
                }
            }
        };
        let line = match next {
            None => break,
            Some(Err(error)) => {
                sender.send(&mut pending).await?;
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
                    sender.send(&mut pending).await?;
                    return Err(CliError::Usage(format!(
                        "line {line_number} has no key separator '{}'",
                        String::from_utf8_lossy(separator)
                    )));
                }
            },
        };
        if pending.is_empty() {
            linger_deadline = Instant::now() + Duration::from_millis(LINGER_MS);
        }
        pending_bytes += key.as_ref().map_or(0, Vec::len) + value.len();
        pending.push(PendingRecord {
            key,
            value,
            timestamp: now_ms(),
        });
        if pending_bytes >= BATCH_SIZE_BYTES {
            sender.send(&mut pending).await?;
            pending_bytes = 0;
        }
    }
    sender.send(&mut pending).await
}

/// The topic's `policy.partitioner` as DescribeConfigs reports it.
async fn topic_partitioner(client: &mut super::Client, topic: &str) -> Option<String> {
    /// DescribeConfigs resource type of a topic.
    const TOPIC_RESOURCE: i8 = 2;
    if !client.supports(ApiKey::DescribeConfigs) {
        return None;
    }
    let version = client.version(ApiKey::DescribeConfigs).ok()?;
    let key = PolicyKind::Partitioner.topic_config();
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str(key)])),
    ]);
    let response = client.send(version, &request).await.ok()?;
    let result = response
        .results
        .into_iter()
        .find(|result| result.error_code == 0)?;
    let config = result
        .configs
        .into_iter()
        .find(|config| config.name.as_str() == key)?;
    config.value.map(|value| value.to_string())
}

/// Sends what was read: chooses partitions, batches per partition, one Produce per leader.
struct Sender<'a> {
    cluster: Cluster,
    target: TopicTarget,
    args: &'a ProduceArgs,
    /// None with `--partition`.
    placement: Option<Placement>,
}

impl Sender<'_> {
    /// Places every pending record (one partitioner call), sends them, and empties `pending`.
    async fn send(&mut self, pending: &mut Vec<PendingRecord>) -> Result<(), CliError> {
        if pending.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(pending);
        let partitions: Vec<i32> = match (&self.placement, self.args.partition) {
            (_, Some(partition)) => vec![partition; records.len()],
            (Some(placement), None) => {
                let keys: Vec<Option<&[u8]>> =
                    records.iter().map(|record| record.key.as_deref()).collect();
                let value_sizes: Vec<u32> = records
                    .iter()
                    .map(|record| record.value.len().min(u32::MAX as usize) as u32)
                    .collect();
                placement
                    .partitions(
                        &self.target.name,
                        &keys,
                        &value_sizes,
                        self.target.partition_count as u32,
                    )
                    .into_iter()
                    .map(|partition| partition as i32)
                    .collect()
            }
            (None, None) => vec![0; records.len()],
        };
        let mut by_partition: BTreeMap<i32, Vec<PendingRecord>> = BTreeMap::new();
        for (record, partition) in records.into_iter().zip(partitions) {
            by_partition.entry(partition).or_default().push(record);
        }
        send_pending(&mut self.cluster, &self.target, self.args, by_partition).await
    }
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

/// Sends every partition's batch, one Produce request per leader. Per-partition errors are
/// collected, so each is reported with its Kafka name.
async fn send_pending(
    cluster: &mut Cluster,
    target: &TopicTarget,
    args: &ProduceArgs,
    pending: BTreeMap<i32, Vec<PendingRecord>>,
) -> Result<(), CliError> {
    let mut by_leader: BTreeMap<i32, Vec<PartitionProduceData>> = BTreeMap::new();
    let mut errors = Vec::new();
    for (partition, records) in pending {
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

    #[test]
    fn records_are_placed_by_the_partitioner_plugin() {
        let placement = Placement::open().expect("the built-in plugins load");
        // Kafka's own murmur2 vectors (UtilsTest.testMurmur2): toPositive(-973932308) % 3 = 0,
        // % 7 = 3; toPositive(-790332482) % 4 = 2; 479470107 % 10 = 7.
        let keys: Vec<Option<&[u8]>> = vec![Some(b"21"), Some(b"foobar"), Some(b"abc")];
        assert_eq!(placement.partitions("t", &keys, &[1, 1, 1], 3)[0], 0);
        assert_eq!(placement.partitions("t", &keys, &[1, 1, 1], 7)[0], 3);
        assert_eq!(placement.partitions("t", &keys, &[1, 1, 1], 4)[1], 2);
        assert_eq!(placement.partitions("t", &keys, &[1, 1, 1], 10)[2], 7);
        // Null keys stick to one partition for a while (KIP-480), always in range.
        let unkeyed = placement.partitions("t", &[None, None, None], &[1, 1, 1], 3);
        assert!(unkeyed.iter().all(|&p| p < 3), "{unkeyed:?}");
        assert_eq!(unkeyed[0], unkeyed[1]);
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
