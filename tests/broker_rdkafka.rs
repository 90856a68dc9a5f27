//! A real Kafka client against a real broker process: librdkafka (through the `rdkafka` crate)
//! produces, consumes, looks up offsets and administers topics on a `weir serve` started for each
//! test, and every answer is checked against what the test sent.
//!
//! Every wait is bounded: client calls take timeouts, delivery futures run under
//! [`tokio::time::timeout`], and consume loops stop at a deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use rdkafka::admin::{AdminClient, NewTopic, TopicReplication, TopicResult};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use weir::storage::{BatchHeader, Compression, TopicPartition};
use weir_tests::broker::{BrokerProcess, persisted_overrides};

#[path = "support/rdkafka_clients.rs"]
mod rdkafka_clients;
use rdkafka_clients::{
    TIMEOUT, admin_options, assigned_consumer, block_on, client_config, describe_topic_configs,
    read_partition, runtime,
};
use weir_tests::{XorShift64, batch_positions, partition_dir, segment_file};

/// Bound on any single client operation (a delivery, a metadata call, an admin request).
/// The broker's default `message.max.bytes`: the largest record batch it accepts.
const BROKER_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// One record as a test sends it and expects it back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TestRecord {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: Option<i64>,
}

impl TestRecord {
    fn value(value: impl Into<Vec<u8>>) -> Self {
        TestRecord {
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }
}

/// A record read back, with where it was stored.
#[derive(Debug, Clone)]
struct Consumed {
    offset: i64,
    record: TestRecord,
}

fn producer(broker: &BrokerProcess, extra: &[(&str, &str)]) -> anyhow::Result<FutureProducer> {
    let mut config = client_config(broker);
    config
        // A failed delivery reports back well inside TIMEOUT instead of retrying for 5 minutes.
        .set("message.timeout.ms", "15000")
        // A few milliseconds of batching so compressed batches hold many records.
        .set("linger.ms", "5");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().context("creating the producer")
}

fn admin(broker: &BrokerProcess) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    client_config(broker)
        .create()
        .context("creating the admin client")
}

/// Queues every record for `topic` partition 0 in order, then waits for every delivery report.
fn produce(
    runtime: &tokio::runtime::Runtime,
    producer: &FutureProducer,
    topic: &str,
    records: &[TestRecord],
) -> anyhow::Result<Vec<OwnedDeliveryResult>> {
    let mut pending = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let mut message: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).partition(0);
        if let Some(key) = &record.key {
            message = message.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            message = message.payload(value.as_slice());
        }
        if let Some(timestamp) = record.timestamp {
            message = message.timestamp(timestamp);
        }
        if !record.headers.is_empty() {
            let headers = record.headers.iter().fold(
                OwnedHeaders::new_with_capacity(record.headers.len()),
                |headers, (key, value)| {
                    headers.insert(Header {
                        key,
                        value: value.as_deref(),
                    })
                },
            );
            message = message.headers(headers);
        }
        let delivery = producer
            .send_result(message)
            .map_err(|(error, _)| anyhow!("queueing record {index}: {error}"))?;
        pending.push(delivery);
    }
    block_on(runtime, "delivery of the produced records", async {
        let mut results = Vec::with_capacity(pending.len());
        for delivery in pending {
            results.push(delivery.await);
        }
        results
    })?
    .into_iter()
    .enumerate()
    .map(|(index, result)| {
        result.map_err(|_| anyhow!("record {index}: the producer dropped its delivery report"))
    })
    .collect()
}

/// [`produce`] where every delivery must succeed; returns the offsets.
fn produce_ok(
    runtime: &tokio::runtime::Runtime,
    producer: &FutureProducer,
    topic: &str,
    records: &[TestRecord],
) -> anyhow::Result<Vec<i64>> {
    produce(runtime, producer, topic, records)?
        .into_iter()
        .enumerate()
        .map(|(index, result)| match result {
            Ok(delivery) => {
                ensure!(
                    delivery.partition == 0,
                    "record {index} went to partition {}",
                    delivery.partition
                );
                Ok(delivery.offset)
            }
            Err((error, _)) => Err(anyhow!("record {index} was not delivered: {error}")),
        })
        .collect()
}

