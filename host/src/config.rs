//! Broker configuration: Kafka's property names and defaults, from a TOML file and `--set`
//! overrides. Every key, its default and its meaning live in [`BrokerConfig::KEYS`].
//!
//! The TOML file may spell a key flat and quoted (`"log.dirs" = "/data"`) or as nested tables
//! (`[log] dirs = "/data"`): both flatten to Kafka's dotted name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::storage::LogConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Toml { path: String, message: String },
    #[error("unknown config key '{0}' (see `weir serve --help` for the supported keys)")]
    UnknownKey(String),
    #[error("config '{key}': {message}")]
    Invalid { key: String, message: String },
    #[error("--set expects key=value, got '{0}'")]
    BadOverride(String),
}

/// (key, default, what it means). Kafka's names; keys marked "log." are the broker-wide defaults
/// of the topic configs of the same meaning.
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "node.id",
        "1",
        "this node's id: broker id and controller quorum voter id",
    ),
    (
        "process.roles",
        "broker,controller",
        "what this node is: broker,controller (combined mode: a broker and a quorum voter), broker (a dedicated broker following the voters' metadata log as a Raft learner) or controller (a dedicated voter with no Kafka listener)",
    ),
    (
        "listeners",
        "PLAINTEXT://127.0.0.1:9092",
        "NAME://host:port, comma-separated: PLAINTEXT for clients, a controller listener \
         (controller.listener.names) for the quorum",
    ),
    (
        "controller.listener.names",
        "CONTROLLER",
        "the listener in `listeners` the controller quorum's RPCs use",
    ),
    (
        "controller.quorum.voters",
        "",
        "id@host:port,... of every controller; empty: this node alone (a one-node cluster)",
    ),
    (
        "controller.quorum.election.timeout.ms",
        "1000",
        "time without a controller after which a voter starts an election",
    ),
    (
        "metadata.log.dir",
        "",
        "directory of the metadata log (__cluster_metadata); empty: under the first of log.dirs",
    ),
    (
        "metadata.log.max.entries.between.snapshots",
        "1000",
        "metadata log entries after which a snapshot is taken and the log before it dropped",
    ),
    (
        "broker.rack",
        "",
        "rack of this broker, for rack-aware replica placement",
    ),
    (
        "broker.heartbeat.interval.ms",
        crate::controller::quorum::lifecycle::HEARTBEAT_INTERVAL_MS_DEFAULT,
        "how often a broker heartbeats to the active controller (Kafka: 2000)",
    ),
    (
        "broker.session.timeout.ms",
        crate::controller::quorum::lifecycle::SESSION_TIMEOUT_MS_DEFAULT,
        "heartbeat silence after which the controller fences a broker (Kafka: 9000)",
    ),
    (
        "advertised.listeners",
        "",
        "address clients are told to connect to; defaults to listeners",
    ),
    (
        "log.dirs",
        "./weir-data",
        "directory holding partition logs and metadata",
    ),
    ("num.partitions", "1", "partitions of an auto-created topic"),
    (
        "default.replication.factor",
        "1",
        "replication factor of an auto-created topic",
    ),
    (
        "auto.create.topics.enable",
        "true",
        "create unknown topics on Metadata and Produce",
    ),
    (
        "message.max.bytes",
        "1048588",
        "largest record batch a topic accepts (topic: max.message.bytes)",
    ),
    (
        "socket.request.max.bytes",
        "104857600",
        "largest request frame; a bigger one closes the connection",
    ),
    (
        "min.insync.replicas",
        "1",
        "ISR size acks=all needs (topic: min.insync.replicas)",
    ),
    (
        "log.segment.bytes",
        "1073741824",
        "topic default for segment.bytes",
    ),
    ("log.roll.ms", "604800000", "topic default for segment.ms"),
    (
        "log.retention.ms",
        "604800000",
        "topic default for retention.ms",
    ),
    (
        "log.retention.bytes",
        "-1",
        "topic default for retention.bytes",
    ),
    (
        "log.index.interval.bytes",
        "4096",
        "topic default for index.interval.bytes",
    ),
    (
        "log.flush.interval.messages",
        "9223372036854775807",
        "topic default for flush.messages",
    ),
    (
        "log.flush.interval.ms",
        "9223372036854775807",
        "topic default for flush.ms",
    ),
    (
        "log.message.timestamp.before.max.ms",
        "9223372036854775807",
        "topic default for message.timestamp.before.max.ms",
    ),
    (
        "log.message.timestamp.after.max.ms",
        "3600000",
        "topic default for message.timestamp.after.max.ms",
    ),
    (
        "log.retention.check.interval.ms",
        "300000",
        "how often retention runs",
    ),
    (
        "log.flush.offset.checkpoint.interval.ms",
        "60000",
        "how often recovery points are checkpointed",
    ),
    (
        "connections.max",
        "10000",
        "open client connections before new ones are refused",
    ),
    (
        "queued.max.requests",
        "500",
        "requests read ahead per connection before reading pauses",
    ),
    (
        "shutdown.timeout.ms",
        "30000",
        "how long a shutdown waits for in-flight requests",
    ),
    (
        "admin.listener",
        "127.0.0.1:9644",
        "address of the HTTP admin API (plugins, metrics, HTTP produce)",
    ),
    (
        "group.initial.rebalance.delay.ms",
        "3000",
        "how long the first rebalance of an empty consumer group waits for more members",
    ),
    (
        "group.min.session.timeout.ms",
        "6000",
        "shortest session.timeout.ms a group member may ask for",
    ),
    (
        "group.max.session.timeout.ms",
        "1800000",
        "longest session.timeout.ms a group member may ask for",
    ),
    (
        "group.max.size",
        "2147483647",
        "most members a consumer group may have; a join beyond it gets GROUP_MAX_SIZE_REACHED",
    ),
    (
        "offset.metadata.max.bytes",
        "4096",
        "longest metadata string an offset commit may carry",
    ),
    (
        "offsets.retention.minutes",
        "10080",
        "how long a consumer group's committed offsets outlive its last member",
    ),
    (
        "offsets.retention.check.interval.ms",
        "600000",
        "how often expired committed offsets are looked for",
    ),
    (
        "policy.call.timeout.ms",
        "2",
        "CPU time a partitioner or acks plugin call may use",
    ),
    (
        "policy.election.call.timeout.ms",
        "10",
        "CPU time an election plugin call may use",
    ),
    (
        "policy.memory.max.bytes",
        "16777216",
        "memory a plugin instance may grow to",
    ),
];

