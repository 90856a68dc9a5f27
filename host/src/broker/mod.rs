//! The broker shell: what one `weir serve` process holds (logs, partitions, topics) and the
//! operations the Kafka API handlers call. Handlers decode and encode; decisions live here and in
//! the rooms below (storage, replication).

pub mod plugins;
pub mod serve;
pub mod topics;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use kafka_protocol::ResponseError;
use tokio::sync::watch;
use uuid::Uuid;

use crate::clock::SystemClock;
use crate::config::BrokerConfig;
use crate::controller::image::{MetadataImage, TopicImage};
use crate::controller::placement::{self, Candidate};
use crate::controller::quorum::{NodeId, ProposeError, Quorum, QuorumConfig};
use crate::controller::records::{BrokerId, Change, ConfigResource, Endpoint, MetadataRecord};
use crate::replication::Partition;
use crate::storage::{LogConfig, LogManager, TopicPartition};
use topics::{MIN_INSYNC_REPLICAS, TopicRecord, TopicStore, topic_log_config, validate_topic_name};

/// The leader epoch of every partition on a single-node broker; elections arrive with the controller.
pub const SINGLE_NODE_LEADER_EPOCH: i32 = 0;
/// Kafka's bound on partitions per CreateTopics/CreatePartitions call per topic.
const PARTITIONS_PER_TOPIC_MAX: i32 = 100_000;

/// A Kafka error code with a message for the client and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ResponseError,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

/// Where a config value comes from, with Kafka's DescribeConfigs source codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Topic = 1,
    StaticBroker = 4,
    Default = 5,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveConfig {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
}

#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    logs: LogManager,
    store: Mutex<TopicStore>,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// The policy plugins (election, partitioner, acks) this broker runs.
    pub policies: Arc<crate::policy::Policies>,
    /// Consumer groups and committed offsets (the group room).
    pub groups: crate::group::GroupCoordinator,
    /// This node's member of the controller quorum and its view of the cluster metadata.
    pub quorum: Arc<Quorum>,
    /// The topic id behind each topic name this broker hosts partitions of (a topic deleted
    /// and recreated under the same name has a new id: its old logs go).
    hosted_topic_ids: Mutex<HashMap<String, Uuid>>,
    /// The metadata offset the hosted partitions last matched.
    reconciled: watch::Sender<Option<u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long startup waits for the metadata it had committed, and a metadata change for this
/// broker to apply it, before going on (startup) or answering REQUEST_TIMED_OUT (a change).
const METADATA_RECOVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A topic as the handlers use it, read from the metadata image.
fn topic_record(image: &MetadataImage, topic: &TopicImage) -> TopicRecord {
    TopicRecord {
        name: topic.name.clone(),
        id: topic.topic_id,
        partitions: topic.partitions.len() as u32,
        replication_factor: topic
            .partitions
            .values()
            .next()
            .map_or(0, |partition| partition.replicas.len() as i16),
        configs: image
            .configs(&ConfigResource::Topic(topic.name.clone()))
            .cloned()
            .unwrap_or_default(),
    }
}

/// New partitions `first..` of a topic as created: the first replica leads, all are in sync.
fn partition_records(
    topic_id: Uuid,
    first: u32,
    assignments: Vec<Vec<BrokerId>>,
) -> impl Iterator<Item = Change> {
    assignments
        .into_iter()
        .zip(first..)
        .map(move |(replicas, partition)| Change::Partition {
            topic_id,
            partition,
            isr: replicas.clone(),
            leader: replicas[0],
            replicas,
            elr: Vec::new(),
            leader_epoch: 0,
            partition_epoch: 0,
        })
}

/// Reconciles the hosted partitions after every metadata change, until the broker is dropped.
async fn run_reconciler(
    broker: std::sync::Weak<Broker>,
    mut applied: watch::Receiver<Option<u64>>,
) {
    while applied.changed().await.is_ok() {
        let Some(broker) = broker.upgrade() else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || broker.reconcile()).await;
    }
}

/// A broker as Metadata and DescribeCluster list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub broker_id: BrokerId,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub fenced: bool,
}

/// How this node takes part in the controller quorum, from its config: with no
/// `controller.quorum.voters`, a quorum of itself alone.
pub fn quorum_config(config: &BrokerConfig) -> QuorumConfig {
    let node_id = config.node_id as NodeId;
    let voters = if config.quorum_voters.is_empty() {
        [(node_id, String::new())].into()
    } else {
        config
            .quorum_voters
            .iter()
            .map(|(id, address)| (*id as NodeId, address.clone()))
            .collect()
    };
    QuorumConfig {
        node_id,
        dir: config.metadata_dir.clone(),
        voters,
        listener: if config.quorum_voters.is_empty() {
            None
        } else if config.is_controller {
            config.controller_listener
        } else {
            // A learner needs an address the active controller replicates the metadata log
            // to: its controller listener if it names one, else any free port on the host of
            // its Kafka listener (it registers the bound address).
            Some(
                config
                    .controller_listener
                    .unwrap_or_else(|| std::net::SocketAddr::new(config.listener.ip(), 0)),
            )
        },
        // Elections start after 3 to 6 heartbeats of silence: Kafka's election timeout is
        // the lower end.
        heartbeat_interval: config.quorum_election_timeout / 3,
        snapshot_every: config.metadata_snapshot_interval,
        lifecycle: config.lifecycle,
    }
}