/// Assigns `topic` partition 0 from `from` and reads exactly `count` records (failing on any
/// consumer error or when they do not all arrive before the deadline).
fn consume(
    consumer: &BaseConsumer,
    topic: &str,
    from: Offset,
    count: usize,
) -> anyhow::Result<Vec<Consumed>> {
    Ok(read_partition(consumer, topic, 0, from, count)?
        .iter()
        .map(|message| Consumed {
            offset: message.offset(),
            record: TestRecord {
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers: message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|header| {
                                (header.key.to_string(), header.value.map(<[u8]>::to_vec))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: message.timestamp().to_millis(),
            },
        })
        .collect())
}

/// Checks `consumed` is `expected` stored at offsets 0, 1, 2, ... (timestamps only where the
/// test chose them).
fn check_consumed(consumed: &[Consumed], expected: &[TestRecord]) -> anyhow::Result<()> {
    ensure!(
        consumed.len() == expected.len(),
        "{} records consumed, {} expected",
        consumed.len(),
        expected.len()
    );
    for (index, (got, want)) in consumed.iter().zip(expected).enumerate() {
        ensure!(
            got.offset == index as i64,
            "record {index} was read at offset {}",
            got.offset
        );
        ensure!(
            got.record.key == want.key,
            "record {index}: key {:?}, expected {:?}",
            got.record.key.as_deref().map(String::from_utf8_lossy),
            want.key.as_deref().map(String::from_utf8_lossy)
        );
        ensure!(
            got.record.value == want.value,
            "record {index}: value of {:?} bytes differs from the {:?} bytes sent",
            got.record.value.as_ref().map(Vec::len),
            want.value.as_ref().map(Vec::len)
        );
        ensure!(
            got.record.headers == want.headers,
            "record {index}: headers {:?}, expected {:?}",
            got.record.headers,
            want.headers
        );
        if let Some(timestamp) = want.timestamp {
            ensure!(
                got.record.timestamp == Some(timestamp),
                "record {index}: timestamp {:?}, expected {timestamp}",
                got.record.timestamp
            );
        }
    }
    Ok(())
}

/// The headers of every batch in partition 0's first segment, read from the broker's files.
fn stored_batches(broker: &BrokerProcess, topic: &str) -> anyhow::Result<Vec<BatchHeader>> {
    let tp = TopicPartition::new(topic, 0);
    let log = segment_file(&partition_dir(&broker.data_dir, &tp), 0, "log");
    Ok(batch_positions(&log)?
        .into_iter()
        .map(|(_, header)| header)
        .collect())
}

/// Runs a test body against a fresh broker and, when it fails, adds the broker's log.
fn with_broker(
    config: &[&str],
    test: impl FnOnce(&BrokerProcess) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let broker = BrokerProcess::start(config)?;
    test(&broker).map_err(|error| {
        let log = broker.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        error.context(format!("broker log (last 40 lines):\n{}", tail.join("\n")))
    })
}

/// A mix of everything a record can carry: keys and null keys, values and null values (empty
/// ones too), no headers, several headers, a repeated header key and a null header value.
/// Values repeat a pattern so every codec actually shrinks them.
fn mixed_records(count: usize, codec: &str, base_timestamp: i64) -> Vec<TestRecord> {
    (0..count)
        .map(|i| {
            let key = match i % 7 {
                3 => None,
                5 => Some(Vec::new()),
                _ => Some(format!("key-{i}").into_bytes()),
            };
            let value = match i % 11 {
                5 => None,
                8 => Some(Vec::new()),
                _ => Some(
                    format!("{codec} value {i} ")
                        .repeat(1 + i % 40)
                        .into_bytes(),
                ),
            };
            let headers = match i % 3 {
                0 => Vec::new(),
                1 => vec![("index".to_string(), Some(i.to_string().into_bytes()))],
                _ => vec![
                    ("index".to_string(), Some(i.to_string().into_bytes())),
                    ("codec".to_string(), Some(codec.as_bytes().to_vec())),
                    ("nothing".to_string(), None),
                    ("index".to_string(), Some(b"repeated".to_vec())),
                ],
            };
            TestRecord {
                key,
                value,
                headers,
                timestamp: Some(base_timestamp + i as i64),
            }
        })
        .collect()
}

/// Produces a mix of records with `codec`, reads them back, and checks the broker stored the
/// batches as the producer compressed them.
fn round_trip(codec: &str, compression: Compression) -> anyhow::Result<()> {
    with_broker(&[], |broker| {
        let runtime = runtime()?;
        let topic = format!("round-trip-{codec}");
        let records = mixed_records(300, codec, 1_700_000_000_000);
        let producer = producer(broker, &[("compression.type", codec)])?;
        let offsets = produce_ok(&runtime, &producer, &topic, &records)?;
        let expected_offsets: Vec<i64> = (0..records.len() as i64).collect();
        ensure!(
            offsets == expected_offsets,
            "delivery offsets are not 0..{}: {offsets:?}",
            records.len()
        );

        let consumer = assigned_consumer(broker, &[])?;
        let consumed = consume(&consumer, &topic, Offset::Beginning, records.len())?;
        check_consumed(&consumed, &records)?;

        let batches = stored_batches(broker, &topic)?;
        for batch in &batches {
            // librdkafka sends a batch uncompressed when compressing would grow it (a lone small
            // record, say), so that is the one other codec allowed.
            ensure!(
                batch.compression() == Some(compression)
                    || batch.compression() == Some(Compression::None),
                "batch at offset {} is stored with {:?}, the producer sent {codec}",
                batch.base_offset,
                batch.compression()
            );
        }
        ensure!(
            batches
                .iter()
                .any(|batch| batch.records_count > 1 && batch.compression() == Some(compression)),
            "no batch of several records is stored with {codec}: {batches:?}"
        );
        Ok(())
    })
}

#[test]
fn round_trip_uncompressed() -> anyhow::Result<()> {
    round_trip("none", Compression::None)
}

#[test]
fn round_trip_gzip() -> anyhow::Result<()> {
    round_trip("gzip", Compression::Gzip)
}

#[test]
fn round_trip_snappy() -> anyhow::Result<()> {
    round_trip("snappy", Compression::Snappy)
}

/// librdkafka turns LZ4 on only when the broker's ApiVersions lists FindCoordinator (its marker
/// for brokers since 0.8.2); without it every client built on librdkafka silently sends lz4
/// batches uncompressed, which the stored-codec check here catches.
#[test]
fn round_trip_lz4() -> anyhow::Result<()> {
    round_trip("lz4", Compression::Lz4)
}

#[test]
fn round_trip_zstd() -> anyhow::Result<()> {
    round_trip("zstd", Compression::Zstd)
}

/// Records close to the broker's limit go through whole; one over it is refused with
/// MESSAGE_TOO_LARGE and leaves nothing behind.
#[test]
fn large_messages_round_trip_and_oversized_ones_are_refused() -> anyhow::Result<()> {
    with_broker(&[], |broker| {
        let runtime = runtime()?;
        let mut random = XorShift64::new(42);
        // Random bytes: incompressible, so the batch really is this large on the wire.
        let large: Vec<TestRecord> = (0..3)
            .map(|_| TestRecord::value(random.bytes(900_000)))
            .collect();
        let limit = BROKER_MAX_MESSAGE_BYTES.to_string();
        let near_limit = producer(
            broker,
            &[
                ("message.max.bytes", &limit),
                ("batch.size", &limit),
                ("compression.type", "none"),
            ],
        )?;
        let offsets = produce_ok(&runtime, &near_limit, "large", &large)?;
        ensure!(
            offsets == [0, 1, 2],
            "large records got offsets {offsets:?}"
        );
        let consumer = assigned_consumer(broker, &[])?;
        check_consumed(
            &consume(&consumer, "large", Offset::Beginning, large.len())?,
            &large,
        )?;

        // The client's own limit is raised past the broker's so the broker is the one refusing.
        let oversized = [TestRecord::value(random.bytes(1_200_000))];
        let client_limit = "3000000";
        let over_limit = producer(
            broker,
            &[
                ("message.max.bytes", client_limit),
                ("batch.size", client_limit),
                ("compression.type", "none"),
            ],
        )?;
        let results = produce(&runtime, &over_limit, "too-large", &oversized)?;
        match results.as_slice() {
            [Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _))] => {}
            other => bail!(
                "a 1.2 MB record was answered with {:?}, expected MESSAGE_TOO_LARGE",
                other
                    .iter()
                    .map(|result| result.as_ref().map(|delivery| delivery.offset))
                    .collect::<Vec<_>>()
            ),
        }
        // The refusal appended nothing: the next record still lands at offset 0.
        let offsets = produce_ok(
            &runtime,
            &over_limit,
            "too-large",
            &[TestRecord::value("small")],
        )?;
        ensure!(
            offsets == [0],
            "after a refused record the next one got {offsets:?}"
        );
        Ok(())
    })
}

