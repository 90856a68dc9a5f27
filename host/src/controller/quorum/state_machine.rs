//! The metadata quorum's state machine: committed entries fold into the [`MetadataImage`], which
//! is published for readers after every applied batch. Snapshots are the image's own records
//! ([`MetadataImage::to_records`]), kept in `quorum.snapshot` so a restarted node starts from
//! the snapshot and re-applies only the log after it.
//!
//! The image itself is not written anywhere else: snapshot plus log rebuild it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::{ApplyOutcome, MetadataRaft, MetadataView, NodeId, storage_error};
use crate::controller::image::MetadataImage;
use crate::controller::records::MetadataRecord;
use crate::encoding::crc32c;
use crate::storage::files::replace_file;

pub const SNAPSHOT_FILE: &str = "quorum.snapshot";

type Node = openraft::BasicNode;
type Meta = SnapshotMeta<NodeId, Node>;

/// A snapshot as stored: its meta and the image's records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: Meta,
    /// JSON of `Vec<MetadataRecord>`: the bytes sent to a follower that installs it.
    pub data: Vec<u8>,
}

impl StoredSnapshot {
    pub fn records(&self) -> Result<Vec<MetadataRecord>, String> {
        let records: Vec<MetadataRecord> =
            serde_json::from_slice(&self.data).map_err(|error| error.to_string())?;
        for record in &records {
            record.check_version().map_err(|error| error.to_string())?;
        }
        Ok(records)
    }

    /// The image the snapshot holds (empty for a snapshot of an empty log).
    pub fn image(&self) -> Result<MetadataImage, String> {
        let Some(log_id) = self.meta.last_log_id else {
            return Ok(MetadataImage::default());
        };
        MetadataImage::default()
            .apply(log_id.index, &self.records()?)
            .map(|(image, _)| image)
            .map_err(|error| error.to_string())
    }

    /// What openraft hands out and sends to followers.
    fn to_snapshot(&self) -> Snapshot<MetadataRaft> {
        Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(self.data.clone())),
        }
    }

    /// Reads `quorum.snapshot` from `dir`; `None` when there is none yet.
    pub fn read(dir: &Path) -> std::io::Result<Option<StoredSnapshot>> {
        let path = dir.join(SNAPSHOT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let invalid = |what: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {what}", path.display()),
            )
        };
        // Written whole and renamed into place, so anything but a whole, matching frame is
        // damage, not a torn write: refuse it rather than start from a wrong image.
        let (header, payload) = bytes
            .split_at_checked(4)
            .ok_or_else(|| invalid("shorter than its checksum".into()))?;
        let crc = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if crc32c(payload) != crc {
            return Err(invalid("checksum mismatch".into()));
        }
        serde_json::from_slice(payload)
            .map(Some)
            .map_err(|error| invalid(error.to_string()))
    }

    fn write(&self, dir: &Path) -> std::io::Result<()> {
        // Plain data: serialising cannot fail short of a bug.
        let payload = serde_json::to_vec(self).expect("a snapshot serialises");
        let mut bytes = Vec::with_capacity(4 + payload.len());
        bytes.extend_from_slice(&crc32c(&payload).to_be_bytes());
        bytes.extend_from_slice(&payload);
        replace_file(&dir.join(SNAPSHOT_FILE), &bytes, true)
    }
}

/// The image after one committed entry, and the image's refusal if it refused the entry's
/// records. A refused entry is skipped: deterministic on every node (same image, same
/// records), so all of them skip the same entry. The controller validates before proposing;
/// a refusal is a bug or a race it lost, and the proposer hears why. Raft's own entries (a
/// leader's blank entry, membership) carry no records and only move the offset.
pub fn apply_entry(
    image: &MetadataImage,
    entry: &Entry<MetadataRaft>,
) -> (MetadataImage, Option<crate::controller::image::ImageError>) {
    let offset = entry.log_id.index;
    match &entry.payload {
        EntryPayload::Normal(batch) => match image.apply(offset, &batch.records) {
            Ok((next, _delta)) => (next, None),
            Err(error) => (image.advance(offset), Some(error)),
        },
        EntryPayload::Blank | EntryPayload::Membership(_) => (image.advance(offset), None),
    }
}

#[derive(Debug)]
pub struct MetadataStateMachine {
    dir: PathBuf,
    image: MetadataImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    current_snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    view: Arc<MetadataView>,
    snapshots_built: u64,
}

