//! Requests a broker forwards to the active controller, the way KIP-590 has Kafka's brokers
//! forward admin requests: a client may send CreateTopics and the like to any broker, and the
//! one that is not the active controller passes the request on over the `CONTROLLER` listener
//! and hands the controller's answer back.
//!
//! Brokers also hand the controller records they checked (the plugin registry's operations,
//! whose components are compiled and tested on the broker that received them).
//!
//! The quorum carries the request and response frames as opaque bytes: decoding and answering
//! them is the protocol room's work, registered here with [`Quorum::set_forward_handler`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{NodeId, ProposeError, Quorum, transport};
use crate::controller::records::MetadataRecord;

/// Answers one forwarded request frame with its response frame (or says why it cannot).
pub type ForwardHandler = Arc<
    dyn Fn(Vec<u8>) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>> + Send + Sync,
>;

/// How long a forwarded request may take, end to end: a topic creation waits for its commit
/// and for the controller to host its partitions, so it gets the client's default
/// `request.timeout.ms` (30 s) rather than a heartbeat's budget.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// No active controller is known, or the node asked is no longer it.
    #[error("not the active controller (the active one is {leader:?})")]
    NotController { leader: Option<NodeId> },
    #[error("{0}")]
    Unreachable(String),
    /// The controller could not answer the request (it did not decode, or it is not one that
    /// may be forwarded).
    #[error("{0}")]
    Failed(String),
}

impl Quorum {
    /// Registers what answers requests other brokers forward here. The first registration
    /// counts; until then forwarded requests are refused as not-yet-served.
    pub fn set_forward_handler(&self, handler: ForwardHandler) {
        let _ = self.forward_handler.set(handler);
    }

    /// Sends `frame` (a Kafka request, header and body) to the active controller and returns
    /// its response frame. Refused with NotController when this node is the active
    /// controller: the caller answers such requests itself.
    pub async fn forward(&self, frame: Vec<u8>) -> Result<Vec<u8>, ForwardError> {
        let address = match self.controller_route() {
            Ok(Some(address)) => address,
            Ok(None) => {
                return Err(ForwardError::NotController {
                    leader: Some(self.node_id),
                });
            }
            Err(leader) => return Err(ForwardError::NotController { leader }),
        };
        transport::call_controller::<Result<Vec<u8>, ForwardError>>(
            &address,
            transport::Request::Forward(frame),
            FORWARD_TIMEOUT,
        )
        .await
        .unwrap_or_else(|unreachable| Err(ForwardError::Unreachable(unreachable)))
    }

    /// Appends `records` as one entry through the active controller, here or over the
    /// controller listener, and returns its offset once committed (applied here only when this
    /// node is the controller: callers wait for their own image).
    pub async fn propose_anywhere(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<u64, ProposeError> {
        let address = match self.controller_route() {
            Ok(None) => return self.propose(records).await,
            Ok(Some(address)) => address,
            Err(leader) => return Err(ProposeError::NotController { leader }),
        };
        transport::call_controller::<Result<u64, ProposeError>>(
            &address,
            transport::Request::Propose(records),
            FORWARD_TIMEOUT,
        )
        .await
        .unwrap_or_else(|unreachable| Err(ProposeError::Stopped(unreachable)))
    }

    /// The active controller's side of [`Quorum::propose_anywhere`]: a controller that lost
    /// its leadership meanwhile refuses with NotController.
    pub(super) async fn handle_forwarded_proposal(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<u64, ProposeError> {
        // Only what brokers legitimately check themselves: the controller alone decides
        // topics, placements, registrations and leaders.
        if !records
            .iter()
            .all(|record| record.change.is_plugin_registry())
        {
            return Err(ProposeError::Refused(
                "a broker may only hand the controller plugin registry records".into(),
            ));
        }
        self.propose(records).await
    }

    /// The active controller's side of [`Quorum::forward`].
    pub(super) async fn handle_forwarded(&self, frame: Vec<u8>) -> Result<Vec<u8>, ForwardError> {
        if !self.is_active_controller() {
            // Leadership moved while the request travelled: the sender answers NOT_CONTROLLER
            // and its client retries against the new controller.
            return Err(ForwardError::NotController {
                leader: self.active_controller(),
            });
        }
        let Some(handler) = self.forward_handler.get() else {
            return Err(ForwardError::Failed(format!(
                "controller {} is not serving requests yet",
                self.node_id
            )));
        };
        handler(frame).await.map_err(ForwardError::Failed)
    }
}
