//! `weir groups`: kafka-consumer-groups.sh's `--list` and `--describe --group G` (the group's
//! committed offsets, log end offsets and lag per partition, and which member owns each), and
//! the committed-offset calls `weir consume --group` makes.
//!
//! The console consumer commits as a standalone consumer (generation -1, no member id), as
//! Kafka's clients do when they `assign` rather than `subscribe`: the group's offsets move, and
//! a second `weir consume --group G` continues where the first stopped. It does not join the
//! group, so it is never listed as a member.
//!
//! The group APIs go out at fixed versions that every Kafka broker since 2.0 and Weir serve
//! (the shared client negotiates only the APIs it was written for).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Buf;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::topics::DEFAULT_BOOTSTRAP_SERVER;
use super::{CliError, Client};

/// FindCoordinator's key type for a consumer group.
const GROUP_KEY_TYPE: i8 = 0;

#[derive(Debug, clap::Args)]
pub struct GroupsArgs {
    /// The broker(s) to connect to: `host:port[,host:port...]`.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_BOOTSTRAP_SERVER)]
    pub bootstrap_server: String,
    /// List every consumer group.
    #[arg(long, conflicts_with = "describe")]
    pub list: bool,
    /// Describe --group: offsets, lag and owner of each partition.
    #[arg(long, requires = "group")]
    pub describe: bool,
    /// The group to describe.
    #[arg(long)]
    pub group: Option<String>,
}

pub async fn run(args: GroupsArgs) -> Result<(), CliError> {
    match (args.list, args.describe, &args.group) {
        (true, _, _) => list(&args.bootstrap_server).await,
        (false, true, Some(group)) => describe(&args.bootstrap_server, group).await,
        _ => Err(CliError::Usage(
            "give --list, or --describe --group GROUP".to_string(),
        )),
    }
}

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A connection to the broker coordinating `group`.
pub async fn coordinator(bootstrap_server: &str, group: &str) -> Result<Client, CliError> {
    let mut client = Client::bootstrap(bootstrap_server).await?;
    let request = FindCoordinatorRequest::default()
        .with_key(str_bytes(group))
        .with_key_type(GROUP_KEY_TYPE);
    let response = client
        .send(client.version(ApiKey::FindCoordinator)?, &request)
        .await?;
    if response.error_code != 0 {
        return Err(CliError::kafka(
            format!("cannot find the coordinator of group '{group}'"),
            response.error_code,
            response.error_message.as_deref(),
        ));
    }
    let address = format!("{}:{}", response.host.as_str(), response.port);
    if address == client.address() {
        return Ok(client);
    }
    Ok(Client::connect(&address).await?)
}

/// The group's committed offset of each partition that has one (all partitions of every topic
/// when `topic` is `None`): topic -> partition -> offset.
pub async fn fetch_committed(
    coordinator: &mut Client,
    group: &str,
    topic: Option<(&str, &[i32])>,
) -> Result<BTreeMap<String, BTreeMap<i32, i64>>, CliError> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_topics(topic.map(|(name, partitions)| {
            vec![
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(str_bytes(name)))
                    .with_partition_indexes(partitions.to_vec()),
            ]
        }));
    let response = coordinator
        .send(coordinator.version(ApiKey::OffsetFetch)?, &request)
        .await?;
    let context = || format!("cannot read the committed offsets of group '{group}'");
    if response.error_code != 0 {
        return Err(CliError::kafka(context(), response.error_code, None));
    }
    let mut committed: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            if partition.error_code != 0 {
                return Err(CliError::kafka(context(), partition.error_code, None));
            }
            if partition.committed_offset >= 0 {
                committed
                    .entry(topic.name.0.to_string())
                    .or_default()
                    .insert(partition.partition_index, partition.committed_offset);
            }
        }
    }
    Ok(committed)
}

/// Commits `positions` (partition -> next offset to read) of `topic` as a standalone consumer.
pub async fn commit(
    coordinator: &mut Client,
    group: &str,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
) -> Result<(), CliError> {
    if positions.is_empty() {
        return Ok(());
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::default())
        // -1: the broker's retention.
        .with_retention_time_ms(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partitions(
                    positions
                        .iter()
                        .map(|(partition, offset)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*partition)
                                .with_committed_offset(*offset)
                                .with_committed_metadata(Some(StrBytes::default()))
                        })
                        .collect(),
                ),
        ]);
    let response = coordinator
        .send(coordinator.version(ApiKey::OffsetCommit)?, &request)
        .await?;
    for answer in response.topics.iter().flat_map(|topic| &topic.partitions) {
        if answer.error_code != 0 {
            return Err(CliError::kafka(
                format!(
                    "cannot commit partition {} of topic '{topic}' for group '{group}'",
                    answer.partition_index
                ),
                answer.error_code,
                None,
            ));
        }
    }
    Ok(())
}

