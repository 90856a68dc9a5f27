//! kafkajs, a pure JavaScript Kafka client (a stack independent of librdkafka and of the Python
//! clients), against a real broker: `tests/clients/kafkajs_client.js` creates a topic, checks
//! its configs and produces keyed records with headers (plain and gzip) from an idempotent
//! acks=all producer. kafkajs partitions keys with the Java client's murmur2; the records are
//! read back here with librdkafka, and each key must sit where Weir's default partitioner puts
//! it. `.ci/run` installs kafkajs (`npm ci --prefix tests/clients`).

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use weir_tests::broker::BrokerProcess;
use weir_tests::clients::{client_scripts_dir, node_with_kafkajs, run};

#[allow(dead_code)]
#[path = "support/rdkafka_clients.rs"]
mod rdkafka_clients;

const TOPIC: &str = "kafkajs-orders";
const PARTITIONS: i32 = 4;
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn kafkajs_admin_and_idempotent_producer() -> anyhow::Result<()> {
    let Some(node) = node_with_kafkajs()? else {
        return Ok(());
    };
    let broker = BrokerProcess::start(&[])?;
    let script = client_scripts_dir().join("kafkajs_client.js");
    let script = script.to_str().context("script path is not UTF-8")?;
    let (success, output) = run(&node, &[script, &broker.bootstrap(), TOPIC], SCRIPT_TIMEOUT)?;
    println!("{output}");
    if !success {
        bail!(
            "kafkajs_client.js failed:\n{output}\nbroker log:\n{}",
            broker.log()
        );
    }

    // Every record, read back with librdkafka, where murmur2 puts its key.
    let consumer = rdkafka_clients::assigned_consumer(&broker, &[])?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment.add_partition_offset(TOPIC, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + rdkafka_clients::TIMEOUT;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 60 {
        ensure!(
            Instant::now() < deadline,
            "{} of 60 records read back within {:?}",
            seen.len(),
            rdkafka_clients::TIMEOUT
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        let key = message.key().context("a record without a key")?;
        let index: usize = std::str::from_utf8(key)?
            .strip_prefix("key-")
            .context("unexpected key")?
            .parse()?;
        ensure!(
            message.payload() == Some(format!("value-{index}").as_bytes()),
            "record {index}: value {:?}",
            message.payload().map(String::from_utf8_lossy)
        );
        let headers = message.headers().context("no headers")?;
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value.map(<[u8]>::to_vec))
        };
        ensure!(
            header("source") == Some(b"kafkajs".to_vec()),
            "record {index}: source header"
        );
        ensure!(
            header("index") == Some(index.to_string().into_bytes()),
            "record {index}: index header"
        );
        let expected = weir_partitioner_default::partition_for_key(key, PARTITIONS as u32);
        ensure!(
            message.partition() as u32 == expected,
            "key-{index} is on partition {}, murmur2 says {expected}",
            message.partition()
        );
        ensure!(seen.insert(index), "record {index} read twice");
    }
    Ok(())
}
