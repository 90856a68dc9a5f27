//! The Kafka wire protocol byte by byte against a real broker process: requests are written out
//! by hand (no client library decides what goes on the wire), responses are parsed by hand, and
//! bad frames must close their own connection and nothing else.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use uuid::Uuid;
use weir::storage::Compression;
use weir::storage::records::{ProducerRecord, encode_producer_batch};
use weir_tests::broker::BrokerProcess;

/// Bound on every read: a response or a close must come well within it.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

const API_VERSIONS: i16 = 18;
const PRODUCE: i16 = 0;
const FETCH: i16 = 1;
const METADATA: i16 = 3;
const UNSUPPORTED_VERSION: i16 = 35;

fn connect(broker: &BrokerProcess) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(broker.bootstrap())?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    Ok(stream)
}

/// ApiVersions v0, byte by byte: request header v1 (api key, version, correlation id, client id
/// as an INT16-length string) and an empty body.
fn api_versions_v0(correlation_id: i32) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&[0, 0, 0, 0]); // length, patched below
    frame.extend_from_slice(&[0x00, 0x12]); // api key 18 = ApiVersions
    frame.extend_from_slice(&[0x00, 0x00]); // api version 0
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&[0x00, 0x04]); // client id length 4
    frame.extend_from_slice(b"wire");
    patch_length(frame)
}

/// ApiVersions v3, byte by byte: request header v2 (client id still INT16-length, then an empty
/// tagged-field section) and a flexible body (two COMPACT_STRINGs, length + 1 as an unsigned
/// varint, then an empty tagged-field section).
fn api_versions_v3(correlation_id: i32) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&[0, 0, 0, 0]); // length, patched below
    frame.extend_from_slice(&[0x00, 0x12]); // api key 18 = ApiVersions
    frame.extend_from_slice(&[0x00, 0x03]); // api version 3
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&[0x00, 0x04]); // client id length 4
    frame.extend_from_slice(b"wire");
    frame.push(0x00); // header tagged fields: none
    frame.push(0x0b); // client_software_name: 10 bytes, encoded as 10 + 1
    frame.extend_from_slice(b"weir-tests");
    frame.push(0x06); // client_software_version: 5 bytes, encoded as 5 + 1
    frame.extend_from_slice(b"1.0.0");
    frame.push(0x00); // body tagged fields: none
    patch_length(frame)
}

/// The same header at a version no broker knows; the body is irrelevant to the fallback.
fn api_versions_at(version: i16, correlation_id: i32) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(&API_VERSIONS.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&[0x00, 0x04]);
    frame.extend_from_slice(b"wire");
    frame.push(0x00);
    patch_length(frame)
}

fn patch_length(mut frame: Vec<u8>) -> Vec<u8> {
    let length = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    frame
}

/// Reads one response frame (without its length prefix).
fn read_frame(stream: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    if let Err(error) = stream.read_exact(&mut length) {
        match error.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                bail!("no response within {READ_TIMEOUT:?}")
            }
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset => {
                bail!("the broker closed the connection instead of answering")
            }
            _ => return Err(error).context("reading a response length"),
        }
    }
    let length = i32::from_be_bytes(length);
    ensure!(
        (0..=64 * 1024 * 1024).contains(&length),
        "response length {length}"
    );
    let mut frame = vec![0u8; length as usize];
    stream
        .read_exact(&mut frame)
        .context("reading a response body")?;
    Ok(frame)
}

/// Passes when the broker closes the connection (EOF, or a reset) within [`READ_TIMEOUT`];
/// fails when it answers or stays silent.
fn expect_closed(stream: &mut TcpStream, what: &str) -> anyhow::Result<()> {
    let mut buffer = [0u8; 256];
    match stream.read(&mut buffer) {
        Ok(0) => Ok(()),
        Ok(n) => bail!("after {what} the broker sent {n} bytes instead of closing"),
        Err(error) if error.kind() == ErrorKind::ConnectionReset => Ok(()),
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            bail!("after {what} the connection was still open {READ_TIMEOUT:?} later")
        }
        Err(error) => bail!("after {what}: read failed with {error}"),
    }
}

