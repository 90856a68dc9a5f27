//! The broker shell: what one `weir serve` process holds (logs, partitions, topics) and the
//! operations the Kafka API handlers call. Handlers decode and encode; decisions live here and in
//! the rooms below (storage, replication).

pub mod serve;
pub mod topics;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::clock::SystemClock;
use crate::config::BrokerConfig;
use crate::controller::quorum::{NodeId, Quorum, QuorumConfig};
use crate::controller::records::{BrokerId, Endpoint};
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
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        } else {
            config.controller_listener
        },
        // Elections start after 3 to 6 heartbeats of silence: Kafka's election timeout is
        // the lower end.
        heartbeat_interval: config.quorum_election_timeout / 3,
        snapshot_every: config.metadata_snapshot_interval,
        lifecycle: config.lifecycle,
    }
}

/// The plugin registry's directory under `log.dirs` (not a partition name: it has no `-N`).
pub const PLUGINS_DIR: &str = "plugins";

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

    /// Opens the data directory: topic metadata, then every partition log (recovering as needed).
    /// Starts this node's member of the controller quorum, then opens the broker.
    pub async fn start(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        let quorum = Quorum::start(quorum_config(&config)).await?;
        let opening = quorum.clone();
        match tokio::task::spawn_blocking(move || Broker::open(config, opening)).await? {
            Ok(broker) => Ok(broker),
            Err(error) => {
                quorum.shutdown().await;
                Err(error)
            }
        }
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
        let topic_configs: HashMap<String, LogConfig> = store
            .all()
            .map(|topic| {
                let config = topic_log_config(&config.log_defaults, &topic.configs).unwrap_or_else(|error| {
                    tracing::warn!(topic = %topic.name, %error, "stored topic config is invalid; using defaults");
                    config.log_defaults.clone()
                });
                (topic.name.clone(), config)
            })
            .collect();
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
        let broker = Broker {
            config,
            logs,
            store: Mutex::new(store),
            partitions: RwLock::new(HashMap::new()),
            policies,
            groups,
            quorum,
        };
        let topics: Vec<TopicRecord> = lock(&broker.store).all().cloned().collect();
        for topic in topics {
            broker.host_partitions(&topic, 0)?;
        }
        for tp in broker.logs.partitions() {
            if lock(&broker.store)
                .get(&tp.topic)
                .is_none_or(|topic| tp.partition >= topic.partitions)
            {
                tracing::warn!(partition = %tp, "log directory belongs to no known topic; leaving it untouched");
            }
        }
        Ok(Arc::new(broker))
    }

    /// Opens (creating if needed) the logs of partitions `from..` of `topic` and serves them.
    fn host_partitions(&self, topic: &TopicRecord, from: u32) -> anyhow::Result<()> {
        let config = topic_log_config(&self.config.log_defaults, &topic.configs)
            .map_err(anyhow::Error::msg)?;
        for index in from..topic.partitions {
            let tp = TopicPartition::new(topic.name.as_str(), index);
            let log = self.logs.get_or_create(&tp, config.clone())?;
            let partition = Partition::new(tp.clone(), log, SINGLE_NODE_LEADER_EPOCH)?;
            self.partitions
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(tp, partition);
        }
        Ok(())
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
    pub fn controller_id(&self) -> BrokerId {
        self.quorum
            .active_controller()
            .and_then(|id| BrokerId::try_from(id).ok())
            .unwrap_or(-1)
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

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let index = u32::try_from(index).ok()?;
        self.partitions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&TopicPartition::new(topic, index))
            .cloned()
    }

    pub fn topic(&self, name: &str) -> Option<TopicRecord> {
        lock(&self.store).get(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<TopicRecord> {
        lock(&self.store).by_id(id).cloned()
    }

    pub fn topics(&self) -> Vec<TopicRecord> {
        lock(&self.store).all().cloned().collect()
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
    pub fn topic_or_auto_create(
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
        match self.create_topic(name, -1, -1, BTreeMap::new(), false) {
            Ok(topic) => Ok(topic),
            // Another connection created it first.
            Err(error) if error.code == ResponseError::TopicAlreadyExists => {
                self.topic(name).ok_or_else(|| {
                    ApiError::new(ResponseError::UnknownTopicOrPartition, "topic vanished")
                })
            }
            Err(error) => Err(error),
        }
    }

    /// CreateTopics. -1 partitions or replication factor means the broker default.
    pub fn create_topic(
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
        if replication_factor != 1 {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication factor {replication_factor} is larger than the 1 available broker"
                ),
            ));
        }
        topic_log_config(&self.config.log_defaults, &configs)
            .map_err(|message| ApiError::new(ResponseError::InvalidConfig, message))?;
        self.check_policy_bindings(&configs)?;
        let mut store = lock(&self.store);
        if store.get(name).is_some() {
            return Err(ApiError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
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
        // Logs first: a crash in between leaves unreferenced directories, never a topic without logs.
        self.host_partitions(&topic, 0)
            .map_err(|error| ApiError::new(ResponseError::KafkaStorageError, error.to_string()))?;
        store
            .insert(topic.clone())
            .map_err(|error| ApiError::new(ResponseError::KafkaStorageError, error.to_string()))?;
        tracing::info!(topic = %topic.name, partitions = topic.partitions, id = %topic.id, "created topic");
        Ok(topic)
    }

    /// DeleteTopics: forgets the topic, then deletes its logs.
    pub fn delete_topic(&self, name: &str) -> Result<TopicRecord, ApiError> {
        let topic = lock(&self.store)
            .remove(name)
            .map_err(|error| ApiError::new(ResponseError::KafkaStorageError, error.to_string()))?
            .ok_or_else(|| {
                ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )
            })?;
        for index in 0..topic.partitions {
            let tp = TopicPartition::new(name, index);
            self.partitions
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&tp);
            if let Err(error) = self.logs.delete(&tp) {
                tracing::error!(partition = %tp, %error, "could not delete the log of a deleted topic");
            }
        }
        self.groups.forget_topic(name);
        tracing::info!(topic = %name, "deleted topic");
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

    /// AlterConfigs (replace every override) and IncrementalAlterConfigs (`change` edits them).
    pub fn alter_topic_configs(
        &self,
        name: &str,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), ApiError>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let mut store = lock(&self.store);
        let mut topic = store.get(name).cloned().ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            )
        })?;
        change(&mut topic.configs)?;
        let log_config = topic_log_config(&self.config.log_defaults, &topic.configs)
            .map_err(|message| ApiError::new(ResponseError::InvalidConfig, message))?;
        self.check_policy_bindings(&topic.configs)?;
        if validate_only {
            return Ok(());
        }
        store
            .insert(topic.clone())
            .map_err(|error| ApiError::new(ResponseError::KafkaStorageError, error.to_string()))?;
        drop(store);
        for index in 0..topic.partitions {
            // A log out of service (poisoned) keeps its old config; a restart reopens it with
            // the stored one.
            if let Some(partition) = self.partition(name, index as i32)
                && let Ok(mut log) = partition.log()
            {
                log.set_config(log_config.clone());
            }
        }
        tracing::info!(topic = %name, configs = ?topic.configs, "altered topic configs");
        Ok(())
    }

    /// CreatePartitions: grows a topic to `count` partitions (Kafka never shrinks one).
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let mut store = lock(&self.store);
        let mut topic = store.get(name).cloned().ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            )
        })?;
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
        if validate_only {
            return Ok(());
        }
        let from = topic.partitions;
        topic.partitions = count as u32;
        self.host_partitions(&topic, from)
            .map_err(|error| ApiError::new(ResponseError::KafkaStorageError, error.to_string()))?;
        store
            .insert(topic)
            .map_err(|error| ApiError::new(ResponseError::KafkaStorageError, error.to_string()))?;
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
