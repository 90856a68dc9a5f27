//! Broker lifecycle, KRaft's way: a broker registers with the active controller (a new
//! incarnation gets a new broker epoch and starts fenced), heartbeats every
//! `broker.heartbeat.interval.ms`, is unfenced once it heartbeats and has caught up on metadata
//! up to its own registration, and is fenced when the controller hears nothing for
//! `broker.session.timeout.ms`. Fencing and unfencing are metadata records, so every node sees
//! them at the same offset.
//!
//! The controller's side keeps heartbeat times in memory only: a newly active controller gives
//! every broker a full session from the moment it took over, so a failover never fences a
//! live broker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{NodeId, ProposeError, Quorum, transport};
use crate::controller::records::{BrokerId, Change, Endpoint, MetadataRecord};

/// Weir's defaults against Kafka's 2000 / 9000 ms: failover is bounded by the session timeout,
/// so it is shorter; twelve missed heartbeats keep a broker on a loaded 2-core machine (a
/// test suite, a compaction) from being fenced for a scheduling hiccup.
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: &str = "500";
pub const SESSION_TIMEOUT_MS_DEFAULT: &str = "6000";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LifecycleRequest {
    Register {
        broker_id: BrokerId,
        incarnation_id: Uuid,
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
        /// A dedicated broker's address for the metadata log's replication: the controller
        /// adds it as a Raft learner there. `None` for a voter.
        #[serde(default)]
        metadata_address: Option<String>,
    },
    Heartbeat {
        broker_id: BrokerId,
        broker_epoch: i64,
        /// The last metadata offset the broker has applied.
        metadata_offset: Option<u64>,
    },
    /// A broker stopping cleanly (SIGTERM): fence it now rather than after its session
    /// timeout, so nothing waits on it (Kafka's controlled shutdown; moving its leaderships
    /// away joins this once partitions have followers).
    ControlledShutdown {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LifecycleReply {
    Registered {
        broker_epoch: i64,
    },
    Heartbeat {
        fenced: bool,
    },
    /// The broker is fenced: it may stop.
    ShutdownReady,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LifecycleError {
    #[error("not the active controller (the active one is {leader:?})")]
    NotController { leader: Option<NodeId> },
    #[error("broker {broker_id} epoch {broker_epoch} is not its current registration")]
    StaleBrokerEpoch {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Failed(String),
}

impl From<ProposeError> for LifecycleError {
    fn from(error: ProposeError) -> Self {
        match error {
            ProposeError::NotController { leader } => LifecycleError::NotController { leader },
            other => LifecycleError::Failed(other.to_string()),
        }
    }
}

/// The active controller's record of heartbeats.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    /// The Raft term these were recorded in: a new term (a new controller) starts them over.
    term: u64,
    last_heartbeat: HashMap<BrokerId, Instant>,
    granted_from: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
pub struct LifecycleTimes {
    pub heartbeat_interval: Duration,
    pub session_timeout: Duration,
}

impl Quorum {
    /// Starts this node's broker registration and heartbeats, and waits (at most `wait`) until
    /// the controller has unfenced it; false if it has not by then.
    pub async fn register_broker(
        self: &Arc<Self>,
        broker_id: BrokerId,
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
        times: LifecycleTimes,
        wait: Duration,
    ) -> bool {
        let mut applied = self.view.subscribe();
        let task = tokio::spawn(run_broker(self.clone(), broker_id, endpoints, rack, times));
        self.keep_task(task);
        let unfenced = tokio::time::timeout(
            wait,
            applied.wait_for(|_| {
                self.view
                    .image()
                    .broker(broker_id)
                    .is_some_and(|registration| !registration.fenced)
            }),
        )
        .await;
        matches!(unfenced, Ok(Ok(_)))
    }

    /// The active controller's answer to a broker's registration or heartbeat.
    pub async fn handle_lifecycle(
        &self,
        request: LifecycleRequest,
    ) -> Result<LifecycleReply, LifecycleError> {
        if !self.is_active_controller() {
            return Err(LifecycleError::NotController {
                leader: self.active_controller(),
            });
        }
        let image = self.view.image();
        match request {
            LifecycleRequest::Register {
                broker_id,
                incarnation_id,
                endpoints,
                rack,
                metadata_address,
            } => {
                // A dedicated broker follows the log as a learner at the address it gives.
                if let Some(address) = metadata_address {
                    self.ensure_learner(broker_id, address).await?;
                }
                let current = image.broker(broker_id);
                // The same incarnation again: its reply was lost, answer the same.
                if let Some(current) = current
                    && current.incarnation_id == incarnation_id
                {
                    return Ok(LifecycleReply::Registered {
                        broker_epoch: current.broker_epoch,
                    });
                }
                // KRaft's broker epoch is the registration's log offset; the next offset is
                // above every earlier registration's, which is what the epoch must be.
                let broker_epoch = image
                    .offset()
                    .map_or(1, |offset| offset as i64 + 1)
                    .max(current.map_or(0, |current| current.broker_epoch + 1));
                self.propose(vec![MetadataRecord::new(Change::RegisterBroker {
                    broker_id,
                    incarnation_id,
                    broker_epoch,
                    endpoints,
                    rack,
                })])
                .await?;
                self.record_heartbeat(broker_id);
                Ok(LifecycleReply::Registered { broker_epoch })
            }
            LifecycleRequest::Heartbeat {
                broker_id,
                broker_epoch,
                metadata_offset,
            } => {
                let stale = LifecycleError::StaleBrokerEpoch {
                    broker_id,
                    broker_epoch,
                };
                let Some(current) = image.broker(broker_id) else {
                    return Err(stale);
                };
                if current.broker_epoch != broker_epoch {
                    return Err(stale);
                }
                self.record_heartbeat(broker_id);
                // Caught up: it has applied at least its own registration.
                let caught_up = metadata_offset.is_some_and(|offset| offset as i64 >= broker_epoch);
                if current.fenced && caught_up {
                    self.propose(vec![MetadataRecord::new(Change::UnfenceBroker {
                        broker_id,
                        broker_epoch,
                    })])
                    .await?;
                    return Ok(LifecycleReply::Heartbeat { fenced: false });
                }
                Ok(LifecycleReply::Heartbeat {
                    fenced: current.fenced,
                })
            }
            LifecycleRequest::ControlledShutdown {
                broker_id,
                broker_epoch,
            } => {
                let Some(current) = image.broker(broker_id) else {
                    return Err(LifecycleError::StaleBrokerEpoch {
                        broker_id,
                        broker_epoch,
                    });
                };
                if current.broker_epoch == broker_epoch && !current.fenced {
                    self.propose(vec![MetadataRecord::new(Change::FenceBroker {
                        broker_id,
                        broker_epoch,
                    })])
                    .await?;
                }
                Ok(LifecycleReply::ShutdownReady)
            }
        }
    }

    /// Makes `broker_id` a Raft learner replicated to at `address` (a restarted dedicated
    /// broker may come back on another port: its address is updated).
    async fn ensure_learner(
        &self,
        broker_id: BrokerId,
        address: String,
    ) -> Result<(), LifecycleError> {
        let node_id = NodeId::try_from(broker_id)
            .map_err(|_| LifecycleError::Failed(format!("broker id {broker_id} is negative")))?;
        let metrics = self.metrics();
        if metrics
            .membership_config
            .voter_ids()
            .any(|id| id == node_id)
        {
            return Err(LifecycleError::Failed(format!(
                "broker {broker_id} registered as a dedicated broker, but node {node_id} is a voter"
            )));
        }
        let known = metrics
            .membership_config
            .nodes()
            .find(|(id, _)| **id == node_id)
            .map(|(_, node)| node.addr.clone());
        let node = BasicNode::new(address.clone());
        let changed = match known {
            Some(known) if known == address => return Ok(()),
            // SetNodes only replaces a learner's address here: learners do not vote, so this
            // cannot split the quorum.
            Some(_) => {
                self.raft
                    .change_membership(ChangeMembers::SetNodes([(node_id, node)].into()), true)
                    .await
            }
            None => self.raft.add_learner(node_id, node, false).await,
        };
        match changed {
            Ok(_) => {
                tracing::info!(broker_id, %address, "dedicated broker follows the metadata log as a learner");
                Ok(())
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(LifecycleError::NotController {
                    leader: forward.leader_id,
                })
            }
            Err(error) => Err(LifecycleError::Failed(format!(
                "adding broker {broker_id} as a learner: {error}"
            ))),
        }
    }

    /// On SIGTERM: asks the active controller to fence this broker, retrying through a
    /// controller change, for at most `timeout`; false if that did not happen in time (the
    /// session timeout fences it anyway).
    pub async fn controlled_shutdown(&self, timeout: Duration) -> bool {
        let Some((broker_id, broker_epoch)) = self
            .registration
            .lock()
            .ok()
            .and_then(|registration| *registration)
        else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            let request = LifecycleRequest::ControlledShutdown {
                broker_id,
                broker_epoch,
            };
            match self.send_lifecycle(request, left).await {
                Ok(_) => return true,
                Err(error) => {
                    tracing::debug!(%error, "controlled shutdown not acknowledged yet");
                    tokio::time::sleep(left.min(Duration::from_millis(100))).await;
                }
            }
        }
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // Heartbeat times only: a panic mid-update leaves nothing worse than one stale time.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current term's session table, started over (every broker granted a session from
    /// now) when this node has newly become controller.
    fn current_sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        let term = self.raft.metrics().borrow().current_term;
        let mut sessions = self.lock_sessions();
        if sessions.term != term || sessions.granted_from.is_none() {
            *sessions = Sessions {
                term,
                last_heartbeat: HashMap::new(),
                granted_from: Some(Instant::now()),
            };
        }
        sessions
    }

    /// On the active controller: time since each unfenced broker's last heartbeat (since the
    /// controller took over, for one not heard from yet). Empty elsewhere.
    pub fn heartbeat_ages(&self) -> Vec<(BrokerId, Duration)> {
        if !self.is_active_controller() {
            return Vec::new();
        }
        let image = self.view.image();
        let sessions = self.current_sessions();
        let granted_from = sessions.granted_from.unwrap_or_else(Instant::now);
        image
            .brokers()
            .filter(|broker| !broker.fenced)
            .map(|broker| {
                let last = sessions
                    .last_heartbeat
                    .get(&broker.broker_id)
                    .copied()
                    .unwrap_or(granted_from)
                    .max(granted_from);
                (broker.broker_id, last.elapsed())
            })
            .collect()
    }

    fn record_heartbeat(&self, broker_id: BrokerId) {
        self.current_sessions()
            .last_heartbeat
            .insert(broker_id, Instant::now());
    }

    /// On the active controller: fences every unfenced broker whose session expired.
    pub(super) async fn fence_expired(&self, session_timeout: Duration) {
        let image = self.view.image();
        let expired: Vec<(BrokerId, i64)> = self
            .heartbeat_ages()
            .into_iter()
            .filter(|(_, age)| *age > session_timeout)
            .filter_map(|(broker_id, _)| {
                image
                    .broker(broker_id)
                    .map(|broker| (broker_id, broker.broker_epoch))
            })
            .collect();
        for (broker_id, broker_epoch) in expired {
            tracing::warn!(
                broker_id,
                broker_epoch,
                ?session_timeout,
                "broker missed its session; fencing it"
            );
            if let Err(error) = self
                .propose(vec![MetadataRecord::new(Change::FenceBroker {
                    broker_id,
                    broker_epoch,
                })])
                .await
            {
                tracing::warn!(broker_id, %error, "fencing failed; retrying at the next check");
            }
        }
    }

    /// Sends a lifecycle request to the active controller: itself, or the voter Raft names.
    pub async fn send_lifecycle(
        &self,
        request: LifecycleRequest,
        timeout: Duration,
    ) -> Result<LifecycleReply, LifecycleError> {
        match self.controller_route() {
            Ok(None) => self.handle_lifecycle(request).await,
            Ok(Some(address)) => transport::send_lifecycle(&address, request, timeout).await,
            Err(leader) => {
                self.send_lifecycle_to_voters(request, leader, timeout)
                    .await
            }
        }
    }

    /// No leader known here (a learner before its first entry, or an election): asks the
    /// configured voters, the hinted leader first, following one NotController hint.
    async fn send_lifecycle_to_voters(
        &self,
        request: LifecycleRequest,
        hint: Option<NodeId>,
        timeout: Duration,
    ) -> Result<LifecycleReply, LifecycleError> {
        let mut order: Vec<NodeId> = hint.into_iter().collect();
        order.extend(
            self.bootstrap_voters
                .keys()
                .filter(|id| Some(**id) != hint && **id != self.node_id),
        );
        let mut last = LifecycleError::NotController { leader: hint };
        for voter in order {
            let Some(address) = self.bootstrap_voters.get(&voter) else {
                continue;
            };
            match transport::send_lifecycle(address, request.clone(), timeout).await {
                Err(LifecycleError::NotController {
                    leader: Some(leader),
                }) if leader != voter => {
                    if let Some(address) = self.bootstrap_voters.get(&leader) {
                        return transport::send_lifecycle(address, request, timeout).await;
                    }
                }
                Err(error) => last = error,
                answer => return answer,
            }
        }
        Err(last)
    }
}

/// A broker's registration and heartbeats, for as long as the quorum runs (its shutdown stops
/// this task).
async fn run_broker(
    quorum: Arc<Quorum>,
    broker_id: BrokerId,
    endpoints: Vec<Endpoint>,
    rack: Option<String>,
    times: LifecycleTimes,
) {
    let incarnation_id = Uuid::new_v4();
    let mut epoch: Option<i64> = None;
    let mut ticker = tokio::time::interval(times.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_complaint = Instant::now();
    loop {
        ticker.tick().await;
        let request = match epoch {
            None => LifecycleRequest::Register {
                broker_id,
                incarnation_id,
                endpoints: endpoints.clone(),
                rack: rack.clone(),
                metadata_address: quorum.learner_address(),
            },
            Some(broker_epoch) => LifecycleRequest::Heartbeat {
                broker_id,
                broker_epoch,
                metadata_offset: quorum.view().image().offset(),
            },
        };
        match quorum.send_lifecycle(request, times.session_timeout).await {
            Ok(LifecycleReply::Registered { broker_epoch }) => {
                tracing::info!(broker_id, broker_epoch, "registered with the controller");
                epoch = Some(broker_epoch);
                if let Ok(mut registration) = quorum.registration.lock() {
                    *registration = Some((broker_id, broker_epoch));
                }
                // Heartbeat at once: it unfences us as soon as we have caught up.
                ticker.reset_immediately();
            }
            Ok(LifecycleReply::Heartbeat { .. } | LifecycleReply::ShutdownReady) => {}
            Err(LifecycleError::StaleBrokerEpoch { .. }) => {
                // Our registration is gone or superseded: register again.
                tracing::warn!(
                    broker_id,
                    "controller does not know this registration; registering again"
                );
                epoch = None;
            }
            Err(error) => {
                // No controller yet, or a failover in progress: keep trying, complain rarely.
                if last_complaint.elapsed() > Duration::from_secs(5) {
                    tracing::warn!(broker_id, %error, "cannot reach the controller");
                    last_complaint = Instant::now();
                }
            }
        }
    }
}
