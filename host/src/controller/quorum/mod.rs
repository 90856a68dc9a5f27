//! The controller quorum: the metadata log replicated by Raft (openraft), the way KRaft's
//! `__cluster_metadata` is. The voters (`controller.quorum.voters`) elect one of themselves
//! active controller; it alone appends metadata records, each committed once a majority has
//! them durable, and every node applies committed entries in order into its
//! [`MetadataImage`], published through a [`MetadataView`].
//!
//! - [`log_store`]: the Raft log, vote and committed mark on disk;
//! - [`state_machine`]: entries into the image; snapshots as the image's records;
//! - [`transport`]: Raft's RPCs between voters over the `CONTROLLER` listener;
//! - [`lifecycle`]: brokers' registration, heartbeats, fencing and controlled shutdown;
//! - [`forward`]: admin requests other brokers pass on to the active controller.
//!
//! `weir serve` with no cluster settings is a one-voter quorum: the same code, with no peer.

pub mod forward;
pub mod lifecycle;
pub mod log_store;
pub mod state_machine;
pub mod transport;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{AnyError, BasicNode, Raft, SnapshotPolicy, StorageError, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::image::MetadataImage;
use super::records::MetadataRecord;

/// Raft node ids are the controllers' `node.id`s.
pub type NodeId = u64;

/// The name of the metadata directory under the first log dir. It is not a partition name
/// (no `-<n>` suffix), so the log manager never takes it for a partition.
pub const METADATA_DIR: &str = "__cluster_metadata";

openraft::declare_raft_types!(
    /// The metadata quorum's Raft types.
    pub MetadataRaft:
        D = MetadataBatch,
        R = ApplyOutcome,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<MetadataRaft>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// One proposal: records applied together at one log offset, or not at all (a topic and its
/// partitions, a broker's registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataBatch {
    pub records: Vec<MetadataRecord>,
}

/// What applying one entry did: its offset in the metadata log, and why the image refused it
/// (deterministically on every node) if it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    pub offset: u64,
    pub refused: Option<String>,
}

/// The published image: handlers load it without locking; waiters watch the applied offset.
#[derive(Debug)]
pub struct MetadataView {
    image: ArcSwap<MetadataImage>,
    applied: watch::Sender<Option<u64>>,
}

impl MetadataView {
    pub fn new() -> Arc<MetadataView> {
        Arc::new(MetadataView {
            image: ArcSwap::from_pointee(MetadataImage::default()),
            applied: watch::Sender::new(None),
        })
    }

    /// The newest image; a request holds it for its whole duration and sees one consistent
    /// state.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.load_full()
    }

    fn publish(&self, image: MetadataImage) {
        let offset = image.offset();
        self.image.store(Arc::new(image));
        self.applied.send_replace(offset);
    }

    /// A receiver that changes whenever a new image is published.
    pub fn subscribe(&self) -> watch::Receiver<Option<u64>> {
        self.applied.subscribe()
    }

    /// Waits until the image has applied `offset`; false on timeout.
    pub async fn wait_for_offset(&self, offset: u64, timeout: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(
            timeout,
            applied.wait_for(|applied| applied.is_some_and(|applied| applied >= offset)),
        )
        .await
        .is_ok_and(|result| result.is_ok())
    }
}

/// Turns an I/O failure of the quorum's files into openraft's error, which stops the Raft node:
/// a node whose metadata log or snapshot cannot be written must not go on voting.
fn storage_error(
    make: impl FnOnce(AnyError) -> StorageIOError<NodeId>,
    error: impl std::fmt::Display,
) -> StorageError<NodeId> {
    StorageError::IO {
        source: make(AnyError::error(error.to_string())),
    }
}