/// A cursor over a response body for hand parsing.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        let end = self.at + n;
        ensure!(
            end <= self.bytes.len(),
            "response ends at byte {} but {n} more bytes were expected at {}",
            self.bytes.len(),
            self.at
        );
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn i16(&mut self) -> anyhow::Result<i16> {
        let bytes = self.take(2)?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn i32(&mut self) -> anyhow::Result<i32> {
        let bytes = self.take(4)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn uvarint(&mut self) -> anyhow::Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("unsigned varint longer than 10 bytes")
    }

    /// Skips a tagged-field section: a count, then (tag, size, bytes) each.
    fn tagged_fields(&mut self) -> anyhow::Result<()> {
        for _ in 0..self.uvarint()? {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }

    fn finished(&self) -> anyhow::Result<()> {
        ensure!(
            self.at == self.bytes.len(),
            "{} bytes left over after parsing the response",
            self.bytes.len() - self.at
        );
        Ok(())
    }
}

/// (api key, min version, max version)
type ApiRange = (i16, i16, i16);

/// Parses an ApiVersions response of `version` (its header is always v0: just the correlation
/// id, per KIP-511) and returns (correlation id, error code, ranges).
fn parse_api_versions(frame: &[u8], version: i16) -> anyhow::Result<(i32, i16, Vec<ApiRange>)> {
    let mut reader = Reader::new(frame);
    let correlation_id = reader.i32()?;
    let error_code = reader.i16()?;
    let flexible = version >= 3;
    let count = if flexible {
        let encoded = reader.uvarint()?;
        ensure!(encoded > 0, "null api_keys array");
        (encoded - 1) as usize
    } else {
        let count = reader.i32()?;
        ensure!(count >= 0, "null api_keys array");
        count as usize
    };
    let mut ranges = Vec::with_capacity(count);
    for _ in 0..count {
        let range = (reader.i16()?, reader.i16()?, reader.i16()?);
        if flexible {
            reader.tagged_fields()?;
        }
        ranges.push(range);
    }
    if version >= 1 {
        let _throttle_time_ms = reader.i32()?;
    }
    if flexible {
        reader.tagged_fields()?;
    }
    reader.finished()?;
    Ok((correlation_id, error_code, ranges))
}

/// Checks the ranges name the core APIs with sane bounds.
fn check_ranges(ranges: &[ApiRange]) -> anyhow::Result<()> {
    for key in [PRODUCE, FETCH, METADATA, API_VERSIONS] {
        let Some((_, min, max)) = ranges.iter().find(|(api, _, _)| *api == key) else {
            bail!("api key {key} is not listed: {ranges:?}");
        };
        ensure!(
            0 <= *min && min <= max,
            "api key {key} has the range {min}..={max}"
        );
    }
    let (_, min, max) = ranges
        .iter()
        .find(|(api, _, _)| *api == API_VERSIONS)
        .copied()
        .context("ApiVersions itself is not listed")?;
    ensure!(
        min == 0 && max >= 3,
        "ApiVersions range {min}..={max}: v0 and v3 must both be served"
    );
    Ok(())
}

fn with_broker(
    config: &[&str],
    test: impl FnOnce(&BrokerProcess) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let broker = BrokerProcess::start(config)?;
    test(&broker).map_err(|error| error.context(format!("broker log:\n{}", broker.log())))
}

#[test]
fn api_versions_v0_and_v3_by_hand() -> anyhow::Result<()> {
    with_broker(&[], |broker| {
        let mut stream = connect(broker)?;

        stream.write_all(&api_versions_v0(7))?;
        let frame = read_frame(&mut stream)?;
        let (correlation_id, error_code, v0_ranges) = parse_api_versions(&frame, 0)?;
        ensure!(correlation_id == 7, "v0 correlation id {correlation_id}");
        ensure!(error_code == 0, "v0 error code {error_code}");
        check_ranges(&v0_ranges)?;

        stream.write_all(&api_versions_v3(8))?;
        let frame = read_frame(&mut stream)?;
        let (correlation_id, error_code, v3_ranges) = parse_api_versions(&frame, 3)?;
        ensure!(correlation_id == 8, "v3 correlation id {correlation_id}");
        ensure!(error_code == 0, "v3 error code {error_code}");
        check_ranges(&v3_ranges)?;
        ensure!(
            v0_ranges == v3_ranges,
            "v0 and v3 list different ranges:\n{v0_ranges:?}\n{v3_ranges:?}"
        );

        // Cross-check the hand parse with the codec crate's decoder (body after the 4-byte
        // correlation id).
        let decoded = ApiVersionsResponse::decode(&mut Bytes::copy_from_slice(&frame[4..]), 3)?;
        let decoded_ranges: Vec<ApiRange> = decoded
            .api_keys
            .iter()
            .map(|api| (api.api_key, api.min_version, api.max_version))
            .collect();
        ensure!(
            decoded_ranges == v3_ranges,
            "kafka-protocol decodes {decoded_ranges:?}"
        );
        Ok(())
    })
}

/// Requests written in one go are answered in order, each with its own correlation id.
#[test]
fn pipelined_requests_are_answered_in_order() -> anyhow::Result<()> {
    with_broker(&[], |broker| {
        let mut stream = connect(broker)?;
        let mut batch = Vec::new();
        for correlation_id in 100..110 {
            let frame = if correlation_id % 2 == 0 {
                api_versions_v0(correlation_id)
            } else {
                api_versions_v3(correlation_id)
            };
            batch.extend_from_slice(&frame);
        }
        stream.write_all(&batch)?;
        for correlation_id in 100..110 {
            let version = if correlation_id % 2 == 0 { 0 } else { 3 };
            let frame = read_frame(&mut stream)?;
            let (got, error_code, _) = parse_api_versions(&frame, version)?;
            ensure!(
                got == correlation_id && error_code == 0,
                "expected correlation id {correlation_id}, got {got} (error {error_code})"
            );
        }
        Ok(())
    })
}

/// KIP-511: an ApiVersions version the broker does not know gets a v0-shaped answer with
/// UNSUPPORTED_VERSION and the ranges, and the connection stays usable.
#[test]
fn api_versions_at_an_unknown_version_falls_back_to_v0() -> anyhow::Result<()> {
    with_broker(&[], |broker| {
        let mut stream = connect(broker)?;
        stream.write_all(&api_versions_at(127, 41))?;
        let frame = read_frame(&mut stream)?;
        let (correlation_id, error_code, ranges) = parse_api_versions(&frame, 0)?;
        ensure!(correlation_id == 41, "correlation id {correlation_id}");
        ensure!(
            error_code == UNSUPPORTED_VERSION,
            "error code {error_code}, expected UNSUPPORTED_VERSION (35)"
        );
        check_ranges(&ranges)?;

        stream.write_all(&api_versions_v3(42))?;
        let (correlation_id, error_code, _) = parse_api_versions(&read_frame(&mut stream)?, 3)?;
        ensure!(
            correlation_id == 42 && error_code == 0,
            "after the fallback: correlation id {correlation_id}, error {error_code}"
        );
        Ok(())
    })
}

/// Sends `bad` on a fresh connection and checks the broker closes that connection, while a
/// connection opened before (and used once) still gets answers afterwards.
fn check_closes_only_its_connection(config: &[&str], what: &str, bad: &[u8]) -> anyhow::Result<()> {
    with_broker(config, |broker| {
        let mut bystander = connect(broker)?;
        bystander.write_all(&api_versions_v0(1))?;
        read_frame(&mut bystander)?;

        let mut offender = connect(broker)?;
        offender.write_all(bad)?;
        expect_closed(&mut offender, what)?;

        bystander.write_all(&api_versions_v3(2))?;
        let (correlation_id, error_code, _) =
            parse_api_versions(&read_frame(&mut bystander)?, 3)
                .with_context(|| format!("the bystander after {what}"))?;
        ensure!(
            correlation_id == 2 && error_code == 0,
            "after {what} the bystander got correlation id {correlation_id}, error {error_code}"
        );
        Ok(())
    })
}

/// A request header with `api_key`, `version`, correlation id 5 and a null client id, followed
/// by `body`, as a whole frame.
fn frame_with(api_key: i16, version: i16, flexible_header: bool, body: &[u8]) -> Vec<u8> {
    let mut frame = vec![0, 0, 0, 0];
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&5i32.to_be_bytes());
    frame.extend_from_slice(&[0xff, 0xff]); // null client id
    if flexible_header {
        frame.push(0x00); // header tagged fields: none
    }
    frame.extend_from_slice(body);
    patch_length(frame)
}

