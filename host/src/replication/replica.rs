//! One partition replica's replication state as a pure state machine (the bookkeeping of
//! Kafka's `Partition` and `Replica`): role, leader epoch, partition epoch, its own log end
//! offset, the ISR, the high watermark and, on a leader, each follower's progress. No I/O and no
//! clock: events come in with the time, commands come out, and the caller does the work (wake
//! waiting fetches, wake waiting acks=all produces, send AlterPartition to the controller,
//! checkpoint the high watermark).
//!
//! The rules, in Kafka's words:
//! - the high watermark is the smallest log end offset over the ISR, the leader's own included;
//!   while an ISR change is in flight it is computed over the larger of the two sets (Kafka's
//!   "maximal ISR"), so neither a pending shrink nor a pending expansion can move it early. It
//!   never moves backwards on a leader;
//! - a follower is caught up when it fetched from at least the leader's log end offset: then, or
//!   when it reached the end the leader had at its previous fetch, its last-caught-up time moves
//!   to that fetch (`Replica.updateFetchStateOrThrow`). One not caught up for
//!   `replica.lag.time.max.ms` leaves the ISR;
//! - a follower outside the ISR rejoins once its log end offset reaches the high watermark and
//!   the leader epoch's start offset, and only while its broker is unfenced with the broker
//!   epoch it fetches with (KIP-903), which the caller says with `eligible`;
//! - the leader proposes each ISR change (AlterPartition) with its leader and partition epochs
//!   and keeps it pending, one at a time, until the controller commits or refuses it.

use std::collections::BTreeMap;

/// A broker id, as on Kafka's wire.
pub type BrokerId = i32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower { leader: BrokerId },
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FollowerProgress {
    /// The offset of its last fetch: everything before it is on the follower.
    pub log_end_offset: u64,
    pub last_caught_up_ms: i64,
    last_fetch_ms: i64,
    /// The leader's log end offset at the follower's previous fetch.
    last_fetch_leader_log_end_offset: u64,
}

/// An ISR change proposed to the controller and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingIsr {
    pub isr: Vec<BrokerId>,
}

/// What happens to a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The metadata makes this broker the leader (a new leader epoch, or a new partition).
    BecomeLeader {
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
        now_ms: i64,
    },
    /// The metadata makes `leader` the leader and this broker a follower.
    BecomeFollower {
        leader: BrokerId,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
    },
    /// Records were appended here (as leader, from a producer; as follower, from a fetch).
    Appended { log_end_offset: u64 },
    /// The log was truncated to `log_end_offset` (a follower diverging from its new leader).
    Truncated { log_end_offset: u64 },
    /// On a leader: a follower fetched from `fetch_offset`. `eligible`: its broker is unfenced
    /// and the fetch carries its current broker epoch, so it may rejoin the ISR.
    FollowerFetched {
        replica: BrokerId,
        fetch_offset: u64,
        eligible: bool,
        now_ms: i64,
    },
    /// On a follower: the leader's high watermark, from a fetch response.
    LeaderHighWatermark { high_watermark: u64 },
    /// Time passed: followers lagging longer than `replica.lag.time.max.ms` leave the ISR.
    Tick { now_ms: i64 },
    /// The controller committed an ISR (this leader's proposal, or its own change such as
    /// fencing a broker) at `partition_epoch`.
    IsrCommitted {
        isr: Vec<BrokerId>,
        partition_epoch: i32,
    },
    /// The controller refused the pending proposal (a stale epoch, an ineligible replica).
    IsrRejected,
}

/// What the caller does after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The high watermark moved up: answer waiting consumer fetches, checkpoint it.
    HighWatermarkAdvanced(u64),
    /// A follower's log end offset moved: re-check waiting acks=all produces.
    ReplicaProgress,
    /// Send AlterPartition with this ISR at these epochs.
    ProposeIsr {
        isr: Vec<BrokerId>,
        leader_epoch: i32,
        partition_epoch: i32,
    },
}

/// Settings the state machine applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// `replica.lag.time.max.ms`.
    pub lag_time_max_ms: i64,
}

/// One replica of one partition, on broker `me`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    me: BrokerId,
    config: ReplicaConfig,
    role: Role,
    leader_epoch: i32,
    partition_epoch: i32,
    /// Assigned replicas in preference order.
    replicas: Vec<BrokerId>,
    /// The ISR the controller committed.
    isr: Vec<BrokerId>,
    pending: Option<PendingIsr>,
    log_end_offset: u64,
    high_watermark: u64,
    /// This leader epoch's first offset: a follower must reach it to rejoin the ISR.
    leader_epoch_start_offset: u64,
    followers: BTreeMap<BrokerId, FollowerProgress>,
}

