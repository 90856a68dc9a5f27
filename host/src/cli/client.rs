//! A small async Kafka client for the CLI: one TCP connection per broker, ApiVersions on connect,
//! then typed requests (the `kafka-protocol` crate's message structs) framed as Kafka frames them:
//! a 4-byte length, a request header, the body; responses are matched by correlation id.
//!
//! Requests on one connection go one at a time (send, then read the answer), which is all a
//! console tool needs and keeps responses trivially in order.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a TCP connect may take (Kafka's `socket.connection.setup.timeout.ms`).
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// How long a broker may take to answer one request (Kafka's `request.timeout.ms`).
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// The largest response this client accepts: a fetch answers with at most `fetch.max.bytes`
/// (50 MiB) of records, so anything far beyond it is a broken frame, not data.
const RESPONSE_SIZE_MAX_BYTES: usize = 128 * 1024 * 1024;
/// Sent in every request header, so broker logs can tell the CLI apart.
const CLIENT_ID: &str = "weir-cli";

/// The versions this client implements for each API it uses. The version used on a connection is
/// the highest both sides know: min(broker max, crate max, this max).
const IMPLEMENTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    // v4 is the first with `allow_auto_topic_creation`, which the consumer must set to false.
    (ApiKey::Metadata, 4, 13),
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeQuorum, 0, 2),
    // The group requests are built with the fields of one version each (`weir groups`, and
    // `weir consume --group` as a standalone consumer); Kafka 4 still serves all of them.
    (ApiKey::FindCoordinator, 1, 1),
    (ApiKey::OffsetFetch, 3, 3),
    (ApiKey::OffsetCommit, 2, 2),
    (ApiKey::ListGroups, 1, 1),
    (ApiKey::DescribeGroups, 1, 1),
];

/// Why talking to a broker failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("connection to {address} failed: {reason}")]
    Io { address: String, reason: String },
    #[error("{address} did not answer {api:?} within {REQUEST_TIMEOUT_MS} ms")]
    Timeout { address: String, api: ApiKey },
    #[error("the broker at {address} does not support {api:?}{detail}")]
    Unsupported {
        address: String,
        api: ApiKey,
        detail: String,
    },
    #[error("bad {what} from {address}: {message}")]
    Protocol {
        address: String,
        what: String,
        message: String,
    },
    #[error("cannot encode the {api:?} request: {message}")]
    Encode { api: ApiKey, message: String },
    #[error("no broker address known for node {0} (the cluster metadata does not list it)")]
    UnknownNode(i32),
}

/// An I/O error as a short phrase: the kind's own wording ("connection refused") when it has one,
/// since the OS text adds only an errno.
fn describe_io_error(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::TimedOut
        | ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::AddrNotAvailable
        | ErrorKind::UnexpectedEof
        | ErrorKind::BrokenPipe => error.kind().to_string(),
        _ => error.to_string(),
    }
}

/// One connection to one broker, with the API versions it announced.
#[derive(Debug)]
pub struct Client {
    address: String,
    stream: TcpStream,
    next_correlation_id: i32,
    /// API key -> (min, max) version the broker serves.
    broker_versions: HashMap<i16, (i16, i16)>,
}

impl Client {
    /// Connects to `address` (`host:port`) and learns the broker's API versions.
    pub async fn connect(address: &str) -> Result<Client, ClientError> {
        let connect_error = |reason: String| ClientError::Connect {
            address: address.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(
            Duration::from_millis(CONNECT_TIMEOUT_MS),
            TcpStream::connect(address),
        )
        .await
        .map_err(|_| connect_error(format!("timed out after {CONNECT_TIMEOUT_MS} ms")))?
        .map_err(|error| connect_error(describe_io_error(&error)))?;
        // Requests are small and each waits for its answer: do not let Nagle delay them.
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            address: address.to_string(),
            stream,
            next_correlation_id: 0,
            broker_versions: HashMap::new(),
        };
        client.negotiate_versions().await?;
        Ok(client)
    }