#[test]
fn an_unknown_api_key_closes_only_its_connection() -> anyhow::Result<()> {
    check_closes_only_its_connection(
        &[],
        "an unknown api key (9999)",
        &frame_with(9999, 0, false, &[]),
    )
}

/// A known API (Metadata v12, flexible) whose body is garbage: the topics array claims 2^28
/// entries in six bytes, which must fail to decode rather than be believed (or allocated).
#[test]
fn a_garbage_body_closes_only_its_connection() -> anyhow::Result<()> {
    check_closes_only_its_connection(
        &[],
        "a garbage Metadata v12 body",
        &frame_with(METADATA, 12, true, &[0xff, 0xff, 0xff, 0x7f, 0x13, 0x37]),
    )
}

/// The codec pre-allocates arrays by their declared length: Metadata v0 declaring 2^31 - 1
/// topics in four bytes asks for well over 100 GiB. The broker must close the connection and live
/// (see `weir::alloc`), not abort.
#[test]
fn a_huge_declared_array_does_not_abort_the_broker() -> anyhow::Result<()> {
    check_closes_only_its_connection(
        &[],
        "a Metadata v0 request declaring i32::MAX topics",
        &frame_with(METADATA, 0, false, &i32::MAX.to_be_bytes()),
    )
}

#[test]
fn a_frame_too_short_for_a_header_closes_only_its_connection() -> anyhow::Result<()> {
    check_closes_only_its_connection(&[], "a 3-byte frame", &[0, 0, 0, 3, 0, 18, 0])
}

