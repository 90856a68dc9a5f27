//! Committed offsets on disk: `<log.dirs>/consumer-offsets.log`, an append-only file of records,
//! Weir's stand-in for Kafka's `__consumer_offsets` topic on a single node.
//!
//! Each record is `[length u32][crc32c u32][body]` (big endian; the CRC covers the body), and
//! its body is one of:
//! - `1` commit: group, protocol type, then the offsets of one OffsetCommit request (topic,
//!   partition, offset, leader epoch, metadata, commit timestamp). One request is one record, so
//!   a commit is all-or-nothing across its partitions, as Kafka's single batch is.
//! - `2` group deleted (DeleteGroups): forget the group's offsets.
//! - `3` topic deleted (DeleteTopics): forget every group's offsets of the topic.
//! - `4` offsets expired (`offsets.retention.minutes`): forget a group's offsets of these
//!   partitions.
//!
//! Durability: a record is written with one write(2) before the OffsetCommit response, without
//! fsync: it survives the broker process dying (SIGKILL), not the machine losing power, which is
//! what Kafka gives by default (`__consumer_offsets` is flushed by the OS, like any topic). A
//! torn or corrupt tail is ignored on load; the file is then rewritten compactly (one commit
//! record per group, atomically through a temporary file and rename), and again whenever it has
//! grown to twice its compact size.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::encoding::{Reader, crc32c};
use crate::storage::files::write_atomically;

/// The file's name under `log.dirs`. Not a partition directory name (no `-N`), so the log
/// manager leaves it alone.
pub const OFFSETS_FILE: &str = "consumer-offsets.log";
/// The file is not rewritten below this size, however much of it is stale: rewriting a small
/// file saves nothing worth an fsync.
const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// A record longer than this is corruption, not a commit (a commit of 100,000 partitions with
/// 4 KiB of metadata each would still fit).
const RECORD_MAX_BYTES: usize = 512 << 20;
/// Size of a record's length and CRC prefix.
const RECORD_PREFIX_BYTES: usize = 8;

const KIND_COMMIT: u8 = 1;
const KIND_GROUP_DELETED: u8 = 2;
const KIND_TOPIC_DELETED: u8 = 3;
const KIND_OFFSETS_EXPIRED: u8 = 4;

/// One committed offset, as OffsetCommit carried it and OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

/// What the file holds for one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredGroup {
    /// The group's protocol type when it last committed ("" for a standalone consumer).
    pub protocol_type: String,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

/// One change to the committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetRecord {
    Commit {
        group: String,
        protocol_type: String,
        offsets: Vec<(String, i32, CommittedOffset)>,
    },
    GroupDeleted {
        group: String,
    },
    TopicDeleted {
        topic: String,
    },
    OffsetsExpired {
        group: String,
        partitions: Vec<(String, i32)>,
    },
}

impl OffsetRecord {
    /// Applies the record to the offsets it follows.
    pub fn apply(&self, groups: &mut BTreeMap<String, StoredGroup>) {
        match self {
            OffsetRecord::Commit {
                group,
                protocol_type,
                offsets,
            } => {
                let stored = groups.entry(group.clone()).or_default();
                stored.protocol_type.clone_from(protocol_type);
                for (topic, partition, offset) in offsets {
                    stored
                        .offsets
                        .insert((topic.clone(), *partition), offset.clone());
                }
            }
            OffsetRecord::GroupDeleted { group } => {
                groups.remove(group);
            }
            OffsetRecord::TopicDeleted { topic } => {
                for stored in groups.values_mut() {
                    stored.offsets.retain(|(name, _), _| name != topic);
                }
                groups.retain(|_, stored| !stored.offsets.is_empty());
            }
            OffsetRecord::OffsetsExpired { group, partitions } => {
                if let Some(stored) = groups.get_mut(group) {
                    for key in partitions {
                        stored.offsets.remove(key);
                    }
                    if stored.offsets.is_empty() {
                        groups.remove(group);
                    }
                }
            }
        }
    }