    /// Connects to the first reachable broker of a `--bootstrap-server` list (`h1:p1,h2:p2`).
    pub async fn bootstrap(servers: &str) -> Result<Client, ClientError> {
        let mut first_error = None;
        for address in servers
            .split(',')
            .map(str::trim)
            .filter(|address| !address.is_empty())
        {
            match Client::connect(address).await {
                Ok(client) => return Ok(client),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| ClientError::Connect {
            address: servers.to_string(),
            reason: "no broker address given".to_string(),
        }))
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// A connection to the active controller, which alone takes metadata changes
    /// (CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs): the broker Metadata names
    /// as controller, found through the bootstrap list. The bootstrap connection itself when
    /// that is the controller, or when no controller is named (the broker then answers
    /// NOT_CONTROLLER and says why).
    pub async fn controller(servers: &str) -> Result<Client, ClientError> {
        let mut bootstrap = Client::bootstrap(servers).await?;
        let metadata = bootstrap.metadata(Some(&[]), false).await?;
        let controller = metadata
            .brokers
            .iter()
            .find(|broker| broker.node_id == metadata.controller_id)
            .map(|broker| format!("{}:{}", broker.host.as_str(), broker.port));
        match controller {
            Some(address) if address != bootstrap.address() => Client::connect(&address).await,
            _ => Ok(bootstrap),
        }
    }

    /// Whether both sides know some version of `api`.
    pub fn supports(&self, api: ApiKey) -> bool {
        self.version(api).is_ok()
    }

    /// The version to use for `api`: the highest this client, the codec crate and the broker all know.
    pub fn version(&self, api: ApiKey) -> Result<i16, ClientError> {
        self.version_up_to(api, i16::MAX)
    }

    /// Like [`Client::version`], but at most `cap` (when a field the caller needs changed shape).
    pub fn version_up_to(&self, api: ApiKey, cap: i16) -> Result<i16, ClientError> {
        let unsupported = |detail: String| ClientError::Unsupported {
            address: self.address.clone(),
            api,
            detail,
        };
        let (implemented_min, implemented_max) = IMPLEMENTED
            .iter()
            .find(|(key, _, _)| *key == api)
            .map(|(_, min, max)| (*min, *max))
            .ok_or_else(|| unsupported(" (this client does not implement it)".to_string()))?;
        let codec = api.valid_versions();
        let ours_min = implemented_min.max(codec.min);
        let ours_max = implemented_max.min(codec.max).min(cap);
        let (broker_min, broker_max) = self
            .broker_versions
            .get(&(api as i16))
            .copied()
            .ok_or_else(|| unsupported(String::new()))?;
        let version = ours_max.min(broker_max);
        if version < ours_min.max(broker_min) {
            return Err(unsupported(format!(
                " at a version this client speaks (broker: v{broker_min}-v{broker_max}, client: v{ours_min}-v{ours_max})"
            )));
        }
        Ok(version)
    }

    /// Sends `request` at `version` and returns the decoded response.
    pub async fn send<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, ClientError> {
        let api = api_key::<R>()?;
        let mut body = self.exchange(api, version, request).await?;
        self.decode_body::<R::Response>(api, version, &mut body)
    }

    /// Sends `request` at `version` without waiting for an answer (a produce with acks=0, which
    /// the broker does not answer at all).
    pub async fn send_without_response<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<(), ClientError> {
        let api = api_key::<R>()?;
        let (frame, _) = self.encode_request(api, version, request)?;
        self.write_frame(api, &frame).await
    }

    /// Metadata for `topics` (all topics when `None`) at the negotiated version.
    pub async fn metadata(
        &mut self,
        topics: Option<&[&str]>,
        allow_auto_topic_creation: bool,
    ) -> Result<MetadataResponse, ClientError> {
        use kafka_protocol::messages::TopicName;
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;

        let version = self.version(ApiKey::Metadata)?;
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|name| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(allow_auto_topic_creation);
        self.send(version, &request).await
    }

    /// ApiVersions at the highest version we know; a broker that does not know it answers
    /// (KIP-511) with UNSUPPORTED_VERSION in a v0 body listing its own range, and we retry once.
    async fn negotiate_versions(&mut self) -> Result<(), ClientError> {
        let codec = ApiKey::ApiVersions.valid_versions();
        let mut version = codec.max.min(3);
        for _ in 0..2 {
            let request = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            let body = self
                .exchange(ApiKey::ApiVersions, version, &request)
                .await?;
            // The error answer is always a v0 body, whatever version was asked.
            let response = match ApiVersionsResponse::decode(&mut body.clone(), version) {
                Ok(response) if response.error_code == 0 => response,
                _ => self.decode_body::<ApiVersionsResponse>(
                    ApiKey::ApiVersions,
                    0,
                    &mut body.clone(),
                )?,
            };
            if response.error_code == ResponseError::UnsupportedVersion.code() {
                let broker_max = response
                    .api_keys
                    .iter()
                    .find(|entry| entry.api_key == ApiKey::ApiVersions as i16)
                    .map(|entry| entry.max_version);
                match broker_max {
                    Some(broker_max) if broker_max < version && broker_max >= codec.min => {
                        version = broker_max;
                        continue;
                    }
                    _ => {
                        return Err(ClientError::Unsupported {
                            address: self.address.clone(),
                            api: ApiKey::ApiVersions,
                            detail: " at any version this client speaks".to_string(),
                        });
                    }
                }
            }
            if response.error_code != 0 {
                return Err(ClientError::Protocol {
                    address: self.address.clone(),
                    what: "ApiVersions response".to_string(),
                    message: format!(
                        "error {}",
                        super::error_name(response.error_code).to_lowercase()
                    ),
                });
            }
            self.broker_versions = response
                .api_keys
                .iter()
                .map(|entry| (entry.api_key, (entry.min_version, entry.max_version)))
                .collect();
            return Ok(());
        }
        Err(ClientError::Unsupported {
            address: self.address.clone(),
            api: ApiKey::ApiVersions,
            detail: " at any version this client speaks".to_string(),
        })
    }

    fn encode_request<R: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &R,
    ) -> Result<(BytesMut, i32), ClientError> {
        let encode_error = |error: anyhow::Error| ClientError::Encode {
            api,
            message: format!("{error:#}"),
        };
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let mut frame = BytesMut::with_capacity(256);
        frame.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)))
            .encode(&mut frame, api.request_header_version(version))
            .map_err(encode_error)?;
        request.encode(&mut frame, version).map_err(encode_error)?;
        let length = i32::try_from(frame.len() - 4).map_err(|_| ClientError::Encode {
            api,
            message: "request larger than 2 GiB".to_string(),
        })?;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        Ok((frame, correlation_id))
    }

    async fn write_frame(&mut self, api: ApiKey, frame: &[u8]) -> Result<(), ClientError> {
        let written = tokio::time::timeout(
            Duration::from_millis(REQUEST_TIMEOUT_MS),
            self.stream.write_all(frame),
        )
        .await
        .map_err(|_| ClientError::Timeout {
            address: self.address.clone(),
            api,
        })?;
        written.map_err(|error| self.io_error(&error))
    }

    /// Sends one request and returns the response body (after its header).
    async fn exchange<R: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &R,
    ) -> Result<Bytes, ClientError> {
        let (frame, correlation_id) = self.encode_request(api, version, request)?;
        self.write_frame(api, &frame).await?;
        let mut response = tokio::time::timeout(
            Duration::from_millis(REQUEST_TIMEOUT_MS),
            read_frame(&mut self.stream),
        )
        .await
        .map_err(|_| ClientError::Timeout {
            address: self.address.clone(),
            api,
        })?
        .map_err(|error| self.io_error(&error))?;
        let header = ResponseHeader::decode(&mut response, api.response_header_version(version))
            .map_err(|error| self.protocol_error(format!("{api:?} response header"), &error))?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Protocol {
                address: self.address.clone(),
                what: format!("{api:?} response"),
                message: format!(
                    "correlation id {} answers request {correlation_id}",
                    header.correlation_id
                ),
            });
        }
        Ok(response)
    }

    fn decode_body<T: Decodable>(
        &self,
        api: ApiKey,
        version: i16,
        body: &mut Bytes,
    ) -> Result<T, ClientError> {
        T::decode(body, version)
            .map_err(|error| self.protocol_error(format!("{api:?} v{version} response"), &error))
    }

    fn io_error(&self, error: &std::io::Error) -> ClientError {
        ClientError::Io {
            address: self.address.clone(),
            reason: if error.kind() == std::io::ErrorKind::UnexpectedEof {
                "the broker closed the connection".to_string()
            } else {
                describe_io_error(error)
            },
        }
    }

    fn protocol_error(&self, what: String, error: &anyhow::Error) -> ClientError {
        ClientError::Protocol {
            address: self.address.clone(),
            what,
            message: format!("{error:#}"),
        }
    }
}