#[test]
fn a_negative_frame_length_closes_only_its_connection() -> anyhow::Result<()> {
    check_closes_only_its_connection(&[], "a negative frame length", &(-5i32).to_be_bytes())
}

/// Produce v0 (below what the broker serves) is refused, not misparsed as a newer version.
#[test]
fn an_unsupported_version_closes_only_its_connection() -> anyhow::Result<()> {
    // acks 1, timeout 1000 ms, no topics.
    let body = [0x00, 0x01, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00];
    check_closes_only_its_connection(&[], "Produce v0", &frame_with(PRODUCE, 0, false, &body))
}

/// A length prefix over socket.request.max.bytes closes the connection before the body is read;
/// requests under the limit are served as usual.
#[test]
fn a_frame_over_socket_request_max_bytes_closes_only_its_connection() -> anyhow::Result<()> {
    check_closes_only_its_connection(
        &["socket.request.max.bytes=1024"],
        "a 5000-byte length prefix with a 1024-byte limit",
        &5000i32.to_be_bytes(),
    )
}

// ---------------------------------------------------------------------------------------------
// Every advertised version of every API answers.
//
// A response that cannot be encoded at an older version (a field set that the version lacks)
// only shows with a client speaking that version, so this sweep sends a small valid request at
// every version the broker advertises and checks a well-formed answer comes back without an
// error code. Requests here are built with kafka-protocol's encoders (the hand-written bytes
// above cover framing); responses are decoded by it and must be consumed exactly.

/// Sends `body` as `api` v`version` on a fresh connection and decodes the answer.
fn call(
    broker: &BrokerProcess,
    api: ApiKey,
    version: i16,
    body: &RequestKind,
) -> anyhow::Result<ResponseKind> {
    let correlation_id = 1000 + i32::from(version);
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("weir-sweep")))
        .encode(&mut frame, api.request_header_version(version))?;
    body.encode(&mut frame, version)
        .context("the test could not encode its own request")?;
    let frame = patch_length(frame.to_vec());
    let mut stream = connect(broker)?;
    stream.write_all(&frame)?;
    let mut response = Bytes::from(read_frame(&mut stream)?);
    let header = ResponseHeader::decode(&mut response, api.response_header_version(version))?;
    ensure!(
        header.correlation_id == correlation_id,
        "correlation id {}, sent {correlation_id}",
        header.correlation_id
    );
    let decoded = ResponseKind::decode(api, &mut response, version)?;
    ensure!(
        response.is_empty(),
        "{} bytes left after decoding the response",
        response.len()
    );
    Ok(decoded)
}

fn name(text: &str) -> TopicName {
    TopicName(StrBytes::from_string(text.to_string()))
}

