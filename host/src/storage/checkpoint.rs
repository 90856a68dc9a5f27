//! Kafka's text checkpoint files, written atomically.
//!
//! `recovery-point-offset-checkpoint` and `log-start-offset-checkpoint` (one per log directory):
//!
//! ```text
//! 0                 version
//! 2                 number of entries
//! orders 0 1200     topic partition offset
//! orders 1 877
//! ```
//!
//! `leader-epoch-checkpoint` (one per partition) has the same header and `epoch start_offset` lines.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use super::files::write_atomically;

pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
const CHECKPOINT_VERSION: u32 = 0;

/// A topic partition, as named in checkpoints and partition directory names (`topic-partition`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses `topic-partition`; topic names may themselves contain '-'.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        if topic.is_empty() {
            return None;
        }
        Some(TopicPartition::new(topic, partition.parse().ok()?))
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

fn invalid(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

/// Reads the lines of a checkpoint after checking its version and count. A missing file is empty.
fn read_lines(path: &Path) -> io::Result<Vec<Vec<String>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut lines = text.lines();
    let version: u32 = lines
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| invalid(path, "missing version"))?;
    if version != CHECKPOINT_VERSION {
        return Err(invalid(path, &format!("unsupported version {version}")));
    }
    let count: usize = lines
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| invalid(path, "missing entry count"))?;
    let entries: Vec<Vec<String>> = lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect();
    if entries.len() != count {
        return Err(invalid(
            path,
            &format!("expected {count} entries, found {}", entries.len()),
        ));
    }
    Ok(entries)
}

fn render(lines: &[String]) -> Vec<u8> {
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", lines.len());
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text.into_bytes()
}

pub fn read_offsets(path: &Path) -> io::Result<BTreeMap<TopicPartition, u64>> {
    let mut offsets = BTreeMap::new();
    for fields in read_lines(path)? {
        let [topic, partition, offset] = fields.as_slice() else {
            return Err(invalid(path, "expected 'topic partition offset'"));
        };
        let partition = partition
            .parse()
            .map_err(|_| invalid(path, "bad partition"))?;
        let offset = offset.parse().map_err(|_| invalid(path, "bad offset"))?;
        offsets.insert(TopicPartition::new(topic.as_str(), partition), offset);
    }
    Ok(offsets)
}

pub fn write_offsets(path: &Path, offsets: &BTreeMap<TopicPartition, u64>) -> io::Result<()> {
    let lines: Vec<String> = offsets
        .iter()
        .map(|(tp, offset)| format!("{} {} {offset}", tp.topic, tp.partition))
        .collect();
    write_atomically(path, &render(&lines))
}

pub fn read_epochs(path: &Path) -> io::Result<Option<Vec<(i32, u64)>>> {
    if !path.exists() {
        return Ok(None);
    }
    let mut epochs = Vec::new();
    for fields in read_lines(path)? {
        let [epoch, start_offset] = fields.as_slice() else {
            return Err(invalid(path, "expected 'epoch start_offset'"));
        };
        let epoch = epoch.parse().map_err(|_| invalid(path, "bad epoch"))?;
        let start_offset = start_offset
            .parse()
            .map_err(|_| invalid(path, "bad start offset"))?;
        epochs.push((epoch, start_offset));
    }
    Ok(Some(epochs))
}

pub fn write_epochs(path: &Path, epochs: &[(i32, u64)]) -> io::Result<()> {
    let lines: Vec<String> = epochs
        .iter()
        .map(|(epoch, start)| format!("{epoch} {start}"))
        .collect();
    write_atomically(path, &render(&lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_in_kafkas_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(RECOVERY_POINT_CHECKPOINT);
        assert!(read_offsets(&path).expect("missing is empty").is_empty());
        let mut offsets = BTreeMap::new();
        offsets.insert(TopicPartition::new("my-topic", 3), 1200);
        offsets.insert(TopicPartition::new("a", 0), 0);
        write_offsets(&path, &offsets).expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "0\n2\na 0 0\nmy-topic 3 1200\n"
        );
        assert_eq!(read_offsets(&path).expect("read"), offsets);
    }

    #[test]
    fn a_damaged_checkpoint_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LOG_START_OFFSET_CHECKPOINT);
        std::fs::write(&path, "0\n3\na 0 1\n").expect("write");
        assert!(read_offsets(&path).is_err());
        std::fs::write(&path, "7\n0\n").expect("write");
        assert!(read_offsets(&path).is_err());
    }

    #[test]
    fn partition_directory_names_parse() {
        let tp = TopicPartition::new("my-topic", 12);
        assert_eq!(tp.dir_name(), "my-topic-12");
        assert_eq!(TopicPartition::from_dir_name("my-topic-12"), Some(tp));
        assert_eq!(TopicPartition::from_dir_name("nodash"), None);
        assert_eq!(TopicPartition::from_dir_name("-3"), None);
    }
}