/// How a node takes part in the quorum.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: NodeId,
    /// Where the log, vote and snapshot live.
    pub dir: PathBuf,
    /// Every voter and its `CONTROLLER` listener (`host:port`); one entry, this node, for a
    /// single-node cluster.
    pub voters: BTreeMap<NodeId, String>,
    /// Where this node accepts Raft RPCs; `None` for a single voter, which has no peer.
    pub listener: Option<SocketAddr>,
    /// Raft heartbeat interval; elections start after 3 to 6 of them without a leader.
    pub heartbeat_interval: Duration,
    /// A snapshot after this many entries since the last one bounds the log.
    pub snapshot_every: u64,
    /// Brokers' heartbeat interval and session timeout, which the active controller enforces.
    pub lifecycle: lifecycle::LifecycleTimes,
}

impl QuorumConfig {
    fn raft_config(&self) -> anyhow::Result<openraft::Config> {
        let heartbeat = self.heartbeat_interval.as_millis().max(1) as u64;
        let config = openraft::Config {
            cluster_name: "weir".into(),
            heartbeat_interval: heartbeat,
            election_timeout_min: heartbeat * 3,
            election_timeout_max: heartbeat * 6,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            // Keep a little log behind the snapshot so a follower slightly behind catches up
            // from the log rather than by a whole snapshot.
            max_in_snapshot_log_to_keep: self.snapshot_every.min(1000),
            ..openraft::Config::default()
        };
        Ok(config.validate()?)
    }
}

/// Every few heartbeats, the active controller fences brokers whose session expired. Holds the
/// quorum weakly so a dropped quorum ends it.
async fn run_fencing(quorum: std::sync::Weak<Quorum>, times: lifecycle::LifecycleTimes) {
    let mut ticker = tokio::time::interval(times.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(quorum) = quorum.upgrade() else {
            return;
        };
        quorum.fence_expired(times.session_timeout).await;
        quorum.settle_cluster_id().await;
    }
}

/// The quorum as one node sees it (what DescribeQuorum and `weir cluster describe` report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    pub node_id: NodeId,
    pub leader: Option<NodeId>,
    /// The Raft term: KRaft's leader epoch of the metadata log.
    pub term: u64,
    /// Offset after the last applied entry: the metadata log's high watermark as this node
    /// knows it.
    pub high_watermark: u64,
    /// Offset after this node's last entry.
    pub log_end_offset: u64,
    /// Entries up to this offset are in the last snapshot.
    pub snapshot_offset: Option<u64>,
    pub voters: Vec<VoterStatus>,
    /// Learners: dedicated brokers following the log (Kafka's observers).
    pub observers: Vec<VoterStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterStatus {
    pub node_id: NodeId,
    pub address: String,
    /// Known on the leader (each follower's replicated end) and for this node itself.
    pub log_end_offset: Option<u64>,
}

/// Why a proposal did not commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the active controller (Kafka's NOT_CONTROLLER, retriable); the known
    /// leader, if any, is where to go.
    #[error("not the active controller (the active one is {leader:?})")]
    NotController { leader: Option<NodeId> },
    /// The image refused the records (a race between validation and commit).
    #[error("metadata change refused: {0}")]
    Refused(String),
    /// The quorum stopped (a storage failure or shutdown).
    #[error("the controller quorum is not running: {0}")]
    Stopped(String),
}

/// A running member of the quorum (voter) with its view of the metadata.
pub struct Quorum {
    node_id: NodeId,
    raft: Raft<MetadataRaft>,
    view: Arc<MetadataView>,
    /// The controller listener's server and the fencing check, stopped at shutdown.
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    listener: Option<SocketAddr>,
    sessions: std::sync::Mutex<lifecycle::Sessions>,
    /// This node's broker registration (id, epoch), once the controller has answered it.
    registration: std::sync::Mutex<Option<(super::records::BrokerId, i64)>>,
    /// The committed offset this node's log recorded before it started: the image must reach
    /// it before the broker serves, or it would answer from older metadata than it had.
    committed_at_start: Option<u64>,
    /// The cluster id this node proposes if it is the first active controller.
    offered_cluster_id: std::sync::OnceLock<String>,
    /// Answers the requests other brokers forward to this node while it is active controller.
    forward_handler: std::sync::OnceLock<forward::ForwardHandler>,
    /// `controller.quorum.voters` as configured: where a node that knows no leader yet (a
    /// learner before its first entry) sends its registration.
    bootstrap_voters: BTreeMap<NodeId, String>,
}