async fn list(bootstrap_server: &str) -> Result<(), CliError> {
    let mut client = Client::bootstrap(bootstrap_server).await?;
    let response = client
        .send(
            client.version(ApiKey::ListGroups)?,
            &ListGroupsRequest::default(),
        )
        .await?;
    if response.error_code != 0 {
        return Err(CliError::kafka(
            "cannot list groups",
            response.error_code,
            None,
        ));
    }
    let names: BTreeSet<String> = response
        .groups
        .iter()
        .map(|group| group.group_id.0.to_string())
        .collect();
    for name in names {
        println!("{name}");
    }
    Ok(())
}

/// One member's partitions, from its assignment (the consumer protocol's bytes: a version,
/// then the assignment).
fn assigned_partitions(assignment: &[u8]) -> Vec<(String, i32)> {
    let mut bytes = bytes::Bytes::copy_from_slice(assignment);
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16();
    let Ok(decoded) = ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, 3)) else {
        return Vec::new();
    };
    decoded
        .assigned_partitions
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (topic.topic.0.to_string(), *partition))
        })
        .collect()
}

/// A row of kafka-consumer-groups.sh --describe.
#[derive(Debug, Default)]
struct Row {
    current: Option<i64>,
    log_end: Option<i64>,
    owner: Option<(String, String, String)>,
}

async fn describe(bootstrap_server: &str, group: &str) -> Result<(), CliError> {
    let mut coordinator = coordinator(bootstrap_server, group).await?;
    let version = coordinator.version(ApiKey::DescribeGroups)?;
    let described = coordinator
        .send(
            version,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))]),
        )
        .await?;
    let Some(found) = described.groups.first() else {
        return Err(CliError::Usage(format!(
            "group '{group}' was not described"
        )));
    };
    if found.error_code != 0 {
        return Err(CliError::kafka(
            format!("cannot describe group '{group}'"),
            found.error_code,
            None,
        ));
    }
    let committed = fetch_committed(&mut coordinator, group, None).await?;
    if found.group_state.as_str() == "Dead" && committed.is_empty() {
        return Err(CliError::kafka(
            format!("cannot describe group '{group}'"),
            ResponseError::GroupIdNotFound.code(),
            Some("the group does not exist"),
        ));
    }
    let mut rows: BTreeMap<(String, i32), Row> = BTreeMap::new();
    for (topic, partitions) in &committed {
        for (partition, offset) in partitions {
            rows.entry((topic.clone(), *partition)).or_default().current = Some(*offset);
        }
    }
    for member in &found.members {
        for key in assigned_partitions(&member.member_assignment) {
            rows.entry(key).or_default().owner = Some((
                member.member_id.to_string(),
                member.client_host.to_string(),
                member.client_id.to_string(),
            ));
        }
    }
    // Log end offsets from the partitions' broker (this single-node cluster's only broker).
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in rows.keys() {
        by_topic.entry(topic.clone()).or_default().push(*partition);
    }
    if !by_topic.is_empty() {
        let mut client = Client::bootstrap(bootstrap_server).await?;
        let version = client.version(ApiKey::ListOffsets)?;
        let request = super::client::list_offsets_request(
            by_topic
                .iter()
                .map(|(topic, partitions)| (topic.as_str(), partitions.as_slice())),
            super::client::LATEST_TIMESTAMP,
        );
        let response = client.send(version, &request).await?;
        for topic in &response.topics {
            for partition in &topic.partitions {
                if partition.error_code == 0
                    && let Some(row) =
                        rows.get_mut(&(topic.name.0.to_string(), partition.partition_index))
                {
                    row.log_end = Some(partition.offset);
                }
            }
        }
    }
    if found.members.is_empty() {
        eprintln!("Consumer group '{group}' has no active members.");
    }
    let dash = || "-".to_string();
    let show = |value: Option<i64>| value.map_or_else(dash, |value| value.to_string());
    let mut table = vec![[
        "GROUP".to_string(),
        "TOPIC".to_string(),
        "PARTITION".to_string(),
        "CURRENT-OFFSET".to_string(),
        "LOG-END-OFFSET".to_string(),
        "LAG".to_string(),
        "CONSUMER-ID".to_string(),
        "HOST".to_string(),
        "CLIENT-ID".to_string(),
    ]];
    for ((topic, partition), row) in &rows {
        let lag = match (row.current, row.log_end) {
            (Some(current), Some(log_end)) => Some((log_end - current).max(0)),
            _ => None,
        };
        let (member, host, client) = row
            .owner
            .clone()
            .unwrap_or_else(|| (dash(), dash(), dash()));
        table.push([
            group.to_string(),
            topic.clone(),
            partition.to_string(),
            show(row.current),
            show(row.log_end),
            show(lag),
            member,
            if host.is_empty() { dash() } else { host },
            client,
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|column| table.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    println!();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join(" ").trim_end());
    }
    Ok(())
}