fn text(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Topic ids and such that requests at newer versions need, learned during setup.
struct SweepContext {
    sweep_id: Uuid,
    produce_id: Uuid,
    /// Records in "sweep" (the read-only topic).
    sweep_records: i64,
}

const TOPIC_RESOURCE: i8 = 2;

/// The request to send at `version`, and what its response must show; `None` for an API this
/// sweep has no case for.
fn sweep_request(
    api: ApiKey,
    version: i16,
    context: &SweepContext,
    batch: &Bytes,
) -> Option<RequestKind> {
    use kafka_protocol::messages::*;
    Some(match api {
        ApiKey::ApiVersions => RequestKind::ApiVersions(if version >= 3 {
            ApiVersionsRequest::default()
                .with_client_software_name(text("weir-tests"))
                .with_client_software_version(text("1.0"))
        } else {
            ApiVersionsRequest::default()
        }),
        ApiKey::Metadata => {
            let topic =
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("sweep")));
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![topic])))
        }
        ApiKey::ListOffsets => RequestKind::ListOffsets(
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    list_offsets_request::ListOffsetsTopic::default()
                        .with_name(name("sweep"))
                        .with_partitions(vec![
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(-1),
                        ]),
                ]),
        ),
        ApiKey::Fetch => {
            let partition = fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20);
            let topic = if version >= 13 {
                fetch_request::FetchTopic::default().with_topic_id(context.sweep_id)
            } else {
                fetch_request::FetchTopic::default().with_topic(name("sweep"))
            };
            RequestKind::Fetch(
                FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_min_bytes(1)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![topic.with_partitions(vec![partition])]),
            )
        }
        ApiKey::Produce => {
            let topic = if version >= 13 {
                produce_request::TopicProduceData::default().with_topic_id(context.produce_id)
            } else {
                produce_request::TopicProduceData::default().with_name(name("sweep-produce"))
            };
            RequestKind::Produce(
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(5000)
                    .with_topic_data(vec![topic.with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch.clone())),
                    ])]),
            )
        }
        ApiKey::CreateTopics => RequestKind::CreateTopics(
            CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    create_topics_request::CreatableTopic::default()
                        .with_name(name(&format!("sweep-created-v{version}")))
                        .with_num_partitions(1)
                        .with_replication_factor(1),
                ]),
        ),
        ApiKey::DeleteTopics => {
            let target = name(&format!("sweep-delete-v{version}"));
            let request = DeleteTopicsRequest::default().with_timeout_ms(5000);
            RequestKind::DeleteTopics(if version >= 6 {
                request.with_topics(vec![
                    delete_topics_request::DeleteTopicState::default().with_name(Some(target)),
                ])
            } else {
                request.with_topic_names(vec![target])
            })
        }
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            // An idempotent producer's request: no transactional id (the default is "").
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        ),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default().with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(name("sweep"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_leader_epoch(0),
                    ]),
            ]),
        ),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(TOPIC_RESOURCE)
                    .with_resource_name(text("sweep"))
                    .with_configuration_keys(None),
            ]))
        }
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(TOPIC_RESOURCE)
                    .with_resource_name(text("sweep-configs"))
                    .with_configs(vec![
                        alter_configs_request::AlterableConfig::default()
                            .with_name(text("retention.ms"))
                            .with_value(Some(text("3600000"))),
                    ]),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(TOPIC_RESOURCE)
                    .with_resource_name(text("sweep-configs"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(text("retention.ms"))
                            .with_config_operation(0) // SET
                            .with_value(Some(text("7200000"))),
                    ]),
            ]),
        ),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(
            CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                // Validate only, so every version asks for the same growth from 1 to 2.
                .with_validate_only(true)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(name("sweep"))
                        .with_count(2)
                        .with_assignments(None),
                ]),
        ),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(
            DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    delete_records_request::DeleteRecordsTopic::default()
                        .with_name(name("sweep"))
                        .with_partitions(vec![
                            // Up to offset 0: deletes nothing, so the other sweeps see all records.
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_partition_index(0)
                                .with_offset(0),
                        ]),
                ]),
        ),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(if version >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![text(SWEEP_GROUP)])
        } else {
            FindCoordinatorRequest::default().with_key(text(SWEEP_GROUP))
        }),
        // A standalone consumer's commit (generation -1, no member), each version its own group.
        ApiKey::OffsetCommit => {
            RequestKind::OffsetCommit(standalone_commit(&format!("sweep-commit-v{version}")))
        }
        ApiKey::OffsetFetch => {
            let topics = Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(name("sweep"))
                    .with_partition_indexes(vec![0]),
            ]);
            RequestKind::OffsetFetch(if version >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(text(SWEEP_GROUP)))
                        .with_topics(topics.map(|topics| {
                            topics
                                .into_iter()
                                .map(|topic| {
                                    offset_fetch_request::OffsetFetchRequestTopics::default()
                                        .with_name(topic.name)
                                        .with_partition_indexes(topic.partition_indexes)
                                })
                                .collect()
                        })),
                ])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(text(SWEEP_GROUP)))
                    .with_topics(topics)
            })
        }
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(text(SWEEP_GROUP))]),
        ),
        ApiKey::DeleteGroups => {
            RequestKind::DeleteGroups(DeleteGroupsRequest::default().with_groups_names(vec![
                GroupId(text(&format!("sweep-delete-group-v{version}"))),
            ]))
        }
        // JoinGroup, SyncGroup, Heartbeat and LeaveGroup need a member in a live rebalance, which
        // one request cannot set up: the group tests drive them with four real clients, and a
        // unit sweep decodes and encodes every version.
        ApiKey::JoinGroup | ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup => {
            return None;
        }
        _ => return None,
    })
}

/// The group whose committed offset the group sweeps read.
const SWEEP_GROUP: &str = "sweep-group";
/// The offset the setup commits for [`SWEEP_GROUP`] on sweep-0.
const SWEEP_COMMITTED_OFFSET: i64 = 2;

/// OffsetCommit of offset [`SWEEP_COMMITTED_OFFSET`] on sweep-0 by a standalone consumer.
fn standalone_commit(group: &str) -> kafka_protocol::messages::OffsetCommitRequest {
    use kafka_protocol::messages::*;
    OffsetCommitRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("sweep"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(SWEEP_COMMITTED_OFFSET),
                ]),
        ])
}

