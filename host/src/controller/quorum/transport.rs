//! Raft's RPCs between the voters, on the `CONTROLLER` listener: each frame is a big-endian
//! `u32` length and a JSON body; a connection carries one request and its response at a time.
//! A peer is reached at the address its membership entry holds (`controller.quorum.voters`).
//!
//! Failures map to what openraft expects: a peer that cannot be reached is `Unreachable` (it
//! backs off), one that breaks mid-call is a `Network` error (it retries), an answer that is a
//! Raft error is a `RemoteError`, and a call that outlives its deadline is a `Timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::lifecycle::{LifecycleError, LifecycleReply, LifecycleRequest};
use super::{MetadataRaft, NodeId, Quorum};

/// The largest frame either side accepts: a snapshot chunk (openraft's 3 MiB default) or a
/// batch of entries with room to spare. A longer length prefix is a broken or hostile peer.
const FRAME_MAX_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Request {
    AppendEntries(AppendEntriesRequest<MetadataRaft>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<MetadataRaft>),
    /// A broker's registration or heartbeat, for the active controller.
    Lifecycle(LifecycleRequest),
    /// A Kafka request frame a broker forwards to the active controller (admin requests that
    /// change metadata); small, so JSON's byte array costs nothing that matters.
    Forward(Vec<u8>),
    /// Records a broker checked against its image, for the active controller to append (the
    /// plugin registry's operations, which every node's image re-checks as it applies them).
    Propose(Vec<crate::controller::records::MetadataRecord>),
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let length = stream.read_u32().await? as usize;
    if length > FRAME_MAX_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("controller frame of {length} bytes exceeds {FRAME_MAX_BYTES}"),
        ));
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

async fn write_frame(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let length = u32::try_from(body.len())
        .ok()
        .filter(|length| *length as usize <= FRAME_MAX_BYTES)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("controller frame of {} bytes is too long", body.len()),
            )
        })?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(body);
    stream.write_all(&frame).await
}

/// Accepts peers' RPCs and hands them to the local Raft node (or, for brokers' lifecycle
/// requests, to the controller) until the task is aborted.
pub async fn serve(listener: TcpListener, quorum: Arc<Quorum>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors and the like: wait a little instead of spinning.
                tracing::warn!(%error, "controller listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, peer, quorum.clone()));
    }
}

async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, quorum: Arc<Quorum>) {
    let raft = quorum.raft.clone();
    loop {
        let body = match read_frame(&mut stream).await {
            Ok(body) => body,
            Err(error) => {
                if error.kind() != std::io::ErrorKind::UnexpectedEof {
                    tracing::debug!(%peer, %error, "controller connection closed");
                }
                return;
            }
        };
        let request: Request = match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(%peer, %error, "malformed controller request; closing");
                return;
            }
        };
        // Results are plain data: serialising cannot fail short of a bug.
        let response = match request {
            Request::AppendEntries(rpc) => serde_json::to_vec(&raft.append_entries(rpc).await),
            Request::Vote(rpc) => serde_json::to_vec(&raft.vote(rpc).await),
            Request::InstallSnapshot(rpc) => serde_json::to_vec(&raft.install_snapshot(rpc).await),
            Request::Lifecycle(request) => {
                serde_json::to_vec(&quorum.handle_lifecycle(request).await)
            }
            Request::Forward(frame) => serde_json::to_vec(&quorum.handle_forwarded(frame).await),
            Request::Propose(records) => {
                serde_json::to_vec(&quorum.handle_forwarded_proposal(records).await)
            }
        }
        .expect("a Raft response serialises");
        if let Err(error) = write_frame(&mut stream, &response).await {
            tracing::debug!(%peer, %error, "controller connection closed");
            return;
        }
    }
}

/// Makes one [`Peer`] per target; connections open on first use.
#[derive(Debug, Clone, Copy)]
pub struct Network {
    /// This node: the caller named in a timeout.
    pub node_id: NodeId,
}

impl RaftNetworkFactory<MetadataRaft> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            source: self.node_id,
            target,
            address: node.addr.clone(),
            connection: None,
        }
    }
}

