//! The group room: consumer groups (Kafka's classic protocol: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup) and committed offsets (OffsetCommit, OffsetFetch). On one node this broker
//! coordinates every group (FindCoordinator says so).
//!
//! Layout:
//! - [`state`]: the group state machine, no I/O and no clock (time is an argument).
//! - [`offsets`]: the committed offsets file under `log.dirs` (append-only, CRC per record).
//! - [`GroupCoordinator`] (here): the shared shell every connection calls. It holds the state
//!   and the file behind one short-held std `Mutex` (never held across an `.await`), and turns
//!   a parked JoinGroup or SyncGroup into a tokio wait on a oneshot channel, woken at the group's
//!   next deadline so that timers fire even when no other request arrives; every wait has an
//!   upper bound.
//!
//! **Architecture invariant:** the group room knows group ids, member ids, topic names and
//! partition numbers, and nothing of replication or storage internals; the protocol handlers
//! check that a committed partition exists before calling in.

pub mod offsets;
pub mod state;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use offsets::{CommittedOffset, OffsetLog, OffsetRecord, StoredGroup};
use state::Groups;
pub use state::{
    GroupDescription, GroupState, JoinRequest, JoinResponse, LeavingMember, MemberDescription,
    Reply, SyncRequest, SyncResponse,
};

/// A parked JoinGroup or SyncGroup is answered at the latest this long after the end of the
/// phase it waits for (the phase's own deadline answers it first; this is the backstop).
const WAIT_SLACK: Duration = Duration::from_secs(5);
/// A waiter never re-checks the group's deadlines more often than this (a guard against a
/// deadline that stays in the past spinning the waiter).
const WAKE_INTERVAL_MIN: Duration = Duration::from_millis(1);
/// ... and never less often than this: a deadline that appears after the waiter looked (a new
/// member's, which ends the join phase when it expires) is acted on within this much.
const WAKE_INTERVAL_MAX: Duration = Duration::from_secs(1);

/// The broker configs of the group room (Kafka's names in [`crate::config::KEYS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms` and `group.max.session.timeout.ms`: the session timeouts
    /// a JoinGroup may ask for.
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// `group.max.size`: the most members a group may have.
    pub max_size: usize,
    /// `offset.metadata.max.bytes`: the longest metadata string a commit may carry.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes`: how long a consumer group's offsets outlive its last
    /// member (and a standalone group's offsets their commit).
    pub offsets_retention: Duration,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
    pub offsets_retention_check_interval: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(3000),
            min_session_timeout: Duration::from_millis(6000),
            max_session_timeout: Duration::from_millis(1_800_000),
            max_size: i32::MAX as usize,
            offset_metadata_max_bytes: 4096,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offsets_retention_check_interval: Duration::from_millis(600_000),
        }
    }
}

/// One OffsetCommit request, its partitions already checked by the handler.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// (topic, partition, offset).
    pub offsets: Vec<(String, i32, CommittedOffset)>,
}

/// OffsetFetch's answer: per topic, each partition's committed offset (`None`: nothing).
pub type FetchedOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

/// A group in ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

#[derive(Debug)]
struct Inner {
    groups: Groups,
    log: OffsetLog,
    /// Set at shutdown: JoinGroup and SyncGroup are answered NOT_COORDINATOR instead of parked.
    closing: bool,
    /// When the next offsets retention sweep is due. Sweeps run from whichever call comes
    /// first after that (an idle broker has nothing that could notice the difference).
    next_retention_sweep: Instant,
}

/// The group coordinator of this broker, shared by every connection.
#[derive(Debug)]
pub struct GroupCoordinator {
    inner: Mutex<Inner>,
}

impl GroupCoordinator {
    /// Opens the committed offsets file in `dir` (`log.dirs`) and loads every group's offsets.
    /// Groups come back Empty: members rejoin after a restart (their old member ids are unknown).
    pub fn open(dir: &Path, config: GroupConfig) -> std::io::Result<GroupCoordinator> {
        let (log, stored) = OffsetLog::open(dir)?;
        let next_retention_sweep = Instant::now() + config.offsets_retention_check_interval;
        let mut groups = Groups::new(config);
        let count = stored.len();
        for (group_id, stored) in stored {
            groups.load(&group_id, stored);
        }
        if count > 0 {
            tracing::info!(groups = count, "loaded committed offsets");
        }
        Ok(GroupCoordinator {
            inner: Mutex::new(Inner {
                groups,
                log,
                closing: false,
                next_retention_sweep,
            }),
        })
    }

