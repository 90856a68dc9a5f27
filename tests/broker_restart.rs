//! Durability across broker restarts, seen through a real client: records acknowledged with
//! acks=all and the topic configs set at creation are all there after a SIGTERM (clean shutdown:
//! exit status 0 and the clean-shutdown marker) and after a SIGKILL (recovery), and an idempotent
//! producer that lived through the restart goes on producing without duplicates or gaps.

use anyhow::{Context, anyhow, ensure};
use rdkafka::Offset;
use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use weir_tests::broker::{BrokerProcess, persisted_overrides};

#[path = "support/rdkafka_clients.rs"]
mod rdkafka_clients;
use rdkafka_clients::{
    TIMEOUT, admin_options, block_on, client_config, describe_topic_configs, runtime,
};

/// Bound on any single client operation.
const CLEAN_SHUTDOWN_MARKER: &str = ".kafka_cleanshutdown";
const TOPIC: &str = "durable";
/// Small segments, so the restarted broker reopens (or recovers) many of them.
const SEGMENT_BYTES: &str = "65536";
const RETENTION_MS: &str = "3600000";
/// Records produced to each partition of [`TOPIC`] before the restart.
const RECORDS_BEFORE: [usize; 2] = [1500, 700];
/// Records the surviving producer sends to partition 0 after the restart.
const RECORDS_AFTER: usize = 300;

/// A record as sent and as read back: key, value, headers.
type Record = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Vec<u8>)>);

#[derive(Debug, Clone, Copy)]
enum Stop {
    Terminate,
    Kill,
}

fn record(partition: i32, index: usize) -> Record {
    let key = (!index.is_multiple_of(5)).then(|| format!("key-{partition}-{index}").into_bytes());
    // Padded so the records fill several 64 KiB segments.
    let value = format!("partition {partition} record {index} ")
        .repeat(1 + index % 6)
        .into_bytes();
    let headers = vec![("i".to_string(), index.to_string().into_bytes())];
    (key, Some(value), headers)
}

/// Sends `records` to `partition` in order and returns the acknowledged offsets.
fn produce(
    runtime: &tokio::runtime::Runtime,
    producer: &FutureProducer,
    partition: i32,
    records: &[Record],
) -> anyhow::Result<Vec<i64>> {
    let mut pending = Vec::with_capacity(records.len());
    for (index, (key, value, headers)) in records.iter().enumerate() {
        let mut message: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(TOPIC).partition(partition);
        if let Some(key) = key {
            message = message.key(key.as_slice());
        }
        if let Some(value) = value {
            message = message.payload(value.as_slice());
        }
        let headers = headers
            .iter()
            .fold(OwnedHeaders::new(), |all, (key, value)| {
                all.insert(Header {
                    key,
                    value: Some(value.as_slice()),
                })
            });
        message = message.headers(headers);
        pending.push(
            producer
                .send_result(message)
                .map_err(|(error, _)| anyhow!("queueing record {index}: {error}"))?,
        );
    }
    let results = block_on(runtime, "delivery of the produced records", async {
        let mut results = Vec::with_capacity(pending.len());
        for delivery in pending {
            results.push(delivery.await);
        }
        results
    })?;
    results
        .into_iter()
        .enumerate()
        .map(|(index, result)| match result {
            Ok(Ok(delivery)) => Ok(delivery.offset),
            Ok(Err((error, _))) => Err(anyhow!("record {index} was not delivered: {error}")),
            Err(_) => Err(anyhow!("record {index}: the delivery report was dropped")),
        })
        .collect()
}

