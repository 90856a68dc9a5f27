//! The metadata image: what the committed metadata log says, as of one offset. Every node folds
//! the log into it in order ([`MetadataImage::apply`]); request handlers read a published image
//! and never lock, and the delta each step returns tells the node what to do locally (open or
//! delete a log, change a replica's role).
//!
//! Pure state: no I/O, no clock. An image is never changed in place: `apply` returns the next
//! one, sharing every topic it did not touch (`Arc` per topic), so publishing is one pointer swap.
//!
//! A record that cannot apply (a partition of an unknown topic, a leader outside the replicas) is
//! refused with an [`ImageError`] and the image stays as it was: the controller validates before
//! it proposes, so a refusal here means a bug or a corrupt log, never a user's mistake.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::records::{BrokerId, Change, ConfigResource, Endpoint, MetadataRecord, NO_LEADER};
use crate::policy::PolicyKind;
use crate::policy::registry::{InstalledVersion, Registry};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub broker_id: BrokerId,
    pub incarnation_id: Uuid,
    pub broker_epoch: i64,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    pub fenced: bool,
}

/// A partition's replica assignment and leadership (Kafka's `PartitionRegistration`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRegistration {
    /// Assigned replicas in preference order: the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// Eligible leader replicas (KIP-966).
    pub elr: Vec<BrokerId>,
    pub leader: BrokerId,
    /// Grows with every new leader.
    pub leader_epoch: i32,
    /// Grows with every change of this partition.
    pub partition_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: BTreeMap<u32, PartitionRegistration>,
}

/// What one step changed: the work a node's reconciler has to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataDelta {
    pub created_topics: BTreeSet<Uuid>,
    /// Removed topics by id, with the name they had (their logs are named by it).
    pub removed_topics: BTreeMap<Uuid, String>,
    pub changed_partitions: BTreeSet<(Uuid, u32)>,
    pub changed_brokers: BTreeSet<BrokerId>,
    pub changed_configs: BTreeSet<ConfigResource>,
    /// The plugin registry changed: brokers publish it to their policy runtime.
    pub plugins_changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("record at offset {offset} does not follow the image at offset {image_offset}")]
    OutOfOrder { offset: u64, image_offset: u64 },
    #[error("the cluster id is already {0}")]
    ClusterIdSet(String),
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    #[error("broker {broker_id} epoch {epoch} is stale (registered epoch {current})")]
    StaleBrokerEpoch {
        broker_id: BrokerId,
        epoch: i64,
        current: i64,
    },
    #[error("topic id {0} is not in the image")]
    UnknownTopicId(Uuid),
    #[error("topic name '{0}' is not in the image")]
    UnknownTopicName(String),
    #[error("topic '{name}' or id {topic_id} already exists")]
    TopicExists { name: String, topic_id: Uuid },
    #[error("partition {partition} of topic {topic_id}: {problem}")]
    InvalidPartition {
        topic_id: Uuid,
        partition: u32,
        problem: String,
    },
    /// A plugin operation the registry refuses (the controller checks first, so only a race
    /// between two operations on one plugin gets here).
    #[error("{0}")]
    Plugin(String),
}

/// The records that rebuild `registry` in an empty image: each plugin's versions with their
/// components, then its state (current version, history, broker-wide or not).
pub fn registry_records(registry: &Registry) -> Vec<Change> {
    let mut changes = Vec::new();
    for (name, entry) in &registry.plugins {
        for installed in &entry.versions {
            changes.push(Change::PluginInstall {
                name: name.clone(),
                kind: entry.kind,
                version: installed.version.clone(),
                sha256: installed.sha256.clone(),
                installed_at_ms: installed.installed_at_ms,
                component: registry.components[&installed.sha256].clone(),
            });
        }
        changes.push(Change::PluginState {
            name: name.clone(),
            current: entry.current.clone(),
            history: entry.history.clone(),
            activated_at: entry.activated_at,
            broker_wide: registry.defaults.get(&entry.kind) == Some(name),
        });
    }
    changes
}

/// The metadata as of [`MetadataImage::offset`].
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    /// Offset of the last record applied; `None` before the first.
    offset: Option<u64>,
    cluster_id: Option<String>,
    brokers: Arc<BTreeMap<BrokerId, BrokerRegistration>>,
    topics: Arc<HashMap<Uuid, Arc<TopicImage>>>,
    topic_ids: Arc<HashMap<String, Uuid>>,
    configs: Arc<BTreeMap<ConfigResource, BTreeMap<String, String>>>,
    /// Installed plugins, their components and current versions.
    plugins: Arc<Registry>,
}

