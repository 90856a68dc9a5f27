//! `weir topics`: kafka-topics.sh's `--create`, `--list`, `--describe`, `--delete` and `--alter`
//! over CreateTopics, Metadata (+ DescribeConfigs), DeleteTopics and CreatePartitions.

use std::collections::HashMap;
use std::io::Write;

use clap::ArgGroup;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::client::{Client, REQUEST_TIMEOUT_MS};
use super::{CliError, find_topic, parse_key_value};

/// Kafka's default `--bootstrap-server` for the console tools' examples; Weir's default listener.
pub const DEFAULT_BOOTSTRAP_SERVER: &str = "127.0.0.1:9092";
/// DescribeConfigs resource type of a topic.
const TOPIC_RESOURCE: i8 = 2;
/// DescribeConfigs config source of a value nobody set (Kafka's `ConfigSource.DEFAULT_CONFIG`);
/// kafka-topics.sh lists every config whose source is anything else.
const DEFAULT_CONFIG_SOURCE: i8 = 5;

#[derive(Debug, clap::Args)]
#[command(group(
    ArgGroup::new("action")
        .required(true)
        .args(["create", "list", "describe", "delete", "alter"])
))]
pub struct TopicsArgs {
    /// The broker(s) to connect to: `host:port[,host:port...]`.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_BOOTSTRAP_SERVER)]
    pub bootstrap_server: String,
    /// Create a topic (needs --topic).
    #[arg(long)]
    pub create: bool,
    /// List every topic's name.
    #[arg(long)]
    pub list: bool,
    /// Describe one topic (--topic) or all of them.
    #[arg(long)]
    pub describe: bool,
    /// Delete a topic (needs --topic).
    #[arg(long)]
    pub delete: bool,
    /// Raise a topic's partition count (needs --topic and --partitions).
    #[arg(long)]
    pub alter: bool,
    /// The topic to create, describe, delete or alter.
    #[arg(long)]
    pub topic: Option<String>,
    /// Partitions of a new topic (default: the broker's num.partitions), or the new count for --alter.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Replicas of each partition of a new topic (default: the broker's default.replication.factor).
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// A topic config for --create, e.g. `--config retention.ms=86400000`. Repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub configs: Vec<String>,
}

/// What `--describe` prints about one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionDescription>,
    /// The topic's non-default configs, in the broker's order.
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: i32,
    /// -1 when the partition has no leader.
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

pub async fn run(args: TopicsArgs) -> Result<(), CliError> {
    // Changes go to the active controller; reads to any broker.
    let mut client = if args.create || args.delete || !(args.list || args.describe) {
        Client::controller(&args.bootstrap_server).await?
    } else {
        Client::bootstrap(&args.bootstrap_server).await?
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.create {
        create(&mut client, &args, &mut out).await
    } else if args.list {
        list(&mut client, &args, &mut out).await
    } else if args.describe {
        describe(&mut client, &args, &mut out).await
    } else if args.delete {
        delete(&mut client, &args).await
    } else {
        alter(&mut client, &args).await
    }
}

fn required_topic<'a>(args: &'a TopicsArgs, action: &str) -> Result<&'a str, CliError> {
    args.topic
        .as_deref()
        .ok_or_else(|| CliError::Usage(format!("{action} needs --topic")))
}

fn refuse(args: &TopicsArgs, action: &str, flags: &[&str]) -> Result<(), CliError> {
    for flag in flags {
        let given = match *flag {
            "--partitions" => args.partitions.is_some(),
            "--replication-factor" => args.replication_factor.is_some(),
            "--config" => !args.configs.is_empty(),
            _ => false,
        };
        if given {
            return Err(CliError::Usage(format!(
                "{flag} cannot be used with {action}"
            )));
        }
    }
    Ok(())
}

