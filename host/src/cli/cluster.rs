//! `weir cluster describe`: the brokers (id, endpoint, rack, fenced or not), the active
//! controller, the voters and the metadata log's high watermark, the way
//! `kafka-metadata-quorum.sh describe --status` and `kafka-broker-api-versions.sh` show them.
//! Both requests go to the bootstrap broker; DescribeQuorum travels on to the active controller
//! (only it knows every voter's progress), which may be a dedicated controller clients cannot
//! reach themselves.

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest,
    DescribeQuorumResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::topics::DEFAULT_BOOTSTRAP_SERVER;
use super::{CliError, Client};
use crate::controller::quorum::METADATA_DIR;

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Brokers, the active controller, the voters and the metadata log's progress.
    Describe {
        /// The broker(s) to connect to: `host:port[,host:port...]`.
        #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_BOOTSTRAP_SERVER)]
        bootstrap_server: String,
    },
}

pub async fn run(args: ClusterArgs) -> Result<(), CliError> {
    match args.command {
        ClusterCommand::Describe { bootstrap_server } => describe(&bootstrap_server).await,
    }
}

fn kafka_error(context: &str, code: i16, message: Option<&StrBytes>) -> Result<(), CliError> {
    if code == 0 {
        return Ok(());
    }
    Err(CliError::Kafka {
        context: context.to_string(),
        code,
        message: message.map(|message| message.to_string()),
    })
}

async fn describe_cluster(client: &mut Client) -> Result<DescribeClusterResponse, CliError> {
    let version = client.version(ApiKey::DescribeCluster)?;
    let response = client
        .send(
            version,
            &DescribeClusterRequest::default().with_include_fenced_brokers(version >= 2),
        )
        .await?;
    kafka_error(
        "describing the cluster",
        response.error_code,
        response.error_message.as_ref(),
    )?;
    Ok(response)
}

async fn describe_quorum(client: &mut Client) -> Result<DescribeQuorumResponse, CliError> {
    let version = client.version(ApiKey::DescribeQuorum)?;
    let request = DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_DIR)))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
    ]);
    let response = client.send(version, &request).await?;
    kafka_error(
        "describing the quorum",
        response.error_code,
        response.error_message.as_ref(),
    )?;
    Ok(response)
}

async fn describe(bootstrap_server: &str) -> Result<(), CliError> {
    let mut bootstrap = Client::bootstrap(bootstrap_server).await?;
    let cluster = describe_cluster(&mut bootstrap).await?;
    println!("ClusterId:       {}", cluster.cluster_id.as_str());
    // Any broker answers DescribeQuorum: one that is not the active controller forwards it.
    match describe_quorum(&mut bootstrap).await {
        Ok(quorum) => {
            if let Err(error) = print_quorum(&quorum) {
                println!("LeaderId:        unknown ({error})");
            }
        }
        // During a failover there may be no controller to answer: show the brokers anyway.
        Err(error) => println!("LeaderId:        unknown ({error})"),
    }
    println!();
    println!("{:<10}{:<24}{:<12}Fenced", "BrokerId", "Endpoint", "Rack");
    for broker in &cluster.brokers {
        println!(
            "{:<10}{:<24}{:<12}{}",
            broker.broker_id.0,
            format!("{}:{}", broker.host.as_str(), broker.port),
            broker.rack.as_ref().map_or("-", |rack| rack.as_str()),
            broker.is_fenced
        );
    }
    Ok(())
}

/// The DescribeQuorum half: epoch, high watermark, follower lag, voters and observers.
fn print_quorum(quorum: &DescribeQuorumResponse) -> Result<(), CliError> {
    let partition = quorum
        .topics
        .first()
        .and_then(|topic| topic.partitions.first())
        .ok_or_else(|| CliError::Usage("DescribeQuorum answered no partition".into()))?;
    kafka_error(
        "describing the quorum",
        partition.error_code,
        partition.error_message.as_ref(),
    )?;
    let leader_end = partition
        .current_voters
        .iter()
        .find(|voter| voter.replica_id == partition.leader_id)
        .map_or(-1, |voter| voter.log_end_offset);
    let max_lag = partition
        .current_voters
        .iter()
        .filter(|voter| voter.log_end_offset >= 0)
        .map(|voter| (leader_end - voter.log_end_offset).max(0))
        .max()
        .unwrap_or(0);
    match partition.leader_id.0 {
        -1 => println!("LeaderId:        none (an election is in progress)"),
        id => println!("LeaderId:        {id}"),
    }
    println!("LeaderEpoch:     {}", partition.leader_epoch);
    println!("HighWatermark:   {}", partition.high_watermark);
    println!("MaxFollowerLag:  {max_lag}");
    let describe =
        |members: &[kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
            members
                .iter()
                .map(|member| {
                    let endpoint = quorum
                        .nodes
                        .iter()
                        .find(|node| node.node_id == member.replica_id)
                        .and_then(|node| node.listeners.first())
                        .map(|listener| {
                            format!(
                                " {}://{}:{}",
                                listener.name.as_str(),
                                listener.host.as_str(),
                                listener.port
                            )
                        })
                        .unwrap_or_default();
                    format!(
                        "{}{endpoint} (log end offset {})",
                        member.replica_id.0, member.log_end_offset
                    )
                })
                .collect::<Vec<String>>()
                .join(", ")
        };
    println!("CurrentVoters:   [{}]", describe(&partition.current_voters));
    println!("CurrentObservers: [{}]", describe(&partition.observers));
    Ok(())
}