    /// The coordinator's state, after the offsets retention sweep if one is due.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if now >= inner.next_retention_sweep {
            inner.next_retention_sweep =
                now + inner.groups.config().offsets_retention_check_interval;
            Self::expire_offsets(&mut inner, now, wall_clock_ms());
        }
        inner
    }

    /// Expires offsets past their retention and records it, so a restart does not bring them
    /// back.
    fn expire_offsets(inner: &mut Inner, now: Instant, now_ms: i64) {
        let retention = inner.groups.config().offsets_retention;
        for (group, partitions) in inner.groups.expire_offsets(now, now_ms, retention) {
            let record = OffsetRecord::OffsetsExpired { group, partitions };
            if let Err(error) = Self::append(inner, &record) {
                tracing::error!(%error, "cannot record expired offsets");
            }
        }
        Self::maybe_rewrite(inner);
    }

    pub fn config(&self) -> GroupConfig {
        self.lock().groups.config().clone()
    }

    /// JoinGroup: answers at once (errors, MEMBER_ID_REQUIRED, a settled generation) or when
    /// the join phase completes.
    pub async fn join(&self, request: JoinRequest) -> JoinResponse {
        let (answer, bound) = {
            let mut inner = self.lock();
            if inner.closing {
                return JoinResponse::error(ResponseError::NotCoordinator, &request.member_id);
            }
            match inner.groups.join(&request, Instant::now()) {
                Reply::Now(answer) => return answer,
                Reply::Wait(answer) => (answer, inner.groups.phase_end(&request.group_id)),
            }
        };
        let bound = bound.unwrap_or_else(|| {
            Instant::now() + Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64)
        }) + WAIT_SLACK;
        let member_id = request.member_id.clone();
        self.wait(&request.group_id, answer, bound, || {
            JoinResponse::error(ResponseError::RebalanceInProgress, &member_id)
        })
        .await
    }

    /// SyncGroup: the leader's answers at once and releases the followers parked here.
    pub async fn sync(&self, request: SyncRequest) -> SyncResponse {
        let (answer, bound) = {
            let mut inner = self.lock();
            if inner.closing {
                return SyncResponse::error(ResponseError::NotCoordinator);
            }
            match inner.groups.sync(&request, Instant::now()) {
                Reply::Now(answer) => return answer,
                Reply::Wait(answer) => (answer, inner.groups.phase_end(&request.group_id)),
            }
        };
        let bound = bound.unwrap_or_else(Instant::now) + WAIT_SLACK;
        self.wait(&request.group_id, answer, bound, || {
            SyncResponse::error(ResponseError::RebalanceInProgress)
        })
        .await
    }

    /// Waits for a parked request's answer, acting on the group's deadlines as they pass.
    async fn wait<T>(
        &self,
        group_id: &str,
        mut answer: oneshot::Receiver<T>,
        give_up: Instant,
        gave_up: impl Fn() -> T,
    ) -> T {
        loop {
            let now = Instant::now();
            let next = self.lock().groups.next_deadline(group_id);
            let wake = next
                .unwrap_or(give_up)
                .min(give_up)
                .min(now + WAKE_INTERVAL_MAX)
                .max(now + WAKE_INTERVAL_MIN);
            match tokio::time::timeout_at(wake, &mut answer).await {
                Ok(Ok(answer)) => return answer,
                // The member went away without an answer (cannot happen: every removal answers).
                Ok(Err(_)) => return gave_up(),
                Err(_) => {
                    let now = Instant::now();
                    self.lock().groups.advance(group_id, now);
                    if now >= give_up {
                        if let Ok(answer) = answer.try_recv() {
                            return answer;
                        }
                        tracing::error!(group = %group_id, "a parked group request outlived its phase; answering it");
                        return gave_up();
                    }
                }
            }
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Option<ResponseError> {
        self.lock().groups.heartbeat(
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            Instant::now(),
        )
    }

    /// LeaveGroup: an error (or none) per leaving member.
    pub fn leave(&self, group_id: &str, leaving: &[LeavingMember]) -> Vec<Option<ResponseError>> {
        self.lock().groups.leave(group_id, leaving, Instant::now())
    }

    /// OffsetCommit: checks the member and generation, then writes the commit record and makes
    /// the offsets visible. The record is written (write(2), no fsync, as Kafka) before this
    /// returns, so an answered commit survives the broker process dying.
    pub fn commit(&self, request: CommitRequest) -> Result<(), ResponseError> {
        let mut inner = self.lock();
        inner.groups.validate_commit(
            &request.group_id,
            request.generation_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            Instant::now(),
        )?;
        if request.offsets.is_empty() {
            return Ok(());
        }
        let protocol_type = inner
            .groups
            .get(&request.group_id)
            .map(|group| group.protocol_type().to_string())
            .unwrap_or_default();
        let record = OffsetRecord::Commit {
            group: request.group_id.clone(),
            protocol_type,
            offsets: request.offsets,
        };
        if let Err(error) = Self::append(&mut inner, &record) {
            tracing::error!(group = %request.group_id, %error, "cannot write committed offsets");
            return Err(ResponseError::UnknownServerError);
        }
        let OffsetRecord::Commit { offsets, .. } = record else {
            unreachable!("built above as a commit");
        };
        let group = inner.groups.get_or_create(&request.group_id);
        for (topic, partition, offset) in offsets {
            group.offsets.insert((topic, partition), offset);
        }
        Self::maybe_rewrite(&mut inner);
        Ok(())
    }

    /// Appends a record, first rewriting the file if a failed append left a torn record.
    fn append(inner: &mut Inner, record: &OffsetRecord) -> std::io::Result<()> {
        if inner.log.is_torn() {
            Self::maybe_rewrite(inner);
        }
        inner.log.append(record)
    }

    fn maybe_rewrite(inner: &mut Inner) {
        if !inner.log.wants_rewrite() {
            return;
        }
        let stored = inner.groups.stored();
        if let Err(error) = inner.log.rewrite(&stored) {
            tracing::error!(%error, "cannot rewrite the committed offsets file; appending on");
        }
    }

    /// OffsetFetch: the committed offset of each asked partition (`None`: nothing committed),
    /// or of every committed partition when `partitions` is `None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> FetchedOffsets {
        let inner = self.lock();
        let group = inner.groups.get(group_id);
        match partitions {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, indexes)| {
                    let found = indexes
                        .into_iter()
                        .map(|index| {
                            let offset = group.and_then(|group| {
                                group.offsets.get(&(topic.clone(), index)).cloned()
                            });
                            (index, offset)
                        })
                        .collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                    BTreeMap::new();
                for ((topic, index), offset) in group.iter().flat_map(|group| &group.offsets) {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*index, Some(offset.clone())));
                }
                by_topic.into_iter().collect()
            }
        }
    }

    pub fn list(&self) -> Vec<ListedGroup> {
        self.lock()
            .groups
            .list(Instant::now())
            .into_iter()
            .map(|(group_id, protocol_type, state)| ListedGroup {
                group_id,
                protocol_type,
                state,
            })
            .collect()
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        self.lock().groups.describe(group_id, Instant::now())
    }

    /// DeleteGroups: a group without members goes, with its committed offsets.
    pub fn delete(&self, group_id: &str) -> Result<(), ResponseError> {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.groups.check_deletable(group_id, now)?;
        // On disk first: a deletion that cannot be recorded must not happen in memory only (the
        // group would be back after a restart although the client was told it failed).
        let record = OffsetRecord::GroupDeleted {
            group: group_id.to_string(),
        };
        if let Err(error) = Self::append(&mut inner, &record) {
            tracing::error!(group = %group_id, %error, "cannot record a group's deletion");
            return Err(ResponseError::UnknownServerError);
        }
        inner.groups.delete(group_id, now)
    }

    /// A deleted topic's committed offsets go with it, in every group.
    pub fn forget_topic(&self, topic: &str) {
        let mut inner = self.lock();
        inner.groups.forget_topic(topic);
        let record = OffsetRecord::TopicDeleted {
            topic: topic.to_string(),
        };
        if let Err(error) = Self::append(&mut inner, &record) {
            tracing::error!(%topic, %error, "cannot record that a deleted topic's offsets are gone");
        }
    }

    /// At shutdown: parked JoinGroup and SyncGroup requests are answered NOT_COORDINATOR (the
    /// clients look the coordinator up again and rejoin), and no new ones park.
    pub fn shutdown(&self) {
        let mut inner = self.lock();
        inner.closing = true;
        inner
            .groups
            .answer_all_waiting(ResponseError::NotCoordinator);
    }
}