/// An idempotent producer's records all land once, in order, and the broker stores its
/// producer id and contiguous sequence numbers with them.
#[test]
fn idempotent_producer_delivers_everything_once_in_order() -> anyhow::Result<()> {
    with_broker(&[], |broker| {
        let runtime = runtime()?;
        let count = 5_000;
        let records: Vec<TestRecord> = (0..count)
            .map(|i| TestRecord {
                key: Some(format!("k{}", i % 17).into_bytes()),
                ..TestRecord::value(format!("idempotent-{i}"))
            })
            .collect();
        let producer = producer(
            broker,
            &[
                ("enable.idempotence", "true"),
                // Small batches so many requests are in flight at once (up to 5).
                ("batch.num.messages", "50"),
            ],
        )?;
        let offsets = produce_ok(&runtime, &producer, "idempotent", &records)?;
        let expected: Vec<i64> = (0..count as i64).collect();
        ensure!(offsets == expected, "delivery offsets are not 0..{count}");

        let consumer = assigned_consumer(broker, &[])?;
        check_consumed(
            &consume(&consumer, "idempotent", Offset::Beginning, count)?,
            &records,
        )?;
        let (low, high) = consumer.fetch_watermarks("idempotent", 0, TIMEOUT)?;
        ensure!(
            (low, high) == (0, count as i64),
            "watermarks ({low}, {high}) after {count} records: a duplicate or a loss"
        );

        let batches = stored_batches(broker, "idempotent")?;
        ensure!(batches.len() > 1, "expected many batches");
        let producer_id = batches[0].producer_id;
        ensure!(producer_id >= 0, "batches carry no producer id");
        for batch in &batches {
            ensure!(
                batch.producer_id == producer_id,
                "batch at {} has producer id {}, the first had {producer_id}",
                batch.base_offset,
                batch.producer_id
            );
            // One producer, one partition, starting at sequence 0: sequence equals offset.
            ensure!(
                i64::from(batch.base_sequence) == batch.base_offset,
                "batch at offset {} has base sequence {}",
                batch.base_offset,
                batch.base_sequence
            );
        }
        Ok(())
    })
}