/// Broker-wide `log.*` keys and the topic config each is the default of.
const TOPIC_DEFAULT_KEYS: &[(&str, &str)] = &[
    ("log.segment.bytes", crate::storage::config::SEGMENT_BYTES),
    ("log.roll.ms", crate::storage::config::SEGMENT_MS),
    ("log.retention.ms", crate::storage::config::RETENTION_MS),
    (
        "log.retention.bytes",
        crate::storage::config::RETENTION_BYTES,
    ),
    (
        "log.index.interval.bytes",
        crate::storage::config::INDEX_INTERVAL_BYTES,
    ),
    (
        "message.max.bytes",
        crate::storage::config::MAX_MESSAGE_BYTES,
    ),
    (
        "log.flush.interval.messages",
        crate::storage::config::FLUSH_MESSAGES,
    ),
    ("log.flush.interval.ms", crate::storage::config::FLUSH_MS),
    (
        "log.message.timestamp.before.max.ms",
        crate::storage::config::MESSAGE_TIMESTAMP_BEFORE_MAX_MS,
    ),
    (
        "log.message.timestamp.after.max.ms",
        crate::storage::config::MESSAGE_TIMESTAMP_AFTER_MAX_MS,
    ),
];

/// The broker-wide key whose value is the default of topic config `topic_key`, if any.
pub fn broker_key_for_topic_config(topic_key: &str) -> Option<&'static str> {
    TOPIC_DEFAULT_KEYS
        .iter()
        .find(|(_, topic)| *topic == topic_key)
        .map(|(broker, _)| *broker)
        .or((topic_key == "min.insync.replicas").then_some("min.insync.replicas"))
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    values: BTreeMap<String, String>,
    pub node_id: i32,
    /// The Kafka (PLAINTEXT) listener.
    pub listener: SocketAddr,
    /// The controller quorum's: where peers' Raft RPCs arrive. Required when there are peers.
    pub controller_listener: Option<SocketAddr>,
    /// `controller.quorum.voters`: every voter's id and controller address. Empty means this
    /// node alone, a one-voter quorum.
    pub quorum_voters: BTreeMap<i32, String>,
    /// `process.roles` includes `controller`: a voter. Otherwise (`broker` alone) the node
    /// follows the voters' metadata log as a Raft learner.
    pub is_controller: bool,
    /// `process.roles` includes `broker`: it registers, hosts partitions and serves clients.
    /// A dedicated controller (`controller` alone) has no Kafka listener; `listener` is then
    /// never bound.
    pub is_broker: bool,
    pub quorum_election_timeout: std::time::Duration,
    pub metadata_dir: PathBuf,
    pub metadata_snapshot_interval: u64,
    pub rack: Option<String>,
    pub lifecycle: crate::controller::quorum::lifecycle::LifecycleTimes,
    pub advertised_host: String,
    pub advertised_port: u16,
    pub log_dir: PathBuf,
    pub num_partitions: u32,
    pub default_replication_factor: i16,
    pub auto_create_topics: bool,
    pub socket_request_max_bytes: usize,
    pub min_insync_replicas: u32,
    pub retention_check_interval_ms: u64,
    pub checkpoint_interval_ms: u64,
    pub connections_max: usize,
    pub queued_max_requests: usize,
    pub shutdown_timeout_ms: u64,
    pub admin_listener: SocketAddr,
    /// Sandbox limits of plugin calls (`policy.*`).
    pub policy: crate::policy::PolicyConfig,
    /// Consumer groups (`group.*`, `offset.metadata.max.bytes`).
    pub group: crate::group::GroupConfig,
    /// Topic config defaults (`segment.bytes`, ...) derived from the `log.*` keys.
    pub log_defaults: LogConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig::from_values(BTreeMap::new()).expect("the defaults are valid")
    }
}

