//! The records of the cluster metadata log (KRaft's `__cluster_metadata`): every change to
//! brokers, topics, partitions, configs and the plugin registry is one of these, committed by the controller quorum
//! and applied in order by every node into its [`MetadataImage`](super::image::MetadataImage).
//!
//! Each record carries the layout version it was written with, so a node refuses a record newer
//! than it understands instead of misreading it, and an older one keeps being read as the
//! layout grows (new fields are added with serde defaults, never repurposed).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::policy::PolicyKind;
use crate::policy::registry::ComponentBytes;

/// The newest record layout this build writes and reads.
pub const METADATA_RECORD_VERSION: u16 = 1;

/// A broker id or the "no leader" marker (-1), as on Kafka's wire.
pub type BrokerId = i32;

/// Kafka's "no leader" (an offline partition).
pub const NO_LEADER: BrokerId = -1;

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataRecord {
    pub version: u16,
    #[serde(flatten)]
    pub change: Change,
}

impl MetadataRecord {
    pub fn new(change: Change) -> Self {
        MetadataRecord {
            version: METADATA_RECORD_VERSION,
            change,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Plain data without maps: serialising cannot fail, and a failure would be a bug.
        serde_json::to_vec(self).expect("a metadata record serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let record: MetadataRecord = serde_json::from_slice(bytes)
            .map_err(|error| RecordError::Malformed(error.to_string()))?;
        record.check_version()?;
        Ok(record)
    }

    /// Refuses a record written by a newer layout than this build reads.
    pub fn check_version(&self) -> Result<(), RecordError> {
        if self.version > METADATA_RECORD_VERSION {
            return Err(RecordError::TooNew {
                version: self.version,
                supported: METADATA_RECORD_VERSION,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("malformed metadata record: {0}")]
    Malformed(String),
    #[error(
        "metadata record version {version} is newer than this broker reads ({supported}): upgrade it"
    )]
    TooNew { version: u16, supported: u16 },
}

/// A listener a broker registered (`listeners`, by name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// What a config record names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "resource", content = "name")]
pub enum ConfigResource {
    Topic(String),
    Broker(BrokerId),
}

/// The changes, in Kafka's vocabulary (`RegisterBrokerRecord`, `TopicRecord`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Change {
    /// The cluster's id, set once by the first active controller (Kafka keeps it in every
    /// node's `meta.properties`; here the metadata log carries it to every node).
    ClusterId {
        cluster_id: String,
    },
    /// A broker (re)registered: a new incarnation gets a new broker epoch and starts fenced.
    RegisterBroker {
        broker_id: BrokerId,
        incarnation_id: Uuid,
        broker_epoch: i64,
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
    },
    /// Missed its session (`broker.session.timeout.ms`) or is shutting down: no leaderships, no
    /// ISR membership.
    FenceBroker {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    /// Heartbeating again and caught up on metadata.
    UnfenceBroker {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    Topic {
        name: String,
        topic_id: Uuid,
    },
    /// A partition as created (replicas in assigned order, the first one leading at epoch 0), or
    /// as a snapshot restores it, with its epochs and ELR.
    Partition {
        topic_id: Uuid,
        partition: u32,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
        leader: BrokerId,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        elr: Vec<BrokerId>,
        #[serde(default, skip_serializing_if = "is_zero")]
        leader_epoch: i32,
        #[serde(default, skip_serializing_if = "is_zero")]
        partition_epoch: i32,
    },
    /// Kafka's `PartitionChangeRecord`: only the fields that change are present. Any change
    /// bumps the partition epoch; a new leader also bumps the leader epoch.
    PartitionChange {
        topic_id: Uuid,
        partition: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<BrokerId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        isr: Option<Vec<BrokerId>>,
        /// Eligible leader replicas (KIP-966).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        elr: Option<Vec<BrokerId>>,
    },
    /// Sets (`Some`) or removes (`None`) one config key.
    Config {
        resource: ConfigResource,
        key: String,
        value: Option<String>,
    },
    RemoveTopic {
        topic_id: Uuid,
    },
    /// A plugin version, with its component (base64 in the log): every node gets the bytes from
    /// the log, so all run the same versions.
    PluginInstall {
        name: String,
        kind: PolicyKind,
        /// Not `version`: that key is the record layout's.
        #[serde(rename = "plugin_version")]
        version: String,
        sha256: String,
        installed_at_ms: i64,
        #[serde(with = "base64_bytes")]
        component: ComponentBytes,
    },
    /// `version` of `name` becomes current (and its kind's broker-wide plugin when
    /// `broker_wide`); a built-in's name makes it its kind's default again.
    PluginActivate {
        name: String,
        #[serde(rename = "plugin_version")]
        version: String,
        broker_wide: bool,
    },
    /// `name` returns to the version current before its last activation.
    PluginRollback {
        name: String,
    },
    PluginRemove {
        name: String,
    },
    /// A plugin's activation state as a snapshot restores it (after its versions).
    PluginState {
        name: String,
        current: Option<String>,
        history: Vec<String>,
        activated_at: Option<u64>,
        broker_wide: bool,
    },
}

impl Change {
    /// One of the plugin registry's records.
    pub fn is_plugin_registry(&self) -> bool {
        matches!(
            self,
            Change::PluginInstall { .. }
                | Change::PluginActivate { .. }
                | Change::PluginRollback { .. }
                | Change::PluginRemove { .. }
                | Change::PluginState { .. }
        )
    }
}

/// Component bytes as one base64 string: a third more than the bytes, where JSON's array of
/// numbers would be three to four times as much.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::policy::registry::ComponentBytes;

    pub fn serialize<S: Serializer>(
        bytes: &ComponentBytes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<ComponentBytes, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text)
            .map(ComponentBytes::from)
            .map_err(serde::de::Error::custom)
    }
}

fn is_zero(epoch: &i32) -> bool {
    *epoch == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_newer_version_is_refused() {
        let topic_id = Uuid::from_u128(7);
        for change in [
            Change::Topic {
                name: "orders".into(),
                topic_id,
            },
            Change::PartitionChange {
                topic_id,
                partition: 2,
                leader: None,
                isr: Some(vec![1, 3]),
                elr: None,
            },
            Change::Config {
                resource: ConfigResource::Broker(1),
                key: "log.retention.ms".into(),
                value: None,
            },
            Change::PluginInstall {
                name: "prefix".into(),
                kind: PolicyKind::Partitioner,
                version: "2".into(),
                sha256: "ab".into(),
                installed_at_ms: -5,
                component: ComponentBytes::from(&b"\0asm\x01\xff"[..]),
            },
            Change::PluginActivate {
                name: "prefix".into(),
                version: "2".into(),
                broker_wide: false,
            },
            Change::PluginState {
                name: "prefix".into(),
                current: Some("2".into()),
                history: vec!["1".into()],
                activated_at: Some(9),
                broker_wide: true,
            },
        ] {
            let record = MetadataRecord::new(change);
            assert_eq!(MetadataRecord::decode(&record.encode()), Ok(record));
        }
        let mut newer = MetadataRecord::new(Change::RemoveTopic { topic_id });
        newer.version = METADATA_RECORD_VERSION + 1;
        assert_eq!(
            MetadataRecord::decode(&newer.encode()),
            Err(RecordError::TooNew {
                version: METADATA_RECORD_VERSION + 1,
                supported: METADATA_RECORD_VERSION
            })
        );
        assert!(matches!(
            MetadataRecord::decode(b"{\"version\":1,\"type\":\"Nonsense\"}"),
            Err(RecordError::Malformed(_))
        ));
    }
}