/// ListOffsets by timestamp (offsets_for_times) and the earliest/latest offsets (watermarks).
#[test]
fn offsets_for_times_and_watermarks() -> anyhow::Result<()> {
    with_broker(&[], |broker| {
        let runtime = runtime()?;
        let base = 1_700_000_000_000;
        // Record i carries timestamp base + 1000 * i.
        let records: Vec<TestRecord> = (0..20)
            .map(|i| TestRecord {
                timestamp: Some(base + 1000 * i),
                ..TestRecord::value(format!("timed-{i}"))
            })
            .collect();
        let producer = producer(broker, &[])?;
        produce_ok(&runtime, &producer, "timed", &records)?;

        let consumer = assigned_consumer(broker, &[])?;
        let (low, high) = consumer.fetch_watermarks("timed", 0, TIMEOUT)?;
        ensure!((low, high) == (0, 20), "watermarks ({low}, {high})");

        // (query timestamp, the offset of the first record at or after it)
        let cases = [
            (base - 60_000, Offset::Offset(0)),
            (base, Offset::Offset(0)),
            (base + 1, Offset::Offset(1)),
            (base + 5_500, Offset::Offset(6)),
            (base + 19_000, Offset::Offset(19)),
            (base + 19_001, Offset::End),
        ];
        for (timestamp, expected) in cases {
            let mut query = TopicPartitionList::new();
            query.add_partition_offset("timed", 0, Offset::Offset(timestamp))?;
            let answer = consumer.offsets_for_times(query, TIMEOUT)?;
            let found = answer
                .find_partition("timed", 0)
                .context("the answer lacks partition 0")?;
            found.error()?;
            ensure!(
                found.offset() == expected,
                "offsets_for_times({timestamp}) = {:?}, expected {expected:?}",
                found.offset()
            );
        }
        Ok(())
    })
}

/// The topic names a full metadata request lists.
fn listed_topics(consumer: &BaseConsumer) -> anyhow::Result<BTreeMap<String, usize>> {
    let metadata = consumer.fetch_metadata(None, TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .map(|topic| (topic.name().to_string(), topic.partitions().len()))
        .collect())
}

fn single_result(results: Vec<TopicResult>) -> anyhow::Result<TopicResult> {
    match <[TopicResult; 1]>::try_from(results) {
        Ok([result]) => Ok(result),
        Err(results) => bail!("expected one topic result, got {results:?}"),
    }
}