impl MetadataStateMachine {
    /// Starts from `quorum.snapshot` in `dir` when there is one, and publishes that image.
    pub fn open(dir: &Path, view: Arc<MetadataView>) -> std::io::Result<MetadataStateMachine> {
        std::fs::create_dir_all(dir)?;
        let mut machine = MetadataStateMachine {
            dir: dir.to_path_buf(),
            image: MetadataImage::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            current_snapshot: Arc::new(Mutex::new(None)),
            view,
            snapshots_built: 0,
        };
        if let Some(snapshot) = StoredSnapshot::read(dir)? {
            machine.restore(&snapshot).map_err(|error| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {error}", dir.join(SNAPSHOT_FILE).display()),
                )
            })?;
            *machine
                .current_snapshot
                .lock()
                .map_err(|_| std::io::Error::other("snapshot lock poisoned"))? = Some(snapshot);
        }
        Ok(machine)
    }

    /// Replaces the image with the snapshot's.
    fn restore(&mut self, snapshot: &StoredSnapshot) -> Result<(), String> {
        let image = snapshot.image()?;
        self.image = image;
        self.last_applied = snapshot.meta.last_log_id;
        self.membership = snapshot.meta.last_membership.clone();
        self.view.publish(self.image.clone());
        Ok(())
    }
}

impl RaftStateMachine<MetadataRaft> for MetadataStateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyOutcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<MetadataRaft>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut outcomes = Vec::new();
        for entry in entries {
            let offset = entry.log_id.index;
            if let EntryPayload::Membership(membership) = &entry.payload {
                self.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
            }
            let (image, refused) = apply_entry(&self.image, &entry);
            if let Some(error) = &refused {
                tracing::warn!(offset, %error, "metadata entry refused");
            }
            self.image = image;
            let refused = refused.map(|error| error.to_string());
            self.last_applied = Some(entry.log_id);
            outcomes.push(ApplyOutcome { offset, refused });
        }
        // One swap per batch of entries: readers see whole entries, never a half-applied one.
        self.view.publish(self.image.clone());
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        SnapshotBuilder {
            dir: self.dir.clone(),
            image: self.image.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            current_snapshot: self.current_snapshot.clone(),
            sequence: self.snapshots_built,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let signature = Some(meta.signature());
        self.restore(&stored).map_err(|error| {
            storage_error(
                |e| StorageIOError::read_snapshot(signature.clone(), e),
                error,
            )
        })?;
        stored.write(&self.dir).map_err(|error| {
            storage_error(
                |e| StorageIOError::write_snapshot(signature.clone(), e),
                error,
            )
        })?;
        *self.current_snapshot.lock().map_err(|_| {
            storage_error(
                StorageIOError::write_state_machine,
                "snapshot lock poisoned",
            )
        })? = Some(stored);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<MetadataRaft>>, StorageError<NodeId>> {
        let current = self.current_snapshot.lock().map_err(|_| {
            storage_error(StorageIOError::read_state_machine, "snapshot lock poisoned")
        })?;
        Ok(current.as_ref().map(StoredSnapshot::to_snapshot))
    }
}

/// Builds a snapshot from the image as of when openraft asked for it.
#[derive(Debug)]
pub struct SnapshotBuilder {
    dir: PathBuf,
    image: MetadataImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    current_snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    sequence: u64,
}

impl RaftSnapshotBuilder<MetadataRaft> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MetadataRaft>, StorageError<NodeId>> {
        // Plain data: serialising cannot fail short of a bug.
        let data = serde_json::to_vec(&self.image.to_records()).expect("records serialise");
        let snapshot_id = match self.last_applied {
            Some(log_id) => format!("{}-{}-{}", log_id.leader_id, log_id.index, self.sequence),
            None => format!("empty-{}", self.sequence),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id,
            },
            data,
        };
        let signature = Some(stored.meta.signature());
        stored.write(&self.dir).map_err(|error| {
            storage_error(
                |e| StorageIOError::write_snapshot(signature.clone(), e),
                error,
            )
        })?;
        let snapshot = stored.to_snapshot();
        *self.current_snapshot.lock().map_err(|_| {
            storage_error(
                StorageIOError::write_state_machine,
                "snapshot lock poisoned",
            )
        })? = Some(stored);
        Ok(snapshot)
    }
}
