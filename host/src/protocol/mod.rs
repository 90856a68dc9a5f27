//! The protocol room: the Kafka listener, framing, request decoding and routing, response encoding.
//! No business logic: each API's handler in [`api`] decodes, calls the broker, encodes.
//!
//! One connection is served like Kafka serves it: requests are read ahead (up to
//! `queued.max.requests`) but processed one at a time, in order, so responses go out in request
//! order and a producer's pipelined batches are appended in the order it sent them.
//!
//! Bad input: a frame larger than `socket.request.max.bytes`, an unknown API key, an unsupported
//! version (except ApiVersions, which gets Kafka's v0 fallback answer) or a body that does not
//! decode closes that connection with a log line, as Kafka does; nothing else is affected.

pub mod api;
pub mod forward;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::broker::Broker;

/// Size of the length prefix of every Kafka frame.
const FRAME_LENGTH_BYTES: usize = 4;

/// A decoded request, ready for its handler.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: RequestKind,
}

/// Why a connection is being closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge { size: i64, max: usize },
    #[error("frame is {0} bytes, too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} v{version} is not supported (supported: v{min}-v{max})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("malformed {what}: {message}")]
    Malformed { what: String, message: String },
}

/// Decodes one frame body. `Ok(Err(response))` is a request answered without a handler
/// (ApiVersions at an unsupported version).
pub fn decode_request(mut frame: Bytes) -> Result<Result<Request, BytesMut>, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key =
        ApiKey::try_from(api_key_raw).map_err(|_| FrameError::UnknownApiKey(api_key_raw))?;
    let supported = api::supported_versions(api_key);
    if supported.is_none_or(|(min, max)| version < min || version > max) {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer a too-new ApiVersions with a v0 response carrying
            // UNSUPPORTED_VERSION and our ranges, so the client can retry with a version we know.
            let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            return Ok(Err(encode_response(
                correlation_id,
                api_key,
                0,
                &api::api_versions::unsupported_version(),
            )?));
        }
        let (min, max) = supported.unwrap_or((0, -1));
        return Err(FrameError::UnsupportedVersion {
            api: api_key,
            version,
            min,
            max,
        });
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|error| FrameError::Malformed {
            what: "request header".into(),
            message: error.to_string(),
        })?;
    let body = RequestKind::decode(api_key, &mut frame, version).map_err(|error| {
        FrameError::Malformed {
            what: format!("{api_key:?} v{version} request"),
            message: error.to_string(),
        }
    })?;
    Ok(Ok(Request {
        header,
        api_key,
        body,
    }))
}

/// Encodes a response with its header and length prefix.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<BytesMut, FrameError> {
    let encoding = |error: anyhow::Error| FrameError::Malformed {
        what: format!("{api_key:?} v{version} response"),
        message: error.to_string(),
    };
    let mut buffer = BytesMut::with_capacity(256);
    buffer.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buffer, api_key.response_header_version(version))
        .map_err(encoding)?;
    body.encode(&mut buffer, version).map_err(encoding)?;
    let length = (buffer.len() - FRAME_LENGTH_BYTES) as i32;
    buffer[..FRAME_LENGTH_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(buffer)
}