impl BrokerConfig {
    /// Reads an optional TOML file, then applies `key=value` overrides in order.
    pub fn load(file: Option<&std::path::Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut values = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let table: toml::Table =
                text.parse()
                    .map_err(|error: toml::de::Error| ConfigError::Toml {
                        path: path.display().to_string(),
                        message: error.to_string(),
                    })?;
            flatten("", &toml::Value::Table(table), &mut values);
        }
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| ConfigError::BadOverride(item.clone()))?;
            values.insert(key.trim().to_string(), value.trim().to_string());
        }
        BrokerConfig::from_values(values)
    }

    fn from_values(values: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        for key in values.keys() {
            if !KEYS.iter().any(|(known, _, _)| known == key) {
                return Err(ConfigError::UnknownKey(key.clone()));
            }
        }
        let get = |key: &str| -> String {
            values
                .get(key)
                .cloned()
                .or_else(|| {
                    KEYS.iter()
                        .find(|(known, _, _)| *known == key)
                        .map(|(_, default, _)| default.to_string())
                })
                .unwrap_or_default()
        };
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_string(),
            message,
        };
        fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
            value.parse().map_err(|_| ConfigError::Invalid {
                key: key.to_string(),
                message: format!("'{value}' is not a valid number"),
            })
        }
        let positive_ms = |key: &str| -> Result<std::time::Duration, ConfigError> {
            match number::<u64>(key, &get(key))? {
                0 => Err(invalid(key, "must be at least 1".to_string())),
                ms => Ok(std::time::Duration::from_millis(ms)),
            }
        };
        let controller_names: Vec<String> = get("controller.listener.names")
            .split(',')
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .collect();
        let listeners = parse_listeners(&get("listeners"), &controller_names)
            .map_err(|message| invalid("listeners", message))?;
        let node_id: i32 = number("node.id", &get("node.id"))?;
        if node_id < 0 {
            return Err(invalid("node.id", "must not be negative".to_string()));
        }
        let roles: Vec<String> = get("process.roles")
            .split(',')
            .map(|role| role.trim().to_string())
            .collect();
        if let Some(unknown) = roles
            .iter()
            .find(|role| *role != "broker" && *role != "controller")
        {
            return Err(invalid(
                "process.roles",
                format!("'{unknown}' is not broker or controller"),
            ));
        }
        let is_broker = roles.iter().any(|role| role == "broker");
        let is_controller = roles.iter().any(|role| role == "controller");
        let quorum_voters = parse_voters(&get("controller.quorum.voters"))
            .map_err(|message| invalid("controller.quorum.voters", message))?;
        let listener = match (listeners.plaintext, is_broker) {
            (Some(_), false) => {
                return Err(invalid(
                    "listeners",
                    "a dedicated controller (process.roles=controller) serves no clients: list only its controller listener".to_string(),
                ));
            }
            (Some(listener), true) => listener,
            (None, true) => {
                return Err(invalid(
                    "listeners",
                    "no PLAINTEXT listener (PLAINTEXT://host:port)".to_string(),
                ));
            }
            // Never bound: a dedicated controller has no Kafka listener. Its controller
            // listener's host stands in where an address is shown.
            (None, false) => match listeners.controller {
                Some(controller) => SocketAddr::new(controller.ip(), 0),
                None => {
                    return Err(invalid(
                        "listeners",
                        "a dedicated controller needs its controller listener (CONTROLLER://host:port)".to_string(),
                    ));
                }
            },
        };
        if !is_broker && !quorum_voters.contains_key(&node_id) {
            return Err(invalid(
                "process.roles",
                format!(
                    "a dedicated controller must be one of controller.quorum.voters (node.id={node_id})"
                ),
            ));
        }
        if !is_controller {
            // A dedicated broker follows the metadata log of the voters as a Raft learner.
            if quorum_voters.is_empty() {
                return Err(invalid(
                    "process.roles",
                    "a dedicated broker (process.roles=broker) needs controller.quorum.voters to follow".to_string(),
                ));
            }
            if quorum_voters.contains_key(&node_id) {
                return Err(invalid(
                    "process.roles",
                    format!(
                        "node {node_id} is listed in controller.quorum.voters, so it is a controller: use broker,controller"
                    ),
                ));
            }
        } else if !quorum_voters.is_empty() {
            if !quorum_voters.contains_key(&node_id) {
                return Err(invalid(
                    "controller.quorum.voters",
                    format!("does not list this node (node.id={node_id})"),
                ));
            }
            if listeners.controller.is_none() {
                return Err(invalid(
                    "listeners",
                    format!(
                        "a voter of a quorum with peers needs a controller listener ({}://host:port)",
                        controller_names
                            .first()
                            .map_or("CONTROLLER", String::as_str)
                    ),
                ));
            }
        }
        let quorum_election_timeout = positive_ms("controller.quorum.election.timeout.ms")?;
        let metadata_snapshot_interval: u64 = number(
            "metadata.log.max.entries.between.snapshots",
            &get("metadata.log.max.entries.between.snapshots"),
        )?;
        if metadata_snapshot_interval == 0 {
            return Err(invalid(
                "metadata.log.max.entries.between.snapshots",
                "must be at least 1".to_string(),
            ));
        }
        let log_dir = PathBuf::from(get("log.dirs").split(',').next().unwrap_or_default().trim());
        let metadata_dir = match get("metadata.log.dir").trim() {
            "" => log_dir.join(crate::controller::quorum::METADATA_DIR),
            dir => PathBuf::from(dir),
        };
        let lifecycle = crate::controller::quorum::lifecycle::LifecycleTimes {
            heartbeat_interval: positive_ms("broker.heartbeat.interval.ms")?,
            session_timeout: positive_ms("broker.session.timeout.ms")?,
        };
        if lifecycle.session_timeout <= lifecycle.heartbeat_interval {
            return Err(invalid(
                "broker.session.timeout.ms",
                "must exceed broker.heartbeat.interval.ms".to_string(),
            ));
        }
        let rack = Some(get("broker.rack").trim().to_string()).filter(|rack| !rack.is_empty());
        let advertised_text = get("advertised.listeners");
        let (advertised_host, advertised_port) = if advertised_text.is_empty() {
            (listener.ip().to_string(), listener.port())
        } else {
            parse_host_port(&advertised_text)
                .map_err(|message| invalid("advertised.listeners", message))?
        };
        let auto_create_topics = match get("auto.create.topics.enable").as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(invalid(
                    "auto.create.topics.enable",
                    format!("'{other}' is not true or false"),
                ));
            }
        };
        let mut log_defaults = LogConfig::default();
        for (broker_key, topic_key) in TOPIC_DEFAULT_KEYS {
            log_defaults
                .set(topic_key, &get(broker_key))
                .map_err(|error| invalid(broker_key, error.to_string()))?;
        }
        let num_partitions: u32 = number("num.partitions", &get("num.partitions"))?;
        if num_partitions == 0 {
            return Err(invalid("num.partitions", "must be at least 1".to_string()));
        }
        Ok(BrokerConfig {
            node_id,
            listener,
            controller_listener: listeners.controller,
            quorum_voters,
            is_controller,
            is_broker,
            quorum_election_timeout,
            metadata_dir,
            metadata_snapshot_interval,
            rack,
            lifecycle,
            advertised_host,
            advertised_port,
            log_dir,
            num_partitions,
            default_replication_factor: number(
                "default.replication.factor",
                &get("default.replication.factor"),
            )?,
            auto_create_topics,
            socket_request_max_bytes: number(
                "socket.request.max.bytes",
                &get("socket.request.max.bytes"),
            )?,
            min_insync_replicas: number("min.insync.replicas", &get("min.insync.replicas"))?,
            retention_check_interval_ms: number(
                "log.retention.check.interval.ms",
                &get("log.retention.check.interval.ms"),
            )?,
            checkpoint_interval_ms: number(
                "log.flush.offset.checkpoint.interval.ms",
                &get("log.flush.offset.checkpoint.interval.ms"),
            )?,
            connections_max: number("connections.max", &get("connections.max"))?,
            queued_max_requests: number::<usize>(
                "queued.max.requests",
                &get("queued.max.requests"),
            )?
            .max(1),
            shutdown_timeout_ms: number("shutdown.timeout.ms", &get("shutdown.timeout.ms"))?,
            admin_listener: get("admin.listener").parse().map_err(|_| {
                invalid(
                    "admin.listener",
                    format!("'{}' is not HOST:PORT", get("admin.listener")),
                )
            })?,
            policy: crate::policy::PolicyConfig {
                call_timeout: positive_ms("policy.call.timeout.ms")?,
                election_call_timeout: positive_ms("policy.election.call.timeout.ms")?,
                memory_max_bytes: number(
                    "policy.memory.max.bytes",
                    &get("policy.memory.max.bytes"),
                )?,
            },
            group: {
                let ms = |key: &str| -> Result<std::time::Duration, ConfigError> {
                    number::<u64>(key, &get(key)).map(std::time::Duration::from_millis)
                };
                let group = crate::group::GroupConfig {
                    initial_rebalance_delay: ms("group.initial.rebalance.delay.ms")?,
                    min_session_timeout: ms("group.min.session.timeout.ms")?,
                    max_session_timeout: ms("group.max.session.timeout.ms")?,
                    max_size: number::<u32>("group.max.size", &get("group.max.size"))? as usize,
                    offset_metadata_max_bytes: number(
                        "offset.metadata.max.bytes",
                        &get("offset.metadata.max.bytes"),
                    )?,
                    offsets_retention: std::time::Duration::from_secs(
                        number::<u64>(
                            "offsets.retention.minutes",
                            &get("offsets.retention.minutes"),
                        )?
                        .saturating_mul(60),
                    ),
                    offsets_retention_check_interval: positive_ms(
                        "offsets.retention.check.interval.ms",
                    )?,
                };
                if group.max_size == 0 {
                    return Err(invalid("group.max.size", "must be at least 1".to_string()));
                }
                if group.min_session_timeout > group.max_session_timeout {
                    return Err(invalid(
                        "group.min.session.timeout.ms",
                        "must not exceed group.max.session.timeout.ms".to_string(),
                    ));
                }
                group
            },
            log_defaults,
            values,
        })
    }

    /// The effective value of a broker key (set or default), as DescribeConfigs reports it.
    pub fn get(&self, key: &str) -> Option<String> {
        let default = KEYS.iter().find(|(known, _, _)| *known == key)?.1;
        Some(
            self.values
                .get(key)
                .cloned()
                .unwrap_or_else(|| default.to_string()),
        )
    }

    pub fn is_default(&self, key: &str) -> bool {
        !self.values.contains_key(key)
    }
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&key, value, out);
            }
        }
        toml::Value::String(text) => {
            out.insert(prefix.to_string(), text.clone());
        }
        toml::Value::Array(items) => {
            let joined: Vec<String> = items
                .iter()
                .map(|item| match item {
                    toml::Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.insert(prefix.to_string(), joined.join(","));
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// `PLAINTEXT://host:port` (the only listener Weir speaks) or `host:port`.
/// The listeners this node binds, by role.
struct Listeners {
    plaintext: Option<SocketAddr>,
    controller: Option<SocketAddr>,
}

/// `NAME://host:port,...`: one PLAINTEXT listener (a bare `host:port` is PLAINTEXT), at most
/// one named in `controller.listener.names`.
fn parse_listeners(text: &str, controller_names: &[String]) -> Result<Listeners, String> {
    let mut plaintext = None;
    let mut controller = None;
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (name, address) = item.split_once("://").unwrap_or(("PLAINTEXT", item));
        let slot = if controller_names.iter().any(|known| known == name) {
            &mut controller
        } else if name == "PLAINTEXT" {
            &mut plaintext
        } else {
            return Err(format!(
                "listener {name} is not supported; use PLAINTEXT for clients and {} for the \
                 controller (controller.listener.names)",
                controller_names
                    .first()
                    .map_or("CONTROLLER", String::as_str)
            ));
        };
        if slot.is_some() {
            return Err(format!("listener {name} is named twice"));
        }
        *slot = Some(resolve(address)?);
    }
    Ok(Listeners {
        plaintext,
        controller,
    })
}

fn resolve(address: &str) -> Result<SocketAddr, String> {
    let (host, port) = parse_host_port(address)?;
    let host = if host.is_empty() {
        "0.0.0.0".to_string()
    } else {
        host
    };
    format!("{host}:{port}")
        .parse()
        .or_else(|_| {
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                .ok()
                .and_then(|mut addresses| addresses.next())
                .ok_or(())
        })
        .map_err(|_| format!("cannot resolve '{address}'"))
}

/// `controller.quorum.voters`: `id@host:port,...`, ids distinct.
fn parse_voters(text: &str) -> Result<BTreeMap<i32, String>, String> {
    let mut voters = BTreeMap::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (id, address) = item
            .split_once('@')
            .ok_or_else(|| format!("'{item}' is not id@host:port"))?;
        let id: i32 = id
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| format!("'{id}' in '{item}' is not a node id"))?;
        let (host, port) = parse_host_port(address)?;
        if host.is_empty() {
            return Err(format!("'{item}' names no host"));
        }
        if voters.insert(id, format!("{host}:{port}")).is_some() {
            return Err(format!("voter {id} is listed twice"));
        }
    }
    Ok(voters)
}

fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let address = match text.split_once("://") {
        Some(("PLAINTEXT", rest)) => rest,
        Some((protocol, _)) => {
            return Err(format!(
                "listener protocol {protocol} is not supported; use PLAINTEXT"
            ));
        }
        None => text,
    };
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("'{text}' is not host:port"))?;
    let port = port
        .parse()
        .map_err(|_| format!("'{port}' is not a port"))?;
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_cluster_configs_load() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster");
        let mut roles = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("examples/cluster") {
            let path = entry.expect("entry").path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                let config = BrokerConfig::load(Some(&path), &[])
                    .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
                roles.push((config.node_id, config.is_controller));
            }
        }
        roles.sort();
        assert_eq!(roles, [(1, true), (2, true), (3, true), (4, false)]);
    }

    #[test]
    fn defaults_serve_on_localhost_9092() {
        let config = BrokerConfig::default();
        assert_eq!(config.listener, "127.0.0.1:9092".parse().expect("address"));
        assert_eq!(
            (config.advertised_host.as_str(), config.advertised_port),
            ("127.0.0.1", 9092)
        );
        assert_eq!(config.log_dir, PathBuf::from("./weir-data"));
        assert!(config.auto_create_topics);
        assert_eq!(config.log_defaults, LogConfig::default());
    }

    #[test]
    fn file_and_overrides_use_kafkas_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "listeners = \"PLAINTEXT://127.0.0.1:19092\"\nnum.partitions = 3\n[log]\ndirs = \"/tmp/x\"\nsegment.bytes = 4096\n",
        )
        .expect("write");
        let config =
            BrokerConfig::load(Some(&path), &["num.partitions=5".to_string()]).expect("load");
        assert_eq!(config.listener.port(), 19092);
        assert_eq!(config.num_partitions, 5);
        assert_eq!(config.log_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.log_defaults.segment_bytes, 4096);
        assert_eq!(config.get("num.partitions").as_deref(), Some("5"));
        assert!(!config.is_default("num.partitions"));
    }

    #[test]
    fn bad_input_names_the_problem() {
        let error =
            BrokerConfig::load(None, &["num.partition=3".to_string()]).expect_err("unknown key");
        assert!(error.to_string().contains("num.partition"), "{error}");
        let error =
            BrokerConfig::load(None, &["num.partitions=many".to_string()]).expect_err("bad number");
        assert!(error.to_string().contains("num.partitions"), "{error}");
        let error =
            BrokerConfig::load(None, &["listeners=SSL://h:1".to_string()]).expect_err("protocol");
        assert!(error.to_string().contains("PLAINTEXT"), "{error}");
        assert!(BrokerConfig::load(None, &["novalue".to_string()]).is_err());
        let error = BrokerConfig::load(None, &["group.max.size=0".to_string()])
            .expect_err("an empty group limit");
        assert!(error.to_string().contains("group.max.size"), "{error}");
        let config = BrokerConfig::load(None, &["group.max.size=3".to_string()]).expect("3");
        assert_eq!(config.group.max_size, 3);
    }

    /// (overrides, the key the error must name; None: accepted)
    #[test]
    fn cluster_settings_are_checked_together() {
        let voters = "controller.quorum.voters=1@127.0.0.1:9093,2@127.0.0.1:9094";
        let both = "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093";
        let table: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (&[voters, both], None),
            (&[voters], Some("listeners")),
            (
                &[voters, both, "node.id=3"],
                Some("controller.quorum.voters"),
            ),
            (
                &["controller.quorum.voters=1@:9093"],
                Some("controller.quorum.voters"),
            ),
            (
                &["controller.quorum.voters=x@h:1"],
                Some("controller.quorum.voters"),
            ),
            (
                &["controller.quorum.voters=1@h:1,1@h:2"],
                Some("controller.quorum.voters"),
            ),
            (&["listeners=SASL://h:1"], Some("listeners")),
            (&["listeners=CONTROLLER://h:1"], Some("listeners")),
            (&["process.roles=broker"], Some("process.roles")),
            (&["process.roles=controller"], Some("listeners")),
            (
                &[
                    "process.roles=controller",
                    "listeners=CONTROLLER://127.0.0.1:2",
                    "controller.quorum.voters=2@127.0.0.1:2",
                ],
                Some("process.roles"),
            ),
            (
                &[
                    "process.roles=controller",
                    "listeners=CONTROLLER://127.0.0.1:2",
                    "controller.quorum.voters=1@127.0.0.1:2",
                ],
                None,
            ),
            (
                &["process.roles=broker", "controller.quorum.voters=1@h:1"],
                Some("process.roles"),
            ),
            (
                &[
                    "process.roles=broker",
                    "node.id=4",
                    "controller.quorum.voters=1@h:1",
                ],
                None,
            ),
            (&["process.roles=broker,leader"], Some("process.roles")),
            (&["node.id=-1"], Some("node.id")),
            (
                &[
                    "broker.session.timeout.ms=100",
                    "broker.heartbeat.interval.ms=100",
                ],
                Some("broker.session.timeout.ms"),
            ),
            (
                &["metadata.log.max.entries.between.snapshots=0"],
                Some("metadata.log.max.entries.between.snapshots"),
            ),
        ];
        for (overrides, named) in table {
            let overrides: Vec<String> = overrides.iter().map(|item| item.to_string()).collect();
            match (BrokerConfig::load(None, &overrides), named) {
                (Ok(_), None) => {}
                (Err(error), Some(key)) => {
                    assert!(error.to_string().contains(key), "{overrides:?}: {error}")
                }
                (outcome, _) => panic!("{overrides:?}: {outcome:?}"),
            }
        }
        let config =
            BrokerConfig::load(None, &[voters.into(), both.into(), "broker.rack=r1".into()])
                .expect("a voter with its controller listener");
        assert_eq!(config.controller_listener.map(|a| a.port()), Some(9093));
        assert_eq!(config.quorum_voters.len(), 2);
        assert_eq!(config.rack.as_deref(), Some("r1"));
        assert_eq!(
            BrokerConfig::default().metadata_dir,
            PathBuf::from("./weir-data/__cluster_metadata")
        );
    }
}