/// The client side of one peer: one connection, reopened after any failure.
#[derive(Debug)]
pub struct Peer {
    source: NodeId,
    target: NodeId,
    address: String,
    connection: Option<TcpStream>,
}

/// How one call failed, before it is dressed as openraft's error.
enum CallError {
    Connect(std::io::Error),
    Broken(std::io::Error),
    TimedOut,
}

/// Sends one request on `connection` (opening it to `address` first if needed) and reads the
/// answer. Any failure drops the connection: it may hold half a frame.
async fn exchange<R: DeserializeOwned>(
    connection: &mut Option<TcpStream>,
    address: &str,
    request: &Request,
) -> Result<R, CallError> {
    if connection.is_none() {
        let stream = TcpStream::connect(address)
            .await
            .map_err(CallError::Connect)?;
        let _ = stream.set_nodelay(true);
        *connection = Some(stream);
    }
    let Some(stream) = connection.as_mut() else {
        unreachable!("connected just above");
    };
    // Plain data: serialising cannot fail short of a bug.
    let body = serde_json::to_vec(request).expect("a controller request serialises");
    let result = async {
        write_frame(stream, &body).await?;
        let answer = read_frame(stream).await?;
        serde_json::from_slice::<R>(&answer)
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))
    }
    .await;
    result.map_err(|error| {
        *connection = None;
        CallError::Broken(error)
    })
}

/// Sends a broker's request to the controller at `address` on a fresh connection (brokers
/// call rarely: a heartbeat interval apart, or an admin request) and reads its answer within
/// `timeout`; `Err` says why the controller could not be reached.
pub(super) async fn call_controller<R: DeserializeOwned>(
    address: &str,
    request: Request,
    timeout: Duration,
) -> Result<R, String> {
    let mut connection = None;
    match tokio::time::timeout(timeout, exchange::<R>(&mut connection, address, &request)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(CallError::Connect(error) | CallError::Broken(error))) => {
            Err(format!("controller at {address}: {error}"))
        }
        Ok(Err(CallError::TimedOut)) | Err(_) => Err(format!(
            "controller at {address}: no answer within {timeout:?}"
        )),
    }
}

/// Sends a broker's lifecycle request to the controller at `address`.
pub async fn send_lifecycle(
    address: &str,
    request: LifecycleRequest,
    timeout: Duration,
) -> Result<LifecycleReply, LifecycleError> {
    call_controller::<Result<LifecycleReply, LifecycleError>>(
        address,
        Request::Lifecycle(request),
        timeout,
    )
    .await
    .unwrap_or_else(|unreachable| Err(LifecycleError::Unreachable(unreachable)))
}

impl Peer {
    #[expect(
        clippy::result_large_err,
        reason = "openraft's RPC error, which every RaftNetwork method returns anyway"
    )]
    async fn call<T, E>(
        &mut self,
        action: RPCTypes,
        option: RPCOption,
        request: Request,
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let deadline = option.hard_ttl();
        let call = exchange::<Result<T, RaftError<NodeId, E>>>(
            &mut self.connection,
            &self.address,
            &request,
        );
        let outcome = tokio::time::timeout(deadline, call)
            .await
            .unwrap_or(Err(CallError::TimedOut));
        match outcome {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(CallError::Connect(error)) => Err(RPCError::Unreachable(Unreachable::new(&error))),
            Err(CallError::Broken(error)) => Err(RPCError::Network(NetworkError::new(&error))),
            Err(CallError::TimedOut) => {
                // A half-done exchange leaves the stream mid-frame.
                self.connection = None;
                Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.source,
                    target: self.target,
                    timeout: deadline,
                }))
            }
        }
    }
}

impl RaftNetwork<MetadataRaft> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MetadataRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RPCTypes::AppendEntries, option, Request::AppendEntries(rpc))
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<MetadataRaft>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(
            RPCTypes::InstallSnapshot,
            option,
            Request::InstallSnapshot(rpc),
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RPCTypes::Vote, option, Request::Vote(rpc)).await
    }
}