/// Every error code in a response, and the facts the sweep checks beyond them.
fn check_sweep_response(response: &ResponseKind, context: &SweepContext) -> anyhow::Result<()> {
    let codes: Vec<i16> = match response {
        ResponseKind::ApiVersions(r) => vec![r.error_code],
        ResponseKind::Metadata(r) => {
            let topic = r
                .topics
                .first()
                .context("no topic in the Metadata response")?;
            ensure!(
                topic.partitions.len() == 1,
                "{} partitions",
                topic.partitions.len()
            );
            std::iter::once(topic.error_code)
                .chain(topic.partitions.iter().map(|p| p.error_code))
                .collect()
        }
        ResponseKind::ListOffsets(r) => {
            let partition = r
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .context("no partition in the ListOffsets response")?;
            ensure!(
                partition.error_code != 0 || partition.offset == context.sweep_records,
                "latest offset {}, expected {}",
                partition.offset,
                context.sweep_records
            );
            vec![partition.error_code]
        }
        ResponseKind::Fetch(r) => {
            let partition = r
                .responses
                .first()
                .and_then(|t| t.partitions.first())
                .context("no partition in the Fetch response")?;
            ensure!(
                partition.error_code != 0
                    || (partition.high_watermark == context.sweep_records
                        && partition.records.as_ref().is_some_and(|r| !r.is_empty())),
                "high watermark {} and {:?} bytes of records",
                partition.high_watermark,
                partition.records.as_ref().map(Bytes::len)
            );
            vec![r.error_code, partition.error_code]
        }
        ResponseKind::Produce(r) => {
            let partition = r
                .responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .context("no partition in the Produce response")?;
            // The versions produce concurrently, three records each, in some order.
            ensure!(
                partition.error_code != 0
                    || (partition.base_offset >= 0 && partition.base_offset % 3 == 0),
                "base offset {}, expected a multiple of 3",
                partition.base_offset
            );
            vec![partition.error_code]
        }
        ResponseKind::CreateTopics(r) => r.topics.iter().map(|t| t.error_code).collect(),
        ResponseKind::DeleteTopics(r) => r.responses.iter().map(|t| t.error_code).collect(),
        ResponseKind::InitProducerId(r) => {
            ensure!(
                r.error_code != 0 || r.producer_id.0 >= 0,
                "producer id {:?}",
                r.producer_id
            );
            vec![r.error_code]
        }
        ResponseKind::OffsetForLeaderEpoch(r) => {
            let partition = r
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .context("no partition in the OffsetForLeaderEpoch response")?;
            ensure!(
                partition.error_code != 0 || partition.end_offset == context.sweep_records,
                "end offset {}, expected {}",
                partition.end_offset,
                context.sweep_records
            );
            vec![partition.error_code]
        }
        ResponseKind::DescribeCluster(r) => vec![r.error_code],
        ResponseKind::DescribeConfigs(r) => {
            let result = r.results.first().context("no result in DescribeConfigs")?;
            ensure!(
                result.error_code != 0 || !result.configs.is_empty(),
                "no configs described"
            );
            vec![result.error_code]
        }
        ResponseKind::AlterConfigs(r) => r.responses.iter().map(|t| t.error_code).collect(),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().map(|t| t.error_code).collect()
        }
        ResponseKind::CreatePartitions(r) => r.results.iter().map(|t| t.error_code).collect(),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::FindCoordinator(r) => {
            let (codes, node) = match r.coordinators.first() {
                Some(coordinator) => (vec![coordinator.error_code], coordinator.node_id),
                None => (vec![r.error_code], r.node_id),
            };
            ensure!(node.0 >= 0, "coordinator {node:?}");
            codes
        }
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::OffsetFetch(r) => {
            let (group_code, offsets): (i16, Vec<(i16, i64)>) = match r.groups.first() {
                Some(group) => (
                    group.error_code,
                    group
                        .topics
                        .iter()
                        .flat_map(|t| t.partitions.iter())
                        .map(|p| (p.error_code, p.committed_offset))
                        .collect(),
                ),
                None => (
                    r.error_code,
                    r.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter())
                        .map(|p| (p.error_code, p.committed_offset))
                        .collect(),
                ),
            };
            ensure!(
                offsets
                    .iter()
                    .map(|(_, offset)| *offset)
                    .collect::<Vec<_>>()
                    == [SWEEP_COMMITTED_OFFSET],
                "committed offsets {offsets:?}, expected [{SWEEP_COMMITTED_OFFSET}]"
            );
            std::iter::once(group_code)
                .chain(offsets.iter().map(|(code, _)| *code))
                .collect()
        }
        ResponseKind::ListGroups(r) => {
            ensure!(
                r.groups
                    .iter()
                    .any(|g| g.group_id.0.as_str() == SWEEP_GROUP),
                "{SWEEP_GROUP} not listed: {:?}",
                r.groups
            );
            vec![r.error_code]
        }
        ResponseKind::DescribeGroups(r) => {
            let group = r.groups.first().context("no group described")?;
            ensure!(
                group.group_state.as_str() == "Empty",
                "state {:?}",
                group.group_state
            );
            vec![group.error_code]
        }
        ResponseKind::DeleteGroups(r) => r.results.iter().map(|g| g.error_code).collect(),
        _ => bail!("the sweep has no check for this response"),
    };
    ensure!(!codes.is_empty(), "the response holds no result");
    ensure!(
        codes.iter().all(|code| *code == 0),
        "error codes {codes:?} (response: {response:?})"
    );
    Ok(())
}