/// The plugins' directory under `log.dirs` (not a partition name: it has no `-N`): the
/// precompiled-artifact cache, and a pre-controller data directory's registry.
pub const PLUGINS_DIR: &str = "plugins";

/// A proposal's failure as the Kafka error to answer with.
fn propose_error(error: ProposeError) -> ApiError {
    match error {
        ProposeError::NotController { .. } => {
            ApiError::new(ResponseError::NotController, error.to_string())
        }
        ProposeError::Refused(_) | ProposeError::Stopped(_) => {
            ApiError::new(ResponseError::UnknownServerError, error.to_string())
        }
    }
}

impl Broker {
    /// A topic's `policy.<kind>` configs must name installed plugins of that kind.
    fn check_policy_bindings(&self, configs: &BTreeMap<String, String>) -> Result<(), ApiError> {
        for (key, name) in configs {
            let Some(kind) = crate::policy::PolicyKind::from_topic_config(key) else {
                continue;
            };
            match self.policies.kind_of(name) {
                Some(installed) if installed == kind => {}
                Some(installed) => {
                    return Err(ApiError::new(
                        ResponseError::InvalidConfig,
                        format!(
                            "{key}={name}: `{name}` is a {} plugin",
                            installed.interface()
                        ),
                    ));
                }
                None => {
                    return Err(ApiError::new(
                        ResponseError::InvalidConfig,
                        format!("{key}={name}: no plugin named `{name}` is installed"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The plugin a topic binds for `kind` (its `policy.<kind>` config), if any.
    pub fn policy_binding(topic: &TopicRecord, kind: crate::policy::PolicyKind) -> Option<&str> {
        topic.configs.get(kind.topic_config()).map(String::as_str)
    }

    /// Starts this node's member of the controller quorum, waits until it has applied the
    /// metadata it had committed before (so topics are known before any request), opens the
    /// data directory, moves a single-node data directory's topics into the metadata log, and
    /// hosts the partitions the metadata assigns to this broker.
    pub async fn start(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        let quorum = Quorum::start(quorum_config(&config)).await?;
        if !quorum.wait_for_recovery(METADATA_RECOVERY_TIMEOUT).await {
            tracing::warn!(
                timeout = ?METADATA_RECOVERY_TIMEOUT,
                "metadata not caught up yet (no controller quorum?); starting with what is applied"
            );
        }
        let opening = quorum.clone();
        let broker =
            match tokio::task::spawn_blocking(move || Broker::open(config, opening)).await? {
                Ok(broker) => broker,
                Err(error) => {
                    quorum.shutdown().await;
                    return Err(error);
                }
            };
        // A dedicated controller hosts no partitions: a single-node directory's topics would be
        // placed on it, so they wait for a broker's start.
        if broker.config.is_broker {
            broker.migrate_local_topics().await;
        }
        broker.migrate_local_plugins().await;
        // Subscribed before the first pass, so an image published during it is not missed.
        let applied = broker.quorum.view().subscribe();
        let reconciling = broker.clone();
        tokio::task::spawn_blocking(move || reconciling.reconcile()).await?;
        tokio::spawn(run_reconciler(Arc::downgrade(&broker), applied));
        if !broker.config.is_broker {
            return Ok(broker);
        }
        // Kafka's broker serves once the controller has unfenced it: before that, topics could
        // not be placed on it and clients would hear of a broker the cluster does not list.
        let unfenced = broker
            .quorum
            .register_broker(
                broker.config.node_id,
                broker.endpoints(),
                broker.config.rack.clone(),
                broker.config.lifecycle,
                METADATA_RECOVERY_TIMEOUT,
            )
            .await;
        if !unfenced {
            tracing::warn!(
                timeout = ?METADATA_RECOVERY_TIMEOUT,
                "not unfenced by a controller yet (is a majority of controller.quorum.voters up?); serving anyway"
            );
        }
        Ok(broker)
    }

    pub fn open(config: BrokerConfig, quorum: Arc<Quorum>) -> anyhow::Result<Arc<Broker>> {
        std::fs::create_dir_all(&config.log_dir).map_err(|error| {
            anyhow::anyhow!(
                "cannot create log.dirs {}: {error}",
                config.log_dir.display()
            )
        })?;
        let store = TopicStore::open(&config.log_dir)?;
        quorum.offer_cluster_id(store.cluster_id());
        // Topic configs from the metadata (or, before migration, the single-node store).
        let image = quorum.view().image();
        let mut topic_configs: HashMap<String, LogConfig> = HashMap::new();
        let known = store
            .all()
            .map(|topic| (topic.name.clone(), topic.configs.clone()))
            .chain(image.topics().map(|topic| {
                (
                    topic.name.clone(),
                    image
                        .configs(&ConfigResource::Topic(topic.name.clone()))
                        .cloned()
                        .unwrap_or_default(),
                )
            }));
        for (name, configs) in known {
            let log_config = topic_log_config(&config.log_defaults, &configs).unwrap_or_else(|error| {
                tracing::warn!(topic = %name, %error, "topic config is invalid; using defaults");
                config.log_defaults.clone()
            });
            topic_configs.insert(name, log_config);
        }
        let defaults = config.log_defaults.clone();
        let logs = LogManager::open(&config.log_dir, Arc::new(SystemClock), |tp| {
            topic_configs
                .get(&tp.topic)
                .cloned()
                .unwrap_or_else(|| defaults.clone())
        })?;
        let policies =
            crate::policy::Policies::open(Some(&config.log_dir.join(PLUGINS_DIR)), config.policy)?;
        let groups = crate::group::GroupCoordinator::open(&config.log_dir, config.group.clone())
            .map_err(|error| anyhow::anyhow!("cannot open the committed offsets: {error}"))?;
        Ok(Arc::new(Broker {
            config,
            logs,
            store: Mutex::new(store),
            partitions: RwLock::new(HashMap::new()),
            hosted_topic_ids: Mutex::new(HashMap::new()),
            reconciled: watch::Sender::new(None),
            policies,
            groups,
            quorum,
        }))
    }

    /// A data directory from before the controller kept its topics in `weir-metadata.json`:
    /// on a node that is (or becomes, within a few seconds) the active controller, each such
    /// topic is written to the metadata log with its id, on this broker, and dropped from the
    /// file. Its logs stay where they are and are hosted as before.
    async fn migrate_local_topics(&self) {
        let legacy: Vec<TopicRecord> = lock(&self.store).all().cloned().collect();
        if legacy.is_empty() {
            return;
        }
        if !self
            .quorum
            .wait_for_controller(METADATA_RECOVERY_TIMEOUT)
            .await
            || !self.quorum.is_active_controller()
        {
            tracing::warn!(
                topics = legacy.len(),
                "topics of a single-node data directory wait for this node to be the active controller to move into the metadata log"
            );
            return;
        }
        let me = self.config.node_id;
        for topic in legacy {
            let image = self.quorum.view().image();
            if image.topic_by_name(&topic.name).is_none() {
                let mut records = vec![Change::Topic {
                    name: topic.name.clone(),
                    topic_id: topic.id,
                }];
                records.extend((0..topic.partitions).map(|partition| Change::Partition {
                    topic_id: topic.id,
                    partition,
                    replicas: vec![me],
                    isr: vec![me],
                    leader: me,
                    elr: Vec::new(),
                    leader_epoch: SINGLE_NODE_LEADER_EPOCH,
                    partition_epoch: 0,
                }));
                records.extend(topic.configs.iter().map(|(key, value)| Change::Config {
                    resource: ConfigResource::Topic(topic.name.clone()),
                    key: key.clone(),
                    value: Some(value.clone()),
                }));
                let records = records.into_iter().map(MetadataRecord::new).collect();
                if let Err(error) = self.quorum.propose(records).await {
                    tracing::error!(topic = %topic.name, %error, "could not move the topic into the metadata log");
                    continue;
                }
                tracing::info!(topic = %topic.name, id = %topic.id, "moved topic into the metadata log");
            }
            if let Err(error) = lock(&self.store).remove(&topic.name) {
                tracing::warn!(topic = %topic.name, %error, "could not drop the migrated topic from weir-metadata.json");
            }
        }
    }

    /// Makes the hosted partitions match the metadata image: opens (creating if needed) the log
    /// of every partition assigned to this broker, applies changed topic configs, and deletes
    /// the partitions and logs of topics that are gone (or were recreated under a new id).
    /// Logs on disk that no topic claims are left alone.
    pub fn reconcile(&self) {
        let image = self.quorum.view().image();
        // Plugins first: a topic bound to a plugin in the same entry finds it loaded.
        self.policies.publish(image.plugins().clone());
        let me = self.config.node_id;
        let mut hosted_ids = lock(&self.hosted_topic_ids);
        // Topics gone from the image, or recreated with a new id: stop serving and delete.
        let stale: Vec<String> = hosted_ids
            .iter()
            .filter(|(name, id)| {
                image
                    .topic_by_name(name)
                    .is_none_or(|topic| topic.topic_id != **id)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            hosted_ids.remove(&name);
            let removed: Vec<TopicPartition> = {
                let mut partitions = self
                    .partitions
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let removed: Vec<TopicPartition> = partitions
                    .keys()
                    .filter(|tp| tp.topic == name)
                    .cloned()
                    .collect();
                for tp in &removed {
                    partitions.remove(tp);
                }
                removed
            };
            for tp in removed {
                if let Err(error) = self.logs.delete(&tp) {
                    tracing::error!(partition = %tp, %error, "could not delete the log of a deleted topic");
                }
            }
            self.groups.forget_topic(&name);
            tracing::info!(topic = %name, "deleted topic");
        }
        for topic in image.topics() {
            let configs = image
                .configs(&ConfigResource::Topic(topic.name.clone()))
                .cloned()
                .unwrap_or_default();
            let log_config = topic_log_config(&self.config.log_defaults, &configs)
                .unwrap_or_else(|error| {
                    tracing::warn!(topic = %topic.name, %error, "topic config is invalid; using defaults");
                    self.config.log_defaults.clone()
                });
            let mut hosts_any = false;
            for (index, registration) in &topic.partitions {
                if !registration.replicas.contains(&me) {
                    continue;
                }
                hosts_any = true;
                let tp = TopicPartition::new(topic.name.as_str(), *index);
                if let Some(partition) = self.partition(&topic.name, *index as i32) {
                    // A log out of service (poisoned) keeps its old config; a restart reopens
                    // it with the current one.
                    if let Ok(mut log) = partition.log()
                        && *log.config() != log_config
                    {
                        log.set_config(log_config.clone());
                    }
                    continue;
                }
                let opened = self
                    .logs
                    .get_or_create_for_topic(&tp, log_config.clone(), topic.topic_id)
                    .map_err(anyhow::Error::from)
                    .and_then(|log| {
                        Ok(Partition::new(tp.clone(), log, registration.leader_epoch)?)
                    });
                match opened {
                    Ok(partition) => {
                        self.partitions
                            .write()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .insert(tp, partition);
                    }
                    Err(error) => {
                        tracing::error!(partition = %tp, %error, "cannot open the log of an assigned partition");
                    }
                }
            }
            if hosts_any {
                hosted_ids.insert(topic.name.clone(), topic.topic_id);
            }
        }
        drop(hosted_ids);
        self.reconciled.send_replace(image.offset());
    }

    /// Waits until this broker has reconciled its partitions with the image at `offset`.
    async fn wait_reconciled(&self, offset: u64) -> Result<(), ApiError> {
        let mut reconciled = self.reconciled.subscribe();
        let reached = tokio::time::timeout(
            METADATA_RECOVERY_TIMEOUT,
            reconciled.wait_for(|done| done.is_some_and(|done| done >= offset)),
        )
        .await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::new(
                ResponseError::RequestTimedOut,
                format!(
                    "the change committed at metadata offset {offset} was not applied here in time"
                ),
            )),
        }
    }

    /// Proposes `records` as one metadata entry and waits until this broker has applied it.
    async fn commit(&self, records: Vec<Change>) -> Result<u64, ApiError> {
        let records = records.into_iter().map(MetadataRecord::new).collect();
        let offset = self.quorum.propose(records).await.map_err(propose_error)?;
        self.wait_reconciled(offset).await?;
        Ok(offset)
    }

    /// Metadata changes are validated and proposed by the active controller only (clients
    /// send them there: Metadata names it); any other broker answers NOT_CONTROLLER, which
    /// clients retry after refreshing metadata.
    fn require_controller(&self) -> Result<(), ApiError> {
        if self.quorum.is_active_controller() {
            return Ok(());
        }
        Err(ApiError::new(
            ResponseError::NotController,
            format!(
                "broker {} is not the active controller (the active one is {})",
                self.config.node_id,
                self.controller_id()
            ),
        ))
    }

    /// Replica assignments for `count` new partitions starting at `first`, over the registered
    /// unfenced brokers, rack-aware (Kafka's placement, random start and shift as Kafka).
    fn place(
        &self,
        first: u32,
        count: u32,
        replication_factor: i16,
    ) -> Result<Vec<Vec<BrokerId>>, ApiError> {
        let image = self.quorum.view().image();
        let candidates: Vec<Candidate> = image
            .brokers()
            .filter(|broker| !broker.fenced)
            .map(|broker| Candidate {
                broker_id: broker.broker_id,
                rack: broker.rack.clone(),
            })
            .collect();
        let random = Uuid::new_v4().as_u128();
        let replication_factor = usize::try_from(replication_factor).unwrap_or(0);
        placement::assign(
            &candidates,
            count,
            replication_factor,
            first,
            random as usize,
            (random >> 64) as usize,
        )
        .map_err(|message| ApiError::new(ResponseError::InvalidReplicationFactor, message))
    }

    /// The listeners this broker registers with the controller.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        vec![Endpoint {
            name: "PLAINTEXT".into(),
            host: self.config.advertised_host.clone(),
            port: self.config.advertised_port,
        }]
    }

    /// The active controller's id, or -1 while there is none (an election in progress).
    /// The controller clients are told of (Metadata, DescribeCluster): the active controller
    /// when it is a broker they can reach; otherwise (a dedicated controller) this broker, as
    /// Kafka names a live broker, which forwards their admin requests.
    pub fn controller_id(&self) -> BrokerId {
        let Some(active) = self
            .quorum
            .active_controller()
            .and_then(|id| BrokerId::try_from(id).ok())
        else {
            return -1;
        };
        let image = self.quorum.view().image();
        let reachable = image
            .broker(active)
            .is_some_and(|registration| !registration.fenced);
        if reachable || !self.config.is_broker {
            active
        } else {
            self.config.node_id
        }
    }

    /// The registered brokers in the metadata image, fenced ones only if `include_fenced`, and
    /// this one, which serves its own partitions until topics move into the metadata log.
    pub fn brokers(&self, include_fenced: bool) -> Vec<BrokerInfo> {
        let image = self.quorum.view().image();
        let mut brokers: BTreeMap<BrokerId, BrokerInfo> = image
            .brokers()
            .filter(|broker| include_fenced || !broker.fenced)
            .filter_map(|broker| {
                let endpoint = broker.endpoints.iter().find(|e| e.name == "PLAINTEXT")?;
                Some((
                    broker.broker_id,
                    BrokerInfo {
                        broker_id: broker.broker_id,
                        host: endpoint.host.clone(),
                        port: endpoint.port,
                        rack: broker.rack.clone(),
                        fenced: broker.fenced,
                    },
                ))
            })
            .collect();
        brokers
            .entry(self.config.node_id)
            .or_insert_with(|| BrokerInfo {
                broker_id: self.config.node_id,
                host: self.config.advertised_host.clone(),
                port: self.config.advertised_port,
                rack: self.config.rack.clone(),
                fenced: false,
            });
        brokers.into_values().collect()
    }

    /// The cluster's id from the metadata log; this node's own until the first controller has
    /// written one.
    pub fn cluster_id(&self) -> String {
        match self.quorum.view().image().cluster_id() {
            Some(cluster_id) => cluster_id.to_string(),
            None => lock(&self.store).cluster_id().to_string(),
        }
    }

    /// The partition's registration in the metadata image: replicas, leader, epochs, ISR.
    pub fn partition_registration(
        &self,
        topic: &str,
        index: i32,
    ) -> Option<crate::controller::image::PartitionRegistration> {
        let index = u32::try_from(index).ok()?;
        self.quorum
            .view()
            .image()
            .topic_by_name(topic)?
            .partitions
            .get(&index)
            .cloned()
    }

    /// The partition, if the metadata names this broker its leader and it is hosted here:
    /// what Produce and consumer Fetch need. A partition led elsewhere is
    /// NOT_LEADER_OR_FOLLOWER, so the client refreshes metadata and goes to the leader.
    pub fn led_partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>, ResponseError> {
        // On every produce request: read the leader from the image without copying the
        // registration.
        let image = self.quorum.view().image();
        let leader = u32::try_from(index)
            .ok()
            .and_then(|index| image.topic_by_name(topic)?.partitions.get(&index))
            .map(|registration| registration.leader)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        if leader != self.config.node_id {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        self.partition(topic, index)
            .ok_or(ResponseError::UnknownTopicOrPartition)
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let index = u32::try_from(index).ok()?;
        self.partitions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&TopicPartition::new(topic, index))
            .cloned()
    }

    pub fn topic(&self, name: &str) -> Option<TopicRecord> {
        let image = self.quorum.view().image();
        image
            .topic_by_name(name)
            .map(|topic| topic_record(&image, topic))
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<TopicRecord> {
        let image = self.quorum.view().image();
        image.topic(id).map(|topic| topic_record(&image, topic))
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<TopicRecord> {
        let image = self.quorum.view().image();
        let mut topics: Vec<TopicRecord> = image
            .topics()
            .map(|topic| topic_record(&image, topic))
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    pub fn min_insync_replicas(&self, topic: &TopicRecord) -> u32 {
        topic
            .configs
            .get(MIN_INSYNC_REPLICAS)
            .and_then(|value| value.parse().ok())
            .unwrap_or(self.config.min_insync_replicas)
    }

    /// The topic, or UNKNOWN_TOPIC_OR_PARTITION. Produce asks this: as in Kafka, only Metadata
    /// auto-creates a topic, so a client that turned auto-creation off never gets one by producing.
    pub fn existing_topic(&self, name: &str) -> Result<TopicRecord, ApiError> {
        self.topic(name).ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            )
        })
    }

    /// The topic, auto-creating it when the request and `auto.create.topics.enable` both allow
    /// (Metadata only).
    pub async fn topic_or_auto_create(
        &self,
        name: &str,
        allow_auto_create: bool,
    ) -> Result<TopicRecord, ApiError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        validate_topic_name(name)
            .map_err(|message| ApiError::new(ResponseError::InvalidTopicException, message))?;
        if !(allow_auto_create && self.config.auto_create_topics) {
            return Err(ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            ));
        }
        match self
            .create_topic(name, -1, -1, BTreeMap::new(), false)
            .await
        {
            Ok(topic) => Ok(topic),
            // Another connection created it first.
            Err(error) if error.code == ResponseError::TopicAlreadyExists => {
                self.topic(name).ok_or_else(|| {
                    ApiError::new(ResponseError::UnknownTopicOrPartition, "topic vanished")
                })
            }
            // NOT_CONTROLLER: the protocol room forwards the creation to the controller.
            Err(error) => Err(error),
        }
    }

    /// Waits (up to `timeout`) until a topic created elsewhere is in this broker's image and
    /// the partitions it hosts are open.
    pub async fn wait_for_topic(
        &self,
        name: &str,
        timeout: std::time::Duration,
    ) -> Option<TopicRecord> {
        let mut reconciled = self.reconciled.subscribe();
        let arrived = tokio::time::timeout(
            timeout,
            reconciled.wait_for(|done| {
                let image = self.quorum.view().image();
                image.topic_by_name(name).is_some() && *done >= image.offset()
            }),
        )
        .await;
        match arrived {
            Ok(Ok(_)) => self.topic(name),
            _ => None,
        }
    }

    /// CreateTopics: validated here on the active controller, placed on the registered
    /// brokers, committed as one metadata entry (topic, partitions, configs) and hosted by the
    /// brokers it names. -1 partitions or replication factor means the broker default.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicRecord, ApiError> {
        validate_topic_name(name)
            .map_err(|message| ApiError::new(ResponseError::InvalidTopicException, message))?;
        let partitions = if partitions == -1 {
            self.config.num_partitions as i32
        } else {
            partitions
        };
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("{partitions} partitions; a topic needs 1 to {PARTITIONS_PER_TOPIC_MAX}"),
            ));
        }
        let replication_factor = if replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            replication_factor
        };
        topic_log_config(&self.config.log_defaults, &configs)
            .map_err(|message| ApiError::new(ResponseError::InvalidConfig, message))?;
        self.check_policy_bindings(&configs)?;
        self.require_controller()?;
        if self.topic(name).is_some() {
            return Err(ApiError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
        let assignments = self.place(0, partitions as u32, replication_factor)?;
        let topic = TopicRecord {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions: partitions as u32,
            replication_factor,
            configs,
        };
        if validate_only {
            return Ok(topic);
        }
        let mut records = vec![Change::Topic {
            name: topic.name.clone(),
            topic_id: topic.id,
        }];
        records.extend(partition_records(topic.id, 0, assignments));
        records.extend(topic.configs.iter().map(|(key, value)| Change::Config {
            resource: ConfigResource::Topic(topic.name.clone()),
            key: key.clone(),
            value: Some(value.clone()),
        }));
        match self.commit(records).await {
            Ok(_) => {}
            // Lost a race with another CreateTopics of the same name.
            Err(_)
                if self
                    .topic(name)
                    .is_some_and(|existing| existing.id != topic.id) =>
            {
                return Err(ApiError::new(
                    ResponseError::TopicAlreadyExists,
                    format!("topic '{name}' already exists"),
                ));
            }
            Err(error) => return Err(error),
        }
        tracing::info!(topic = %topic.name, partitions = topic.partitions, id = %topic.id, "created topic");
        Ok(topic)
    }

    /// DeleteTopics: committed as a topic removal; every broker hosting it deletes its logs.
    pub async fn delete_topic(&self, name: &str) -> Result<TopicRecord, ApiError> {
        let topic = self.existing_topic(name)?;
        self.require_controller()?;
        self.commit(vec![Change::RemoveTopic { topic_id: topic.id }])
            .await?;
        Ok(topic)
    }

    /// Every topic config with its effective value and where it comes from, as DescribeConfigs
    /// and CreateTopics report them.
    pub fn effective_topic_configs(&self, topic: &TopicRecord) -> Vec<EffectiveConfig> {
        topics::topic_config_keys()
            .map(|key| {
                if let Some(value) = topic.configs.get(key) {
                    return EffectiveConfig {
                        name: key,
                        value: value.clone(),
                        source: ConfigSource::Topic,
                    };
                }
                let broker_key = crate::config::broker_key_for_topic_config(key);
                let value = match key {
                    MIN_INSYNC_REPLICAS => self.config.min_insync_replicas.to_string(),
                    topics::CLEANUP_POLICY => "delete".to_string(),
                    _ => match crate::policy::PolicyKind::from_topic_config(key) {
                        Some(kind) => self.policies.default_plugin(kind),
                        None => self.config.log_defaults.get(key).unwrap_or_default(),
                    },
                };
                let source = match broker_key {
                    Some(broker_key) if !self.config.is_default(broker_key) => {
                        ConfigSource::StaticBroker
                    }
                    _ => ConfigSource::Default,
                };
                EffectiveConfig {
                    name: key,
                    value,
                    source,
                }
            })
            .collect()
    }

    /// AlterConfigs (replace every override) and IncrementalAlterConfigs (`change` edits them):
    /// the difference is committed as config records; each broker applies it to its logs.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), ApiError>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let topic = self.existing_topic(name)?;
        let mut configs = topic.configs.clone();
        change(&mut configs)?;
        topic_log_config(&self.config.log_defaults, &configs)
            .map_err(|message| ApiError::new(ResponseError::InvalidConfig, message))?;
        self.check_policy_bindings(&configs)?;
        if validate_only {
            return Ok(());
        }
        self.require_controller()?;
        let resource = ConfigResource::Topic(name.to_string());
        let mut records: Vec<Change> = configs
            .iter()
            .filter(|(key, value)| topic.configs.get(*key) != Some(*value))
            .map(|(key, value)| Change::Config {
                resource: resource.clone(),
                key: key.clone(),
                value: Some(value.clone()),
            })
            .collect();
        records.extend(
            topic
                .configs
                .keys()
                .filter(|key| !configs.contains_key(*key))
                .map(|key| Change::Config {
                    resource: resource.clone(),
                    key: key.clone(),
                    value: None,
                }),
        );
        if records.is_empty() {
            return Ok(());
        }
        self.commit(records).await?;
        tracing::info!(topic = %name, ?configs, "altered topic configs");
        Ok(())
    }

    /// CreatePartitions: grows a topic to `count` partitions (Kafka never shrinks one), the new
    /// ones placed like a new topic's.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let topic = self.existing_topic(name)?;
        let current = topic.partitions as i32;
        if count <= current {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!(
                    "topic '{name}' has {current} partitions; the new count must be larger, not {count}"
                ),
            ));
        }
        if count > PARTITIONS_PER_TOPIC_MAX {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("{count} partitions exceeds the limit of {PARTITIONS_PER_TOPIC_MAX}"),
            ));
        }
        self.require_controller()?;
        let from = topic.partitions;
        let assignments = self.place(from, (count - current) as u32, topic.replication_factor)?;
        if validate_only {
            return Ok(());
        }
        self.commit(partition_records(topic.id, from, assignments).collect())
            .await?;
        tracing::info!(topic = %name, from, to = count, "added partitions");
        Ok(())
    }

    /// DeleteRecords: moves the log start offset (-1 means the high watermark) and checkpoints it
    /// at once, so an acknowledged deletion survives a crash.
    pub fn delete_records(&self, topic: &str, index: i32, offset: i64) -> Result<u64, ApiError> {
        let partition = self.partition(topic, index).ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("{topic}-{index} does not exist"),
            )
        })?;
        let offset = if offset == -1 {
            partition.high_watermark()
        } else {
            offset.max(0) as u64
        };
        let log_start_offset = partition.delete_records_before(offset).map_err(|error| {
            ApiError::new(
                ResponseError::try_from_code(error.code)
                    .unwrap_or(ResponseError::UnknownServerError),
                error.message,
            )
        })?;
        self.logs
            .checkpoint()
            .map_err(|error| ApiError::new(ResponseError::KafkaStorageError, error.to_string()))?;
        Ok(log_start_offset)
    }

    pub fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        lock(&self.store)
            .allocate_producer_id()
            .map_err(|error| ApiError::new(ResponseError::KafkaStorageError, error.to_string()))
    }

    /// Periodic work: retention (never past the high watermark) and time-based roll and flush.
    pub fn run_log_maintenance(&self) {
        for partition in self.all_partitions() {
            let high_watermark = partition.high_watermark();
            let result = partition.log().and_then(|mut log| {
                log.maybe_roll_by_time()
                    .and_then(|_| log.apply_retention(high_watermark))
                    .and_then(|_| log.maybe_flush_by_time())
            });
            if let Err(error) = result {
                tracing::error!(partition = %partition.topic_partition, %error, "log maintenance failed");
            }
        }
    }

    /// Periodic: the checkpoint files, and a producer-state snapshot of every partition that
    /// took batches since its last one, so even an unclean restart reads only recent headers.
    pub fn checkpoint(&self) {
        self.write_producer_snapshots();
        if let Err(error) = self.logs.checkpoint() {
            tracing::error!(%error, "writing checkpoints failed");
        }
    }

    /// The storage half of a clean shutdown: producer-state snapshots, then flush, checkpoint and
    /// clean-shutdown marker, so the next start reads no batch headers at all.
    pub fn shutdown_storage(&self) -> anyhow::Result<()> {
        self.write_producer_snapshots();
        self.logs.shutdown()?;
        Ok(())
    }

    /// Every hosted partition, copied out so the map's lock is not held while each is worked on.
    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A partition whose snapshot fails is only slower to start: its log is read instead.
    fn write_producer_snapshots(&self) {
        for partition in self.all_partitions() {
            if let Err(error) = partition.write_producer_snapshot() {
                tracing::warn!(partition = %partition.topic_partition, %error, "producer-state snapshot not written");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory from before the metadata log: its topics (ids, partition counts,
    /// configs) move into the log on the first start, their records stay readable, and the
    /// old file no longer lists them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_node_data_directory_moves_its_topics_into_the_metadata_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = Uuid::new_v4();
        {
            let mut store = TopicStore::open(dir.path()).expect("store");
            store
                .insert(TopicRecord {
                    name: "legacy".into(),
                    id,
                    partitions: 2,
                    replication_factor: 1,
                    configs: [("retention.ms".to_string(), "60000".to_string())].into(),
                })
                .expect("insert");
        }
        let config = BrokerConfig::load(None, &[format!("log.dirs={}", dir.path().display())])
            .expect("config");
        let broker = Broker::start(config.clone()).await.expect("starts");
        let topic = broker.topic("legacy").expect("migrated");
        assert_eq!((topic.id, topic.partitions), (id, 2));
        assert_eq!(
            topic.configs.get("retention.ms").map(String::as_str),
            Some("60000")
        );
        assert!(broker.led_partition("legacy", 1).is_ok());
        assert!(
            TopicStore::open(dir.path())
                .expect("store")
                .get("legacy")
                .is_none()
        );
        broker.quorum.shutdown().await;
        drop(broker);

        // The next start finds the topic in the metadata log alone.
        let broker = Broker::start(config).await.expect("restarts");
        assert_eq!(broker.topic("legacy").map(|topic| topic.id), Some(id));
        broker.quorum.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_node_plugin_registry_moves_into_the_metadata_log() {
        use crate::policy::PolicyKind;
        use crate::policy::registry::{Entry, InstalledVersion, LEGACY_REGISTRY_FILE};

        let dir = tempfile::tempdir().expect("tempdir");
        let plugins = dir.path().join(PLUGINS_DIR);
        std::fs::create_dir_all(&plugins).expect("plugins dir");
        let bytes = crate::policy::defaults::PARTITIONER;
        let sha256 = crate::policy::engine::sha256_hex(bytes);
        std::fs::write(plugins.join(format!("{sha256}.wasm")), bytes).expect("component");
        let installed = |version: &str| InstalledVersion {
            version: version.into(),
            sha256: sha256.clone(),
            installed_at_ms: 5,
        };
        let legacy = serde_json::json!({
            "plugins": {"mine": Entry {
                kind: PolicyKind::Partitioner,
                versions: vec![installed("1"), installed("2")],
                current: Some("2".into()),
                history: vec!["1".into()],
                activated_at: None,
            }},
            "defaults": {"partitioner": "mine"},
        });
        std::fs::write(plugins.join(LEGACY_REGISTRY_FILE), legacy.to_string()).expect("registry");
        let config = BrokerConfig::load(None, &[format!("log.dirs={}", dir.path().display())])
            .expect("config");
        let broker = Broker::start(config.clone()).await.expect("starts");
        let check = |broker: &Broker| {
            let info = broker.policies.info("mine").expect("migrated");
            assert_eq!(info.current_version.as_deref(), Some("2"));
            assert!(info.default_for_kind);
            assert_eq!(
                broker.policies.default_plugin(PolicyKind::Partitioner),
                "mine"
            );
            assert_eq!(
                broker.quorum.view().image().plugins().plugins["mine"].history,
                vec!["1".to_string()]
            );
        };
        check(&broker);
        assert!(!plugins.join(LEGACY_REGISTRY_FILE).exists(), "read once");
        broker.quorum.shutdown().await;
        drop(broker);

        let broker = Broker::start(config).await.expect("restarts");
        check(&broker);
        broker.quorum.shutdown().await;
    }
}