fn api_key<R: Request>() -> Result<ApiKey, ClientError> {
    ApiKey::try_from(R::KEY).map_err(|_| ClientError::Encode {
        api: ApiKey::ApiVersions,
        message: format!("the codec crate does not know API key {}", R::KEY),
    })
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Bytes> {
    let size = stream.read_i32().await?;
    let size = usize::try_from(size)
        .ok()
        .filter(|size| *size <= RESPONSE_SIZE_MAX_BYTES)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("response frame of {size} bytes"),
            )
        })?;
    let mut frame = BytesMut::zeroed(size);
    stream.read_exact(&mut frame).await?;
    Ok(frame.freeze())
}

/// Connections to the brokers of one cluster: the bootstrap connection (for metadata and admin
/// requests) and one connection per partition leader, opened on first use from the addresses the
/// last Metadata response listed.
#[derive(Debug)]
pub struct Cluster {
    bootstrap: Client,
    addresses: HashMap<i32, String>,
    nodes: HashMap<i32, Client>,
}

impl Cluster {
    pub fn new(bootstrap: Client) -> Cluster {
        Cluster {
            bootstrap,
            addresses: HashMap::new(),
            nodes: HashMap::new(),
        }
    }

    pub fn bootstrap(&mut self) -> &mut Client {
        &mut self.bootstrap
    }