/// CreateTopics with partitions and configs, the errors for an existing topic, a bad name, a bad
/// config and an impossible replication factor, then DeleteTopics; Metadata reflects each step.
#[test]
fn admin_client_creates_lists_and_deletes_topics() -> anyhow::Result<()> {
    with_broker(&[], |broker| {
        let runtime = runtime()?;
        let admin = admin(broker)?;
        let consumer = assigned_consumer(broker, &[])?;
        let options = admin_options();
        let create = |topic: NewTopic<'_>| -> anyhow::Result<TopicResult> {
            single_result(block_on(
                &runtime,
                "CreateTopics",
                admin.create_topics([&topic], &options),
            )??)
        };

        let created = create(
            NewTopic::new("orders", 3, TopicReplication::Fixed(1))
                .set("retention.ms", "3600000")
                .set("segment.bytes", "1048576"),
        )?;
        ensure!(
            created == Ok("orders".to_string()),
            "create orders: {created:?}"
        );
        let topics = listed_topics(&consumer)?;
        ensure!(
            topics.get("orders") == Some(&3),
            "metadata after create lists {topics:?}"
        );
        match describe_topic_configs(&runtime, &admin, "orders")? {
            Some(configs) => {
                for (key, value) in [("retention.ms", "3600000"), ("segment.bytes", "1048576")] {
                    ensure!(
                        configs.get(key) == Some(&Some(value.to_string())),
                        "DescribeConfigs reports {key}={:?}, created with {value}",
                        configs.get(key)
                    );
                }
            }
            None => {
                // DescribeConfigs is not served yet: check what the broker persisted instead.
                let overrides = persisted_overrides(broker, "orders")?;
                ensure!(
                    overrides.get("retention.ms").map(String::as_str) == Some("3600000")
                        && overrides.get("segment.bytes").map(String::as_str) == Some("1048576"),
                    "persisted overrides {overrides:?}"
                );
            }
        }

        let again = create(NewTopic::new("orders", 1, TopicReplication::Fixed(1)))?;
        ensure!(
            again == Err(("orders".to_string(), RDKafkaErrorCode::TopicAlreadyExists)),
            "creating orders twice: {again:?}"
        );
        let bad_name = create(NewTopic::new("no spaces!", 1, TopicReplication::Fixed(1)))?;
        ensure!(
            matches!(bad_name, Err((_, RDKafkaErrorCode::InvalidTopic))),
            "creating 'no spaces!': {bad_name:?}"
        );
        let bad_config = create(
            NewTopic::new("bad-config", 1, TopicReplication::Fixed(1)).set("retention.mss", "1"),
        )?;
        ensure!(
            matches!(bad_config, Err((_, RDKafkaErrorCode::InvalidConfig))),
            "creating with an unknown config key: {bad_config:?}"
        );
        let bad_replication = create(NewTopic::new("replicated", 1, TopicReplication::Fixed(3)))?;
        ensure!(
            matches!(
                bad_replication,
                Err((_, RDKafkaErrorCode::InvalidReplicationFactor))
            ),
            "creating with replication factor 3 on one broker: {bad_replication:?}"
        );
        let topics = listed_topics(&consumer)?;
        ensure!(
            topics.keys().collect::<Vec<_>>() == ["orders"],
            "failed creates left topics behind: {topics:?}"
        );

        let deleted = single_result(block_on(
            &runtime,
            "DeleteTopics",
            admin.delete_topics(&["orders"], &options),
        )??)?;
        ensure!(
            deleted == Ok("orders".to_string()),
            "delete orders: {deleted:?}"
        );
        let topics = listed_topics(&consumer)?;
        ensure!(
            !topics.contains_key("orders"),
            "metadata after delete lists {topics:?}"
        );
        let missing = single_result(block_on(
            &runtime,
            "DeleteTopics",
            admin.delete_topics(&["orders"], &options),
        )??)?;
        ensure!(
            missing
                == Err((
                    "orders".to_string(),
                    RDKafkaErrorCode::UnknownTopicOrPartition
                )),
            "deleting orders twice: {missing:?}"
        );
        Ok(())
    })
}