/// Reads `count` records of `partition` from the beginning (all within the deadline).
fn consume(
    broker: &BrokerProcess,
    partition: i32,
    count: usize,
) -> anyhow::Result<Vec<(i64, Record)>> {
    let consumer: BaseConsumer = rdkafka_clients::assigned_consumer(broker, &[])?;
    let consumed: Vec<(i64, Record)> =
        rdkafka_clients::read_partition(&consumer, TOPIC, partition, Offset::Beginning, count)?
            .iter()
            .map(|message| {
                let headers = message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|header| {
                                (
                                    header.key.to_string(),
                                    header.value.map(<[u8]>::to_vec).unwrap_or_default(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    message.offset(),
                    (
                        message.key().map(<[u8]>::to_vec),
                        message.payload().map(<[u8]>::to_vec),
                        headers,
                    ),
                )
            })
            .collect();
    // Nothing beyond what was acknowledged: the high watermark is exactly `count`.
    let (low, high) = consumer.fetch_watermarks(TOPIC, partition, TIMEOUT)?;
    ensure!(
        (low, high) == (0, count as i64),
        "partition {partition}: watermarks ({low}, {high}), expected (0, {count})"
    );
    Ok(consumed)
}

/// Checks partition `partition` holds exactly `expected`, at offsets 0, 1, 2, ...
fn check_partition(
    broker: &BrokerProcess,
    partition: i32,
    expected: &[Record],
) -> anyhow::Result<()> {
    let consumed = consume(broker, partition, expected.len())?;
    for (index, ((offset, got), want)) in consumed.iter().zip(expected).enumerate() {
        ensure!(
            *offset == index as i64,
            "partition {partition}: record {index} read at offset {offset}"
        );
        ensure!(
            got == want,
            "partition {partition}: record {index} differs: {got:?} vs {want:?}"
        );
    }
    Ok(())
}

/// Checks the overrides set at creation are in force after the restart: DescribeConfigs reports
/// them, and the metadata log the broker restarted from holds them.
fn check_topic_configs(
    broker: &BrokerProcess,
    runtime: &tokio::runtime::Runtime,
    admin: &AdminClient<DefaultClientContext>,
) -> anyhow::Result<()> {
    let expected = [
        ("retention.ms", RETENTION_MS),
        ("segment.bytes", SEGMENT_BYTES),
    ];
    let configs = describe_topic_configs(runtime, admin, TOPIC)?
        .ok_or_else(|| anyhow!("the broker does not serve DescribeConfigs"))?;
    let persisted = persisted_overrides(broker, TOPIC)?;
    for (key, value) in expected {
        ensure!(
            configs.get(key) == Some(&Some(value.to_string())),
            "DescribeConfigs reports {key}={:?} after the restart, created with {value}",
            configs.get(key)
        );
        ensure!(
            persisted.get(key).map(String::as_str) == Some(value),
            "the metadata log holds {key}={:?}, created with {value}",
            persisted.get(key)
        );
    }
    Ok(())
}

fn survives(stop: Stop) -> anyhow::Result<()> {
    let mut broker = BrokerProcess::start(&[])?;
    let result = survives_on(&mut broker, stop);
    result.map_err(|error| error.context(format!("broker log:\n{}", broker.log())))
}

fn survives_on(broker: &mut BrokerProcess, stop: Stop) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let admin: AdminClient<DefaultClientContext> = client_config(broker).create()?;
    let topic = NewTopic::new(TOPIC, 2, TopicReplication::Fixed(1))
        .set("retention.ms", RETENTION_MS)
        .set("segment.bytes", SEGMENT_BYTES);
    let created = block_on(
        &runtime,
        "CreateTopics",
        admin.create_topics([&topic], &admin_options()),
    )??;
    ensure!(
        created == [Ok(TOPIC.to_string())],
        "CreateTopics answered {created:?}"
    );

    let producer: FutureProducer = client_config(broker)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        // Batches must fit the topic's 64 KiB segments (as with Kafka, a larger batch is refused).
        .set("batch.size", "16384")
        // Long enough to ride out the restart; still inside TIMEOUT.
        .set("message.timeout.ms", "15000")
        .create()?;
    let mut expected: Vec<Vec<Record>> = Vec::new();
    for (partition, count) in RECORDS_BEFORE.iter().enumerate() {
        let partition = partition as i32;
        let records: Vec<Record> = (0..*count).map(|i| record(partition, i)).collect();
        let offsets = produce(&runtime, &producer, partition, &records)?;
        ensure!(
            offsets == (0..*count as i64).collect::<Vec<_>>(),
            "partition {partition}: offsets before the restart are not 0..{count}"
        );
        expected.push(records);
    }
    producer.flush(TIMEOUT)?;

    let marker = broker.data_dir.join(CLEAN_SHUTDOWN_MARKER);
    match stop {
        Stop::Terminate => {
            let status = broker.terminate()?;
            ensure!(status.success(), "SIGTERM ended the broker with {status}");
            ensure!(
                marker.exists(),
                "no {CLEAN_SHUTDOWN_MARKER} after a clean shutdown"
            );
        }
        Stop::Kill => {
            broker.kill();
            ensure!(
                !marker.exists(),
                "{CLEAN_SHUTDOWN_MARKER} exists after a SIGKILL"
            );
        }
    }
    broker.restart()?;

    for (partition, records) in expected.iter().enumerate() {
        check_partition(broker, partition as i32, records)
            .with_context(|| format!("after {stop:?} and restart"))?;
    }
    // Reading worked, so the data directory is open: the marker must be gone by now, or a crash
    // from here on would be mistaken for a clean shutdown.
    ensure!(
        !marker.exists(),
        "{CLEAN_SHUTDOWN_MARKER} is still there while the restarted broker runs"
    );

    // The producer from before the restart continues its sequence on partition 0: the broker
    // must have kept (or rebuilt) its producer state to accept it, and nothing may be doubled.
    let first_after = RECORDS_BEFORE[0];
    let more: Vec<Record> = (first_after..first_after + RECORDS_AFTER)
        .map(|i| record(0, i))
        .collect();
    let offsets = produce(&runtime, &producer, 0, &more)
        .context("the idempotent producer after the restart")?;
    ensure!(
        offsets == (first_after as i64..(first_after + RECORDS_AFTER) as i64).collect::<Vec<_>>(),
        "offsets after the restart are not contiguous from {first_after}: {:?}..",
        offsets.first()
    );
    // A producer started after the restart gets a fresh producer id and works too.
    let fresh: FutureProducer = client_config(broker)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "15000")
        .create()?;
    let fresh_records: Vec<Record> = (RECORDS_BEFORE[1]..RECORDS_BEFORE[1] + 50)
        .map(|i| record(1, i))
        .collect();
    let offsets = produce(&runtime, &fresh, 1, &fresh_records)?;
    ensure!(
        offsets.first() == Some(&(RECORDS_BEFORE[1] as i64)),
        "a fresh producer's first offset is {:?}",
        offsets.first()
    );
    expected[0].extend(more);
    expected[1].extend(fresh_records);
    for (partition, records) in expected.iter().enumerate() {
        check_partition(broker, partition as i32, records)
            .with_context(|| format!("after producing again following {stop:?}"))?;
    }

    check_topic_configs(broker, &runtime, &admin)
}