/// Setup through the protocol itself, at versions every client uses today.
fn sweep_setup(broker: &BrokerProcess, batch: &Bytes) -> anyhow::Result<SweepContext> {
    use kafka_protocol::messages::*;
    let mut topics: Vec<String> = ["sweep", "sweep-produce", "sweep-configs"]
        .map(String::from)
        .to_vec();
    topics.extend((0..=6).map(|version| format!("sweep-delete-v{version}")));
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(
            topics
                .iter()
                .map(|topic| {
                    create_topics_request::CreatableTopic::default()
                        .with_name(name(topic))
                        .with_num_partitions(1)
                        .with_replication_factor(1)
                })
                .collect(),
        );
    let created = call(
        broker,
        ApiKey::CreateTopics,
        5,
        &RequestKind::CreateTopics(create),
    )?;
    check_sweep_response(&created, &placeholder_context()).context("setup: CreateTopics v5")?;

    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(name("sweep"))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch.clone())),
                ]),
        ]);
    let produced = call(broker, ApiKey::Produce, 9, &RequestKind::Produce(produce))?;
    check_sweep_response(&produced, &placeholder_context()).context("setup: Produce v9")?;

    // Groups with a committed offset: the one the group sweeps read, and one per DeleteGroups
    // version to delete.
    for group in std::iter::once(SWEEP_GROUP.to_string())
        .chain((0..=2).map(|version| format!("sweep-delete-group-v{version}")))
    {
        let committed = call(
            broker,
            ApiKey::OffsetCommit,
            8,
            &RequestKind::OffsetCommit(standalone_commit(&group)),
        )?;
        check_sweep_response(&committed, &placeholder_context())
            .with_context(|| format!("setup: OffsetCommit v8 for {group}"))?;
    }

    let metadata = MetadataRequest::default().with_topics(Some(
        ["sweep", "sweep-produce"]
            .map(|topic| {
                metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic)))
            })
            .to_vec(),
    ));
    let ResponseKind::Metadata(metadata) = call(
        broker,
        ApiKey::Metadata,
        12,
        &RequestKind::Metadata(metadata),
    )?
    else {
        bail!("setup: Metadata answered with another response kind");
    };
    let id_of = |topic: &str| {
        metadata
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
            .map(|t| t.topic_id)
            .with_context(|| format!("setup: Metadata v12 lacks {topic}"))
    };
    Ok(SweepContext {
        sweep_id: id_of("sweep")?,
        produce_id: id_of("sweep-produce")?,
        sweep_records: 3,
    })
}

fn placeholder_context() -> SweepContext {
    SweepContext {
        sweep_id: Uuid::nil(),
        produce_id: Uuid::nil(),
        sweep_records: 0,
    }
}

/// One batch of three plain records, as a producer without idempotence sends it.
fn sweep_batch() -> anyhow::Result<Bytes> {
    let values: Vec<Vec<u8>> = (0..3).map(|i| format!("sweep-{i}").into_bytes()).collect();
    let records: Vec<ProducerRecord<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, value)| ProducerRecord {
            key: None,
            value: Some(value),
            headers: &[],
            timestamp: 1_700_000_000_000 + i as i64,
        })
        .collect();
    let batch = encode_producer_batch(&records, Compression::None).map_err(anyhow::Error::msg)?;
    Ok(Bytes::from(batch))
}