impl MetadataImage {
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    pub fn broker(&self, broker_id: BrokerId) -> Option<&BrokerRegistration> {
        self.brokers.get(&broker_id)
    }

    pub fn brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values()
    }

    pub fn topic(&self, topic_id: Uuid) -> Option<&Arc<TopicImage>> {
        self.topics.get(&topic_id)
    }

    /// By name through the name index: no request scans the topics.
    pub fn topic_by_name(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicImage>> {
        self.topics.values()
    }

    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    pub fn configs(&self, resource: &ConfigResource) -> Option<&BTreeMap<String, String>> {
        self.configs.get(resource)
    }

    /// The plugin registry: shared, so a broker sees at a pointer compare whether it changed.
    pub fn plugins(&self) -> &Arc<Registry> {
        &self.plugins
    }

    /// The topics whose `policy.<kind>` config names the plugin `name`.
    pub fn topics_bound_to(&self, kind: PolicyKind, name: &str) -> Vec<String> {
        let key = kind.topic_config();
        self.configs
            .iter()
            .filter_map(|(resource, keys)| match resource {
                ConfigResource::Topic(topic) if keys.get(key).map(String::as_str) == Some(name) => {
                    Some(topic.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// The image after one committed log entry: `records` at `offset`, applied all or nothing
    /// (an entry is one controller decision, e.g. a topic and its partitions), and what changed.
    /// On a refused record the error names it and `self` is untouched.
    pub fn apply<'a>(
        &self,
        offset: u64,
        records: impl IntoIterator<Item = &'a MetadataRecord>,
    ) -> Result<(MetadataImage, MetadataDelta), ImageError> {
        if self.offset.is_some_and(|applied| offset <= applied) {
            return Err(ImageError::OutOfOrder {
                offset,
                image_offset: self.offset.unwrap_or_default(),
            });
        }
        // One copy of the maps for the whole entry: Arc::make_mut copies a shared map once and
        // then mutates it in place; untouched topics stay shared with `self`.
        let mut next = self.clone();
        let mut delta = MetadataDelta::default();
        for record in records {
            next.apply_one(offset, &record.change, &mut delta)?;
        }
        next.offset = Some(offset);
        Ok((next, delta))
    }

    /// Moves the image to `offset` with nothing changed: a log entry that carries no records
    /// (Raft's own entries: a leader's first blank entry, membership changes).
    pub fn advance(&self, offset: u64) -> MetadataImage {
        let mut next = self.clone();
        next.offset = Some(next.offset.map_or(offset, |applied| applied.max(offset)));
        next
    }

    /// Records that rebuild this image from an empty one (a snapshot of the metadata log, as
    /// KRaft's snapshots are records too): brokers with their fencing, topics, partitions with
    /// their epochs, configs. Topics in name order so a snapshot of the same image is the same
    /// bytes on every node.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut changes = Vec::new();
        if let Some(cluster_id) = &self.cluster_id {
            changes.push(Change::ClusterId {
                cluster_id: cluster_id.clone(),
            });
        }
        for broker in self.brokers.values() {
            changes.push(Change::RegisterBroker {
                broker_id: broker.broker_id,
                incarnation_id: broker.incarnation_id,
                broker_epoch: broker.broker_epoch,
                endpoints: broker.endpoints.clone(),
                rack: broker.rack.clone(),
            });
            if !broker.fenced {
                changes.push(Change::UnfenceBroker {
                    broker_id: broker.broker_id,
                    broker_epoch: broker.broker_epoch,
                });
            }
        }
        let mut names: Vec<(&String, &Uuid)> = self.topic_ids.iter().collect();
        names.sort();
        for (name, topic_id) in names {
            changes.push(Change::Topic {
                name: name.clone(),
                topic_id: *topic_id,
            });
            for (partition, registration) in &self.topics[topic_id].partitions {
                changes.push(Change::Partition {
                    topic_id: *topic_id,
                    partition: *partition,
                    replicas: registration.replicas.clone(),
                    isr: registration.isr.clone(),
                    leader: registration.leader,
                    elr: registration.elr.clone(),
                    leader_epoch: registration.leader_epoch,
                    partition_epoch: registration.partition_epoch,
                });
            }
        }
        for (resource, keys) in self.configs.iter() {
            for (key, value) in keys {
                changes.push(Change::Config {
                    resource: resource.clone(),
                    key: key.clone(),
                    value: Some(value.clone()),
                });
            }
        }
        changes.extend(registry_records(&self.plugins));
        changes.into_iter().map(MetadataRecord::new).collect()
    }

    fn apply_one(
        &mut self,
        offset: u64,
        change: &Change,
        delta: &mut MetadataDelta,
    ) -> Result<(), ImageError> {
        let refused = |error: anyhow::Error| ImageError::Plugin(format!("{error:#}"));
        match change {
            Change::ClusterId { cluster_id } => match &self.cluster_id {
                Some(current) if current != cluster_id => {
                    return Err(ImageError::ClusterIdSet(current.clone()));
                }
                _ => self.cluster_id = Some(cluster_id.clone()),
            },
            Change::RegisterBroker {
                broker_id,
                incarnation_id,
                broker_epoch,
                endpoints,
                rack,
            } => {
                if let Some(current) = self.brokers.get(broker_id)
                    && *broker_epoch <= current.broker_epoch
                {
                    return Err(ImageError::StaleBrokerEpoch {
                        broker_id: *broker_id,
                        epoch: *broker_epoch,
                        current: current.broker_epoch,
                    });
                }
                // A new incarnation starts fenced: it leads nothing until it has caught up.
                Arc::make_mut(&mut self.brokers).insert(
                    *broker_id,
                    BrokerRegistration {
                        broker_id: *broker_id,
                        incarnation_id: *incarnation_id,
                        broker_epoch: *broker_epoch,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        fenced: true,
                    },
                );
                delta.changed_brokers.insert(*broker_id);
            }
            Change::FenceBroker {
                broker_id,
                broker_epoch,
            }
            | Change::UnfenceBroker {
                broker_id,
                broker_epoch,
            } => {
                let current = self
                    .brokers
                    .get(broker_id)
                    .ok_or(ImageError::UnknownBroker(*broker_id))?;
                if current.broker_epoch != *broker_epoch {
                    return Err(ImageError::StaleBrokerEpoch {
                        broker_id: *broker_id,
                        epoch: *broker_epoch,
                        current: current.broker_epoch,
                    });
                }
                let fenced = matches!(change, Change::FenceBroker { .. });
                if let Some(broker) = Arc::make_mut(&mut self.brokers).get_mut(broker_id) {
                    broker.fenced = fenced;
                }
                delta.changed_brokers.insert(*broker_id);
            }
            Change::Topic { name, topic_id } => {
                if self.topic_ids.contains_key(name) || self.topics.contains_key(topic_id) {
                    return Err(ImageError::TopicExists {
                        name: name.clone(),
                        topic_id: *topic_id,
                    });
                }
                Arc::make_mut(&mut self.topic_ids).insert(name.clone(), *topic_id);
                Arc::make_mut(&mut self.topics).insert(
                    *topic_id,
                    Arc::new(TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: BTreeMap::new(),
                    }),
                );
                delta.created_topics.insert(*topic_id);
            }
            Change::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                elr,
                leader_epoch,
                partition_epoch,
            } => {
                let invalid = |problem: String| ImageError::InvalidPartition {
                    topic_id: *topic_id,
                    partition: *partition,
                    problem,
                };
                let topic = self.topic_mut(*topic_id)?;
                if topic.partitions.contains_key(partition) {
                    return Err(invalid("already exists".into()));
                }
                let registration = PartitionRegistration {
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    elr: elr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                };
                check_registration(&registration).map_err(invalid)?;
                topic.partitions.insert(*partition, registration);
                delta.changed_partitions.insert((*topic_id, *partition));
            }
            Change::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                elr,
            } => {
                let invalid = |problem: String| ImageError::InvalidPartition {
                    topic_id: *topic_id,
                    partition: *partition,
                    problem,
                };
                let topic = self.topic_mut(*topic_id)?;
                let current = topic
                    .partitions
                    .get(partition)
                    .ok_or_else(|| invalid("does not exist".into()))?;
                let mut next = current.clone();
                if let Some(leader) = leader
                    && *leader != current.leader
                {
                    next.leader = *leader;
                    next.leader_epoch = current.leader_epoch + 1;
                }
                if let Some(isr) = isr {
                    next.isr = isr.clone();
                }
                if let Some(elr) = elr {
                    next.elr = elr.clone();
                }
                next.partition_epoch = current.partition_epoch + 1;
                check_registration(&next).map_err(invalid)?;
                // Kafka's MonotonicEpoch: epochs never go back.
                assert!(next.leader_epoch >= current.leader_epoch);
                assert!(next.partition_epoch > current.partition_epoch);
                topic.partitions.insert(*partition, next);
                delta.changed_partitions.insert((*topic_id, *partition));
            }
            Change::Config {
                resource,
                key,
                value,
            } => {
                match resource {
                    ConfigResource::Topic(name) if !self.topic_ids.contains_key(name) => {
                        return Err(ImageError::UnknownTopicName(name.clone()));
                    }
                    ConfigResource::Broker(id) if !self.brokers.contains_key(id) => {
                        return Err(ImageError::UnknownBroker(*id));
                    }
                    _ => {}
                }
                let configs = Arc::make_mut(&mut self.configs);
                match value {
                    Some(value) => {
                        configs
                            .entry(resource.clone())
                            .or_default()
                            .insert(key.clone(), value.clone());
                    }
                    None => {
                        if let Some(keys) = configs.get_mut(resource) {
                            keys.remove(key);
                            if keys.is_empty() {
                                configs.remove(resource);
                            }
                        }
                    }
                }
                delta.changed_configs.insert(resource.clone());
            }
            Change::RemoveTopic { topic_id } => {
                let topic = Arc::make_mut(&mut self.topics)
                    .remove(topic_id)
                    .ok_or(ImageError::UnknownTopicId(*topic_id))?;
                Arc::make_mut(&mut self.topic_ids).remove(&topic.name);
                let resource = ConfigResource::Topic(topic.name.clone());
                if Arc::make_mut(&mut self.configs).remove(&resource).is_some() {
                    delta.changed_configs.insert(resource);
                }
                delta.created_topics.remove(topic_id);
                delta
                    .changed_partitions
                    .retain(|(changed, _)| changed != topic_id);
                delta.removed_topics.insert(*topic_id, topic.name.clone());
            }
            Change::PluginInstall {
                name,
                kind,
                version,
                sha256,
                installed_at_ms,
                component,
            } => {
                let installed = InstalledVersion {
                    version: version.clone(),
                    sha256: sha256.clone(),
                    installed_at_ms: *installed_at_ms,
                };
                Arc::make_mut(&mut self.plugins)
                    .install(name, *kind, installed, component.clone())
                    .map_err(refused)?;
                delta.plugins_changed = true;
            }
            Change::PluginActivate {
                name,
                version,
                broker_wide,
            } => {
                Arc::make_mut(&mut self.plugins)
                    .activate(name, version, *broker_wide, offset)
                    .map_err(refused)?;
                delta.plugins_changed = true;
            }
            Change::PluginRollback { name } => {
                Arc::make_mut(&mut self.plugins)
                    .rollback(name, offset)
                    .map_err(refused)?;
                delta.plugins_changed = true;
            }
            Change::PluginRemove { name } => {
                let bound = match self.plugins.plugins.get(name) {
                    Some(entry) => self.topics_bound_to(entry.kind, name),
                    None => Vec::new(),
                };
                Arc::make_mut(&mut self.plugins)
                    .remove(name, &bound)
                    .map_err(refused)?;
                delta.plugins_changed = true;
            }
            Change::PluginState {
                name,
                current,
                history,
                activated_at,
                broker_wide,
            } => {
                Arc::make_mut(&mut self.plugins)
                    .restore(
                        name,
                        current.clone(),
                        history.clone(),
                        *activated_at,
                        *broker_wide,
                    )
                    .map_err(refused)?;
                delta.plugins_changed = true;
            }
        }
        Ok(())
    }

    fn topic_mut(&mut self, topic_id: Uuid) -> Result<&mut TopicImage, ImageError> {
        Arc::make_mut(&mut self.topics)
            .get_mut(&topic_id)
            .map(Arc::make_mut)
            .ok_or(ImageError::UnknownTopicId(topic_id))
    }
}

