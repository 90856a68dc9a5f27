//! `weir serve --plugin-dir DIR`: every [`POLL_INTERVAL`] the directory is listed; a `*.wasm`
//! file that appeared or changed (modification time or size), once it has stayed the same for a
//! whole interval (so a file still being written is not read half-way), is read and hashed. New
//! bytes are installed under the file's stem as the plugin name (next version number) and
//! activated broker-wide; bytes already installed under that name are only activated. Failures
//! are logged and the file is not retried until it changes again. Deleting a file uninstalls
//! nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch as signal;

use crate::broker::Broker;
use crate::policy::PluginInfo;

/// How often the directory is listed.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A file's modification time and size: when either changes, the file is looked at again.
type Stamp = (Option<SystemTime>, u64);

/// What the watcher knows of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileState {
    /// Modification time and size at the last poll.
    stamp: Stamp,
    /// Whether the current stamp's bytes still need looking at.
    pending: bool,
    /// The sha256 of the bytes last handled (installed, activated or refused).
    handled: Option<String>,
}

/// What one poll decided to do with a file.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// New or changed since the last poll: wait one more interval.
    Settling,
    /// Stable and not yet handled: read it.
    Read,
    /// Nothing new.
    Idle,
}

impl FileState {
    fn observe(state: Option<&mut FileState>, stamp: Stamp) -> (Step, Option<FileState>) {
        match state {
            None => (
                Step::Settling,
                Some(FileState {
                    stamp,
                    pending: true,
                    handled: None,
                }),
            ),
            Some(state) if state.stamp != stamp => {
                state.stamp = stamp;
                state.pending = true;
                (Step::Settling, None)
            }
            Some(state) if state.pending => {
                state.pending = false;
                (Step::Read, None)
            }
            Some(_) => (Step::Idle, None),
        }
    }
}

/// Polls `dir` until `shutdown` turns true.
pub async fn run(broker: Arc<Broker>, dir: PathBuf, mut shutdown: signal::Receiver<bool>) {
    tracing::info!(plugin_dir = %dir.display(), "watching for plugin components (*.wasm)");
    let mut files: HashMap<PathBuf, FileState> = HashMap::new();
    let mut unreadable_logged = false;
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let listing = match list_components(&dir) {
            Ok(listing) => {
                unreadable_logged = false;
                listing
            }
            Err(error) => {
                if !unreadable_logged {
                    tracing::warn!(plugin_dir = %dir.display(), %error, "cannot list the plugin directory; trying again");
                    unreadable_logged = true;
                }
                continue;
            }
        };
        files.retain(|path, _| listing.iter().any(|(listed, _)| listed == path));
        for (path, stamp) in listing {
            let (step, new) = FileState::observe(files.get_mut(&path), stamp);
            if let Some(new) = new {
                files.insert(path.clone(), new);
            }
            if step != Step::Read {
                continue;
            }
            let handled = files.get(&path).and_then(|state| state.handled.clone());
            let sha256 = handle_file(&broker, &path, handled.as_deref()).await;
            if let (Some(state), Some(sha256)) = (files.get_mut(&path), sha256) {
                state.handled = Some(sha256);
            }
        }
    }
}

/// The `*.wasm` files of `dir` with their modification time and size.
fn list_components(dir: &Path) -> std::io::Result<Vec<(PathBuf, Stamp)>> {
    let mut listing = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        if path.extension().is_none_or(|extension| extension != "wasm") {
            continue;
        }
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.is_file() {
            listing.push((path, (metadata.modified().ok(), metadata.len())));
        }
    }
    listing.sort();
    Ok(listing)
}