#[test]
fn every_advertised_api_version_answers() -> anyhow::Result<()> {
    with_broker(&[], |broker| {
        let batch = sweep_batch()?;
        let context = sweep_setup(broker, &batch)?;

        let mut stream = connect(broker)?;
        stream.write_all(&api_versions_v3(1))?;
        let (_, _, advertised) = parse_api_versions(&read_frame(&mut stream)?, 3)?;

        // One thread per API version, so versions that never answer cost one read timeout in
        // all rather than one each, and every failing version is reported.
        let failures: Vec<String> = std::thread::scope(|scope| {
            let mut sweeps = Vec::new();
            for &(key, min, max) in &advertised {
                let Ok(api) = ApiKey::try_from(key) else {
                    sweeps
                        .push(scope.spawn(move || {
                            Err(format!("api key {key} is advertised but unknown"))
                        }));
                    continue;
                };
                for version in min..=max {
                    let Some(request) = sweep_request(api, version, &context, &batch) else {
                        eprintln!("no sweep case for {api:?} v{version}; add one to cover it");
                        continue;
                    };
                    let context = &context;
                    sweeps.push(scope.spawn(move || {
                        call(broker, api, version, &request)
                            .and_then(|response| check_sweep_response(&response, context))
                            .map_err(|error| format!("{api:?} v{version}: {error:#}"))
                    }));
                }
            }
            sweeps
                .into_iter()
                .filter_map(|sweep| match sweep.join() {
                    Ok(result) => result.err(),
                    Err(_) => Some("a sweep thread panicked".to_string()),
                })
                .collect()
        });
        ensure!(
            failures.is_empty(),
            "{} API versions failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        Ok(())
    })
}

/// DeleteRecords from several connections at once: each must succeed (the broker checkpoints
/// log start offsets on every call, so concurrent calls must not trip over each other's files).
#[test]
fn concurrent_delete_records_all_succeed() -> anyhow::Result<()> {
    with_broker(&[], |broker| {
        let batch = sweep_batch()?;
        let context = sweep_setup(broker, &batch)?;
        let request = sweep_request(ApiKey::DeleteRecords, 2, &context, &batch)
            .context("the sweep has a DeleteRecords case")?;
        let failures: Vec<String> = std::thread::scope(|scope| {
            let callers: Vec<_> = (0..8)
                .map(|caller| {
                    let request = &request;
                    let context = &context;
                    scope.spawn(move || {
                        (0..5)
                            .filter_map(|round| {
                                call(broker, ApiKey::DeleteRecords, 2, request)
                                    .and_then(|response| check_sweep_response(&response, context))
                                    .err()
                                    .map(|error| {
                                        format!("caller {caller} round {round}: {error:#}")
                                    })
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            callers
                .into_iter()
                .flat_map(|caller| {
                    caller
                        .join()
                        .unwrap_or_else(|_| vec!["a caller thread panicked".to_string()])
                })
                .collect()
        });
        ensure!(
            failures.is_empty(),
            "{} of 40 concurrent DeleteRecords calls failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        Ok(())
    })
}

/// Produce never creates a topic (only Metadata does, when the request and
/// `auto.create.topics.enable` both allow): a Produce to a missing topic, at the last version that
/// names topics and at v3, is answered UNKNOWN_TOPIC_OR_PARTITION per partition, and afterwards
/// neither a Metadata request that forbids auto-creation nor ListTopics-style Metadata sees it.
#[test]
fn produce_to_a_missing_topic_is_unknown_and_creates_nothing() -> anyhow::Result<()> {
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::*;
    with_broker(&[], |broker| {
        let batch = sweep_batch()?;
        for version in [3, 12] {
            let topic = format!("never-created-v{version}");
            let produce = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![
                    produce_request::TopicProduceData::default()
                        .with_name(name(&topic))
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch.clone())),
                        ]),
                ]);
            let ResponseKind::Produce(answer) = call(
                broker,
                ApiKey::Produce,
                version,
                &RequestKind::Produce(produce),
            )?
            else {
                bail!("Produce v{version} was answered with another API");
            };
            let codes: Vec<i16> = answer
                .responses
                .iter()
                .flat_map(|topic| topic.partition_responses.iter())
                .map(|partition| partition.error_code)
                .collect();
            ensure!(
                codes == [ResponseError::UnknownTopicOrPartition.code()],
                "Produce v{version} to missing topic {topic}: partition error codes {codes:?}"
            );
        }
        // Metadata for all topics (null list): no side effects, and none of the produced-to names.
        let all = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let ResponseKind::Metadata(metadata) =
            call(broker, ApiKey::Metadata, 12, &RequestKind::Metadata(all))?
        else {
            bail!("Metadata was answered with another API");
        };
        let names: Vec<String> = metadata
            .topics
            .iter()
            .filter_map(|topic| topic.name.as_ref().map(|name| name.0.to_string()))
            .collect();
        ensure!(
            names.iter().all(|name| !name.starts_with("never-created")),
            "Produce created topics: Metadata lists {names:?}"
        );
        Ok(())
    })
}