/// Milliseconds since the Unix epoch: commit timestamps and the retention of standalone
/// groups' offsets are wall-clock times, as Kafka's are.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl Groups {
    /// Every group's offsets as the file stores them.
    fn stored(&self) -> BTreeMap<String, StoredGroup> {
        self.iter()
            .filter(|group| !group.offsets.is_empty())
            .map(|group| {
                (
                    group.id().to_string(),
                    StoredGroup {
                        protocol_type: group.protocol_type().to_string(),
                        offsets: group.offsets.clone(),
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn coordinator(dir: &Path, initial_delay_ms: u64) -> GroupCoordinator {
        GroupCoordinator::open(
            dir,
            GroupConfig {
                initial_rebalance_delay: Duration::from_millis(initial_delay_ms),
                ..GroupConfig::default()
            },
        )
        .expect("open")
    }

    fn join_request(member_id: &str) -> JoinRequest {
        JoinRequest {
            group_id: "g".to_string(),
            member_id: member_id.to_string(),
            client_id: "c".to_string(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 60_000,
            protocol_type: "consumer".to_string(),
            protocols: vec![("range".to_string(), Bytes::from_static(b"m"))],
            require_known_member_id: true,
            ..JoinRequest::default()
        }
    }

    async fn join_twice(coordinator: &GroupCoordinator) -> JoinResponse {
        let first = coordinator.join(join_request("")).await;
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        coordinator.join(join_request(&first.member_id)).await
    }

    /// Parked joins are tokio waits: with paused time, two members joining 1 s apart land in
    /// one generation after the initial delay (3 s, extended once), and a member that then goes
    /// silent is removed by its session timeout while the survivor waits in JoinGroup.
    #[tokio::test(start_paused = true)]
    async fn parked_joins_complete_on_tokio_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let coordinator = std::sync::Arc::new(coordinator(dir.path(), 3000));
        let start = Instant::now();
        let first = tokio::spawn({
            let coordinator = coordinator.clone();
            async move { join_twice(&coordinator).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let second = join_twice(&coordinator).await;
        let first = first.await.expect("first");
        assert_eq!(start.elapsed(), Duration::from_secs(6));
        assert_eq!((first.generation_id, second.generation_id), (1, 1));
        assert_eq!(first.members.len(), 2, "the leader gets both");

        // Both sync; then only the first rejoins after the second stops heartbeating.
        let sync = |member_id: &str| SyncRequest {
            group_id: "g".to_string(),
            generation_id: 1,
            member_id: member_id.to_string(),
            ..SyncRequest::default()
        };
        let follower = tokio::spawn({
            let coordinator = coordinator.clone();
            let request = sync(&second.member_id);
            async move { coordinator.sync(request).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(coordinator.sync(sync(&first.member_id)).await.error, None);
        assert_eq!(follower.await.expect("follower").error, None);
        let silent_since = Instant::now();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(coordinator.heartbeat("g", 1, &first.member_id, None), None);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            coordinator.heartbeat("g", 1, &first.member_id, None),
            Some(ResponseError::RebalanceInProgress),
            "the second member's session ran out"
        );
        let rejoined = coordinator.join(join_request(&first.member_id)).await;
        assert_eq!(rejoined.generation_id, 2);
        assert_eq!(rejoined.members.len(), 1);
        assert_eq!(silent_since.elapsed(), Duration::from_secs(10));
    }

    /// A member that never rejoins holds the join phase up for the rebalance timeout, not
    /// forever, even when nothing else reaches the coordinator.
    #[tokio::test(start_paused = true)]
    async fn the_join_phase_ends_at_the_rebalance_timeout_without_other_requests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let coordinator = coordinator(dir.path(), 0);
        let alone = join_twice(&coordinator).await;
        assert_eq!(alone.generation_id, 1);
        let sync = SyncRequest {
            group_id: "g".to_string(),
            generation_id: 1,
            member_id: alone.member_id.clone(),
            ..SyncRequest::default()
        };
        assert_eq!(coordinator.sync(sync).await.error, None);
        // The first member keeps heartbeating from "another connection" for 8 s, then dies.
        let started = Instant::now();
        let second = {
            let first = coordinator.join(join_request("")).await;
            let heartbeats = async {
                for _ in 0..4 {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    coordinator.heartbeat("g", 1, &alone.member_id, None);
                }
            };
            let (second, ()) =
                tokio::join!(coordinator.join(join_request(&first.member_id)), heartbeats);
            second
        };
        // Its session (10 s after the last heartbeat at 8 s) ends the phase before the 60 s
        // rebalance timeout.
        assert_eq!(started.elapsed(), Duration::from_secs(18));
        assert_eq!(second.generation_id, 2);
        assert_eq!(second.members.len(), 1);
    }

    /// At shutdown a parked JoinGroup is answered at once (NOT_COORDINATOR), and later ones do
    /// not park, so connections drain instead of waiting out a rebalance timeout.
    #[tokio::test(start_paused = true)]
    async fn shutdown_answers_parked_joins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let coordinator = std::sync::Arc::new(coordinator(dir.path(), 3000));
        let started = Instant::now();
        let parked = tokio::spawn({
            let coordinator = coordinator.clone();
            async move { join_twice(&coordinator).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        coordinator.shutdown();
        let answer = parked.await.expect("joined");
        assert_eq!(answer.error, Some(ResponseError::NotCoordinator));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        let late = coordinator.join(join_request("")).await;
        assert_eq!(late.error, Some(ResponseError::NotCoordinator));
    }

    /// Expired offsets stay expired after a restart; the sweep runs on the check interval from
    /// whatever call comes first.
    #[tokio::test(start_paused = true)]
    async fn expired_offsets_are_swept_on_the_check_interval_and_stay_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = GroupConfig {
            offsets_retention: Duration::from_secs(60),
            offsets_retention_check_interval: Duration::from_secs(10),
            ..GroupConfig::default()
        };
        let commit = |coordinator: &GroupCoordinator, at_ms: i64| {
            coordinator
                .commit(CommitRequest {
                    group_id: "standalone".to_string(),
                    generation_id: -1,
                    offsets: vec![(
                        "t".to_string(),
                        0,
                        CommittedOffset {
                            offset: 3,
                            leader_epoch: -1,
                            metadata: None,
                            commit_timestamp_ms: at_ms,
                        },
                    )],
                    ..CommitRequest::default()
                })
                .expect("commit");
        };
        {
            let coordinator = GroupCoordinator::open(dir.path(), config.clone()).expect("open");
            // Committed long ago (by the wall clock): expired at the first sweep.
            commit(&coordinator, wall_clock_ms() - 3_600_000);
            assert_eq!(coordinator.list().len(), 1, "no sweep due yet");
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert!(coordinator.list().is_empty(), "swept: expired and removed");
        }
        let coordinator = GroupCoordinator::open(dir.path(), config).expect("reopen");
        assert!(coordinator.list().is_empty(), "the expiry was recorded");
        // A fresh commit is kept.
        commit(&coordinator, wall_clock_ms());
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(coordinator.list().len(), 1);
    }

    #[tokio::test]
    async fn commits_persist_and_deleted_topics_and_groups_lose_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let offset = |at: i64| CommittedOffset {
            offset: at,
            leader_epoch: 0,
            metadata: Some("meta".to_string()),
            commit_timestamp_ms: 1,
        };
        {
            let coordinator = coordinator(dir.path(), 0);
            for (group, topic, at) in [("a", "t", 5), ("a", "u", 6), ("b", "t", 7)] {
                coordinator
                    .commit(CommitRequest {
                        group_id: group.to_string(),
                        generation_id: -1,
                        offsets: vec![(topic.to_string(), 0, offset(at))],
                        ..CommitRequest::default()
                    })
                    .expect("standalone commit");
            }
            coordinator.forget_topic("u");
            coordinator.delete("b").expect("delete");
        }
        let coordinator = coordinator(dir.path(), 0);
        let fetched = coordinator.fetch_offsets(
            "a",
            Some(vec![
                ("t".to_string(), vec![0, 1]),
                ("u".to_string(), vec![0]),
            ]),
        );
        assert_eq!(
            fetched,
            vec![
                ("t".to_string(), vec![(0, Some(offset(5))), (1, None)]),
                ("u".to_string(), vec![(0, None)]),
            ]
        );
        assert_eq!(coordinator.fetch_offsets("b", None), FetchedOffsets::new());
        let listed = coordinator.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, GroupState::Empty);
    }
}