    /// The record with its length and CRC prefix.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(64);
        match self {
            OffsetRecord::Commit {
                group,
                protocol_type,
                offsets,
            } => {
                body.push(KIND_COMMIT);
                put_str(&mut body, group);
                put_str(&mut body, protocol_type);
                body.extend_from_slice(&(offsets.len() as u32).to_be_bytes());
                for (topic, partition, offset) in offsets {
                    put_str(&mut body, topic);
                    body.extend_from_slice(&partition.to_be_bytes());
                    body.extend_from_slice(&offset.offset.to_be_bytes());
                    body.extend_from_slice(&offset.leader_epoch.to_be_bytes());
                    match &offset.metadata {
                        None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                        Some(metadata) => {
                            body.extend_from_slice(&(metadata.len() as i32).to_be_bytes());
                            body.extend_from_slice(metadata.as_bytes());
                        }
                    }
                    body.extend_from_slice(&offset.commit_timestamp_ms.to_be_bytes());
                }
            }
            OffsetRecord::GroupDeleted { group } => {
                body.push(KIND_GROUP_DELETED);
                put_str(&mut body, group);
            }
            OffsetRecord::TopicDeleted { topic } => {
                body.push(KIND_TOPIC_DELETED);
                put_str(&mut body, topic);
            }
            OffsetRecord::OffsetsExpired { group, partitions } => {
                body.push(KIND_OFFSETS_EXPIRED);
                put_str(&mut body, group);
                body.extend_from_slice(&(partitions.len() as u32).to_be_bytes());
                for (topic, partition) in partitions {
                    put_str(&mut body, topic);
                    body.extend_from_slice(&partition.to_be_bytes());
                }
            }
        }
        let mut record = Vec::with_capacity(RECORD_PREFIX_BYTES + body.len());
        record.extend_from_slice(&(body.len() as u32).to_be_bytes());
        record.extend_from_slice(&crc32c(&body).to_be_bytes());
        record.extend_from_slice(&body);
        record
    }

    /// Decodes one record body (after the prefix); `None` when it is malformed.
    fn decode(body: &[u8]) -> Option<OffsetRecord> {
        let mut reader = Reader::new(body);
        let record = match reader.u8()? {
            KIND_COMMIT => {
                let group = reader.string()?;
                let protocol_type = reader.string()?;
                let count = reader.u32()? as usize;
                // Each offset takes at least 28 bytes: a count beyond that is corruption.
                if count > reader.remaining() / 28 {
                    return None;
                }
                let mut offsets = Vec::with_capacity(count);
                for _ in 0..count {
                    let topic = reader.string()?;
                    let partition = reader.i32()?;
                    let offset = reader.i64()?;
                    let leader_epoch = reader.i32()?;
                    let metadata = match reader.i32()? {
                        -1 => None,
                        length => Some(reader.text(usize::try_from(length).ok()?)?),
                    };
                    let commit_timestamp_ms = reader.i64()?;
                    offsets.push((
                        topic,
                        partition,
                        CommittedOffset {
                            offset,
                            leader_epoch,
                            metadata,
                            commit_timestamp_ms,
                        },
                    ));
                }
                OffsetRecord::Commit {
                    group,
                    protocol_type,
                    offsets,
                }
            }
            KIND_GROUP_DELETED => OffsetRecord::GroupDeleted {
                group: reader.string()?,
            },
            KIND_TOPIC_DELETED => OffsetRecord::TopicDeleted {
                topic: reader.string()?,
            },
            KIND_OFFSETS_EXPIRED => {
                let group = reader.string()?;
                let count = reader.u32()? as usize;
                // Each partition takes at least 8 bytes.
                if count > reader.remaining() / 8 {
                    return None;
                }
                let mut partitions = Vec::with_capacity(count);
                for _ in 0..count {
                    partitions.push((reader.string()?, reader.i32()?));
                }
                OffsetRecord::OffsetsExpired { group, partitions }
            }
            _ => return None,
        };
        (reader.remaining() == 0).then_some(record)
    }
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Reads every whole, valid record of `bytes` in order. Returns the offsets they leave and the
/// length of the valid prefix; whatever follows (a torn write, garbage) is ignored.
pub fn replay(bytes: &[u8]) -> (BTreeMap<String, StoredGroup>, usize) {
    let mut groups = BTreeMap::new();
    let mut position = 0;
    while bytes.len() - position >= RECORD_PREFIX_BYTES {
        let prefix = &bytes[position..position + RECORD_PREFIX_BYTES];
        let length = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let crc = u32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
        let start = position + RECORD_PREFIX_BYTES;
        if length > RECORD_MAX_BYTES || bytes.len() - start < length {
            break;
        }
        let body = &bytes[start..start + length];
        if crc32c(body) != crc {
            break;
        }
        let Some(record) = OffsetRecord::decode(body) else {
            break;
        };
        record.apply(&mut groups);
        position = start + length;
    }
    (groups, position)
}

/// The committed offsets file, open for appending.
#[derive(Debug)]
pub struct OffsetLog {
    path: PathBuf,
    file: File,
    /// Bytes in the file now.
    bytes: u64,
    /// Bytes right after the last compact rewrite: the file is rewritten at twice this.
    compacted_bytes: u64,
    /// A failed append left bytes that could not be cut off: no append until a rewrite.
    torn: bool,
}