/// Accepts connections until `shutdown` turns true, then waits (up to `shutdown.timeout.ms`) for
/// every connection to answer what it has read.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(broker.config.connections_max));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, limit = broker.config.connections_max, "connections.max reached; refusing");
                    continue;
                };
                let broker = broker.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    serve_connection(stream, peer, broker, shutdown).await;
                    drop(permit);
                });
            }
            _ = shutdown.changed() => break,
        }
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    let deadline = Duration::from_millis(broker.config.shutdown_timeout_ms);
    if tokio::time::timeout(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            connections = tasks.len(),
            "shutdown timeout: closing connections with requests in flight"
        );
        tasks.abort_all();
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (frames, mut queued) = mpsc::channel::<Bytes>(broker.config.queued_max_requests);
    let max_frame = broker.config.socket_request_max_bytes;
    let read_loop = async move {
        let mut frames_in = FrameReader::default();
        loop {
            let frame = tokio::select! {
                frame = frames_in.next(&mut reader, max_frame) => frame,
                _ = shutdown.changed() => return,
            };
            match frame {
                Ok(Some(frame)) => {
                    if frames.send(frame).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%peer, %error, "closing connection");
                    return;
                }
            }
        }
    };
    let process_loop = async {
        while let Some(frame) = queued.recv().await {
            let response = match decode_request(frame) {
                Ok(Ok(request)) => {
                    let correlation_id = request.header.correlation_id;
                    let (api_key, version) = (request.api_key, request.header.request_api_version);
                    match api::handle(&broker, request, peer.ip()).await {
                        Some(body) => encode_response(correlation_id, api_key, version, &body),
                        None => continue,
                    }
                }
                Ok(Err(answer)) => Ok(answer),
                Err(error) => Err(error),
            };
            let written = match response {
                Ok(bytes) => writer.write_all(&bytes).await,
                Err(error) => {
                    tracing::warn!(%peer, %error, "closing connection");
                    return;
                }
            };
            if let Err(error) = written {
                tracing::debug!(%peer, %error, "client went away");
                return;
            }
        }
    };
    // Reading stops at EOF or shutdown, and processing then drains what was read. When
    // processing stops first (a bad frame, a client gone), the read half is aborted so the socket
    // closes at once instead of waiting on the peer.
    let reading = tokio::spawn(read_loop);
    process_loop.await;
    reading.abort();
}

/// Bytes asked of the socket at once when no frame length is known yet: small pipelined
/// requests then arrive in one read instead of two reads each.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A connection keeps at most this much buffer between requests (its current buffer plus the
/// retired ones waiting to be reused): one huge request must not pin its size for the
/// connection's lifetime.
const RETAINED_BUFFER_BYTES_MAX: usize = 8 << 20;

/// A buffer frames are read into, with the size of its allocation (a `BytesMut` handle only
/// knows the capacity after its own start).
#[derive(Debug, Default)]
struct FrameBuffer {
    bytes: BytesMut,
    allocated: usize,
}

impl FrameBuffer {
    fn with_capacity(capacity: usize) -> Self {
        let bytes = BytesMut::with_capacity(capacity);
        let allocated = bytes.capacity();
        FrameBuffer { bytes, allocated }
    }
}

/// Splits a connection's byte stream into frames. Each frame is a `Bytes` view of the buffer it
/// was read into, and buffers are recycled: a buffer whose frames are still being processed (read
/// ahead, or a produce still appending) is retired, and taken back once every view of it has been
/// dropped. A producer's 1 MB requests thus land in memory that is already mapped; allocating a
/// buffer per request made the allocator hand pages back to the kernel and fault them in again on
/// every request, which cost more CPU than copying the bytes out of the socket. Cancel-safe: a
/// partial frame stays in the buffer.
#[derive(Debug, Default)]
struct FrameReader {
    buffer: FrameBuffer,
    /// Buffers with frames possibly still in use, oldest first.
    retired: Vec<FrameBuffer>,
    /// Whether the last frame was at least [`READ_CHUNK_BYTES`]: the next one probably is too.
    large_frames: bool,
    /// Buffers allocated so far (the tests check that a steady stream reuses them).
    allocations: u64,
}