async fn create(
    client: &mut Client,
    args: &TopicsArgs,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let topic = required_topic(args, "--create")?;
    // The same client-side checks kafka-topics.sh makes, so the message names the flag.
    if args.partitions.is_some_and(|partitions| partitions < 1) {
        return Err(CliError::Usage(
            "--partitions must be at least 1".to_string(),
        ));
    }
    if args.replication_factor.is_some_and(|factor| factor < 1) {
        return Err(CliError::Usage(
            "--replication-factor must be at least 1".to_string(),
        ));
    }
    let configs = args
        .configs
        .iter()
        .map(|text| {
            let (name, value) = parse_key_value("--config", text)?;
            Ok(CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(name))
                .with_value(Some(StrBytes::from_string(value))))
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    let version = client.version(ApiKey::CreateTopics)?;
    let request = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(args.partitions.unwrap_or(-1))
                .with_replication_factor(args.replication_factor.unwrap_or(-1))
                .with_configs(configs),
        ])
        .with_timeout_ms(REQUEST_TIMEOUT_MS as i32);
    let response = client.send(version, &request).await?;
    let result = response
        .topics
        .iter()
        .find(|result| result.name.0.as_str() == topic)
        .ok_or_else(|| missing_answer(client, "CreateTopics", topic))?;
    if result.error_code != 0 {
        return Err(CliError::kafka(
            format!("cannot create topic '{topic}'"),
            result.error_code,
            result.error_message.as_deref(),
        ));
    }
    writeln!(out, "Created topic {topic}.").map_err(CliError::Stdout)
}

async fn list(
    client: &mut Client,
    args: &TopicsArgs,
    out: &mut impl Write,
) -> Result<(), CliError> {
    refuse(
        args,
        "--list",
        &["--partitions", "--replication-factor", "--config"],
    )?;
    let metadata = client.metadata(None, false).await?;
    let mut names: Vec<&str> = metadata
        .topics
        .iter()
        .filter(|topic| topic.error_code == 0)
        .filter_map(|topic| topic.name.as_ref().map(|name| name.0.as_str()))
        .filter(|name| args.topic.as_deref().is_none_or(|wanted| wanted == *name))
        .collect();
    names.sort_unstable();
    for name in names {
        writeln!(out, "{name}").map_err(CliError::Stdout)?;
    }
    Ok(())
}

async fn describe(
    client: &mut Client,
    args: &TopicsArgs,
    out: &mut impl Write,
) -> Result<(), CliError> {
    refuse(
        args,
        "--describe",
        &["--partitions", "--replication-factor", "--config"],
    )?;
    let wanted = args.topic.as_deref().map(|topic| [topic]);
    let metadata = client
        .metadata(wanted.as_ref().map(|topics| &topics[..]), false)
        .await?;
    let mut topics: Vec<&MetadataResponseTopic> = match args.topic.as_deref() {
        Some(topic) => vec![find_topic(&metadata, topic)?],
        None => metadata
            .topics
            .iter()
            .filter(|topic| topic.error_code == 0)
            .collect(),
    };
    topics.sort_by(|a, b| {
        a.name
            .as_ref()
            .map(|name| name.0.as_str())
            .cmp(&b.name.as_ref().map(|name| name.0.as_str()))
    });
    let names: Vec<String> = topics
        .iter()
        .filter_map(|topic| topic.name.as_ref().map(|name| name.0.to_string()))
        .collect();
    let mut configs = describe_configs(client, &names).await?;
    for topic in topics {
        let name = topic
            .name
            .as_ref()
            .map(|name| name.0.to_string())
            .unwrap_or_default();
        let mut partitions: Vec<PartitionDescription> = topic
            .partitions
            .iter()
            .map(|partition| PartitionDescription {
                partition: partition.partition_index,
                leader: partition.leader_id.0,
                replicas: partition.replica_nodes.iter().map(|node| node.0).collect(),
                isr: partition.isr_nodes.iter().map(|node| node.0).collect(),
            })
            .collect();
        partitions.sort_by_key(|partition| partition.partition);
        let description = TopicDescription {
            configs: configs.remove(&name).unwrap_or_default(),
            name,
            topic_id: topic.topic_id,
            partitions,
        };
        out.write_all(format_description(&description).as_bytes())
            .map_err(CliError::Stdout)?;
    }
    Ok(())
}