/// What every partition registration must satisfy: replicas assigned once each, ISR and ELR
/// among them and apart, the leader one of the ISR (or none).
fn check_registration(registration: &PartitionRegistration) -> Result<(), String> {
    let replicas: BTreeSet<BrokerId> = registration.replicas.iter().copied().collect();
    if replicas.is_empty() || replicas.len() != registration.replicas.len() {
        return Err(format!(
            "replicas {:?} must be non-empty and distinct",
            registration.replicas
        ));
    }
    if let Some(stray) = registration
        .isr
        .iter()
        .chain(&registration.elr)
        .find(|broker| !replicas.contains(broker))
    {
        return Err(format!("{stray} is in the ISR or ELR but not a replica"));
    }
    if let Some(both) = registration
        .elr
        .iter()
        .find(|broker| registration.isr.contains(broker))
    {
        return Err(format!("{both} is in both the ISR and the ELR"));
    }
    if registration.leader != NO_LEADER && !registration.isr.contains(&registration.leader) {
        return Err(format!(
            "leader {} is not in the ISR {:?}",
            registration.leader, registration.isr
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: Uuid = Uuid::from_u128(0x7091c);
    const OTHER: Uuid = Uuid::from_u128(0x07e4);

    fn register(broker_id: BrokerId, broker_epoch: i64) -> Change {
        Change::RegisterBroker {
            broker_id,
            incarnation_id: Uuid::from_u128(broker_epoch as u128),
            broker_epoch,
            endpoints: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092 + broker_id as u16,
            }],
            rack: None,
        }
    }

    fn topic(name: &str, topic_id: Uuid) -> Change {
        Change::Topic {
            name: name.into(),
            topic_id,
        }
    }

    fn partition(partition: u32, replicas: &[BrokerId], leader: BrokerId) -> Change {
        Change::Partition {
            topic_id: TOPIC,
            partition,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader,
            elr: Vec::new(),
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    fn change(leader: Option<BrokerId>, isr: Option<&[BrokerId]>) -> Change {
        Change::PartitionChange {
            topic_id: TOPIC,
            partition: 0,
            leader,
            isr: isr.map(<[BrokerId]>::to_vec),
            elr: None,
        }
    }

    /// The source documents' walk-through as records: three brokers, topic `first` partition 0
    /// on 1,2,3; broker 1 stops (ISR shrinks, 2 leads), returns (ISR grows, 2 keeps leading),
    /// then a preferred election gives it back to 1.
    fn walk_through() -> Vec<Change> {
        vec![
            register(1, 10),
            register(2, 11),
            register(3, 12),
            topic("first", TOPIC),
            partition(0, &[1, 2, 3], 1),
            change(Some(2), Some(&[2, 3])),
            change(None, Some(&[2, 3, 1])),
            change(Some(1), None),
        ]
    }

    /// Applies each change as its own log entry, at the offsets after the image's.
    fn apply(image: &MetadataImage, changes: Vec<Change>) -> Result<MetadataImage, ImageError> {
        let mut image = image.clone();
        for change in changes {
            let offset = image.offset().map_or(0, |offset| offset + 1);
            image = image.apply(offset, [&MetadataRecord::new(change)])?.0;
        }
        Ok(image)
    }

    /// (after how many records of the walk-through, leader, leader epoch, partition epoch, ISR)
    #[test]
    fn epochs_grow_as_the_walk_through_elects_and_shrinks() {
        let table: &[(usize, BrokerId, i32, i32, &[BrokerId])] = &[
            (5, 1, 0, 0, &[1, 2, 3]),
            (6, 2, 1, 1, &[2, 3]),
            (7, 2, 1, 2, &[2, 3, 1]),
            (8, 1, 2, 3, &[2, 3, 1]),
        ];
        for &(records, leader, leader_epoch, partition_epoch, isr) in table {
            let image = apply(
                &MetadataImage::default(),
                walk_through()[..records].to_vec(),
            )
            .expect("the walk-through applies");
            let registration = &image.topic_by_name("first").expect("first").partitions[&0];
            assert_eq!(
                (
                    registration.leader,
                    registration.leader_epoch,
                    registration.partition_epoch,
                    registration.isr.as_slice()
                ),
                (leader, leader_epoch, partition_epoch, isr),
                "after {records} records"
            );
            assert_eq!(image.offset(), Some(records as u64 - 1));
        }
    }

    /// (what is applied after the walk-through, the error it must get)
    #[test]
    fn records_that_cannot_apply_are_refused_and_change_nothing() {
        let base = apply(&MetadataImage::default(), walk_through()).expect("base");
        let invalid = |problem: &str| ImageError::InvalidPartition {
            topic_id: TOPIC,
            partition: 0,
            problem: problem.into(),
        };
        let table: Vec<(Change, ImageError)> = vec![
            (
                register(2, 11),
                ImageError::StaleBrokerEpoch {
                    broker_id: 2,
                    epoch: 11,
                    current: 11,
                },
            ),
            (
                Change::FenceBroker {
                    broker_id: 3,
                    broker_epoch: 9,
                },
                ImageError::StaleBrokerEpoch {
                    broker_id: 3,
                    epoch: 9,
                    current: 12,
                },
            ),
            (
                Change::UnfenceBroker {
                    broker_id: 4,
                    broker_epoch: 1,
                },
                ImageError::UnknownBroker(4),
            ),
            (
                topic("first", OTHER),
                ImageError::TopicExists {
                    name: "first".into(),
                    topic_id: OTHER,
                },
            ),
            (
                Change::RemoveTopic { topic_id: OTHER },
                ImageError::UnknownTopicId(OTHER),
            ),
            (partition(0, &[1, 2, 3], 1), invalid("already exists")),
            (
                partition(1, &[1, 1], 1),
                ImageError::InvalidPartition {
                    topic_id: TOPIC,
                    partition: 1,
                    problem: "replicas [1, 1] must be non-empty and distinct".into(),
                },
            ),
            (
                change(Some(4), Some(&[4])),
                invalid("4 is in the ISR or ELR but not a replica"),
            ),
            (
                change(Some(3), Some(&[1, 2])),
                invalid("leader 3 is not in the ISR [1, 2]"),
            ),
            (
                Change::Config {
                    resource: ConfigResource::Topic("second".into()),
                    key: "retention.ms".into(),
                    value: Some("1".into()),
                },
                ImageError::UnknownTopicName("second".into()),
            ),
        ];
        for (change, expected) in table {
            let described = format!("{change:?}");
            assert_eq!(
                apply(&base, vec![change]).err(),
                Some(expected),
                "{described}"
            );
        }
        let replayed = MetadataRecord::new(register(4, 1));
        assert_eq!(
            base.apply(3, [&replayed]).err(),
            Some(ImageError::OutOfOrder {
                offset: 3,
                image_offset: 7
            })
        );
    }

    #[test]
    fn brokers_start_fenced_and_a_new_incarnation_needs_a_higher_epoch() {
        let image = apply(&MetadataImage::default(), vec![register(1, 10)]).expect("register");
        assert!(image.broker(1).is_some_and(|broker| broker.fenced));
        let image = apply(
            &image,
            vec![Change::UnfenceBroker {
                broker_id: 1,
                broker_epoch: 10,
            }],
        )
        .expect("unfence");
        assert!(image.broker(1).is_some_and(|broker| !broker.fenced));
        let image = apply(&image, vec![register(1, 20)]).expect("a restart re-registers");
        let broker = image.broker(1).expect("broker 1");
        assert_eq!((broker.broker_epoch, broker.fenced), (20, true));
    }

    #[test]
    fn removing_a_topic_drops_its_name_configs_and_pending_changes_and_shares_the_rest() {
        let base = apply(
            &MetadataImage::default(),
            vec![register(1, 10), topic("kept", OTHER)],
        )
        .expect("base");
        let records: Vec<MetadataRecord> = [
            topic("first", TOPIC),
            partition(0, &[1], 1),
            Change::Config {
                resource: ConfigResource::Topic("first".into()),
                key: "retention.ms".into(),
                value: Some("1000".into()),
            },
            Change::RemoveTopic { topic_id: TOPIC },
        ]
        .into_iter()
        .map(MetadataRecord::new)
        .collect();
        let (image, delta) = base.apply(2, &records).expect("applies as one entry");
        assert!(image.topic_by_name("first").is_none());
        assert!(image.topic(TOPIC).is_none());
        assert!(
            image
                .configs(&ConfigResource::Topic("first".into()))
                .is_none()
        );
        assert_eq!(
            delta,
            MetadataDelta {
                removed_topics: [(TOPIC, "first".to_string())].into(),
                changed_configs: [ConfigResource::Topic("first".into())].into(),
                ..MetadataDelta::default()
            }
        );
        // The topic the batch did not touch is the same allocation in both images.
        assert!(Arc::ptr_eq(
            base.topic(OTHER).expect("kept"),
            image.topic(OTHER).expect("kept")
        ));
    }

    #[test]
    fn a_snapshot_of_records_rebuilds_the_same_image() {
        let mut changes = walk_through();
        changes.extend([
            Change::ClusterId {
                cluster_id: "c1".into(),
            },
            Change::UnfenceBroker {
                broker_id: 2,
                broker_epoch: 11,
            },
            Change::Config {
                resource: ConfigResource::Topic("first".into()),
                key: "retention.ms".into(),
                value: Some("1000".into()),
            },
            topic("second", OTHER),
            plugin_install("p", "1", b"one"),
            plugin_install("p", "2", b"two"),
            Change::PluginActivate {
                name: "p".into(),
                version: "1".into(),
                broker_wide: true,
            },
            Change::PluginActivate {
                name: "p".into(),
                version: "2".into(),
                broker_wide: false,
            },
        ]);
        let image = apply(&MetadataImage::default(), changes).expect("applies");
        let entry = &image.plugins().plugins["p"];
        assert_eq!(
            (entry.current.as_deref(), entry.history.as_slice()),
            (Some("2"), &["1".to_string()][..])
        );
        assert!(entry.activated_at.is_some());
        let snapshot = image.to_records();
        let (restored, _) = MetadataImage::default()
            .apply(image.offset().expect("offset"), &snapshot)
            .expect("a snapshot applies to an empty image");
        assert_eq!(restored.offset(), image.offset());
        assert_eq!(restored.to_records(), snapshot);
        let registration = &restored.topic_by_name("first").expect("first").partitions[&0];
        assert_eq!(
            (
                registration.leader,
                registration.leader_epoch,
                registration.partition_epoch
            ),
            (1, 2, 3)
        );
        assert!(!restored.broker(2).expect("2").fenced);
        assert_eq!(restored.cluster_id(), Some("c1"));
        assert!(restored.broker(1).expect("1").fenced);
        assert_eq!(
            restored.configs(&ConfigResource::Topic("first".into())),
            image.configs(&ConfigResource::Topic("first".into()))
        );
        assert_eq!(restored.plugins(), image.plugins(), "components included");
    }

    fn plugin_install(name: &str, version: &str, bytes: &[u8]) -> Change {
        Change::PluginInstall {
            name: name.into(),
            kind: crate::policy::PolicyKind::Partitioner,
            version: version.into(),
            sha256: crate::policy::engine::sha256_hex(bytes),
            installed_at_ms: 0,
            component: bytes.into(),
        }
    }

    #[test]
    fn plugin_operations_are_checked_as_they_apply() {
        let base = apply(
            &MetadataImage::default(),
            vec![
                register(1, 10),
                topic("first", TOPIC),
                plugin_install("p", "1", b"one"),
                Change::PluginActivate {
                    name: "p".into(),
                    version: "1".into(),
                    broker_wide: false,
                },
                Change::Config {
                    resource: ConfigResource::Topic("first".into()),
                    key: "policy.partitioner".into(),
                    value: Some("p".into()),
                },
            ],
        )
        .expect("base");
        for refused in [
            // Bound to a topic: the topic's binding must change first.
            Change::PluginRemove { name: "p".into() },
            Change::PluginActivate {
                name: "p".into(),
                version: "9".into(),
                broker_wide: true,
            },
            Change::PluginRollback { name: "p".into() },
            plugin_install("p", "1", b"other bytes"),
        ] {
            let outcome = base.apply(100, [&MetadataRecord::new(refused.clone())]);
            assert!(
                matches!(outcome, Err(ImageError::Plugin(_))),
                "{refused:?}: {outcome:?}"
            );
        }
        let (unbound, delta) = base
            .apply(
                100,
                [
                    &MetadataRecord::new(Change::Config {
                        resource: ConfigResource::Topic("first".into()),
                        key: "policy.partitioner".into(),
                        value: None,
                    }),
                    &MetadataRecord::new(Change::PluginRemove { name: "p".into() }),
                ],
            )
            .expect("removable once unbound");
        assert!(delta.plugins_changed);
        assert!(unbound.plugins().plugins.is_empty() && unbound.plugins().components.is_empty());
    }
}