impl OffsetLog {
    /// Opens (creating if needed) `<dir>/consumer-offsets.log`, returning the offsets it holds.
    /// A torn or corrupt tail is dropped, and the file rewritten compactly when that saves space.
    pub fn open(dir: &Path) -> io::Result<(OffsetLog, BTreeMap<String, StoredGroup>)> {
        let path = dir.join(OFFSETS_FILE);
        let existing = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        let (groups, valid) = replay(&existing);
        if valid < existing.len() {
            tracing::warn!(
                path = %path.display(),
                ignored_bytes = existing.len() - valid,
                "committed offsets file ends with a torn or corrupt record; ignoring it"
            );
        }
        let compact = compact_encoding(&groups);
        if compact.len() < existing.len() || !path.exists() {
            write_atomically(&path, &compact)?;
        }
        let file = OpenOptions::new().append(true).open(&path)?;
        let bytes = file.metadata()?.len();
        Ok((
            OffsetLog {
                path,
                file,
                bytes,
                compacted_bytes: bytes,
                torn: false,
            },
            groups,
        ))
    }

    /// Appends one record with a single write(2) (no fsync: see the module comment). A write
    /// that fails part-way (a full disk) is cut off again, so no torn record sits in front of
    /// later commits; if even that fails, the file is rewritten before the next append.
    pub fn append(&mut self, record: &OffsetRecord) -> io::Result<()> {
        if self.torn {
            return Err(io::Error::other(
                "the committed offsets file holds a torn record that could not be removed",
            ));
        }
        let encoded = record.encode();
        if let Err(error) = self.file.write_all(&encoded) {
            if self.file.set_len(self.bytes).is_err() {
                self.torn = true;
            }
            return Err(error);
        }
        self.bytes += encoded.len() as u64;
        Ok(())
    }

    /// Whether appends wait for a successful [`OffsetLog::rewrite`].
    pub fn is_torn(&self) -> bool {
        self.torn
    }

    /// Whether the file has grown enough that [`OffsetLog::rewrite`] is worth it, or must be
    /// rewritten because a failed append left a torn record.
    pub fn wants_rewrite(&self) -> bool {
        self.torn || self.bytes >= COMPACT_MIN_BYTES.max(self.compacted_bytes.saturating_mul(2))
    }

    /// Replaces the file with the compact form of `groups` (what it holds now).
    pub fn rewrite(&mut self, groups: &BTreeMap<String, StoredGroup>) -> io::Result<()> {
        let compact = compact_encoding(groups);
        let written = write_atomically(&self.path, &compact);
        // Once the rename happened (even if syncing the directory then failed), appends must go
        // to the new file, never the unlinked old one.
        if let Ok(file) = OpenOptions::new().append(true).open(&self.path)
            && let Ok(metadata) = file.metadata()
            && metadata.len() == compact.len() as u64
        {
            self.file = file;
            self.bytes = compact.len() as u64;
            self.compacted_bytes = self.bytes;
            self.torn = false;
        }
        written
    }
}