impl std::fmt::Debug for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quorum")
            .field("node_id", &self.node_id)
            .field("active_controller", &self.active_controller())
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Quorum {
    /// Opens the quorum's files, starts Raft and, on a node whose log is empty, forms the quorum
    /// from the configured voters (every voter does this with the same set, which openraft
    /// allows, so no node is special at first start).
    pub async fn start(config: QuorumConfig) -> anyhow::Result<Arc<Quorum>> {
        let raft_config = Arc::new(config.raft_config()?);
        let log = log_store::MetadataLogStore::open(&config.dir).map_err(|error| {
            anyhow::anyhow!("metadata log in {}: {error}", config.dir.display())
        })?;
        let committed_at_start = log.committed_index();
        let view = MetadataView::new();
        let machine = state_machine::MetadataStateMachine::open(&config.dir, view.clone())
            .map_err(|error| {
                anyhow::anyhow!("metadata snapshot in {}: {error}", config.dir.display())
            })?;
        // Bind before Raft starts so peers' first RPCs find us, and so a taken port fails the
        // start with a clear message instead of a silent one-way quorum.
        let bound = match config.listener {
            Some(address) => Some(tokio::net::TcpListener::bind(address).await.map_err(
                |error| anyhow::anyhow!("cannot bind the controller listener {address}: {error}"),
            )?),
            None => None,
        };
        let raft = Raft::new(
            config.node_id,
            raft_config,
            transport::Network {
                node_id: config.node_id,
            },
            log,
            machine,
        )
        .await?;
        let quorum = Arc::new(Quorum {
            node_id: config.node_id,
            raft,
            view,
            tasks: std::sync::Mutex::new(Vec::new()),
            listener: match &bound {
                Some(bound) => Some(bound.local_addr()?),
                None => None,
            },
            sessions: std::sync::Mutex::new(lifecycle::Sessions::default()),
            registration: std::sync::Mutex::new(None),
            committed_at_start,
            offered_cluster_id: std::sync::OnceLock::new(),
            forward_handler: std::sync::OnceLock::new(),
            bootstrap_voters: config.voters.clone(),
        });
        let mut tasks = Vec::new();
        if let Some(bound) = bound {
            tasks.push(tokio::spawn(transport::serve(bound, quorum.clone())));
        }
        tasks.push(tokio::spawn(run_fencing(
            Arc::downgrade(&quorum),
            config.lifecycle,
        )));
        for task in tasks {
            quorum.keep_task(task);
        }
        if config.voters.contains_key(&config.node_id) && !quorum.raft.is_initialized().await? {
            let members: BTreeMap<NodeId, BasicNode> = config
                .voters
                .iter()
                .map(|(id, address)| (*id, BasicNode::new(address)))
                .collect();
            match quorum.raft.initialize(members).await {
                Ok(()) => {}
                // Another voter formed the quorum first and we already heard from it.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(error) => return Err(anyhow::anyhow!("forming the quorum: {error}")),
            }
        }
        Ok(quorum)
    }

    /// The id to give the cluster if the metadata log has none yet (a node's existing data
    /// directory keeps the id it had as a single node). The first offer counts.
    pub fn offer_cluster_id(&self, cluster_id: &str) {
        let _ = self.offered_cluster_id.set(cluster_id.to_string());
    }

    /// On the active controller: writes the offered cluster id into a log that has none.
    async fn settle_cluster_id(&self) {
        if !self.is_active_controller() || self.view.image().cluster_id().is_some() {
            return;
        }
        let Some(cluster_id) = self.offered_cluster_id.get() else {
            return;
        };
        let record = MetadataRecord::new(super::records::Change::ClusterId {
            cluster_id: cluster_id.clone(),
        });
        if let Err(error) = self.propose(vec![record]).await {
            tracing::warn!(%error, "could not record the cluster id; retrying");
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The address the controller listener bound (a port 0 setting gets a free port).
    pub fn listener(&self) -> Option<SocketAddr> {
        self.listener
    }

    pub fn view(&self) -> &Arc<MetadataView> {
        &self.view
    }

    /// The active controller as this node knows it.
    pub fn active_controller(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn is_active_controller(&self) -> bool {
        self.active_controller() == Some(self.node_id)
    }

    /// Whether this node is a voter (else a learner following the voters' log).
    pub fn is_voter(&self) -> bool {
        self.bootstrap_voters.contains_key(&self.node_id)
    }

    /// A learner's address for the metadata log's replication, which it registers.
    pub fn learner_address(&self) -> Option<String> {
        if self.is_voter() {
            return None;
        }
        self.listener.map(|address| address.to_string())
    }

    /// Where requests for the active controller go: `None` when this node is it, else its
    /// controller listener's address; `Err` with the leader (if any) when there is no address.
    fn controller_route(&self) -> Result<Option<String>, Option<NodeId>> {
        let metrics = self.metrics();
        let Some(leader) = metrics.current_leader else {
            return Err(None);
        };
        if leader == self.node_id {
            return Ok(None);
        }
        metrics
            .membership_config
            .nodes()
            .find(|(id, _)| **id == leader)
            .map(|(_, node)| Some(node.addr.clone()))
            .ok_or(Some(leader))
    }

    pub fn metrics(&self) -> openraft::RaftMetrics<NodeId, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    pub fn status(&self) -> QuorumStatus {
        let metrics = self.metrics();
        let next = |index: Option<u64>| index.map_or(0, |index| index + 1);
        let replication = metrics.replication.as_ref();
        let voters = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| {
                let log_end_offset = if *id == self.node_id {
                    Some(next(metrics.last_log_index))
                } else {
                    replication
                        .and_then(|replication| replication.get(id))
                        .map(|matched| next(matched.map(|log_id| log_id.index)))
                };
                VoterStatus {
                    node_id: *id,
                    address: node.addr.clone(),
                    log_end_offset,
                }
            });
        let voter_ids: std::collections::BTreeSet<NodeId> =
            metrics.membership_config.voter_ids().collect();
        let (voters, observers): (Vec<VoterStatus>, Vec<VoterStatus>) =
            voters.partition(|status| voter_ids.contains(&status.node_id));
        QuorumStatus {
            node_id: self.node_id,
            leader: metrics.current_leader,
            term: metrics.current_term,
            high_watermark: next(metrics.last_applied.map(|log_id| log_id.index)),
            log_end_offset: next(metrics.last_log_index),
            snapshot_offset: metrics.snapshot.map(|log_id| log_id.index + 1),
            voters,
            observers,
        }
    }

    /// Waits until the image holds everything this node had committed before it started
    /// (replayed from snapshot and log); false on timeout.
    pub async fn wait_for_recovery(&self, timeout: Duration) -> bool {
        match self.committed_at_start {
            Some(offset) => self.view.wait_for_offset(offset, timeout).await,
            None => true,
        }
    }

    /// Waits until some voter is active controller; false on timeout.
    pub async fn wait_for_controller(&self, timeout: Duration) -> bool {
        let mut metrics = self.raft.metrics();
        tokio::time::timeout(
            timeout,
            metrics.wait_for(|metrics| metrics.current_leader.is_some()),
        )
        .await
        .is_ok_and(|result| result.is_ok())
    }

    /// Appends `records` as one entry and waits until it is committed and applied here.
    pub async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, ProposeError> {
        match self.raft.client_write(MetadataBatch { records }).await {
            Ok(response) => match response.data.refused {
                None => Ok(response.data.offset),
                Some(reason) => Err(ProposeError::Refused(reason)),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(ProposeError::NotController {
                    leader: forward.leader_id,
                })
            }
            Err(error) => Err(ProposeError::Stopped(error.to_string())),
        }
    }

    /// A task that lives as long as the quorum: aborted by [`Quorum::shutdown`].
    fn keep_task(&self, task: tokio::task::JoinHandle<()>) {
        match self.tasks.lock() {
            Ok(mut tasks) => tasks.push(task),
            Err(poisoned) => poisoned.into_inner().push(task),
        }
    }

    /// Stops Raft, the listener, the fencing check and the broker's heartbeats.
    pub async fn shutdown(&self) {
        let tasks = match self.tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for task in tasks {
            task.abort();
        }
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "metadata quorum did not stop cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::records::{Change, Endpoint};
    use openraft::testing::{StoreBuilder, Suite};

    /// openraft's storage conformance suite, against the real files in a fresh directory each.
    struct FileStoreBuilder;

    impl
        StoreBuilder<
            MetadataRaft,
            log_store::MetadataLogStore,
            state_machine::MetadataStateMachine,
            tempfile::TempDir,
        > for FileStoreBuilder
    {
        async fn build(
            &self,
        ) -> Result<
            (
                tempfile::TempDir,
                log_store::MetadataLogStore,
                state_machine::MetadataStateMachine,
            ),
            StorageError<NodeId>,
        > {
            let dir =
                tempfile::tempdir().map_err(|error| storage_error(StorageIOError::write, error))?;
            let log = log_store::MetadataLogStore::open(dir.path())
                .map_err(|error| storage_error(StorageIOError::write, error))?;
            let machine =
                state_machine::MetadataStateMachine::open(dir.path(), MetadataView::new())
                    .map_err(|error| storage_error(StorageIOError::write, error))?;
            Ok((dir, log, machine))
        }
    }

    #[test]
    fn the_storage_passes_openrafts_conformance_suite() {
        Suite::test_all(FileStoreBuilder).expect("conformance suite");
    }

    fn register(broker_id: i32, broker_epoch: i64) -> MetadataRecord {
        MetadataRecord::new(Change::RegisterBroker {
            broker_id,
            incarnation_id: uuid::Uuid::from_u128(broker_epoch as u128),
            broker_epoch,
            endpoints: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
            }],
            rack: None,
        })
    }

    fn config(
        node_id: NodeId,
        dir: &std::path::Path,
        voters: &BTreeMap<NodeId, String>,
    ) -> QuorumConfig {
        QuorumConfig {
            node_id,
            dir: dir.join(format!("node-{node_id}")),
            voters: voters.clone(),
            listener: voters
                .get(&node_id)
                .and_then(|address| address.parse().ok()),
            heartbeat_interval: Duration::from_millis(50),
            snapshot_every: 5,
            lifecycle: lifecycle::LifecycleTimes {
                heartbeat_interval: Duration::from_millis(50),
                session_timeout: Duration::from_millis(1000),
            },
        }
    }

    const WAIT: Duration = Duration::from_secs(20);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_voter_restarts_from_its_snapshot_and_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let voters: BTreeMap<NodeId, String> = [(1, String::new())].into();
        let mut single = config(1, dir.path(), &voters);
        single.listener = None;
        let quorum = Quorum::start(single.clone()).await.expect("starts");
        assert!(quorum.wait_for_controller(WAIT).await);
        assert_eq!(quorum.active_controller(), Some(1));
        let mut last = 0;
        for epoch in 1..=12 {
            last = quorum
                .propose(vec![register(1, epoch)])
                .await
                .expect("commits");
        }
        // A stale epoch is refused by the image, the same way on every node.
        assert!(matches!(
            quorum.propose(vec![register(1, 3)]).await,
            Err(ProposeError::Refused(_))
        ));
        quorum.shutdown().await;
        drop(quorum);
        assert!(single.dir.join(state_machine::SNAPSHOT_FILE).exists());

        let restarted = Quorum::start(single).await.expect("restarts");
        assert!(restarted.view().wait_for_offset(last, WAIT).await);
        let image = restarted.view().image();
        assert_eq!(image.broker(1).map(|broker| broker.broker_epoch), Some(12));
        assert!(restarted.wait_for_controller(WAIT).await);
        let next = restarted
            .propose(vec![register(1, 13)])
            .await
            .expect("commits after restart");
        assert!(next > last);
        restarted.shutdown().await;
    }

    fn free_addresses(count: usize) -> Vec<String> {
        let listeners: Vec<std::net::TcpListener> = (0..count)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        listeners
            .iter()
            .map(|listener| listener.local_addr().expect("address").to_string())
            .collect()
    }

    async fn wait_for_leader(quorums: &[&Quorum]) -> NodeId {
        let start = std::time::Instant::now();
        loop {
            let leaders: Vec<Option<NodeId>> = quorums
                .iter()
                .map(|quorum| quorum.active_controller())
                .collect();
            if let Some(Some(leader)) = leaders.first()
                && leaders.iter().all(|known| *known == Some(*leader))
                && quorums.iter().any(|quorum| quorum.node_id() == *leader)
            {
                return *leader;
            }
            assert!(start.elapsed() < WAIT, "no agreed controller: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_voters_elect_replicate_fail_over_and_catch_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let addresses = free_addresses(3);
        let voters: BTreeMap<NodeId, String> = (1..=3).zip(addresses).collect();
        let mut quorums = BTreeMap::new();
        for id in 1..=3 {
            quorums.insert(
                id,
                Quorum::start(config(id, dir.path(), &voters))
                    .await
                    .expect("starts"),
            );
        }
        let all: Vec<&Quorum> = quorums.values().map(|quorum| &**quorum).collect();
        let leader = wait_for_leader(&all).await;

        // A follower refuses and names the controller (NOT_CONTROLLER on the wire).
        let follower = (1..=3).find(|id| *id != leader).expect("a follower");
        assert_eq!(
            quorums[&follower].propose(vec![register(7, 1)]).await,
            Err(ProposeError::NotController {
                leader: Some(leader)
            })
        );
        let offset = quorums[&leader]
            .propose(vec![register(7, 1)])
            .await
            .expect("commits");
        for quorum in quorums.values() {
            assert!(quorum.view().wait_for_offset(offset, WAIT).await);
            assert_eq!(
                quorum.view().image().broker(7).map(|b| b.broker_epoch),
                Some(1)
            );
        }

        // The controller stops: the other two elect one of themselves and keep committing.
        let stopped = quorums.remove(&leader).expect("leader");
        stopped.shutdown().await;
        drop(stopped);
        let rest: Vec<&Quorum> = quorums.values().map(|quorum| &**quorum).collect();
        let next_leader = wait_for_leader(&rest).await;
        assert_ne!(next_leader, leader);
        let mut last = 0;
        for epoch in 2..=10 {
            last = quorums[&next_leader]
                .propose(vec![register(7, epoch)])
                .await
                .expect("commits with two of three");
        }

        // It comes back and catches up (from the log or, past the snapshot, a snapshot).
        let returned = Quorum::start(config(leader, dir.path(), &voters))
            .await
            .expect("restarts");
        assert!(returned.view().wait_for_offset(last, WAIT).await);
        assert_eq!(
            returned.view().image().broker(7).map(|b| b.broker_epoch),
            Some(10)
        );
        returned.shutdown().await;
        for quorum in quorums.values() {
            quorum.shutdown().await;
        }
    }
}