impl FrameReader {
    async fn next(
        &mut self,
        reader: &mut (impl AsyncReadExt + Unpin),
        max_frame: usize,
    ) -> Result<Option<Bytes>, FrameError> {
        if self.buffer.bytes.is_empty() && self.buffer.allocated > RETAINED_BUFFER_BYTES_MAX {
            self.buffer = FrameBuffer::default();
        }
        loop {
            let buffer = &mut self.buffer.bytes;
            let missing = if buffer.len() >= FRAME_LENGTH_BYTES {
                let size = i32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
                if size < 0 || size as usize > max_frame {
                    return Err(FrameError::TooLarge {
                        size: i64::from(size),
                        max: max_frame,
                    });
                }
                let frame_end = FRAME_LENGTH_BYTES + size as usize;
                if buffer.len() >= frame_end {
                    buffer.advance(FRAME_LENGTH_BYTES);
                    self.large_frames = size as usize >= READ_CHUNK_BYTES;
                    return Ok(Some(buffer.split_to(size as usize).freeze()));
                }
                frame_end - buffer.len()
            } else if self.large_frames {
                // Large frames are read one at a time, length prefix first: bytes read past a
                // frame's end are the next frame's start, which would be copied when that frame
                // moves to a buffer of its own.
                FRAME_LENGTH_BYTES - buffer.len()
            } else {
                // Small frames: a chunk at once, so pipelined requests share reads.
                READ_CHUNK_BYTES
            };
            self.make_room(missing);
            // read_buf fills spare capacity directly: no memset of memory about to be overwritten.
            match reader
                .read_buf(&mut (&mut self.buffer.bytes).limit(missing))
                .await
            {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// Makes room for `additional` more bytes after what the buffer holds: in the current
    /// allocation if no frame still uses it, else in a retired buffer nobody uses any more, else
    /// in a new one. The bytes held (the start of the next frame) move along.
    fn make_room(&mut self, additional: usize) {
        if self.buffer.bytes.try_reclaim(additional) {
            return;
        }
        let held = self.buffer.bytes.len();
        let needed = held + additional;
        let reusable = self
            .retired
            .iter_mut()
            .position(|retired| retired.allocated >= needed && retired.bytes.try_reclaim(needed));
        if reusable.is_none() {
            self.allocations += 1;
        }
        let mut next = match reusable {
            Some(index) => self.retired.remove(index),
            // A large frame's buffer gets a chunk of slack, so that a slightly larger frame
            // (a producer's batches vary in size) can reuse it later.
            None if needed > READ_CHUNK_BYTES => {
                FrameBuffer::with_capacity(needed.saturating_add(READ_CHUNK_BYTES))
            }
            None => FrameBuffer::with_capacity(READ_CHUNK_BYTES),
        };
        next.bytes.extend_from_slice(&self.buffer.bytes);
        let mut old = std::mem::replace(&mut self.buffer, next);
        old.bytes.clear();
        if old.allocated > 0 && old.allocated <= RETAINED_BUFFER_BYTES_MAX {
            self.retired.push(old);
        }
        // Oldest first out: a buffer some long-lived view pins is never reclaimed, and whatever
        // is dropped here is freed as it would have been without the pool.
        while self.retired_bytes() + self.buffer.allocated > RETAINED_BUFFER_BYTES_MAX
            && !self.retired.is_empty()
        {
            self.retired.remove(0);
        }
    }

    fn retired_bytes(&self) -> usize {
        self.retired.iter().map(|retired| retired.allocated).sum()
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{MetadataRequest, ProduceRequest, RequestKind};
    use kafka_protocol::protocol::Encodable;
    use proptest::prelude::*;

    use super::*;

    /// A well-formed request frame body (no length prefix) for mutation.
    fn encoded(api_key: ApiKey, version: i16, body: RequestKind) -> Vec<u8> {
        let mut buffer = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .encode(&mut buffer, api_key.request_header_version(version))
            .expect("header");
        body.encode(&mut buffer, version).expect("body");
        buffer.to_vec()
    }

    fn seeds() -> Vec<Vec<u8>> {
        let topic = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(api::topic_name("orders")));
        let produce = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![
                kafka_protocol::messages::produce_request::TopicProduceData::default()
                    .with_name(api::topic_name("orders"))
                    .with_partition_data(vec![
                        kafka_protocol::messages::produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from_static(&[0u8; 70]))),
                    ]),
            ]);
        vec![
            encoded(
                ApiKey::Metadata,
                12,
                RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![topic]))),
            ),
            encoded(ApiKey::Produce, 9, RequestKind::Produce(produce.clone())),
            encoded(ApiKey::Produce, 3, RequestKind::Produce(produce)),
            encoded(
                ApiKey::ApiVersions,
                3,
                RequestKind::ApiVersions(Default::default()),
            ),
        ]
    }

    /// Hands out at most `step` bytes per read, so frames arrive in pieces as from a socket.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl tokio::io::AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = self
                .step
                .min(buf.remaining())
                .min(self.data.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.data[at..at + n]);
            self.at += n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Frames of every size come out whole and in order, whichever frames the caller still
    /// holds, and a steady stream of large frames reuses its buffers instead of allocating.
    #[tokio::test]
    async fn frames_come_out_whole_and_buffers_are_reused() {
        let sizes: Vec<usize> = (0..60)
            .map(|i| match i % 6 {
                0 => 10,
                1 => 300_000 + i * 1000,
                2 => 70_000,
                3 => 1,
                _ => 1_000_000 - i * 17,
            })
            .collect();
        let mut stream = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            stream.extend_from_slice(&(*size as i32).to_be_bytes());
            stream.extend((0..*size).map(|j| (i * 31 + j) as u8));
        }
        for step in [7, 4096, 1 << 20] {
            let mut reader = Trickle {
                data: stream.clone(),
                at: 0,
                step,
            };
            let mut frames = FrameReader::default();
            let mut held = std::collections::VecDeque::new();
            for (i, size) in sizes.iter().enumerate() {
                let frame = frames
                    .next(&mut reader, 2 << 20)
                    .await
                    .expect("a valid frame")
                    .expect("not the end");
                assert_eq!(frame.len(), *size, "frame {i}, step {step}");
                assert!(
                    frame
                        .iter()
                        .enumerate()
                        .all(|(j, byte)| *byte == (i * 31 + j) as u8),
                    "frame {i} bytes, step {step}"
                );
                // Requests read ahead: the last few frames are still being processed.
                held.push_back(frame);
                if held.len() > 3 {
                    held.pop_front();
                }
                let retained: usize = frames.buffer.allocated
                    + frames.retired.iter().map(|r| r.allocated).sum::<usize>();
                assert!(
                    retained <= RETAINED_BUFFER_BYTES_MAX + (2 << 20),
                    "{retained}"
                );
            }
            assert!(
                frames
                    .next(&mut reader, 2 << 20)
                    .await
                    .expect("eof")
                    .is_none()
            );
        }
    }

    #[tokio::test]
    async fn large_frames_recycle_buffers() {
        let size = 1_000_000;
        let count = 50;
        let mut stream = Vec::new();
        for i in 0..count {
            stream.extend_from_slice(&(size as i32).to_be_bytes());
            stream.extend(std::iter::repeat_n(i as u8, size));
        }
        let mut reader = Trickle {
            data: stream,
            at: 0,
            step: 64 * 1024,
        };
        let mut frames = FrameReader::default();
        let mut held = std::collections::VecDeque::new();
        for i in 0..count {
            let frame = frames
                .next(&mut reader, 2 << 20)
                .await
                .expect("valid")
                .expect("a frame");
            assert!(frame.iter().all(|byte| *byte == i as u8));
            held.push_back(frame);
            if held.len() > 2 {
                held.pop_front();
            }
        }
        // Two frames in flight and one being read: a handful of buffers serve all fifty frames.
        assert!(frames.allocations <= 5, "{} buffers", frames.allocations);
    }

    #[test]
    fn valid_seeds_decode() {
        for seed in seeds() {
            assert!(matches!(decode_request(Bytes::from(seed)), Ok(Ok(_))));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Fuzz target: arbitrary bytes as a request frame never panic the decoder.
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_request(Bytes::from(bytes));
        }

        /// Fuzz target: valid requests with bytes flipped, cut or extended never panic the decoder.
        #[test]
        fn mutated_requests_never_panic(
            seed in 0usize..4,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in proptest::option::of(any::<usize>()),
        ) {
            let mut bytes = seeds()[seed].clone();
            for (position, value) in flips {
                let position = position % bytes.len();
                bytes[position] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            let _ = decode_request(Bytes::from(bytes));
        }
    }
}
