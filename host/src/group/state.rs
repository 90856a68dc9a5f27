//! The classic group protocol's state machine (Kafka's `GroupCoordinator` + `GroupMetadata`),
//! with no I/O and no clock: every operation takes `now`, and a long-polling JoinGroup or
//! SyncGroup gets a channel that the operation completing its phase answers.
//!
//! Timers are deadlines kept in the group (a member's session, the join phase, the sync phase,
//! a pending member's first join) and acted on by [`Groups::advance`], which every operation on a
//! group runs first and which the waiters run when the group's next deadline passes. Nothing can
//! observe a group without touching it, so acting on a deadline at the next touch is the same as
//! acting at the instant.
//!
//! States (Kafka's names): Empty (no members; offsets only) -> PreparingRebalance (the join
//! phase: known members rejoin within the rebalance timeout; members that do not are removed)
//! -> CompletingRebalance (a new generation: members wait for the leader's SyncGroup) -> Stable.
//! Dead is a deleted group.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::GroupConfig;
use super::offsets::CommittedOffset;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's name, as ListGroups and DescribeGroups report it.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty on a member's first join.
    pub member_id: String,
    /// Static membership (KIP-345).
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394 (JoinGroup v4+): a first join gets MEMBER_ID_REQUIRED and its member id.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member and its metadata for the chosen protocol; only the leader gets them.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    pub fn error(error: ResponseError, member_id: &str) -> JoinResponse {
        JoinResponse {
            error: Some(error),
            generation_id: -1,
            member_id: member_id.to_string(),
            ..JoinResponse::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v5+: checked against the group's when present.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment per member; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: ResponseError) -> SyncResponse {
        SyncResponse {
            error: Some(error),
            ..SyncResponse::default()
        }
    }
}

/// An answer now, or a channel that the end of the phase answers.
#[derive(Debug)]
pub enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

/// A member leaving (LeaveGroup v3+ names several; v0-v2 one by member id).
#[derive(Debug, Clone, Default)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// What DescribeGroups reports of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Metadata for the chosen protocol and the assignment: only in a Stable group.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    /// The chosen protocol (the assignor) of a Stable group, else empty.
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    /// Its JoinGroup is parked until the join phase completes.
    awaiting_join: Option<oneshot::Sender<JoinResponse>>,
    /// Its SyncGroup is parked until the leader's SyncGroup.
    awaiting_sync: Option<oneshot::Sender<SyncResponse>>,
    /// When the member is removed unless it heartbeats (or joins, syncs, commits) first.
    session_deadline: Instant,
}

impl Member {
    /// A member whose JoinGroup or SyncGroup is parked is alive: it cannot heartbeat on that
    /// connection, and the phase it waits for is bounded by its own deadline.
    fn kept_alive(&self) -> bool {
        // A closed channel is a request whose connection went away or gave up waiting.
        self.awaiting_join
            .as_ref()
            .is_some_and(|waiter| !waiter.is_closed())
            || self
                .awaiting_sync
                .as_ref()
                .is_some_and(|waiter| !waiter.is_closed())
    }

    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn refresh_session(&mut self, now: Instant) {
        self.session_deadline = now + self.session_timeout;
    }
}

/// The join phase's end, Kafka's `InitialDelayedJoin` for a group that was Empty: the phase
/// lasts `group.initial.rebalance.delay.ms`, extended by as much again while new members keep
/// arriving, up to the rebalance timeout, so a fleet of consumers starting together lands in one
/// generation instead of one rebalance per consumer.
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    remaining: Duration,
    new_member_added: bool,
}

#[derive(Debug)]
pub struct Group {
    id: String,
    state: GroupState,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader_id: Option<String>,
    /// In join order: the first is the leader when a new one is needed.
    members: Vec<Member>,
    /// Members told MEMBER_ID_REQUIRED, until they join with that id (or their session passes).
    pending_members: HashMap<String, Instant>,
    /// group.instance.id -> member id.
    static_members: HashMap<String, String>,
    /// PreparingRebalance: when the join phase completes whoever has rejoined.
    join_deadline: Option<Instant>,
    initial_delay: Option<InitialDelay>,
    /// Members of the current generation that have not sent SyncGroup yet, and when they are
    /// removed for it (the rebalance timeout after the generation started).
    pending_sync: HashSet<String>,
    sync_deadline: Option<Instant>,
    /// Since when the group has been Empty (set when it empties, or when a retention sweep first
    /// sees it Empty): a consumer group's offsets expire `offsets.retention.minutes` after.
    empty_since: Option<Instant>,
    /// For a group loaded at start and Empty ever since: its last commit's wall-clock time,
    /// which the retention counts from (a monotonic instant cannot reach back past boot).
    empty_since_ms: Option<i64>,
    pub(crate) offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl Group {
    fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: Vec::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            join_deadline: None,
            initial_delay: None,
            pending_sync: HashSet::new(),
            sync_deadline: None,
            empty_since: None,
            empty_since_ms: None,
            offsets: BTreeMap::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub fn protocol_type(&self) -> &str {
        self.protocol_type.as_deref().unwrap_or_default()
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty() || !self.pending_members.is_empty()
    }

    fn member(&self, member_id: &str) -> Option<&Member> {
        self.members
            .iter()
            .find(|member| member.member_id == member_id)
    }

    fn member_mut(&mut self, member_id: &str) -> Option<&mut Member> {
        self.members
            .iter_mut()
            .find(|member| member.member_id == member_id)
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// KIP-345: a request naming an instance id that maps to another member id comes from a
    /// fenced (replaced) instance.
    fn static_member_fenced(&self, member_id: &str, group_instance_id: Option<&str>) -> bool {
        group_instance_id.is_some_and(|instance| {
            self.static_members
                .get(instance)
                .is_some_and(|current| current != member_id)
        })
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<&str> {
        let Some(first) = self.members.first() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| {
                self.members
                    .iter()
                    .all(|member| member.protocols.iter().any(|(other, _)| other == name))
            })
            .collect()
    }

    /// Kafka's `supportsProtocols`: any type and protocols for a group without members; else
    /// the group's type and at least one protocol every member supports.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .candidate_protocols()
                .iter()
                .any(|candidate| protocols.iter().any(|(name, _)| name == candidate))
    }

    /// Kafka's `selectProtocol`: each member votes for its most preferred protocol among those
    /// all members support; most votes wins, ties going to the earlier in the first member's
    /// order of preference.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<usize> = vec![0; candidates.len()];
        for member in &self.members {
            if let Some(choice) = member.protocols.iter().find_map(|(name, _)| {
                candidates
                    .iter()
                    .position(|candidate| *candidate == name.as_str())
            }) {
                votes[choice] += 1;
            }
        }
        let best = votes.iter().copied().max()?;
        let index = votes.iter().position(|count| *count == best)?;
        Some(candidates[index].to_string())
    }