/// Reads `path` and, unless its bytes are `handled` already, installs and activates them. The
/// sha256 of the bytes looked at, or None when the file could not be read (retried next poll
/// only if it changes).
async fn handle_file(broker: &Broker, path: &Path, handled: Option<&str>) -> Option<String> {
    // A plugin file is small: reading it inline costs less than a blocking-pool hop.
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(file = %path.display(), %error, "cannot read plugin file");
            return None;
        }
    };
    let sha256 = crate::policy::engine::sha256_hex(&bytes);
    if handled == Some(sha256.as_str()) {
        return Some(sha256);
    }
    let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
        tracing::error!(file = %path.display(), "plugin file name is not UTF-8; rename it");
        return Some(sha256);
    };
    match install_and_activate(broker, name, bytes, &sha256).await {
        Ok(info) => tracing::info!(
            file = %path.display(),
            plugin = name,
            version = info.current_version.as_deref().unwrap_or("-"),
            kind = info.kind.interface(),
            "plugin from the plugin directory is active broker-wide"
        ),
        Err(error) => tracing::error!(
            file = %path.display(),
            plugin = name,
            "plugin file refused: {error:#}"
        ),
    }
    Some(sha256)
}

/// Installs `bytes` as a new version of `name` unless a version with these bytes exists, then
/// activates that version broker-wide (unless it already is).
pub async fn install_and_activate(
    broker: &Broker,
    name: &str,
    bytes: Vec<u8>,
    sha256: &str,
) -> anyhow::Result<PluginInfo> {
    let policies = &broker.policies;
    let version_with_bytes = |info: &PluginInfo| {
        info.versions
            .iter()
            .rev()
            .find(|version| version.sha256 == sha256)
            .map(|version| version.version.clone())
    };
    let existing = policies
        .info(name)
        .ok()
        .filter(|info| !info.builtin)
        .and_then(|info| version_with_bytes(&info).map(|version| (info, version)));
    let (info, version) = match existing {
        Some(found) => found,
        None => {
            let info = broker
                .install_plugin(name, None, bytes, super::now_ms())
                .await?;
            let version = version_with_bytes(&info)
                .ok_or_else(|| anyhow::anyhow!("the installed version is missing from `{name}`"))?;
            (info, version)
        }
    };
    if info.default_for_kind && info.current_version.as_deref() == Some(version.as_str()) {
        return Ok(info);
    }
    Ok(broker.activate_plugin(name, Some(&version), None).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_once_it_stops_changing() {
        let t0 = Some(SystemTime::UNIX_EPOCH);
        let t1 = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1));
        let (step, new) = FileState::observe(None, (t0, 10));
        assert_eq!(step, Step::Settling);
        let mut state = new.expect("a new file is tracked");
        assert_eq!(
            FileState::observe(Some(&mut state), (t0, 20)).0,
            Step::Settling
        );
        assert_eq!(FileState::observe(Some(&mut state), (t0, 20)).0, Step::Read);
        assert_eq!(FileState::observe(Some(&mut state), (t0, 20)).0, Step::Idle);
        assert_eq!(
            FileState::observe(Some(&mut state), (t1, 20)).0,
            Step::Settling
        );
        assert_eq!(FileState::observe(Some(&mut state), (t1, 20)).0, Step::Read);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_bytes_are_installed_once_and_activated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::config::BrokerConfig::load(
            None,
            &[format!("log.dirs={}", dir.path().display())],
        )
        .expect("config");
        let broker = Broker::start(config).await.expect("broker");
        let bytes = crate::policy::defaults::PARTITIONER;
        let sha = crate::policy::engine::sha256_hex(bytes);
        let info = install_and_activate(&broker, "dropped", bytes.to_vec(), &sha)
            .await
            .expect("install");
        assert!(info.default_for_kind);
        assert_eq!(info.current_version.as_deref(), Some("1"));
        let again = install_and_activate(&broker, "dropped", bytes.to_vec(), &sha)
            .await
            .expect("again");
        assert_eq!(
            again.versions.len(),
            1,
            "no second version for the same bytes"
        );
        assert!(
            install_and_activate(&broker, "junk", b"not wasm".to_vec(), "x")
                .await
                .is_err()
        );
        assert!(
            install_and_activate(&broker, "partitioner-default", bytes.to_vec(), &sha)
                .await
                .is_err(),
            "a built-in's name is refused"
        );
        broker.quorum.shutdown().await;
    }
}