/// Each topic's non-default configs, or none at all when the broker does not serve
/// DescribeConfigs (then `Configs:` prints empty, as for a topic without overrides).
async fn describe_configs(
    client: &mut Client,
    topics: &[String],
) -> Result<HashMap<String, Vec<(String, String)>>, CliError> {
    if topics.is_empty() || !client.supports(ApiKey::DescribeConfigs) {
        return Ok(HashMap::new());
    }
    let version = client.version(ApiKey::DescribeConfigs)?;
    let request = DescribeConfigsRequest::default().with_resources(
        topics
            .iter()
            .map(|topic| {
                DescribeConfigsResource::default()
                    .with_resource_type(TOPIC_RESOURCE)
                    .with_resource_name(StrBytes::from_string(topic.clone()))
                    .with_configuration_keys(None)
            })
            .collect(),
    );
    let response = client.send(version, &request).await?;
    let mut configs = HashMap::new();
    for result in response.results {
        let topic = result.resource_name.to_string();
        if result.error_code != 0 {
            return Err(CliError::kafka(
                format!("cannot describe the configs of topic '{topic}'"),
                result.error_code,
                result.error_message.as_deref(),
            ));
        }
        let overrides = result
            .configs
            .iter()
            .filter(|config| config.config_source != DEFAULT_CONFIG_SOURCE)
            .map(|config| {
                // Java prints a null (sensitive) value as "null".
                let value = config.value.as_deref().unwrap_or("null");
                (config.name.to_string(), value.to_string())
            })
            .collect();
        configs.insert(topic, overrides);
    }
    Ok(configs)
}

async fn delete(client: &mut Client, args: &TopicsArgs) -> Result<(), CliError> {
    let topic = required_topic(args, "--delete")?;
    refuse(
        args,
        "--delete",
        &["--partitions", "--replication-factor", "--config"],
    )?;
    let version = client.version(ApiKey::DeleteTopics)?;
    // v6 names topics in `topics` (name or id); earlier versions in `topic_names`.
    let request = if version >= 6 {
        DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic_name(topic))),
        ])
    } else {
        DeleteTopicsRequest::default().with_topic_names(vec![topic_name(topic)])
    }
    .with_timeout_ms(REQUEST_TIMEOUT_MS as i32);
    let response = client.send(version, &request).await?;
    let result = response
        .responses
        .iter()
        .find(|result| {
            result
                .name
                .as_ref()
                .is_some_and(|name| name.0.as_str() == topic)
        })
        .ok_or_else(|| missing_answer(client, "DeleteTopics", topic))?;
    topic_outcome(
        topic,
        result.error_code,
        result.error_message.as_deref(),
        || format!("cannot delete topic '{topic}'"),
    )
}

async fn alter(client: &mut Client, args: &TopicsArgs) -> Result<(), CliError> {
    let topic = required_topic(args, "--alter")?;
    let Some(count) = args.partitions else {
        return Err(CliError::Usage(
            "--alter needs --partitions (topic configs are changed with AlterConfigs, not here)"
                .to_string(),
        ));
    };
    refuse(args, "--alter", &["--replication-factor", "--config"])?;
    let version = client.version(ApiKey::CreatePartitions)?;
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(count)
                .with_assignments(None),
        ])
        .with_timeout_ms(REQUEST_TIMEOUT_MS as i32);
    let response = client.send(version, &request).await?;
    let result = response
        .results
        .iter()
        .find(|result| result.name.0.as_str() == topic)
        .ok_or_else(|| missing_answer(client, "CreatePartitions", topic))?;
    topic_outcome(
        topic,
        result.error_code,
        result.error_message.as_deref(),
        || format!("cannot raise topic '{topic}' to {count} partitions"),
    )
}