/// A consumer parked in a long poll (fetch.wait.max.ms far above the bound checked) gets a record
/// produced meanwhile promptly: the broker wakes waiting fetches on append.
#[test]
fn long_poll_wakes_when_a_record_arrives() -> anyhow::Result<()> {
    with_broker(&[], |broker| {
        let runtime = runtime()?;
        let admin = admin(broker)?;
        let created = single_result(block_on(
            &runtime,
            "CreateTopics",
            admin.create_topics(
                [&NewTopic::new("waiting", 1, TopicReplication::Fixed(1))],
                &admin_options(),
            ),
        )??)?;
        ensure!(created.is_ok(), "create: {created:?}");

        let producer = producer(broker, &[("linger.ms", "0")])?;
        // Warm the producer up (connection, metadata) on another topic so the measured delay is
        // the broker's, not the client's start-up.
        produce_ok(&runtime, &producer, "warm-up", &[TestRecord::value("x")])?;

        let consumer = assigned_consumer(
            broker,
            &[("fetch.wait.max.ms", "10000"), ("fetch.min.bytes", "1")],
        )?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset("waiting", 0, Offset::Offset(0))?;
        consumer.assign(&assignment)?;
        // Give the consumer time to connect and park its first fetch; nothing may arrive.
        if let Some(message) = consumer.poll(Duration::from_millis(1500)) {
            bail!("an empty topic yielded {:?}", message.map(|m| m.offset()));
        }

        let offsets = produce_ok(&runtime, &producer, "waiting", &[TestRecord::value("wake")])?;
        let acknowledged = Instant::now();
        ensure!(offsets == [0], "offsets {offsets:?}");
        let deadline = acknowledged + TIMEOUT;
        let message = loop {
            if Instant::now() > deadline {
                bail!("the record did not arrive within {TIMEOUT:?}");
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(message) => break message?,
                None => continue,
            }
        };
        let waited = acknowledged.elapsed();
        ensure!(
            message.payload() == Some(b"wake".as_slice()),
            "unexpected record"
        );
        ensure!(
            waited < Duration::from_secs(1),
            "the record arrived {waited:?} after it was acknowledged: the waiting fetch was not \
             woken (fetch.wait.max.ms is 10 s)"
        );
        Ok(())
    })
}

/// Timestamps a producer does not set are the append time as the client sees it.
#[test]
fn default_timestamps_are_create_time() -> anyhow::Result<()> {
    with_broker(&[], |broker| {
        let runtime = runtime()?;
        let before = Timestamp::now()
            .to_millis()
            .context("the clock is before 1970")?;
        let producer = producer(broker, &[])?;
        produce_ok(&runtime, &producer, "now", &[TestRecord::value("now")])?;
        let after = Timestamp::now()
            .to_millis()
            .context("the clock is before 1970")?;
        let consumer = assigned_consumer(broker, &[])?;
        let consumed = consume(&consumer, "now", Offset::Beginning, 1)?;
        let timestamp = consumed[0].record.timestamp.context("no timestamp")?;
        ensure!(
            (before..=after).contains(&timestamp),
            "timestamp {timestamp} outside {before}..={after}"
        );
        Ok(())
    })
}

/// A producer that turned auto-creation off (`allow.auto.create.topics=false`) cannot create a
/// topic by producing to it: the delivery fails with an unknown-topic error, and the broker lists
/// no such topic afterwards. Only Metadata with auto-creation allowed creates topics (Kafka's rule).
#[test]
fn producing_to_a_missing_topic_without_auto_creation_creates_nothing() -> anyhow::Result<()> {
    with_broker(&[], |broker| {
        let runtime = runtime()?;
        let no_auto_create = producer(
            broker,
            &[
                ("allow.auto.create.topics", "false"),
                // librdkafka waits this long for a topic to appear before failing its messages.
                ("topic.metadata.propagation.max.ms", "1000"),
                ("message.timeout.ms", "10000"),
            ],
        )?;
        let results = produce(
            &runtime,
            &no_auto_create,
            "never-created",
            &[TestRecord::value("lost in the void")],
        )?;
        match results.as_slice() {
            [
                Err((
                    KafkaError::MessageProduction(
                        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic,
                    ),
                    _,
                )),
            ] => {}
            [other] => bail!(
                "producing to a missing topic was answered {:?}, expected an unknown topic",
                other
                    .as_ref()
                    .map(|delivery| delivery.offset)
                    .map_err(|(error, _)| error)
            ),
            other => bail!("{} delivery reports for one record", other.len()),
        }
        let consumer = assigned_consumer(broker, &[("allow.auto.create.topics", "false")])?;
        let topics = listed_topics(&consumer)?;
        ensure!(
            !topics.contains_key("never-created"),
            "producing created the topic: the broker lists {topics:?}"
        );
        Ok(())
    })
}
