//! librdkafka client plumbing shared by the broker tests that use the `rdkafka` crate. Included
//! with `#[path]` by each test file, because the support library itself cannot depend on a
//! dev-dependency.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use weir_tests::broker::BrokerProcess;

/// Every client call and wait in these tests gives up after this long.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The admin futures need an executor; a current-thread runtime is enough because librdkafka's
/// own threads do the I/O and only complete the futures.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?)
}

/// Runs `future` to completion or fails after [`TIMEOUT`].
pub fn block_on<T>(
    runtime: &tokio::runtime::Runtime,
    what: &str,
    future: impl Future<Output = T>,
) -> anyhow::Result<T> {
    // The timer must be created inside the runtime, hence the async block.
    runtime
        .block_on(async { tokio::time::timeout(TIMEOUT, future).await })
        .map_err(|_| anyhow!("{what} did not finish within {TIMEOUT:?}"))
}

/// A client config pointed at `broker`.
pub fn client_config(broker: &BrokerProcess) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap())
        // The broker listens on 127.0.0.1 only; skip trying ::1 for "localhost"-style names.
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        // A restarted broker comes back within a second or two: retry connecting often.
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500");
    config
}

/// Admin requests wait at most this long on the broker.
pub fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(10)))
        .operation_timeout(Some(Duration::from_secs(10)))
}

/// The configs DescribeConfigs reports for `topic`, or `None` when the broker does not serve the
/// API (librdkafka then reports an unsupported feature without sending anything).
pub fn describe_topic_configs(
    runtime: &tokio::runtime::Runtime,
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> anyhow::Result<Option<BTreeMap<String, Option<String>>>> {
    let resource = ResourceSpecifier::Topic(topic);
    let answer = block_on(
        runtime,
        "DescribeConfigs",
        admin.describe_configs([&resource], &admin_options()),
    )?;
    let results = match answer {
        Err(KafkaError::AdminOp(RDKafkaErrorCode::UnsupportedFeature)) => return Ok(None),
        other => other?,
    };
    let [result] = <[_; 1]>::try_from(results)
        .map_err(|results| anyhow!("expected one config resource, got {results:?}"))?;
    let resource = result.map_err(|code| anyhow!("DescribeConfigs({topic}) failed: {code:?}"))?;
    Ok(Some(
        resource
            .entries
            .into_iter()
            .map(|entry| (entry.name, entry.value))
            .collect(),
    ))
}

/// A consumer for `assign`ed partitions. librdkafka wants a group id before it allows `assign`;
/// nothing here commits or joins, so the group is never created.
pub fn assigned_consumer(
    broker: &BrokerProcess,
    extra: &[(&str, &str)],
) -> anyhow::Result<rdkafka::consumer::BaseConsumer> {
    let mut config = client_config(broker);
    config
        .set("group.id", "weir-tests")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // The broker answers a connection's requests in order, as Kafka does, so a parked fetch
        // holds up a watermark or offset query behind it: keep the park short by default.
        .set("fetch.wait.max.ms", "50");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
        .create()
        .map_err(|error| anyhow!("creating the consumer: {error}"))
}

/// Assigns `consumer` to `topic`'s `partition` from `from` and reads exactly `count` records,
/// failing on a consumer error or when they have not all arrived within [`TIMEOUT`].
pub fn read_partition(
    consumer: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    partition: i32,
    from: rdkafka::Offset,
    count: usize,
) -> anyhow::Result<Vec<rdkafka::message::OwnedMessage>> {
    use rdkafka::consumer::Consumer;
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, from)?;
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut consumed = Vec::with_capacity(count);
    while consumed.len() < count {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        anyhow::ensure!(
            !left.is_zero(),
            "only {} of {count} records of {topic}-{partition} arrived within {TIMEOUT:?}",
            consumed.len()
        );
        match consumer.poll(left.min(Duration::from_millis(500))) {
            None => {}
            Some(Err(error)) => anyhow::bail!(
                "consumer error after {} records of {topic}-{partition}: {error}",
                consumed.len()
            ),
            Some(Ok(message)) => consumed.push(message.detach()),
        }
    }
    Ok(consumed)
}