    /// Metadata from the bootstrap broker; remembers the broker addresses it lists.
    pub async fn metadata(
        &mut self,
        topics: Option<&[&str]>,
        allow_auto_topic_creation: bool,
    ) -> Result<MetadataResponse, ClientError> {
        let metadata = self
            .bootstrap
            .metadata(topics, allow_auto_topic_creation)
            .await?;
        self.addresses = metadata
            .brokers
            .iter()
            .map(|broker| {
                (
                    broker.node_id.0,
                    format!("{}:{}", broker.host.as_str(), broker.port),
                )
            })
            .collect();
        Ok(metadata)
    }

    /// The connection to broker `node_id`, opening it if needed. A node advertised at the
    /// bootstrap address shares the bootstrap connection.
    pub async fn node(&mut self, node_id: i32) -> Result<&mut Client, ClientError> {
        let address = self
            .addresses
            .get(&node_id)
            .cloned()
            .ok_or(ClientError::UnknownNode(node_id))?;
        if address == self.bootstrap.address() {
            return Ok(&mut self.bootstrap);
        }
        match self.nodes.entry(node_id) {
            std::collections::hash_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
            std::collections::hash_map::Entry::Vacant(entry) => {
                Ok(entry.insert(Client::connect(&address).await?))
            }
        }
    }
}

/// ListOffsets' timestamp for the log end offset (the next offset a consumer would read).
pub const LATEST_TIMESTAMP: i64 = -1;
/// ListOffsets' timestamp for the log start offset.
pub const EARLIEST_TIMESTAMP: i64 = -2;

/// A consumer's ListOffsets request (replica id -1: not a follower) asking `timestamp` of each
/// topic's partitions.
pub fn list_offsets_request<'a>(
    topics: impl IntoIterator<Item = (&'a str, &'a [i32])>,
    timestamp: i64,
) -> kafka_protocol::messages::ListOffsetsRequest {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    kafka_protocol::messages::ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    ListOffsetsTopic::default()
                        .with_name(kafka_protocol::messages::TopicName(StrBytes::from_string(
                            topic.to_string(),
                        )))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|partition| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(*partition)
                                        .with_timestamp(timestamp)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::RequestKind;

    #[test]
    fn io_errors_read_as_short_phrases() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(describe_io_error(&refused), "connection refused");
    }

    #[tokio::test]
    async fn frames_carry_length_header_and_body_the_broker_decodes() {
        // A listener that only accepts, so `Client` has a real stream to own.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let stream = TcpStream::connect(&address).await.expect("connect");
        let mut client = Client {
            address,
            stream,
            next_correlation_id: 7,
            broker_versions: HashMap::new(),
        };
        let request = MetadataRequest::default().with_topics(None);
        let (frame, correlation_id) = client
            .encode_request(ApiKey::Metadata, 12, &request)
            .expect("encode");
        assert_eq!(correlation_id, 7);
        let length = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(length as usize, frame.len() - 4);
        // The broker's own decoder reads it back: same header, same body.
        let decoded = crate::protocol::decode_request(Bytes::copy_from_slice(&frame[4..]))
            .expect("frame")
            .expect("a request");
        assert_eq!(decoded.header.correlation_id, 7);
        assert_eq!(decoded.header.client_id.as_deref(), Some(CLIENT_ID));
        assert!(matches!(decoded.body, RequestKind::Metadata(ref body) if body.topics.is_none()));
    }

    #[test]
    fn versions_are_the_highest_both_sides_know() {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let address = std_listener.local_addr().expect("address").to_string();
        let stream = runtime
            .block_on(TcpStream::connect(&address))
            .expect("connect");
        let client = Client {
            address,
            stream,
            next_correlation_id: 0,
            broker_versions: HashMap::from([
                (ApiKey::Fetch as i16, (4, 12)),
                (ApiKey::Metadata as i16, (0, 3)),
            ]),
        };
        assert_eq!(client.version(ApiKey::Fetch).expect("fetch"), 12);
        assert_eq!(client.version_up_to(ApiKey::Fetch, 10).expect("fetch"), 10);
        // The broker's Metadata stops below the v4 this client needs.
        assert!(client.version(ApiKey::Metadata).is_err());
        // Not announced by the broker at all.
        let error = client
            .version(ApiKey::CreatePartitions)
            .expect_err("not served");
        assert!(
            error
                .to_string()
                .contains("does not support CreatePartitions"),
            "{error}"
        );
    }
}