/// One commit record per group holding all of its offsets.
fn compact_encoding(groups: &BTreeMap<String, StoredGroup>) -> Vec<u8> {
    let mut out = Vec::new();
    for (group, stored) in groups {
        if stored.offsets.is_empty() {
            continue;
        }
        let record = OffsetRecord::Commit {
            group: group.clone(),
            protocol_type: stored.protocol_type.clone(),
            offsets: stored
                .offsets
                .iter()
                .map(|((topic, partition), offset)| (topic.clone(), *partition, offset.clone()))
                .collect(),
        };
        out.extend_from_slice(&record.encode());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(offset: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: 3,
            metadata: Some(format!("m{offset}")),
            commit_timestamp_ms: 1_700_000_000_000 + offset,
        }
    }

    fn commit(group: &str, topic: &str, partition: i32, at: i64) -> OffsetRecord {
        OffsetRecord::Commit {
            group: group.to_string(),
            protocol_type: "consumer".to_string(),
            offsets: vec![(topic.to_string(), partition, offset(at))],
        }
    }

    #[test]
    fn records_round_trip_and_later_records_win() {
        let records = [
            commit("g", "t", 0, 5),
            commit("g", "t", 0, 9),
            commit("g", "u", 1, 2),
            commit("h", "t", 0, 1),
            OffsetRecord::Commit {
                group: "s".to_string(),
                protocol_type: String::new(),
                offsets: vec![(
                    "t".to_string(),
                    3,
                    CommittedOffset {
                        offset: 7,
                        leader_epoch: -1,
                        metadata: None,
                        commit_timestamp_ms: 0,
                    },
                )],
            },
            OffsetRecord::TopicDeleted {
                topic: "u".to_string(),
            },
            OffsetRecord::GroupDeleted {
                group: "h".to_string(),
            },
            commit("x", "t", 0, 1),
            commit("x", "t", 1, 1),
            OffsetRecord::OffsetsExpired {
                group: "x".to_string(),
                partitions: vec![("t".to_string(), 0)],
            },
            commit("y", "t", 0, 1),
            OffsetRecord::OffsetsExpired {
                group: "y".to_string(),
                partitions: vec![("t".to_string(), 0)],
            },
        ];
        let bytes: Vec<u8> = records.iter().flat_map(OffsetRecord::encode).collect();
        let (groups, valid) = replay(&bytes);
        assert_eq!(valid, bytes.len());
        assert_eq!(groups.keys().collect::<Vec<_>>(), ["g", "s", "x"]);
        assert_eq!(
            groups["x"].offsets.keys().collect::<Vec<_>>(),
            [&("t".to_string(), 1)]
        );
        assert_eq!(
            groups["g"].offsets.get(&("t".to_string(), 0)),
            Some(&offset(9))
        );
        assert_eq!(groups["g"].offsets.len(), 1, "topic u was deleted");
        assert_eq!(groups["s"].protocol_type, "");
        assert_eq!(groups["s"].offsets[&("t".to_string(), 3)].metadata, None);
    }

    /// A write cut at any byte, or any flipped byte, loses that record and what follows, never
    /// what came before.
    #[test]
    fn a_torn_or_corrupt_tail_is_ignored() {
        let first = commit("g", "t", 0, 5).encode();
        let second = commit("g", "t", 0, 6).encode();
        let whole: Vec<u8> = first.iter().chain(&second).copied().collect();
        for cut in first.len()..whole.len() {
            let (groups, valid) = replay(&whole[..cut]);
            assert_eq!(valid, first.len(), "cut at {cut}");
            assert_eq!(groups["g"].offsets[&("t".to_string(), 0)].offset, 5);
        }
        for flip in first.len()..whole.len() {
            let mut damaged = whole.clone();
            damaged[flip] ^= 0x40;
            let (groups, valid) = replay(&damaged);
            assert_eq!(valid, first.len(), "flip at {flip}");
            assert_eq!(groups["g"].offsets[&("t".to_string(), 0)].offset, 5);
        }
    }

    #[test]
    fn reopening_keeps_offsets_drops_a_torn_tail_and_compacts() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut log, groups) = OffsetLog::open(dir.path()).expect("open");
            assert!(groups.is_empty());
            for at in 0..100 {
                log.append(&commit("g", "t", 0, at)).expect("append");
            }
        }
        let path = dir.path().join(OFFSETS_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        let full = bytes.len();
        bytes.extend_from_slice(&commit("g", "t", 0, 1000).encode()[..10]);
        std::fs::write(&path, &bytes).expect("tear");
        let (mut log, groups) = OffsetLog::open(dir.path()).expect("reopen");
        assert_eq!(groups["g"].offsets[&("t".to_string(), 0)].offset, 99);
        let compacted = std::fs::metadata(&path).expect("metadata").len() as usize;
        assert!(compacted < full / 50, "{compacted} bytes after compaction");
        log.append(&commit("g", "t", 1, 4))
            .expect("append after reopen");
        drop(log);
        let (_, groups) = OffsetLog::open(dir.path()).expect("third open");
        assert_eq!(groups["g"].offsets.len(), 2);
    }

    /// A failed append whose bytes cannot be cut off (here: a descriptor that can neither write
    /// nor truncate) stops appends until a rewrite, and the rewrite puts appends back on a whole
    /// file that holds every offset the coordinator knows.
    #[test]
    fn an_append_that_cannot_be_cut_off_holds_appends_until_a_rewrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, mut groups) = OffsetLog::open(dir.path()).expect("open");
        let first = commit("g", "t", 0, 10);
        log.append(&first).expect("append");
        first.apply(&mut groups);

        let path = dir.path().join(OFFSETS_FILE);
        log.file = File::open(&path).expect("a read-only descriptor");
        assert!(log.append(&commit("g", "t", 0, 11)).is_err());
        assert!(log.is_torn() && log.wants_rewrite());
        let refused = log.append(&commit("g", "t", 1, 5));
        assert!(
            refused.is_err_and(|error| error.to_string().contains("torn record")),
            "appends wait for the rewrite"
        );

        // The coordinator's own view (what it answered as committed) is what gets written.
        let second = commit("g", "t", 1, 5);
        second.apply(&mut groups);
        log.rewrite(&groups).expect("rewrite");
        assert!(!log.is_torn());
        log.append(&commit("g", "t", 0, 12))
            .expect("append after the rewrite");
        drop(log);

        let bytes = std::fs::read(&path).expect("read");
        let (reopened, valid) = replay(&bytes);
        assert_eq!(valid, bytes.len(), "no torn bytes left in the file");
        let offsets = &reopened["g"].offsets;
        assert_eq!(offsets[&("t".to_string(), 0)].offset, 12);
        assert_eq!(offsets[&("t".to_string(), 1)].offset, 5);
    }
}