#[test]
fn acknowledged_data_and_configs_survive_sigterm() -> anyhow::Result<()> {
    survives(Stop::Terminate)
}

#[test]
fn acknowledged_data_and_configs_survive_sigkill() -> anyhow::Result<()> {
    survives(Stop::Kill)
}

/// Restarts in a row, clean and not (SIGTERM, SIGKILL, SIGTERM), each find every record: what
/// one run leaves behind (a clean-shutdown marker, checkpoints) must not mislead the next.
#[test]
fn two_restarts_in_a_row_keep_everything() -> anyhow::Result<()> {
    let mut broker = BrokerProcess::start(&[])?;
    let result = (|| -> anyhow::Result<()> {
        let runtime = runtime()?;
        let producer: FutureProducer = client_config(&broker)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "15000")
            .create()?;
        let records: Vec<Record> = (0..200).map(|i| record(0, i)).collect();
        // TOPIC is auto-created here (one partition, broker defaults).
        produce(&runtime, &producer, 0, &records)?;
        producer.flush(TIMEOUT)?;
        drop(producer);
        for stop in [Stop::Terminate, Stop::Kill, Stop::Terminate] {
            match stop {
                Stop::Terminate => {
                    let status = broker.terminate()?;
                    ensure!(status.success(), "SIGTERM ended the broker with {status}");
                }
                Stop::Kill => broker.kill(),
            }
            broker.restart()?;
            check_partition(&broker, 0, &records).with_context(|| format!("after {stop:?}"))?;
        }
        Ok(())
    })();
    result.map_err(|error| error.context(format!("broker log:\n{}", broker.log())))
}
