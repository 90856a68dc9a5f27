//! The plugin registry through the metadata log: install, activate, roll back and remove are
//! checked here (a component is compiled and run through its conformance scenarios on the
//! broker that received it), then committed as records by the active controller, wherever the
//! request arrived; every broker's runtime swaps when it applies the entry, so all run the same
//! versions from the same metadata offset.

use super::{ApiError, Broker, PLUGINS_DIR};
use crate::controller::image::registry_records;
use crate::controller::records::{Change, MetadataRecord};
use crate::policy::PluginInfo;
use crate::policy::registry::{LEGACY_REGISTRY_FILE, read_legacy};

/// Why a plugin operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The registry or the component refuses it (a bad component, an unknown version, a
    /// plugin still in use): the message says which.
    #[error("{0:#}")]
    Refused(anyhow::Error),
    /// The metadata change did not commit.
    #[error("{}", .0.message)]
    Metadata(ApiError),
}

impl From<ApiError> for PluginError {
    fn from(error: ApiError) -> Self {
        PluginError::Metadata(error)
    }
}

fn refused(error: anyhow::Error) -> PluginError {
    PluginError::Refused(error)
}

impl Broker {
    /// Installs `bytes` as `version` (default: the next number) of `name`.
    pub async fn install_plugin(
        &self,
        name: &str,
        version: Option<&str>,
        bytes: Vec<u8>,
        now_ms: i64,
    ) -> Result<PluginInfo, PluginError> {
        let policies = self.policies.clone();
        let (checked_name, checked_version) = (name.to_string(), version.map(str::to_string));
        let component = bytes.clone();
        let (kind, installed) = tokio::task::spawn_blocking(move || {
            policies.check_install(
                &checked_name,
                checked_version.as_deref(),
                &component,
                now_ms,
            )
        })
        .await
        .map_err(|error| refused(anyhow::anyhow!("checking the component: {error}")))?
        .map_err(refused)?;
        // Checked against the registry as it stands, so a conflict is answered with its reason
        // rather than as a refused metadata entry.
        let mut registry = (*self.policies.registry()).clone();
        let new = registry
            .install(name, kind, installed.clone(), bytes.clone().into())
            .map_err(refused)?;
        if new {
            self.commit_anywhere(vec![Change::PluginInstall {
                name: name.to_string(),
                kind,
                version: installed.version.clone(),
                sha256: installed.sha256,
                installed_at_ms: installed.installed_at_ms,
                component: bytes.into(),
            }])
            .await?;
            tracing::info!(plugin = name, version = %installed.version, kind = kind.interface(), "plugin installed");
        }
        self.policies.info(name).map_err(refused)
    }

    /// Makes `version` (default: the newest) of `name` current; broker-wide without a topic,
    /// else bound to `topic` through its `policy.<kind>` config.
    pub async fn activate_plugin(
        &self,
        name: &str,
        version: Option<&str>,
        topic: Option<&str>,
    ) -> Result<PluginInfo, PluginError> {
        let policies = self.policies.clone();
        let (checked_name, checked_version) = (name.to_string(), version.map(str::to_string));
        let version = tokio::task::spawn_blocking(move || {
            policies.check_activate(&checked_name, checked_version.as_deref())
        })
        .await
        .map_err(|error| refused(anyhow::anyhow!("loading the plugin: {error}")))?
        .map_err(refused)?;
        let broker_wide = topic.is_none();
        let mut registry = (*self.policies.registry()).clone();
        registry
            .activate(name, &version, broker_wide, 0)
            .map_err(refused)?;
        self.commit_anywhere(vec![Change::PluginActivate {
            name: name.to_string(),
            version: version.clone(),
            broker_wide,
        }])
        .await?;
        if let Some(topic) = topic {
            let kind = self
                .policies
                .kind_of(name)
                .ok_or_else(|| refused(anyhow::anyhow!("no plugin named `{name}`")))?;
            let binding = name.to_string();
            self.alter_topic_configs(
                topic,
                move |configs| {
                    configs.insert(kind.topic_config().to_string(), binding);
                    Ok(())
                },
                false,
            )
            .await?;
        }
        tracing::info!(plugin = name, %version, broker_wide, "plugin activated");
        self.policies.info(name).map_err(refused)
    }

    /// Returns `name` to the version current before its last activation.
    pub async fn rollback_plugin(&self, name: &str) -> Result<PluginInfo, PluginError> {
        let mut registry = (*self.policies.registry()).clone();
        let version = registry.rollback(name, 0).map_err(refused)?;
        self.commit_anywhere(vec![Change::PluginRollback {
            name: name.to_string(),
        }])
        .await?;
        tracing::info!(plugin = name, %version, "plugin rolled back");
        self.policies.info(name).map_err(refused)
    }

    /// Uninstalls every version of `name`; refused while it is broker-wide or bound to topics.
    pub async fn remove_plugin(&self, name: &str) -> Result<(), PluginError> {
        let bound = match self.policies.kind_of(name) {
            Some(kind) => self.quorum.view().image().topics_bound_to(kind, name),
            None => Vec::new(),
        };
        let mut registry = (*self.policies.registry()).clone();
        registry.remove(name, &bound).map_err(refused)?;
        self.commit_anywhere(vec![Change::PluginRemove {
            name: name.to_string(),
        }])
        .await?;
        tracing::info!(plugin = name, "plugin removed");
        Ok(())
    }

    /// A data directory from before the controller kept its plugins in
    /// `plugins/registry.json`: on the active controller, every installed version and each
    /// plugin's state go into the metadata log in one entry, and the file is renamed so it is
    /// never read again (its components stay beside it).
    pub(super) async fn migrate_local_plugins(&self) {
        let dir = self.config.log_dir.join(PLUGINS_DIR);
        let legacy = match read_legacy(&dir) {
            Ok(Some(legacy)) => legacy,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(
                    "the plugin registry of this data directory cannot be moved into the metadata log: {error:#}"
                );
                return;
            }
        };
        if !self
            .quorum
            .wait_for_controller(super::METADATA_RECOVERY_TIMEOUT)
            .await
            || !self.quorum.is_active_controller()
        {
            tracing::warn!(
                "plugins of a single-node data directory wait for this node to be the active controller to move into the metadata log"
            );
            return;
        }
        if self.quorum.view().image().plugins().plugins.is_empty() {
            let records: Vec<MetadataRecord> = registry_records(&legacy)
                .into_iter()
                .map(MetadataRecord::new)
                .collect();
            if let Err(error) = self.quorum.propose(records).await {
                tracing::error!(%error, "could not move the plugin registry into the metadata log");
                return;
            }
            tracing::info!(
                plugins = legacy.plugins.len(),
                "moved the plugin registry into the metadata log"
            );
        }
        let from = dir.join(LEGACY_REGISTRY_FILE);
        let to = dir.join(format!("{LEGACY_REGISTRY_FILE}.moved-to-metadata-log"));
        if let Err(error) = std::fs::rename(&from, &to) {
            tracing::warn!(%error, "could not rename the migrated {}", from.display());
        }
    }

    /// Proposes `records` as one metadata entry through the active controller, wherever it
    /// is, and waits until this broker has applied it.
    async fn commit_anywhere(&self, records: Vec<Change>) -> Result<u64, ApiError> {
        let records: Vec<MetadataRecord> = records.into_iter().map(MetadataRecord::new).collect();
        let offset = self
            .quorum
            .propose_anywhere(records)
            .await
            .map_err(super::propose_error)?;
        self.wait_reconciled(offset).await?;
        Ok(offset)
    }
}