    fn rebalance_timeout(&self) -> Duration {
        self.members
            .iter()
            .map(|member| member.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// The answer to a member joining a generation that is already settled.
    fn current_generation(&self, member_id: &str) -> JoinResponse {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        JoinResponse {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if self.is_leader(member_id) {
                self.members
                    .iter()
                    .map(|member| JoinedMember {
                        member_id: member.member_id.clone(),
                        group_instance_id: member.group_instance_id.clone(),
                        metadata: member.metadata_for(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Enters the join phase from Empty, Stable or CompletingRebalance (Kafka's
    /// `prepareRebalance`). Members parked in SyncGroup are told to rejoin.
    fn prepare_rebalance(&mut self, config: &GroupConfig, now: Instant, reason: &str) {
        if !matches!(
            self.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            return;
        }
        if self.state == GroupState::CompletingRebalance {
            for member in &mut self.members {
                member.assignment = Bytes::new();
                if let Some(waiter) = member.awaiting_sync.take() {
                    let _ = waiter.send(SyncResponse::error(ResponseError::RebalanceInProgress));
                    // Its session counts from this answer (Kafka's
                    // completeAndScheduleNextHeartbeatExpiration), not from its SyncGroup.
                    member.refresh_session(now);
                }
            }
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let rebalance_timeout = self.rebalance_timeout();
        if self.state == GroupState::Empty {
            let delay = config.initial_rebalance_delay.min(rebalance_timeout);
            self.initial_delay = Some(InitialDelay {
                remaining: rebalance_timeout.saturating_sub(delay),
                new_member_added: false,
            });
            self.join_deadline = Some(now + delay);
        } else {
            self.initial_delay = None;
            self.join_deadline = Some(now + rebalance_timeout);
        }
        tracing::info!(group = %self.id, generation = self.generation_id, members = self.members.len(), reason, "preparing to rebalance");
        self.state = GroupState::PreparingRebalance;
        self.empty_since = None;
        self.empty_since_ms = None;
    }

    /// Whether `group.max.size` leaves room for this JoinGroup (Kafka's `acceptJoiningMember`).
    /// While rebalancing, the members already rejoined count, not the group's size: after a
    /// lowered `group.max.size`, the last members to rejoin are the ones turned away.
    fn accepts_joining_member(&self, request: &JoinRequest, max_size: usize) -> bool {
        // A static member coming back replaces itself (KIP-345): it never grows the group.
        if request
            .group_instance_id
            .as_ref()
            .is_some_and(|instance| self.static_members.contains_key(instance))
        {
            return true;
        }
        let member = self.member(&request.member_id);
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                member.is_some_and(|member| member.awaiting_join.is_some())
                    || self
                        .members
                        .iter()
                        .filter(|member| member.awaiting_join.is_some())
                        .count()
                        < max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.is_some() || self.members.len() < max_size
            }
        }
    }

    /// Completes the join phase now if every known member has rejoined and no member told
    /// MEMBER_ID_REQUIRED is still on its way (never during the initial delay, which runs out).
    fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance || self.initial_delay.is_some() {
            return;
        }
        let all_joined = self
            .members
            .iter()
            .all(|member| member.awaiting_join.is_some())
            && self.pending_members.is_empty();
        if all_joined {
            self.complete_join(now);
        }
    }

    /// Ends the join phase (Kafka's `onCompleteJoin` + `initNextGeneration`): members that did
    /// not rejoin are removed; a new generation starts with the chosen protocol, the leader gets
    /// the member list, everyone gets the generation.
    fn complete_join(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|member| member.awaiting_join.is_none())
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in gone {
            tracing::info!(group = %self.id, member = %member_id, "removing a member that did not rejoin within the rebalance timeout");
            self.remove_member_only(&member_id);
        }
        self.join_deadline = None;
        self.initial_delay = None;
        // Past i32::MAX it starts again at 1: a negative generation reads as a standalone commit.
        self.generation_id = self.generation_id.checked_add(1).unwrap_or(1);
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.empty_since = Some(now);
            self.protocol_name = None;
            self.leader_id = None;
            tracing::info!(group = %self.id, generation = self.generation_id, "group is empty");
            return;
        }
        self.protocol_name = self.select_protocol();
        if self
            .leader_id
            .as_deref()
            .is_none_or(|leader| self.member(leader).is_none())
        {
            self.leader_id = self.members.first().map(|member| member.member_id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        self.pending_sync = self
            .members
            .iter()
            .map(|member| member.member_id.clone())
            .collect();
        self.sync_deadline = Some(now + self.rebalance_timeout());
        tracing::info!(
            group = %self.id,
            generation = self.generation_id,
            protocol = self.protocol_name.as_deref().unwrap_or_default(),
            leader = self.leader_id.as_deref().unwrap_or_default(),
            members = self.members.len(),
            "new generation"
        );
        let answers: Vec<(usize, JoinResponse)> = self
            .members
            .iter()
            .enumerate()
            .map(|(index, member)| (index, self.current_generation(&member.member_id)))
            .collect();
        for (index, answer) in answers {
            let member = &mut self.members[index];
            member.assignment = Bytes::new();
            member.refresh_session(now);
            if let Some(waiter) = member.awaiting_join.take() {
                let _ = waiter.send(answer);
            }
        }
    }

    /// Removes a member without starting a rebalance; its parked requests are answered
    /// UNKNOWN_MEMBER_ID.
    fn remove_member_only(&mut self, member_id: &str) -> Option<Member> {
        let index = self
            .members
            .iter()
            .position(|member| member.member_id == member_id)?;
        let mut member = self.members.remove(index);
        if let Some(waiter) = member.awaiting_join.take() {
            let _ = waiter.send(JoinResponse::error(
                ResponseError::UnknownMemberId,
                member_id,
            ));
        }
        if let Some(waiter) = member.awaiting_sync.take() {
            let _ = waiter.send(SyncResponse::error(ResponseError::UnknownMemberId));
        }
        if let Some(instance) = &member.group_instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            self.static_members.remove(instance);
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader_id = None;
        }
        Some(member)
    }

    /// Removes a member (left, session expired, never synced) and rebalances the rest.
    fn remove_member(&mut self, config: &GroupConfig, member_id: &str, now: Instant, reason: &str) {
        if self.remove_member_only(member_id).is_none() {
            return;
        }
        tracing::info!(group = %self.id, member = %member_id, reason, "member removed");
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(config, now, reason);
                self.try_complete_join(now);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Adds a member parked in JoinGroup and rebalances (Kafka's `addMemberAndRebalance`).
    fn add_member_and_rebalance(
        &mut self,
        config: &GroupConfig,
        request: &JoinRequest,
        member_id: String,
        now: Instant,
    ) -> Reply<JoinResponse> {
        let (waiter, answer) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        self.pending_members.remove(&member_id);
        if let Some(instance) = &request.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        let session_timeout = duration_ms(request.session_timeout_ms);
        self.members.push(Member {
            member_id,
            group_instance_id: request.group_instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout,
            rebalance_timeout: rebalance_timeout(request),
            protocol_type: request.protocol_type.clone(),
            protocols: request.protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: Some(waiter),
            awaiting_sync: None,
            session_deadline: now + session_timeout,
        });
        if let Some(delay) = &mut self.initial_delay {
            delay.new_member_added = true;
        }
        self.prepare_rebalance(config, now, "a member joined");
        self.try_complete_join(now);
        Reply::Wait(answer)
    }

    /// A known member joins again with (possibly) new protocols and waits for the join phase.
    fn update_member_and_rebalance(
        &mut self,
        config: &GroupConfig,
        request: &JoinRequest,
        member_id: &str,
        now: Instant,
    ) -> Reply<JoinResponse> {
        let (waiter, answer) = oneshot::channel();
        let Some(member) = self.member_mut(member_id) else {
            return Reply::Now(JoinResponse::error(
                ResponseError::UnknownMemberId,
                member_id,
            ));
        };
        member.protocols = request.protocols.clone();
        member.protocol_type = request.protocol_type.clone();
        member.session_timeout = duration_ms(request.session_timeout_ms);
        member.rebalance_timeout = rebalance_timeout(request);
        member.client_id.clone_from(&request.client_id);
        member.client_host.clone_from(&request.client_host);
        member.refresh_session(now);
        // A second JoinGroup from the same member replaces the first; the first is told to
        // rejoin (its client has already given up on it).
        if let Some(previous) = member.awaiting_join.replace(waiter) {
            let _ = previous.send(JoinResponse::error(
                ResponseError::RebalanceInProgress,
                member_id,
            ));
        }
        self.prepare_rebalance(config, now, "a member rejoined with new metadata");
        self.try_complete_join(now);
        Reply::Wait(answer)
    }

    /// Acts on every deadline at or before `now`, until none is left.
    fn advance(&mut self, config: &GroupConfig, now: Instant) {
        loop {
            let mut acted = false;
            let expired_pending: Vec<String> = self
                .pending_members
                .iter()
                .filter(|(_, deadline)| **deadline <= now)
                .map(|(member_id, _)| member_id.clone())
                .collect();
            for member_id in expired_pending {
                self.pending_members.remove(&member_id);
                acted = true;
            }
            if acted {
                self.try_complete_join(now);
            }
            let expired: Vec<String> = self
                .members
                .iter()
                .filter(|member| !member.kept_alive() && member.session_deadline <= now)
                .map(|member| member.member_id.clone())
                .collect();
            for member_id in expired {
                self.remove_member(config, &member_id, now, "session timeout expired");
                acted = true;
            }
            if self.state == GroupState::PreparingRebalance
                && self.join_deadline.is_some_and(|deadline| deadline <= now)
            {
                acted = true;
                match &mut self.initial_delay {
                    Some(delay) if delay.new_member_added && !delay.remaining.is_zero() => {
                        let step = config.initial_rebalance_delay.min(delay.remaining);
                        delay.remaining -= step;
                        delay.new_member_added = false;
                        self.join_deadline = Some(now + step);
                    }
                    _ => self.complete_join(now),
                }
            }
            if self.sync_deadline.is_some_and(|deadline| deadline <= now) {
                acted = true;
                self.sync_deadline = None;
                let unsynced: Vec<String> = self.pending_sync.drain().collect();
                for member_id in unsynced {
                    self.remove_member(
                        config,
                        &member_id,
                        now,
                        "no SyncGroup within the rebalance timeout",
                    );
                }
            }
            if !acted {
                return;
            }
        }
    }

    /// The earliest deadline [`Group::advance`] would act on.
    fn next_deadline(&self) -> Option<Instant> {
        let sessions = self
            .members
            .iter()
            .filter(|member| !member.kept_alive())
            .map(|member| member.session_deadline);
        let join = self
            .join_deadline
            .filter(|_| self.state == GroupState::PreparingRebalance);
        sessions
            .chain(self.pending_members.values().copied())
            .chain(join)
            .chain(self.sync_deadline)
            .min()
    }

    fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupDescription {
            group_id: self.id.clone(),
            state: self.state,
            protocol_type: self.protocol_type().to_string(),
            protocol_name: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: self
                .members
                .iter()
                .map(|member| MemberDescription {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    metadata: if stable {
                        member.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        member.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }
}

fn duration_ms(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A member's rebalance timeout; one that is not positive counts as its session timeout (as
/// JoinGroup v0, which has none), so a hostile value cannot end every rebalance at once.
fn rebalance_timeout(request: &JoinRequest) -> Duration {
    if request.rebalance_timeout_ms > 0 {
        duration_ms(request.rebalance_timeout_ms)
    } else {
        duration_ms(request.session_timeout_ms)
    }
}

/// Every group the coordinator knows.
#[derive(Debug)]
pub struct Groups {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
}

impl Groups {
    pub fn new(config: GroupConfig) -> Groups {
        Groups {
            config,
            groups: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// A group as the offsets file had it at start: Empty, with its offsets, and counted as
    /// Empty since its last commit (the latest time it is known to have had a member), so its
    /// retention clock does not start again at every broker restart.
    pub fn load(&mut self, group_id: &str, stored: super::offsets::StoredGroup) {
        let last_commit_ms = stored
            .offsets
            .values()
            .map(|offset| offset.commit_timestamp_ms)
            .max();
        let group = self.get_or_create(group_id);
        if !stored.protocol_type.is_empty() {
            group.protocol_type = Some(stored.protocol_type);
        }
        group.offsets = stored.offsets;
        group.empty_since_ms = last_commit_ms;
    }

    pub fn iter(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// When the phase a parked request waits for ends at the latest: the join phase's deadline
    /// (with what the initial delay may still add), or the sync phase's.
    pub fn phase_end(&self, group_id: &str) -> Option<Instant> {
        let group = self.groups.get(group_id)?;
        match group.state {
            GroupState::PreparingRebalance => group.join_deadline.map(|deadline| {
                deadline
                    + group
                        .initial_delay
                        .map(|delay| delay.remaining)
                        .unwrap_or_default()
            }),
            _ => group.sync_deadline,
        }
    }

    pub fn get(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id)
    }

    pub fn get_mut(&mut self, group_id: &str) -> Option<&mut Group> {
        self.groups.get_mut(group_id)
    }

    /// The group, created Empty if unknown (offsets loaded at start, a standalone commit).
    pub fn get_or_create(&mut self, group_id: &str) -> &mut Group {
        self.groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id))
    }

    /// Acts on the group's passed deadlines.
    pub fn advance(&mut self, group_id: &str, now: Instant) {
        if let Some(group) = self.groups.get_mut(group_id) {
            group.advance(&self.config, now);
        }
    }

    pub fn advance_all(&mut self, now: Instant) {
        for group in self.groups.values_mut() {
            group.advance(&self.config, now);
        }
    }

    pub fn next_deadline(&self, group_id: &str) -> Option<Instant> {
        self.groups.get(group_id).and_then(Group::next_deadline)
    }

    pub fn join(&mut self, request: &JoinRequest, now: Instant) -> Reply<JoinResponse> {
        let fail = |error| Reply::Now(JoinResponse::error(error, &request.member_id));
        if request.group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId);
        }
        let session = i64::from(request.session_timeout_ms);
        if session < self.config.min_session_timeout.as_millis() as i64
            || session > self.config.max_session_timeout.as_millis() as i64
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if !request.member_id.is_empty() && !self.groups.contains_key(&request.group_id) {
            return fail(ResponseError::UnknownMemberId);
        }
        let config = self.config.clone();
        let group = self.get_or_create(&request.group_id);
        group.advance(&config, now);
        if !group.accepts_joining_member(request, config.max_size) {
            // As Kafka: the member turned away is forgotten (a pending one too), so it cannot
            // hold up the join phase; its client gets GROUP_MAX_SIZE_REACHED.
            group.pending_members.remove(&request.member_id);
            group.remove_member_only(&request.member_id);
            group.advance(&config, now);
            return Reply::Now(JoinResponse::error(ResponseError::GroupMaxSizeReached, ""));
        }
        let reply = if request.member_id.is_empty() {
            new_member_join(group, &config, request, now)
        } else {
            known_member_join(group, &config, request, now)
        };
        // A join phase with no delay left (group.initial.rebalance.delay.ms=0) ends at once.
        group.advance(&config, now);
        reply
    }

    pub fn sync(&mut self, request: &SyncRequest, now: Instant) -> Reply<SyncResponse> {
        let fail = |error| Reply::Now(SyncResponse::error(error));
        if request.group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId);
        }
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        group.advance(&self.config, now);
        if group.static_member_fenced(&request.member_id, request.group_instance_id.as_deref()) {
            return fail(ResponseError::FencedInstanceId);
        }
        if group.member(&request.member_id).is_none() {
            return fail(ResponseError::UnknownMemberId);
        }
        if request.generation_id != group.generation_id {
            return fail(ResponseError::IllegalGeneration);
        }
        let mismatched = |given: &Option<String>, group: &Option<String>| {
            given
                .as_ref()
                .is_some_and(|given| Some(given) != group.as_ref())
        };
        if mismatched(&request.protocol_type, &group.protocol_type)
            || mismatched(&request.protocol_name, &group.protocol_name)
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        match group.state {
            GroupState::Empty => fail(ResponseError::UnknownMemberId),
            GroupState::Dead => fail(ResponseError::CoordinatorNotAvailable),
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                group.pending_sync.remove(&request.member_id);
                if group.pending_sync.is_empty() {
                    group.sync_deadline = None;
                }
                let protocol_type = group.protocol_type.clone();
                let protocol_name = group.protocol_name.clone();
                let member = group.member_mut(&request.member_id).expect("checked above");
                member.refresh_session(now);
                Reply::Now(SyncResponse {
                    error: None,
                    protocol_type,
                    protocol_name,
                    assignment: member.assignment.clone(),
                })
            }
            GroupState::CompletingRebalance => {
                let (waiter, answer) = oneshot::channel();
                group.pending_sync.remove(&request.member_id);
                if group.pending_sync.is_empty() {
                    group.sync_deadline = None;
                }
                let member = group.member_mut(&request.member_id).expect("checked above");
                member.refresh_session(now);
                if let Some(previous) = member.awaiting_sync.replace(waiter) {
                    let _ = previous.send(SyncResponse::error(ResponseError::RebalanceInProgress));
                }
                if group.is_leader(&request.member_id) {
                    let assignments: HashMap<&str, &Bytes> = request
                        .assignments
                        .iter()
                        .map(|(member_id, assignment)| (member_id.as_str(), assignment))
                        .collect();
                    let protocol_type = group.protocol_type.clone();
                    let protocol_name = group.protocol_name.clone();
                    for member in &mut group.members {
                        member.assignment = assignments
                            .get(member.member_id.as_str())
                            .map(|assignment| (*assignment).clone())
                            .unwrap_or_default();
                        if let Some(waiter) = member.awaiting_sync.take() {
                            let _ = waiter.send(SyncResponse {
                                error: None,
                                protocol_type: protocol_type.clone(),
                                protocol_name: protocol_name.clone(),
                                assignment: member.assignment.clone(),
                            });
                            member.refresh_session(now);
                        }
                    }
                    group.state = GroupState::Stable;
                    tracing::info!(group = %group.id, generation = group.generation_id, "group is stable");
                }
                Reply::Wait(answer)
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        now: Instant,
    ) -> Option<ResponseError> {
        if group_id.is_empty() {
            return Some(ResponseError::InvalidGroupId);
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        group.advance(&self.config, now);
        if group.static_member_fenced(member_id, group_instance_id) {
            return Some(ResponseError::FencedInstanceId);
        }
        if group.member(member_id).is_none() {
            return Some(ResponseError::UnknownMemberId);
        }
        if generation_id != group.generation_id {
            return Some(ResponseError::IllegalGeneration);
        }
        if let Some(member) = group.member_mut(member_id) {
            member.refresh_session(now);
        }
        match group.state {
            GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => None,
            GroupState::Empty => Some(ResponseError::UnknownMemberId),
            GroupState::Dead => Some(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// LeaveGroup: one error per leaving member.
    pub fn leave(
        &mut self,
        group_id: &str,
        leaving: &[LeavingMember],
        now: Instant,
    ) -> Vec<Option<ResponseError>> {
        if group_id.is_empty() {
            return vec![Some(ResponseError::InvalidGroupId); leaving.len()];
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return vec![Some(ResponseError::UnknownMemberId); leaving.len()];
        };
        group.advance(&self.config, now);
        leaving
            .iter()
            .map(|member| {
                let member_id = match &member.group_instance_id {
                    Some(instance) => match group.static_members.get(instance) {
                        None => return Some(ResponseError::UnknownMemberId),
                        Some(current)
                            if !member.member_id.is_empty() && *current != member.member_id =>
                        {
                            return Some(ResponseError::FencedInstanceId);
                        }
                        Some(current) => current.clone(),
                    },
                    None => member.member_id.clone(),
                };
                if group.pending_members.remove(&member_id).is_some() {
                    group.try_complete_join(now);
                    return None;
                }
                if group.member(&member_id).is_none() {
                    return Some(ResponseError::UnknownMemberId);
                }
                group.remove_member(&self.config, &member_id, now, "the member left the group");
                None
            })
            .collect()
    }

    /// Whether an OffsetCommit from this member at this generation may commit (Kafka's
    /// `doCommitOffsets` checks). A standalone consumer (generation -1, no member id) may commit
    /// to a group without members; an unknown group is created for it.
    pub fn validate_commit(
        &mut self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.groups.contains_key(group_id) {
            if generation_id < 0 {
                self.get_or_create(group_id);
                return Ok(());
            }
            return Err(ResponseError::IllegalGeneration);
        }
        let group = self.groups.get_mut(group_id).expect("checked above");
        group.advance(&self.config, now);
        if group.static_member_fenced(member_id, group_instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if generation_id < 0 && group.state == GroupState::Empty {
            return Ok(());
        }
        if group.member(member_id).is_none() {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation_id != group.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        match group.state {
            GroupState::Stable | GroupState::PreparingRebalance => {
                if let Some(member) = group.member_mut(member_id) {
                    member.refresh_session(now);
                }
                Ok(())
            }
            GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::Empty => Err(ResponseError::UnknownMemberId),
            GroupState::Dead => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    pub fn describe(&mut self, group_id: &str, now: Instant) -> Option<GroupDescription> {
        self.advance(group_id, now);
        self.groups.get(group_id).map(Group::describe)
    }

    /// (group id, protocol type, state) of every group.
    pub fn list(&mut self, now: Instant) -> Vec<(String, String, GroupState)> {
        self.advance_all(now);
        self.groups
            .values()
            .map(|group| {
                (
                    group.id.clone(),
                    group.protocol_type().to_string(),
                    group.state,
                )
            })
            .collect()
    }

    /// DeleteGroups' check and removal: only a group without members can go.
    pub fn delete(&mut self, group_id: &str, now: Instant) -> Result<(), ResponseError> {
        self.check_deletable(group_id, now)?;
        self.groups.remove(group_id);
        Ok(())
    }

    /// Why DeleteGroups would refuse `group_id` now, if it would.
    pub fn check_deletable(&mut self, group_id: &str, now: Instant) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        self.advance(group_id, now);
        let group = self
            .groups
            .get(group_id)
            .ok_or(ResponseError::GroupIdNotFound)?;
        if group.has_members() {
            return Err(ResponseError::NonEmptyGroup);
        }
        Ok(())
    }

    /// Offsets retention (Kafka's `cleanupGroupMetadata`, KIP-211): a consumer group's offsets
    /// expire once it has been Empty for `retention`; a standalone group's (no protocol type)
    /// each expire `retention` after their commit. A group left Empty without offsets or
    /// members is removed. Returns the expired partitions per group, to record on disk.
    pub fn expire_offsets(
        &mut self,
        now: Instant,
        now_ms: i64,
        retention: Duration,
    ) -> Vec<(String, Vec<(String, i32)>)> {
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let mut expired = Vec::new();
        for group in self.groups.values_mut() {
            group.advance(&self.config, now);
            if group.state != GroupState::Empty || group.has_members() {
                continue;
            }
            let empty_long_enough = match group.empty_since_ms {
                Some(since_ms) => since_ms.saturating_add(retention_ms) <= now_ms,
                None => {
                    let since = *group.empty_since.get_or_insert(now);
                    now.saturating_duration_since(since) >= retention
                }
            };
            let consumer_group = !group.protocol_type().is_empty();
            let gone: Vec<(String, i32)> = group
                .offsets
                .iter()
                .filter(|(_, offset)| {
                    if consumer_group {
                        empty_long_enough
                    } else {
                        offset.commit_timestamp_ms.saturating_add(retention_ms) <= now_ms
                    }
                })
                .map(|(key, _)| key.clone())
                .collect();
            for key in &gone {
                group.offsets.remove(key);
            }
            if !gone.is_empty() {
                tracing::info!(group = %group.id, partitions = gone.len(), "committed offsets expired");
                expired.push((group.id.clone(), gone));
            }
        }
        self.groups.retain(|_, group| {
            group.state != GroupState::Empty || group.has_members() || !group.offsets.is_empty()
        });
        expired
    }

    /// Forgets a deleted topic's committed offsets in every group.
    pub fn forget_topic(&mut self, topic: &str) {
        for group in self.groups.values_mut() {
            group.offsets.retain(|(name, _), _| name != topic);
        }
    }

    /// Answers every parked JoinGroup and SyncGroup with `error` (the broker is shutting down).
    pub fn answer_all_waiting(&mut self, error: ResponseError) {
        for group in self.groups.values_mut() {
            for member in &mut group.members {
                if let Some(waiter) = member.awaiting_join.take() {
                    let _ = waiter.send(JoinResponse::error(error, &member.member_id));
                }
                if let Some(waiter) = member.awaiting_sync.take() {
                    let _ = waiter.send(SyncResponse::error(error));
                }
            }
        }
    }
}

fn new_member_join(
    group: &mut Group,
    config: &GroupConfig,
    request: &JoinRequest,
    now: Instant,
) -> Reply<JoinResponse> {
    if !group.supports(&request.protocol_type, &request.protocols) {
        return Reply::Now(JoinResponse::error(
            ResponseError::InconsistentGroupProtocol,
            "",
        ));
    }
    let client = if request.client_id.is_empty() {
        "consumer"
    } else {
        request.client_id.as_str()
    };
    let member_id = format!("{client}-{}", uuid::Uuid::new_v4());
    if let Some(instance) = &request.group_instance_id {
        if let Some(old_id) = group.static_members.get(instance).cloned() {
            return replace_static_member(group, config, request, &old_id, member_id, now);
        }
        return group.add_member_and_rebalance(config, request, member_id, now);
    }
    if request.require_known_member_id {
        group.pending_members.insert(
            member_id.clone(),
            now + duration_ms(request.session_timeout_ms),
        );
        return Reply::Now(JoinResponse::error(
            ResponseError::MemberIdRequired,
            &member_id,
        ));
    }
    group.add_member_and_rebalance(config, request, member_id, now)
}

fn known_member_join(
    group: &mut Group,
    config: &GroupConfig,
    request: &JoinRequest,
    now: Instant,
) -> Reply<JoinResponse> {
    let member_id = request.member_id.as_str();
    if group.pending_members.contains_key(member_id) {
        if !group.supports(&request.protocol_type, &request.protocols) {
            return Reply::Now(JoinResponse::error(
                ResponseError::InconsistentGroupProtocol,
                member_id,
            ));
        }
        return group.add_member_and_rebalance(config, request, member_id.to_string(), now);
    }
    if let Some(instance) = &request.group_instance_id {
        match group.static_members.get(instance) {
            None => {
                return Reply::Now(JoinResponse::error(
                    ResponseError::UnknownMemberId,
                    member_id,
                ));
            }
            Some(current) if current != member_id => {
                return Reply::Now(JoinResponse::error(
                    ResponseError::FencedInstanceId,
                    member_id,
                ));
            }
            Some(_) => {}
        }
    }
    let Some(member) = group.member(member_id) else {
        return Reply::Now(JoinResponse::error(
            ResponseError::UnknownMemberId,
            member_id,
        ));
    };
    let same_protocols = member.protocols == request.protocols;
    if !group.supports(&request.protocol_type, &request.protocols) {
        return Reply::Now(JoinResponse::error(
            ResponseError::InconsistentGroupProtocol,
            member_id,
        ));
    }
    match group.state {
        GroupState::PreparingRebalance => {
            group.update_member_and_rebalance(config, request, member_id, now)
        }
        GroupState::CompletingRebalance if same_protocols => {
            Reply::Now(group.current_generation(member_id))
        }
        GroupState::Stable if same_protocols && !group.is_leader(member_id) => {
            if let Some(member) = group.member_mut(member_id) {
                member.refresh_session(now);
            }
            Reply::Now(group.current_generation(member_id))
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            group.update_member_and_rebalance(config, request, member_id, now)
        }
        GroupState::Empty | GroupState::Dead => Reply::Now(JoinResponse::error(
            ResponseError::UnknownMemberId,
            member_id,
        )),
    }
}

/// KIP-345: a static member restarting joins with its instance id and no member id. It takes
/// the old member's place under a new member id; the old id is fenced. A follower whose
/// protocols did not change keeps its assignment without a rebalance.
fn replace_static_member(
    group: &mut Group,
    config: &GroupConfig,
    request: &JoinRequest,
    old_id: &str,
    new_id: String,
    now: Instant,
) -> Reply<JoinResponse> {
    let Some(member) = group.member_mut(old_id) else {
        return group.add_member_and_rebalance(config, request, new_id, now);
    };
    if let Some(waiter) = member.awaiting_join.take() {
        let _ = waiter.send(JoinResponse::error(ResponseError::FencedInstanceId, old_id));
    }
    if let Some(waiter) = member.awaiting_sync.take() {
        let _ = waiter.send(SyncResponse::error(ResponseError::FencedInstanceId));
    }
    member.member_id.clone_from(&new_id);
    member.client_id.clone_from(&request.client_id);
    member.client_host.clone_from(&request.client_host);
    member.refresh_session(now);
    let same_protocols = member.protocols == request.protocols;
    if group.is_leader(old_id) {
        group.leader_id = Some(new_id.clone());
    }
    if group.pending_sync.remove(old_id) {
        group.pending_sync.insert(new_id.clone());
    }
    if let Some(instance) = &request.group_instance_id {
        group
            .static_members
            .insert(instance.clone(), new_id.clone());
    }
    tracing::info!(group = %group.id, old = %old_id, new = %new_id, "static member replaced");
    match group.state {
        GroupState::Stable if same_protocols && !group.is_leader(&new_id) => {
            Reply::Now(group.current_generation(&new_id))
        }
        _ => group.update_member_and_rebalance(config, request, &new_id, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(initial_delay_ms: u64) -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(initial_delay_ms),
            ..GroupConfig::default()
        }
    }

    fn join_request(member_id: &str) -> JoinRequest {
        JoinRequest {
            group_id: "g".to_string(),
            member_id: member_id.to_string(),
            group_instance_id: None,
            client_id: "client".to_string(),
            client_host: "/127.0.0.1".to_string(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".to_string(),
            protocols: vec![
                ("cooperative-sticky".to_string(), Bytes::from_static(b"c")),
                ("range".to_string(), Bytes::from_static(b"r")),
            ],
            require_known_member_id: true,
        }
    }

    fn now_answer<T: std::fmt::Debug>(reply: Reply<T>) -> T {
        match reply {
            Reply::Now(answer) => answer,
            Reply::Wait(_) => panic!("expected an immediate answer"),
        }
    }

    fn waiting<T>(reply: Reply<T>) -> oneshot::Receiver<T> {
        match reply {
            Reply::Wait(receiver) => receiver,
            Reply::Now(_) => panic!("expected a parked request"),
        }
    }

    /// First join: MEMBER_ID_REQUIRED with an id, then a join with it parks.
    fn first_join(groups: &mut Groups, now: Instant) -> (String, oneshot::Receiver<JoinResponse>) {
        let answer = now_answer(groups.join(&join_request(""), now));
        assert_eq!(answer.error, Some(ResponseError::MemberIdRequired));
        assert!(answer.member_id.starts_with("client-"));
        let member_id = answer.member_id;
        let parked = waiting(groups.join(&join_request(&member_id), now));
        (member_id, parked)
    }

    /// Runs the initial delay (100 ms, extended once per arrival) out; returns the time after.
    fn settle(groups: &mut Groups, start: Instant) -> Instant {
        for step in 1..=5 {
            groups.advance("g", start + Duration::from_millis(100 * step));
        }
        start + Duration::from_millis(500)
    }

    fn sync_request(member_id: &str, generation_id: i32) -> SyncRequest {
        SyncRequest {
            group_id: "g".to_string(),
            generation_id,
            member_id: member_id.to_string(),
            ..SyncRequest::default()
        }
    }

    /// Two members join through the initial delay, the leader gets both, syncs the assignment,
    /// both read theirs; the follower's heartbeats are fine until a third member rebalances.
    #[test]
    fn join_sync_and_heartbeat() {
        let mut groups = Groups::new(config(3000));
        let start = Instant::now();
        let (first, mut first_join_answer) = first_join(&mut groups, start);
        assert_eq!(
            groups.get("g").map(Group::state),
            Some(GroupState::PreparingRebalance)
        );
        let (second, mut second_join_answer) =
            first_join(&mut groups, start + Duration::from_millis(1000));
        // The initial delay runs out at 3 s; a member arrived in it, so it runs another 3 s.
        groups.advance("g", start + Duration::from_millis(3000));
        assert!(first_join_answer.try_recv().is_err(), "still delayed");
        groups.advance("g", start + Duration::from_millis(6000));
        let first_answer = first_join_answer.try_recv().expect("joined");
        let second_answer = second_join_answer.try_recv().expect("joined");
        assert_eq!(first_answer.error, None);
        assert_eq!(first_answer.generation_id, 1);
        assert_eq!(first_answer.leader, first);
        assert_eq!(
            first_answer.protocol_name.as_deref(),
            Some("cooperative-sticky")
        );
        assert_eq!(first_answer.members.len(), 2);
        assert_eq!(first_answer.members[1].member_id, second);
        assert_eq!(first_answer.members[1].metadata, Bytes::from_static(b"c"));
        assert!(
            second_answer.members.is_empty(),
            "only the leader gets them"
        );

        let at = start + Duration::from_millis(6100);
        let mut follower_sync = waiting(groups.sync(&sync_request(&second, 1), at));
        let mut leader_sync_request = sync_request(&first, 1);
        leader_sync_request.assignments = vec![
            (first.clone(), Bytes::from_static(b"p0,p1")),
            (second.clone(), Bytes::from_static(b"p2,p3")),
        ];
        let mut leader_sync = waiting(groups.sync(&leader_sync_request, at));
        assert_eq!(
            leader_sync.try_recv().expect("leader").assignment,
            Bytes::from_static(b"p0,p1")
        );
        assert_eq!(
            follower_sync.try_recv().expect("follower").assignment,
            Bytes::from_static(b"p2,p3")
        );
        assert_eq!(groups.get("g").map(Group::state), Some(GroupState::Stable));
        assert_eq!(groups.heartbeat("g", 1, &second, None, at), None);
        assert_eq!(
            groups.heartbeat("g", 0, &second, None, at),
            Some(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            groups.heartbeat("g", 1, "stranger", None, at),
            Some(ResponseError::UnknownMemberId)
        );
        // A new member: the others learn of the rebalance from their heartbeats.
        let _third = first_join(&mut groups, at);
        assert_eq!(
            groups.heartbeat("g", 1, &second, None, at),
            Some(ResponseError::RebalanceInProgress)
        );
        assert_eq!(
            groups.validate_commit("g", 1, &second, None, at),
            Ok(()),
            "commits are still accepted while rebalancing"
        );
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_removed_when_the_rebalance_times_out() {
        let mut groups = Groups::new(config(0));
        let start = Instant::now();
        let (first, mut first_answer) = first_join(&mut groups, start);
        groups.advance("g", start);
        assert_eq!(first_answer.try_recv().expect("alone").generation_id, 1);
        let at = start + Duration::from_millis(10);
        drop(waiting(groups.sync(&sync_request(&first, 1), at)));
        // A second member arrives; the first never rejoins (its poll loop is stuck) but keeps
        // heartbeating, so only the rebalance timeout (30 s) removes it.
        let (second, mut second_answer) = first_join(&mut groups, at);
        for second_offset in 1..30 {
            let now = at + Duration::from_secs(second_offset);
            assert_eq!(
                groups.heartbeat("g", 1, &first, None, now),
                Some(ResponseError::RebalanceInProgress)
            );
            assert!(second_answer.try_recv().is_err());
        }
        groups.advance("g", at + Duration::from_secs(30));
        let answer = second_answer.try_recv().expect("completed");
        assert_eq!(answer.generation_id, 2);
        assert_eq!(answer.leader, second);
        assert_eq!(answer.members.len(), 1);
        assert_eq!(
            groups.heartbeat("g", 2, &first, None, at + Duration::from_secs(31)),
            Some(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn a_silent_member_is_removed_after_its_session_timeout() {
        let mut groups = Groups::new(config(100));
        let start = Instant::now();
        let (first, _) = first_join(&mut groups, start);
        let (second, _) = first_join(&mut groups, start);
        let t0 = settle(&mut groups, start);
        drop(waiting(groups.sync(&sync_request(&second, 1), t0)));
        drop(waiting(groups.sync(&sync_request(&first, 1), t0)));
        assert_eq!(groups.get("g").map(Group::state), Some(GroupState::Stable));
        // Only the first heartbeats; the second's 10 s session runs out.
        for second_offset in 1..=9 {
            let now = t0 + Duration::from_secs(second_offset);
            assert_eq!(groups.heartbeat("g", 1, &first, None, now), None);
        }
        let now = t0 + Duration::from_secs(10);
        assert_eq!(
            groups.heartbeat("g", 1, &first, None, now),
            Some(ResponseError::RebalanceInProgress)
        );
        let mut rejoin = waiting(groups.join(&join_request(&first), now));
        let answer = rejoin.try_recv().expect("the only member rejoined");
        assert_eq!(answer.generation_id, 2);
        assert_eq!(answer.members.len(), 1);
    }

    #[test]
    fn a_leader_that_never_syncs_is_removed_after_the_rebalance_timeout() {
        let mut groups = Groups::new(config(100));
        let start = Instant::now();
        let (first, _) = first_join(&mut groups, start);
        let (second, _) = first_join(&mut groups, start);
        let t0 = settle(&mut groups, start);
        let mut follower = waiting(groups.sync(&sync_request(&second, 1), t0));
        // The follower waits in SyncGroup (kept alive); the leader heartbeats but never syncs.
        for second_offset in 1..30 {
            let now = t0 + Duration::from_secs(second_offset);
            assert_eq!(groups.heartbeat("g", 1, &first, None, now), None);
        }
        assert!(follower.try_recv().is_err());
        groups.advance("g", t0 + Duration::from_secs(30));
        assert_eq!(
            follower.try_recv().expect("answered").error,
            Some(ResponseError::RebalanceInProgress)
        );
        // The follower's session counts from that answer: it stays to rejoin, although its
        // SyncGroup came longer than a session timeout ago.
        let group = groups.get("g").expect("group");
        assert_eq!(group.state(), GroupState::PreparingRebalance);
        assert!(
            group
                .members
                .iter()
                .any(|member| member.member_id == second)
        );
        assert!(!group.members.iter().any(|member| member.member_id == first));
    }

    #[test]
    fn an_empty_group_id_is_invalid_everywhere() {
        let mut groups = Groups::new(config(100));
        let now = Instant::now();
        let leaving = LeavingMember {
            member_id: "m".to_string(),
            group_instance_id: None,
        };
        assert_eq!(
            groups.leave("", &[leaving], now),
            vec![Some(ResponseError::InvalidGroupId)]
        );
        assert_eq!(
            groups.validate_commit("", -1, "", None, now),
            Err(ResponseError::InvalidGroupId)
        );
        assert_eq!(groups.delete("", now), Err(ResponseError::InvalidGroupId));
        assert_eq!(
            groups.heartbeat("", 1, "m", None, now),
            Some(ResponseError::InvalidGroupId)
        );
        assert!(
            groups.get("").is_none(),
            "no group was created for the empty id"
        );
    }

    #[test]
    fn leaving_rebalances_and_the_last_one_out_empties_the_group() {
        let mut groups = Groups::new(config(100));
        let start = Instant::now();
        let (first, _) = first_join(&mut groups, start);
        let (second, _) = first_join(&mut groups, start);
        let start = settle(&mut groups, start);
        let leave = |member_id: &str| LeavingMember {
            member_id: member_id.to_string(),
            group_instance_id: None,
        };
        assert_eq!(
            groups.leave("g", &[leave(&second), leave("nobody")], start),
            vec![None, Some(ResponseError::UnknownMemberId)]
        );
        assert_eq!(
            groups.get("g").map(Group::state),
            Some(GroupState::PreparingRebalance)
        );
        assert_eq!(groups.leave("g", &[leave(&first)], start), vec![None]);
        let group = groups.get("g").expect("group");
        assert_eq!(group.state(), GroupState::Empty);
        assert_eq!(group.generation_id(), 2);
        assert_eq!(groups.delete("g", start), Ok(()));
        assert_eq!(
            groups.delete("g", start),
            Err(ResponseError::GroupIdNotFound)
        );
    }

    #[test]
    fn commits_are_checked_against_member_and_generation() {
        let mut groups = Groups::new(config(0));
        let start = Instant::now();
        // A standalone consumer may commit to an unknown or empty group.
        assert_eq!(groups.validate_commit("g", -1, "", None, start), Ok(()));
        assert_eq!(
            groups.validate_commit("other", 3, "m", None, start),
            Err(ResponseError::IllegalGeneration)
        );
        let (first, _) = first_join(&mut groups, start);
        groups.advance("g", start);
        assert_eq!(
            groups.validate_commit("g", 1, &first, None, start),
            Err(ResponseError::RebalanceInProgress),
            "CompletingRebalance"
        );
        drop(waiting(groups.sync(&sync_request(&first, 1), start)));
        assert_eq!(groups.validate_commit("g", 1, &first, None, start), Ok(()));
        assert_eq!(
            groups.validate_commit("g", 0, &first, None, start),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            groups.validate_commit("g", -1, "", None, start),
            Err(ResponseError::UnknownMemberId),
            "a group with members takes no standalone commits"
        );
    }

    #[test]
    fn protocols_must_agree_and_timeouts_be_in_range() {
        let mut groups = Groups::new(config(0));
        let start = Instant::now();
        let (_first, _) = first_join(&mut groups, start);
        let mut other = join_request("");
        other.protocols = vec![("roundrobin".to_string(), Bytes::new())];
        other.require_known_member_id = false;
        assert_eq!(
            now_answer(groups.join(&other, start)).error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
        let mut short = join_request("");
        short.session_timeout_ms = 100;
        assert_eq!(
            now_answer(groups.join(&short, start)).error,
            Some(ResponseError::InvalidSessionTimeout)
        );
        let mut unknown = join_request("ghost");
        unknown.group_id = "nowhere".to_string();
        assert_eq!(
            now_answer(groups.join(&unknown, start)).error,
            Some(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn the_protocol_most_members_prefer_wins() {
        let mut groups = Groups::new(config(100));
        let start = Instant::now();
        let mut requests = Vec::new();
        for preference in [
            ["range", "roundrobin"],
            ["roundrobin", "range"],
            ["roundrobin", "range"],
        ] {
            let mut request = join_request("");
            request.require_known_member_id = false;
            request.protocols = preference
                .iter()
                .map(|name| (name.to_string(), Bytes::new()))
                .collect();
            requests.push(waiting(groups.join(&request, start)));
        }
        settle(&mut groups, start);
        let answer = requests[0].try_recv().expect("joined");
        assert_eq!(answer.protocol_name.as_deref(), Some("roundrobin"));
    }

    #[test]
    fn offsets_expire_after_the_retention_and_empty_groups_go() {
        let mut groups = Groups::new(config(0));
        let start = Instant::now();
        let retention = Duration::from_secs(3600);
        let committed = |at_ms: i64| CommittedOffset {
            offset: 1,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: at_ms,
        };
        // A standalone group: each offset expires an hour after its commit.
        let standalone = groups.get_or_create("standalone");
        standalone
            .offsets
            .insert(("t".to_string(), 0), committed(0));
        standalone
            .offsets
            .insert(("t".to_string(), 1), committed(1_800_000));
        // A consumer group: all its offsets expire an hour after it became Empty (its member,
        // which never heartbeats, is gone when its session runs out).
        let _ = first_join(&mut groups, start);
        groups
            .get_mut("g")
            .expect("g")
            .offsets
            .insert(("t".to_string(), 0), committed(0));
        let an_hour = start + retention;
        assert_eq!(
            groups.expire_offsets(an_hour, 3_600_000, retention).len(),
            1
        );
        assert_eq!(groups.get("standalone").map(|g| g.offsets.len()), Some(1));
        assert_eq!(
            groups.get("g").map(|g| (g.state(), g.offsets.len())),
            Some((GroupState::Empty, 1)),
            "g only just emptied"
        );
        let later = an_hour + Duration::from_secs(1800);
        assert_eq!(
            groups.expire_offsets(later, 5_400_000, retention),
            vec![("standalone".to_string(), vec![("t".to_string(), 1)])]
        );
        assert!(
            groups.get("standalone").is_none(),
            "no offsets left: removed"
        );
        assert_eq!(
            groups.get("g").map(|g| g.offsets.len()),
            Some(1),
            "empty for 30 min"
        );
        let expired =
            groups.expire_offsets(later + Duration::from_secs(1800), 7_200_000, retention);
        assert_eq!(expired, vec![("g".to_string(), vec![("t".to_string(), 0)])]);
        assert!(groups.get("g").is_none());
    }

    #[test]
    fn a_loaded_group_is_empty_since_its_last_commit_across_restarts() {
        let retention = Duration::from_secs(7 * 24 * 3600);
        let retention_ms = retention.as_millis() as i64;
        let now_ms = 100 * retention_ms;
        let stored = |last_commit_ms: i64| super::super::offsets::StoredGroup {
            protocol_type: "consumer".to_string(),
            offsets: [(
                ("t".to_string(), 0),
                CommittedOffset {
                    offset: 5,
                    leader_epoch: -1,
                    metadata: None,
                    commit_timestamp_ms: last_commit_ms,
                },
            )]
            .into(),
        };
        // A broker that just started (its monotonic clock knows nothing of last week).
        let mut groups = Groups::new(config(0));
        groups.load("abandoned", stored(now_ms - retention_ms - 1));
        groups.load("recent", stored(now_ms - 1000));
        let expired = groups.expire_offsets(Instant::now(), now_ms, retention);
        assert_eq!(
            expired,
            vec![("abandoned".to_string(), vec![("t".to_string(), 0)])]
        );
        assert_eq!(groups.get("recent").map(|g| g.offsets.len()), Some(1));
    }

    #[test]
    fn a_static_member_rejoining_under_a_new_id_fences_the_old_one() {
        let mut groups = Groups::new(config(100));
        let start = Instant::now();
        let static_join = |member_id: &str| {
            let mut request = join_request(member_id);
            request.group_instance_id = Some("instance-1".to_string());
            request
        };
        let mut leader = join_request("");
        leader.require_known_member_id = false;
        let mut leader_answer = waiting(groups.join(&leader, start));
        let mut follower_answer = waiting(groups.join(&static_join(""), start));
        let start = settle(&mut groups, start);
        let leader_id = leader_answer.try_recv().expect("joined").member_id;
        let old_id = follower_answer.try_recv().expect("joined").member_id;
        let mut sync = sync_request(&leader_id, 1);
        sync.assignments = vec![(old_id.clone(), Bytes::from_static(b"mine"))];
        drop(waiting(groups.sync(&sync, start)));
        // The static follower restarts: same generation, same assignment, no rebalance.
        let answer = now_answer(groups.join(&static_join(""), start));
        assert_eq!(answer.error, None);
        assert_eq!(answer.generation_id, 1);
        assert_ne!(answer.member_id, old_id);
        let mut new_sync = sync_request(&answer.member_id, 1);
        new_sync.group_instance_id = Some("instance-1".to_string());
        assert_eq!(
            now_answer(groups.sync(&new_sync, start)).assignment,
            Bytes::from_static(b"mine")
        );
        assert_eq!(
            groups.heartbeat("g", 1, &old_id, Some("instance-1"), start),
            Some(ResponseError::FencedInstanceId)
        );
    }

    fn capped(max_size: usize, initial_delay_ms: u64) -> Groups {
        Groups::new(GroupConfig {
            max_size,
            ..config(initial_delay_ms)
        })
    }

    /// The answer to a join, given now or once group "g" has advanced to `at`.
    fn answer_by(groups: &mut Groups, reply: Reply<JoinResponse>, at: Instant) -> JoinResponse {
        match reply {
            Reply::Now(answer) => answer,
            Reply::Wait(mut parked) => {
                groups.advance("g", at);
                parked.try_recv().expect("answered once the group advanced")
            }
        }
    }

    /// `group.max.size` (Kafka's acceptJoiningMember): while rebalancing, joins beyond the
    /// members already rejoined are turned away, afterwards joins beyond the group's size; a
    /// member already in the group always gets back in, and a leave makes room.
    #[test]
    fn joins_beyond_group_max_size_are_turned_away() {
        let mut groups = capped(2, 100);
        let start = Instant::now();
        let (first, _) = first_join(&mut groups, start);
        let (second, _) = first_join(&mut groups, start);
        let full = now_answer(groups.join(&join_request(""), start));
        assert_eq!(full.error, Some(ResponseError::GroupMaxSizeReached));
        assert_eq!(full.member_id, "", "no member id for a member turned away");

        let start = settle(&mut groups, start);
        assert_eq!(
            groups.get("g").map(Group::state),
            Some(GroupState::CompletingRebalance)
        );
        assert_eq!(groups.get("g").map(|group| group.members.len()), Some(2));
        let full = now_answer(groups.join(&join_request(""), start));
        assert_eq!(full.error, Some(ResponseError::GroupMaxSizeReached));
        let rejoined = now_answer(groups.join(&join_request(&first), start));
        assert_eq!(
            rejoined.error, None,
            "a member of a full group gets back in"
        );

        let leaving = LeavingMember {
            member_id: second.clone(),
            group_instance_id: None,
        };
        assert_eq!(groups.leave("g", &[leaving], start), vec![None]);
        let room = now_answer(groups.join(&join_request(""), start));
        assert_eq!(room.error, Some(ResponseError::MemberIdRequired));
    }

    /// A static member of a full group that restarts (no member id, its instance id) takes its
    /// own place rather than being turned away as a newcomer.
    #[test]
    fn a_static_member_of_a_full_group_comes_back() {
        let mut groups = capped(1, 0);
        let start = Instant::now();
        let static_join = |member_id: &str| JoinRequest {
            group_instance_id: Some("instance-1".to_string()),
            ..join_request(member_id)
        };
        let reply = groups.join(&static_join(""), start);
        let first = answer_by(&mut groups, reply, start + Duration::from_millis(10));
        assert_eq!(first.error, None);
        assert_eq!(
            now_answer(groups.join(&join_request(""), start)).error,
            Some(ResponseError::GroupMaxSizeReached),
            "a newcomer is turned away"
        );
        let reply = groups.join(&static_join(""), start);
        let answer = answer_by(&mut groups, reply, start + Duration::from_millis(20));
        assert_ne!(answer.error, Some(ResponseError::GroupMaxSizeReached));
        assert_ne!(
            answer.member_id, first.member_id,
            "a new member id replaces the old"
        );
    }
}
