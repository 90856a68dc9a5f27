//! The topic registry: names, ids, partition counts and config overrides, persisted atomically
//! as JSON in the log directory. The controller issue moves this into the metadata log; until
//! then this file is the single-node broker's metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::storage::LogConfig;
use crate::storage::files::write_atomically;

pub const METADATA_FILE: &str = "weir-metadata.json";
/// Kafka's limit: a topic name becomes a directory name with a partition suffix.
const TOPIC_NAME_LENGTH_MAX: usize = 249;
/// Producer ids are handed out from blocks persisted ahead of use, so a restart never reuses one.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
pub const CLEANUP_POLICY: &str = "cleanup.policy";
/// The only cleanup policy Weir implements (no compaction).
const CLEANUP_POLICY_DELETE: &str = "delete";

/// Every topic-level config key, in the order DescribeConfigs lists them.
pub fn topic_config_keys() -> impl Iterator<Item = &'static str> {
    [CLEANUP_POLICY, MIN_INSYNC_REPLICAS]
        .into_iter()
        .chain(LogConfig::KEYS)
        .chain(crate::policy::PolicyKind::ALL.map(crate::policy::PolicyKind::topic_config))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicRecord {
    pub name: String,
    pub id: Uuid,
    pub partitions: u32,
    pub replication_factor: i16,
    /// Topic-level overrides only; defaults come from the broker config.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MetadataFile {
    cluster_id: String,
    /// Producer ids below this may have been handed out.
    producer_id_block_end: i64,
    topics: BTreeMap<String, TopicRecord>,
}

#[derive(Debug)]
pub struct TopicStore {
    path: PathBuf,
    file: MetadataFile,
    next_producer_id: i64,
}

/// Kafka's topic name rule: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be '{name}'"));
    }
    if name.len() > TOPIC_NAME_LENGTH_MAX {
        return Err(format!(
            "topic name is longer than {TOPIC_NAME_LENGTH_MAX} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "topic name '{name}' contains '{bad}'; allowed are ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Applies a topic's overrides to the broker's defaults, refusing unknown keys and bad values.
pub fn topic_log_config(
    defaults: &LogConfig,
    configs: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut config = defaults.clone();
    for (key, value) in configs {
        match key.as_str() {
            MIN_INSYNC_REPLICAS => {
                let parsed: u32 = value
                    .parse()
                    .map_err(|_| format!("{key}: '{value}' is not a number"))?;
                if parsed == 0 {
                    return Err(format!("{key} must be at least 1"));
                }
            }
            CLEANUP_POLICY => {
                if value != CLEANUP_POLICY_DELETE {
                    return Err(format!("{key}={value} is not supported; only 'delete' is"));
                }
            }
            // Plugin bindings are checked by the broker against the installed plugins.
            _ if crate::policy::PolicyKind::from_topic_config(key).is_some() => {}
            _ => config.set(key, value).map_err(|error| error.to_string())?,
        }
    }
    Ok(config)
}

impl TopicStore {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(METADATA_FILE);
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {error}", path.display()),
                )
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => MetadataFile {
                cluster_id: new_cluster_id(),
                producer_id_block_end: 0,
                topics: BTreeMap::new(),
            },
            Err(error) => return Err(error),
        };
        let next_producer_id = file.producer_id_block_end;
        let store = TopicStore {
            path,
            file,
            next_producer_id,
        };
        store.persist()?;
        Ok(store)
    }

    pub fn cluster_id(&self) -> &str {
        &self.file.cluster_id
    }

    pub fn get(&self, name: &str) -> Option<&TopicRecord> {
        self.file.topics.get(name)
    }

    pub fn by_id(&self, id: Uuid) -> Option<&TopicRecord> {
        self.file.topics.values().find(|topic| topic.id == id)
    }

    pub fn all(&self) -> impl Iterator<Item = &TopicRecord> {
        self.file.topics.values()
    }

    pub fn insert(&mut self, topic: TopicRecord) -> std::io::Result<()> {
        self.file.topics.insert(topic.name.clone(), topic);
        self.persist()
    }

    pub fn remove(&mut self, name: &str) -> std::io::Result<Option<TopicRecord>> {
        let removed = self.file.topics.remove(name);
        self.persist()?;
        Ok(removed)
    }

    /// A fresh producer id (InitProducerId without a transactional id).
    pub fn allocate_producer_id(&mut self) -> std::io::Result<i64> {
        if self.next_producer_id >= self.file.producer_id_block_end {
            self.file.producer_id_block_end = self.next_producer_id + PRODUCER_ID_BLOCK;
            self.persist()?;
        }
        let id = self.next_producer_id;
        self.next_producer_id += 1;
        Ok(id)
    }

    fn persist(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.file).map_err(std::io::Error::other)?;
        write_atomically(&self.path, &bytes)
    }
}

/// Kafka prints cluster ids as 22-character URL-safe base64 of a UUID.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| ALPHABET[((value >> (i * 6)) & 63) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rule() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "a/b", "héllo", "with space"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn topic_configs_are_validated() {
        let defaults = LogConfig::default();
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "1000".to_string());
        configs.insert(MIN_INSYNC_REPLICAS.to_string(), "2".to_string());
        assert_eq!(
            topic_log_config(&defaults, &configs)
                .expect("valid")
                .retention_ms,
            1000
        );
        configs.insert("retention.mss".to_string(), "1".to_string());
        assert!(topic_log_config(&defaults, &configs).is_err());
        let mut compact = BTreeMap::new();
        compact.insert(CLEANUP_POLICY.to_string(), "compact".to_string());
        assert!(topic_log_config(&defaults, &compact).is_err());
    }

    #[test]
    fn the_store_survives_a_reopen_and_never_reuses_producer_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = TopicStore::open(dir.path()).expect("open");
        let cluster_id = store.cluster_id().to_string();
        assert_eq!(cluster_id.len(), 22);
        store
            .insert(TopicRecord {
                name: "t".into(),
                id: Uuid::new_v4(),
                partitions: 3,
                replication_factor: 1,
                configs: BTreeMap::new(),
            })
            .expect("insert");
        let first = store.allocate_producer_id().expect("id");
        let second = store.allocate_producer_id().expect("id");
        assert_eq!(second, first + 1);
        drop(store);
        let mut store = TopicStore::open(dir.path()).expect("reopen");
        assert_eq!(store.cluster_id(), cluster_id);
        assert_eq!(store.get("t").map(|topic| topic.partitions), Some(3));
        assert!(store.allocate_producer_id().expect("id") > second);
    }
}
