//! `weir metadata dump`: the metadata quorum's files as text, like `kafka-dump-log.sh
//! --cluster-metadata-decoder`: the snapshot's records, then every log entry after it with its
//! offset and term, each record as one line of JSON. Reads only; a torn tail is reported, not cut.

use std::io::Write;
use std::path::{Path, PathBuf};

use openraft::EntryPayload;

use crate::controller::image::MetadataImage;
use crate::controller::quorum::METADATA_DIR;
use crate::controller::quorum::log_store::{LOG_FILE, STATE_FILE, read_log};
use crate::controller::quorum::state_machine::{SNAPSHOT_FILE, StoredSnapshot, apply_entry};

/// The metadata directory for `dir`: a data directory (`log.dirs`) holding
/// `__cluster_metadata`, or the metadata directory itself.
pub fn metadata_dir(dir: &Path) -> Option<PathBuf> {
    let holds_quorum = |dir: &Path| {
        [LOG_FILE, STATE_FILE, SNAPSHOT_FILE]
            .iter()
            .any(|name| dir.join(name).exists())
    };
    [dir.join(METADATA_DIR), dir.to_path_buf()]
        .into_iter()
        .find(|candidate| holds_quorum(candidate))
}

/// The metadata image `dir`'s snapshot and log rebuild (read only): what a node restarted on
/// this directory would start from, for tools and tests that check what was persisted.
pub fn read_image(dir: &Path) -> anyhow::Result<MetadataImage> {
    let dir = metadata_dir(dir)
        .ok_or_else(|| anyhow::anyhow!("{} holds no metadata log", dir.display()))?;
    let mut image = match StoredSnapshot::read(&dir)? {
        Some(snapshot) => snapshot.image().map_err(anyhow::Error::msg)?,
        None => MetadataImage::default(),
    };
    let (_, entries, _) = read_log(&dir)?;
    for entry in entries {
        if image
            .offset()
            .is_none_or(|offset| entry.log_id.index > offset)
        {
            // The same rule as every node: a refused entry is skipped.
            image = apply_entry(&image, &entry).0;
        }
    }
    Ok(image)
}

/// Writes the dump of `dir` to `out`.
pub fn dump(dir: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let dir = metadata_dir(dir).ok_or_else(|| {
        anyhow::anyhow!(
            "{} holds no metadata log (looked for {METADATA_DIR}/{LOG_FILE})",
            dir.display()
        )
    })?;
    let record_line = |record: &crate::controller::records::MetadataRecord| {
        use crate::controller::records::Change;
        // A plugin component is megabytes of base64: its size stands in for it.
        if let Change::PluginInstall { component, .. } = &record.change
            && let Ok(mut line) = serde_json::to_value(record)
        {
            line["component"] = format!("<{} bytes>", component.len()).into();
            return line.to_string();
        }
        String::from_utf8_lossy(&record.encode()).into_owned()
    };
    match StoredSnapshot::read(&dir)? {
        Some(snapshot) => {
            let records = snapshot.records().map_err(anyhow::Error::msg)?;
            let last = snapshot.meta.last_log_id;
            writeln!(
                out,
                "snapshot {}: up to offset {} (term {}), {} records",
                snapshot.meta.snapshot_id,
                last.map_or(-1, |id| id.index as i64),
                last.map_or(0, |id| id.leader_id.term),
                records.len()
            )?;
            for record in &records {
                writeln!(out, "  {}", record_line(record))?;
            }
        }
        None => writeln!(out, "snapshot: none")?,
    }
    let (state, entries, torn) = read_log(&dir)?;
    writeln!(
        out,
        "log: vote {}, committed offset {}, purged up to {}, {} entries",
        state
            .vote
            .map_or_else(|| "none".to_string(), |vote| vote.to_string()),
        state.committed.map_or(-1, |id| id.index as i64),
        state.last_purged.map_or(-1, |id| id.index as i64),
        entries.len()
    )?;
    for entry in &entries {
        let at = format!(
            "offset {} term {}",
            entry.log_id.index, entry.log_id.leader_id.term
        );
        match &entry.payload {
            EntryPayload::Blank => writeln!(out, "{at}: leader change (no records)")?,
            EntryPayload::Membership(membership) => writeln!(out, "{at}: voters {membership}")?,
            EntryPayload::Normal(batch) => {
                writeln!(out, "{at}: {} records", batch.records.len())?;
                for record in &batch.records {
                    writeln!(out, "  {}", record_line(record))?;
                }
            }
        }
    }
    if torn > 0 {
        writeln!(
            out,
            "torn tail: {torn} bytes after the last whole entry (cut at the next start)"
        )?;
    }
    Ok(())
}