/// A per-topic result as the command's outcome: a missing topic is named as such, any other
/// error carries its Kafka name and the broker's message.
fn topic_outcome(
    topic: &str,
    error_code: i16,
    error_message: Option<&str>,
    action: impl FnOnce() -> String,
) -> Result<(), CliError> {
    match ResponseError::try_from_code(error_code) {
        None => Ok(()),
        Some(ResponseError::UnknownTopicOrPartition) => {
            Err(CliError::TopicNotFound(topic.to_string()))
        }
        Some(_) => Err(CliError::kafka(action(), error_code, error_message)),
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn missing_answer(client: &Client, api: &str, topic: &str) -> CliError {
    CliError::Client(super::ClientError::Protocol {
        address: client.address().to_string(),
        what: format!("{api} response"),
        message: format!("no result for topic '{topic}'"),
    })
}

/// kafka-topics.sh `--describe` output for one topic: a topic line, then one tab-indented line
/// per partition (the format of Kafka 3.x's `TopicCommand`, without the ELR fields of 3.8+).
pub fn format_description(topic: &TopicDescription) -> String {
    use std::fmt::Write as _;

    let join = |nodes: &[i32]| {
        nodes
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut text = format!("Topic: {}", topic.name);
    // Kafka omits the id of a topic that has none (a broker too old to report it).
    if !topic.topic_id.is_nil() {
        let _ = write!(text, "\tTopicId: {}", kafka_uuid(topic.topic_id));
    }
    let replication_factor = topic
        .partitions
        .first()
        .map_or(0, |partition| partition.replicas.len());
    let configs = topic
        .configs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    let _ = writeln!(
        text,
        "\tPartitionCount: {}\tReplicationFactor: {replication_factor}\tConfigs: {configs}",
        topic.partitions.len()
    );
    for partition in &topic.partitions {
        let leader = if partition.leader < 0 {
            "none".to_string()
        } else {
            partition.leader.to_string()
        };
        let _ = writeln!(
            text,
            "\tTopic: {}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}",
            topic.name,
            partition.partition,
            join(&partition.replicas),
            join(&partition.isr)
        );
    }
    text
}

/// A UUID as Kafka prints one (`Uuid.toString()`): its 16 bytes in URL-safe base64 without
/// padding, 22 characters.
pub fn kafka_uuid(uuid: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid.as_bytes();
    let mut text = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |group, (index, byte)| {
            group | u32::from(*byte) << (16 - 8 * index)
        });
        // A chunk of n bytes carries n + 1 base64 digits; the rest would be padding.
        for digit in 0..=chunk.len() {
            let sextet = (group >> (18 - 6 * digit)) & 0x3f;
            text.push(char::from(ALPHABET[sextet as usize]));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_print_as_kafka_prints_them() {
        // Kafka's Uuid.ZERO_UUID and Uuid.METADATA_TOPIC_ID (new Uuid(0L, 1L)).
        assert_eq!(kafka_uuid(Uuid::nil()), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(kafka_uuid(Uuid::from_u128(1)), "AAAAAAAAAAAAAAAAAAAAAQ");
        // Exercises '-' and '_' (62 and 63), which standard base64 spells '+' and '/'.
        assert_eq!(
            kafka_uuid(Uuid::from_u128(u128::MAX)),
            "_____________________w"
        );
        assert_eq!(
            kafka_uuid(Uuid::from_u128(0xfbef_fbef_0000_0000_0000_0000_0000_0000)),
            "--_77wAAAAAAAAAAAAAAAA"
        );
    }

    #[test]
    fn describe_prints_kafka_topics_format() {
        let topic = TopicDescription {
            name: "orders".to_string(),
            topic_id: Uuid::from_u128(1),
            partitions: vec![
                PartitionDescription {
                    partition: 0,
                    leader: 1,
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                },
                PartitionDescription {
                    partition: 1,
                    leader: -1,
                    replicas: vec![2, 1],
                    isr: vec![],
                },
            ],
            configs: vec![
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("retention.ms".to_string(), "1000".to_string()),
            ],
        };
        assert_eq!(
            format_description(&topic),
            "Topic: orders\tTopicId: AAAAAAAAAAAAAAAAAAAAAQ\tPartitionCount: 2\tReplicationFactor: 2\tConfigs: cleanup.policy=compact,retention.ms=1000\n\
             \tTopic: orders\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1,2\n\
             \tTopic: orders\tPartition: 1\tLeader: none\tReplicas: 2,1\tIsr: \n"
        );
        let bare = TopicDescription {
            topic_id: Uuid::nil(),
            configs: vec![],
            partitions: vec![],
            ..topic
        };
        assert_eq!(
            format_description(&bare),
            "Topic: orders\tPartitionCount: 0\tReplicationFactor: 0\tConfigs: \n"
        );
    }
}