impl Replica {
    /// A replica restored from its log (`log_end_offset`) and its checkpointed high watermark,
    /// as a follower of nobody until the metadata names its role.
    pub fn new(
        me: BrokerId,
        config: ReplicaConfig,
        log_end_offset: u64,
        high_watermark: u64,
    ) -> Self {
        Replica {
            me,
            config,
            role: Role::Follower { leader: -1 },
            leader_epoch: -1,
            partition_epoch: -1,
            replicas: Vec::new(),
            isr: Vec::new(),
            pending: None,
            log_end_offset,
            high_watermark: high_watermark.min(log_end_offset),
            leader_epoch_start_offset: 0,
            followers: BTreeMap::new(),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    pub fn isr(&self) -> &[BrokerId] {
        &self.isr
    }

    pub fn pending_isr(&self) -> Option<&PendingIsr> {
        self.pending.as_ref()
    }

    pub fn log_end_offset(&self) -> u64 {
        self.log_end_offset
    }

    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    pub fn follower(&self, replica: BrokerId) -> Option<&FollowerProgress> {
        self.followers.get(&replica)
    }

    /// Applies one event and returns what the caller must do.
    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        let mut commands = Vec::new();
        match event {
            Event::BecomeLeader {
                leader_epoch,
                partition_epoch,
                replicas,
                isr,
                now_ms,
            } => {
                let new_epoch = leader_epoch > self.leader_epoch || self.role != Role::Leader;
                if !self.adopt(Role::Leader, leader_epoch, partition_epoch, replicas, isr) {
                    return commands;
                }
                if new_epoch {
                    self.leader_epoch_start_offset = self.log_end_offset;
                    // Every follower starts with a full lag allowance: a new leader has not
                    // heard from any of them yet (Kafka resets the fetch state likewise).
                    self.followers = self
                        .replicas
                        .iter()
                        .filter(|replica| **replica != self.me)
                        .map(|replica| {
                            (
                                *replica,
                                FollowerProgress {
                                    last_caught_up_ms: now_ms,
                                    last_fetch_ms: now_ms,
                                    ..FollowerProgress::default()
                                },
                            )
                        })
                        .collect();
                }
                self.advance_high_watermark(&mut commands);
            }
            Event::BecomeFollower {
                leader,
                leader_epoch,
                partition_epoch,
                replicas,
                isr,
            } => {
                if self.adopt(
                    Role::Follower { leader },
                    leader_epoch,
                    partition_epoch,
                    replicas,
                    isr,
                ) {
                    self.followers.clear();
                }
            }
            Event::Appended { log_end_offset } => {
                debug_assert!(
                    log_end_offset >= self.log_end_offset,
                    "appends only grow the log"
                );
                self.log_end_offset = self.log_end_offset.max(log_end_offset);
                if self.role == Role::Leader {
                    self.advance_high_watermark(&mut commands);
                }
            }
            Event::Truncated { log_end_offset } => {
                // Only a follower truncates; what it cuts was never above a high watermark
                // its leader answered, so its own high watermark moves down with it only when
                // a restart had taken the checkpoint from a longer log.
                self.log_end_offset = log_end_offset;
                self.high_watermark = self.high_watermark.min(log_end_offset);
            }
            Event::FollowerFetched {
                replica,
                fetch_offset,
                eligible,
                now_ms,
            } => {
                if self.role != Role::Leader {
                    return commands;
                }
                let leader_end = self.log_end_offset;
                let Some(progress) = self.followers.get_mut(&replica) else {
                    return commands;
                };
                if fetch_offset >= leader_end {
                    progress.last_caught_up_ms = progress.last_caught_up_ms.max(now_ms);
                } else if fetch_offset >= progress.last_fetch_leader_log_end_offset {
                    progress.last_caught_up_ms =
                        progress.last_caught_up_ms.max(progress.last_fetch_ms);
                }
                progress.last_fetch_leader_log_end_offset = leader_end;
                progress.last_fetch_ms = now_ms;
                let moved = fetch_offset != progress.log_end_offset;
                // A fetch offset is what the follower has: it never goes back within an epoch
                // except after a truncation, which starts a new fetch from the lower offset.
                progress.log_end_offset = fetch_offset;
                if moved {
                    commands.push(Command::ReplicaProgress);
                }
                self.advance_high_watermark(&mut commands);
                let rejoins = eligible
                    && self.pending.is_none()
                    && !self.isr.contains(&replica)
                    && fetch_offset >= self.high_watermark
                    && fetch_offset >= self.leader_epoch_start_offset;
                if rejoins {
                    let mut isr = self.isr.clone();
                    isr.push(replica);
                    self.propose(isr, &mut commands);
                }
            }
            Event::LeaderHighWatermark { high_watermark } => {
                if matches!(self.role, Role::Follower { .. }) {
                    // A follower's high watermark is the leader's, capped by what it has.
                    let next = high_watermark.min(self.log_end_offset);
                    if next > self.high_watermark {
                        self.high_watermark = next;
                        commands.push(Command::HighWatermarkAdvanced(next));
                    }
                }
            }
            Event::Tick { now_ms } => {
                if self.role != Role::Leader || self.pending.is_some() {
                    return commands;
                }
                let lagging: Vec<BrokerId> = self
                    .isr
                    .iter()
                    .copied()
                    .filter(|replica| *replica != self.me)
                    .filter(|replica| {
                        self.followers.get(replica).is_some_and(|progress| {
                            progress.log_end_offset < self.log_end_offset
                                && now_ms - progress.last_caught_up_ms > self.config.lag_time_max_ms
                        })
                    })
                    .collect();
                if !lagging.is_empty() {
                    let isr = self
                        .isr
                        .iter()
                        .copied()
                        .filter(|replica| !lagging.contains(replica))
                        .collect();
                    self.propose(isr, &mut commands);
                }
            }
            Event::IsrCommitted {
                isr,
                partition_epoch,
            } => {
                if partition_epoch <= self.partition_epoch {
                    return commands;
                }
                self.isr = isr;
                self.partition_epoch = partition_epoch;
                self.pending = None;
                if self.role == Role::Leader {
                    self.advance_high_watermark(&mut commands);
                }
            }
            Event::IsrRejected => {
                self.pending = None;
            }
        }
        commands
    }

    /// Takes the role and partition state the metadata gives, unless it is from an older
    /// leader epoch (false: ignored). Any proposal in flight is void under the new state.
    fn adopt(
        &mut self,
        role: Role,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
    ) -> bool {
        if leader_epoch < self.leader_epoch {
            return false;
        }
        self.role = role;
        self.leader_epoch = leader_epoch;
        self.partition_epoch = partition_epoch;
        self.replicas = replicas;
        self.isr = isr;
        self.pending = None;
        true
    }

    fn propose(&mut self, isr: Vec<BrokerId>, commands: &mut Vec<Command>) {
        commands.push(Command::ProposeIsr {
            isr: isr.clone(),
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
        });
        self.pending = Some(PendingIsr { isr });
    }

    /// The high watermark's one rule: the smallest log end offset over the maximal ISR (the
    /// committed ISR and a pending proposal together), never backwards.
    fn advance_high_watermark(&mut self, commands: &mut Vec<Command>) {
        let members = self
            .isr
            .iter()
            .chain(self.pending.iter().flat_map(|pending| pending.isr.iter()));
        let mut candidate = self.log_end_offset;
        for member in members {
            if *member == self.me {
                continue;
            }
            // A member this leader has no progress for (not assigned here) holds it back.
            let end = self
                .followers
                .get(member)
                .map_or(0, |progress| progress.log_end_offset);
            candidate = candidate.min(end);
        }
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            commands.push(Command::HighWatermarkAdvanced(candidate));
        }
        debug_assert!(
            self.high_watermark <= self.log_end_offset,
            "the high watermark never passes the leader's log end offset"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG_MS: i64 = 30_000;

    /// A replica on broker `me` whose log ends at `log_end_offset`, restored with
    /// `high_watermark`.
    fn replica_on(me: BrokerId, log_end_offset: u64, high_watermark: u64) -> Replica {
        Replica::new(
            me,
            ReplicaConfig {
                lag_time_max_ms: LAG_MS,
            },
            log_end_offset,
            high_watermark,
        )
    }

    fn leader_of_three() -> Replica {
        let mut replica = replica_on(1, 0, 0);
        let commands = replica.handle(Event::BecomeLeader {
            leader_epoch: 1,
            partition_epoch: 1,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            now_ms: 0,
        });
        assert!(commands.is_empty());
        replica
    }

    fn fetch(replica: BrokerId, fetch_offset: u64, now_ms: i64) -> Event {
        Event::FollowerFetched {
            replica,
            fetch_offset,
            eligible: true,
            now_ms,
        }
    }

    fn propose(isr: &[BrokerId], partition_epoch: i32) -> Command {
        Command::ProposeIsr {
            isr: isr.to_vec(),
            leader_epoch: 1,
            partition_epoch,
        }
    }

    /// Each step: an event, the commands it must give, and the high watermark and ISR after it.
    type Step = (Event, Vec<Command>, u64, Vec<BrokerId>);

    fn run(mut replica: Replica, steps: Vec<Step>) -> Replica {
        for (index, (event, commands, high_watermark, isr)) in steps.into_iter().enumerate() {
            let described = format!("step {index}: {event:?}");
            assert_eq!(replica.handle(event), commands, "{described}");
            assert_eq!(replica.high_watermark(), high_watermark, "{described}");
            assert_eq!(replica.isr(), isr.as_slice(), "{described}");
        }
        replica
    }

    #[test]
    fn the_high_watermark_is_what_the_whole_isr_has() {
        run(
            leader_of_three(),
            vec![
                (
                    Event::Appended { log_end_offset: 10 },
                    vec![],
                    0,
                    vec![1, 2, 3],
                ),
                (
                    fetch(2, 10, 100),
                    vec![Command::ReplicaProgress],
                    0,
                    vec![1, 2, 3],
                ),
                (
                    fetch(3, 6, 110),
                    vec![Command::ReplicaProgress, Command::HighWatermarkAdvanced(6)],
                    6,
                    vec![1, 2, 3],
                ),
                (
                    fetch(3, 10, 120),
                    vec![Command::ReplicaProgress, Command::HighWatermarkAdvanced(10)],
                    10,
                    vec![1, 2, 3],
                ),
                // The same offset again: no progress, nothing to wake.
                (fetch(3, 10, 130), vec![], 10, vec![1, 2, 3]),
            ],
        );
    }

    #[test]
    fn a_lagging_follower_leaves_the_isr_and_rejoins_once_caught_up() {
        let replica = run(
            leader_of_three(),
            vec![
                (
                    Event::Appended { log_end_offset: 5 },
                    vec![],
                    0,
                    vec![1, 2, 3],
                ),
                (
                    fetch(2, 5, 1_000),
                    vec![Command::ReplicaProgress],
                    0,
                    vec![1, 2, 3],
                ),
                // Follower 3 never fetches. At the lag limit nothing happens yet...
                (Event::Tick { now_ms: LAG_MS }, vec![], 0, vec![1, 2, 3]),
                // ...just past it, the leader proposes the ISR without 3.
                (
                    Event::Tick { now_ms: LAG_MS + 1 },
                    vec![propose(&[1, 2], 1)],
                    0,
                    vec![1, 2, 3],
                ),
                // While the shrink is pending, the high watermark still waits for 3 (the
                // maximal ISR), and no second proposal goes out.
                (
                    Event::Tick {
                        now_ms: LAG_MS + 500,
                    },
                    vec![],
                    0,
                    vec![1, 2, 3],
                ),
                (
                    Event::IsrCommitted {
                        isr: vec![1, 2],
                        partition_epoch: 2,
                    },
                    vec![Command::HighWatermarkAdvanced(5)],
                    5,
                    vec![1, 2],
                ),
                // 3 comes back below the high watermark: progress, not yet in sync.
                (
                    fetch(3, 2, LAG_MS + 600),
                    vec![Command::ReplicaProgress],
                    5,
                    vec![1, 2],
                ),
                // It reaches the high watermark: the leader proposes it back.
                (
                    fetch(3, 5, LAG_MS + 700),
                    vec![Command::ReplicaProgress, propose(&[1, 2, 3], 2)],
                    5,
                    vec![1, 2],
                ),
                (
                    Event::IsrCommitted {
                        isr: vec![1, 2, 3],
                        partition_epoch: 3,
                    },
                    vec![],
                    5,
                    vec![1, 2, 3],
                ),
            ],
        );
        assert_eq!(replica.partition_epoch(), 3);
        assert!(replica.pending_isr().is_none());
    }

    #[test]
    fn a_follower_that_keeps_reaching_the_previous_end_stays_in_sync() {
        // Under steady production a follower's fetch offset is always behind the leader's end
        // at that moment, but it reaches what the end was at its previous fetch: Kafka counts
        // that as caught up then, so a busy partition does not shrink its ISR.
        let mut replica = leader_of_three();
        let mut now = 0;
        let mut end = 0;
        for _ in 0..100 {
            now += 1_000;
            let previous_end = end;
            end += 10;
            replica.handle(Event::Appended {
                log_end_offset: end,
            });
            replica.handle(fetch(2, previous_end, now));
            replica.handle(fetch(3, previous_end, now));
            assert!(
                replica.handle(Event::Tick { now_ms: now }).is_empty(),
                "no shrink at {now} ms"
            );
        }
        assert_eq!(replica.isr(), &[1, 2, 3]);
        assert_eq!(
            replica.follower(2).map(|p| p.last_caught_up_ms),
            Some(now - 1_000)
        );
    }

    #[test]
    fn an_ineligible_or_pending_follower_is_not_added() {
        let mut replica = leader_of_three();
        replica.handle(Event::IsrCommitted {
            isr: vec![1, 2],
            partition_epoch: 2,
        });
        // Fenced (or fetching with a stale broker epoch): caught up, but not re-added.
        let commands = replica.handle(Event::FollowerFetched {
            replica: 3,
            fetch_offset: 0,
            eligible: false,
            now_ms: 10,
        });
        assert_eq!(commands, vec![]);
        // A refused proposal clears the way for the next one.
        assert_eq!(
            replica.handle(fetch(3, 0, 20)),
            vec![propose(&[1, 2, 3], 2)]
        );
        assert_eq!(
            replica.handle(fetch(3, 0, 30)),
            vec![],
            "one proposal at a time"
        );
        replica.handle(Event::IsrRejected);
        assert_eq!(
            replica.handle(fetch(3, 0, 40)),
            vec![propose(&[1, 2, 3], 2)]
        );
    }

    #[test]
    fn a_new_leader_needs_followers_to_reach_its_epoch_start() {
        // Broker 2 becomes leader at epoch 2 with 8 records; follower 3 had only 6.
        let mut replica = replica_on(2, 8, 6);
        replica.handle(Event::BecomeLeader {
            leader_epoch: 2,
            partition_epoch: 4,
            replicas: vec![1, 2, 3],
            isr: vec![2],
            now_ms: 0,
        });
        assert_eq!(replica.high_watermark(), 8, "a leader alone in the ISR");
        // 3 at the old high watermark is below the epoch start (8): not added yet.
        assert_eq!(
            replica.handle(fetch(3, 6, 10)),
            vec![Command::ReplicaProgress]
        );
        assert_eq!(
            replica.handle(fetch(3, 8, 20)),
            vec![
                Command::ReplicaProgress,
                Command::ProposeIsr {
                    isr: vec![2, 3],
                    leader_epoch: 2,
                    partition_epoch: 4
                }
            ]
        );
    }

    #[test]
    fn stale_metadata_and_stale_isr_answers_change_nothing() {
        let mut replica = leader_of_three();
        replica.handle(Event::IsrCommitted {
            isr: vec![1, 2],
            partition_epoch: 5,
        });
        let before = replica.clone();
        replica.handle(Event::IsrCommitted {
            isr: vec![1],
            partition_epoch: 4,
        });
        replica.handle(Event::BecomeFollower {
            leader: 2,
            leader_epoch: 0,
            partition_epoch: 9,
            replicas: vec![1, 2, 3],
            isr: vec![2],
        });
        assert_eq!(replica, before);
    }

    #[test]
    fn a_follower_takes_the_leaders_high_watermark_up_to_its_own_end() {
        let mut replica = replica_on(3, 0, 0);
        replica.handle(Event::BecomeFollower {
            leader: 1,
            leader_epoch: 1,
            partition_epoch: 1,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
        });
        replica.handle(Event::Appended { log_end_offset: 4 });
        assert_eq!(
            replica.handle(Event::LeaderHighWatermark { high_watermark: 10 }),
            vec![Command::HighWatermarkAdvanced(4)]
        );
        assert_eq!(
            replica.handle(Event::LeaderHighWatermark { high_watermark: 3 }),
            vec![],
            "never backwards"
        );
        // Followers ignore leader-only events.
        assert_eq!(replica.handle(fetch(2, 4, 0)), vec![]);
        assert_eq!(replica.handle(Event::Tick { now_ms: LAG_MS * 2 }), vec![]);
        // Truncation by leader epoch can cut below a checkpointed high watermark.
        replica.handle(Event::Truncated { log_end_offset: 2 });
        assert_eq!((replica.log_end_offset(), replica.high_watermark()), (2, 2));
    }
}
