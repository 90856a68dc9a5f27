//! The HTTP admin API of a real broker process: plugins (install, list, activate broker-wide and
//! per topic, rollback, remove and its refusals), bad input of every kind, HTTP produce read back
//! with librdkafka (keys on their murmur2 partitions), `/metrics`, and `--plugin-dir`.
//!
//! Every wait polls with a deadline; nothing sleeps a fixed time.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure};
use rdkafka::Offset;
use rdkafka::message::{Headers, Message};
use serde_json::{Value, json};
use weir_tests::broker::{BrokerProcess, persisted_overrides};

#[path = "support/rdkafka_clients.rs"]
mod rdkafka_clients;
use rdkafka_clients::{
    TIMEOUT, admin_options, assigned_consumer, describe_topic_configs, read_partition, runtime,
};

/// The built-in partitioner's component: a valid partitioner plugin to install under other names.
const PARTITIONER: &[u8] = weir::policy::defaults::PARTITIONER;
/// A valid component of another kind.
const ACKS: &[u8] = weir::policy::defaults::ACKS;

/// An answer of the admin API: status and JSON body (`Value::Null` when not JSON).
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    text: String,
}

impl Answer {
    fn expect(self, status: u16) -> anyhow::Result<Value> {
        ensure!(
            self.status == status,
            "expected HTTP {status}, got {}: {}",
            self.status,
            self.text
        );
        Ok(self.body)
    }

    /// An error answer: its status, and a JSON `error` message containing `needle`.
    fn expect_error(self, status: u16, needle: &str) -> anyhow::Result<Value> {
        let body = self.expect(status)?;
        let message = body["error"]
            .as_str()
            .ok_or_else(|| anyhow!("no `error` in {body}"))?;
        ensure!(
            message.contains(needle),
            "the error `{message}` does not mention `{needle}`"
        );
        Ok(body)
    }
}

struct Admin {
    base: String,
    agent: ureq::Agent,
}

impl Admin {
    /// The broker's admin API, once it answers.
    fn of(broker: &BrokerProcess) -> anyhow::Result<Admin> {
        let admin = Admin {
            base: broker.admin_url(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(TIMEOUT))
                .build()
                .into(),
        };
        wait_for("the admin API to answer", || {
            Ok(admin.get("/v1/plugins").is_ok_and(|a| a.status == 200))
        })?;
        Ok(admin)
    }

    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Answer> {
        let mut response = response?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer { status, body, text })
    }

    fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.answer(self.agent.get(format!("{}{path}", self.base)).call())
    }

    fn delete(&self, path: &str) -> anyhow::Result<Answer> {
        self.answer(self.agent.delete(format!("{}{path}", self.base)).call())
    }

    fn post(&self, path: &str, body: &[u8]) -> anyhow::Result<Answer> {
        self.answer(self.agent.post(format!("{}{path}", self.base)).send(body))
    }

    fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        self.answer(
            self.agent
                .post(format!("{}{path}", self.base))
                .content_type("application/json")
                .send(body.to_string().as_bytes()),
        )
    }

    fn plugin(&self, name: &str) -> anyhow::Result<Value> {
        self.get(&format!("/v1/plugins/{name}"))?.expect(200)
    }
}

/// Polls `done` every 50 ms until it holds or [`TIMEOUT`] passes.
fn wait_for(what: &str, mut done: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if done()? {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a test body against a fresh broker and, when it fails, adds the broker's log.
fn with_broker(
    config: &[&str],
    args: &[&str],
    test: impl FnOnce(&mut BrokerProcess) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut broker = BrokerProcess::start_with_args(config, args)?;
    test(&mut broker).map_err(|error| {
        let log = broker.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        error.context(format!("broker log (last 40 lines):\n{}", tail.join("\n")))
    })
}

/// `policy.partitioner` as DescribeConfigs reports it for `topic`.
fn described_partitioner(broker: &BrokerProcess, topic: &str) -> anyhow::Result<Option<String>> {
    let runtime = runtime()?;
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka_clients::client_config(broker).create()?;
    let configs = describe_topic_configs(&runtime, &admin, topic)?
        .ok_or_else(|| anyhow!("the broker does not serve DescribeConfigs"))?;
    Ok(configs.get("policy.partitioner").cloned().flatten())
}

#[test]
fn plugins_install_list_activate_rollback_and_remove() -> anyhow::Result<()> {
    with_broker(&[], &[], |broker| {
        let admin = Admin::of(broker)?;

        // Bad installs: each refused with a reason, none installs anything.
        admin
            .post("/v1/plugins?name=junk", b"\0asm but not really")?
            .expect_error(400, "compiling")?;
        admin
            .post("/v1/plugins", PARTITIONER)?
            .expect_error(400, "`name` is required")?;
        admin
            .post("/v1/plugins?name=empty", b"")?
            .expect_error(400, "empty")?;
        admin
            .post("/v1/plugins?name=bad%20name!", PARTITIONER)?
            .expect_error(400, "not a valid plugin name")?;
        admin
            .post("/v1/plugins?name=partitioner-default", PARTITIONER)?
            .expect_error(409, "built-in")?;

        // Install two versions; installing alone activates nothing.
        let installed = admin
            .post("/v1/plugins?name=murmur", PARTITIONER)?
            .expect(201)?;
        ensure!(installed["name"] == "murmur", "{installed}");
        ensure!(installed["kind"] == "partitioner", "{installed}");
        ensure!(installed["versions"][0]["version"] == "1", "{installed}");
        ensure!(installed["current_version"].is_null(), "{installed}");
        let second = admin
            .post("/v1/plugins?name=murmur&version=2", PARTITIONER)?
            .expect(201)?;
        ensure!(
            second["versions"].as_array().map(Vec::len) == Some(2),
            "{second}"
        );
        admin
            .post("/v1/plugins?name=murmur&version=3", ACKS)?
            .expect_error(409, "partitioner plugin")?;
        admin
            .post("/v1/plugins?name=murmur&version=2", ACKS)?
            .expect_error(409, "already installed")?;

        let list = admin.get("/v1/plugins")?.expect(200)?;
        let names: Vec<&str> = list["plugins"]
            .as_array()
            .ok_or_else(|| anyhow!("no plugins in {list}"))?
            .iter()
            .filter_map(|plugin| plugin["name"].as_str())
            .collect();
        ensure!(
            names
                == [
                    "election-default",
                    "partitioner-default",
                    "acks-default",
                    "murmur"
                ],
            "{names:?}"
        );

        // Activation: bad requests first.
        admin
            .post_json("/v1/plugins/nothing/activate", &json!({}))?
            .expect_error(404, "no plugin named `nothing`")?;
        admin
            .post_json("/v1/plugins/murmur/activate", &json!({"version": "9"}))?
            .expect_error(404, "no version 9")?;
        admin
            .post("/v1/plugins/murmur/activate", b"{not json")?
            .expect_error(400, "not")?;
        admin
            .post_json("/v1/plugins/murmur/activate", &json!({"topic": "nope"}))?
            .expect_error(404, "does not exist")?;

        // Broker-wide: every topic without its own binding reports it.
        let active = admin
            .post_json("/v1/plugins/murmur/activate", &json!({"version": "1"}))?
            .expect(200)?;
        ensure!(active["current_version"] == "1", "{active}");
        ensure!(active["default_for_kind"] == true, "{active}");
        create_topic(broker, "orders", 1)?;
        let produced = admin
            .post_json(
                "/v1/topics/orders/records",
                &json!({"records": [{"key": "k", "value": "v"}]}),
            )?
            .expect(200)?;
        ensure!(produced["offsets"][0]["offset"] == 0, "{produced}");
        ensure!(
            described_partitioner(broker, "orders")?.as_deref() == Some("murmur"),
            "DescribeConfigs shows the broker-wide partitioner"
        );

        // A newer version, then back.
        let newer = admin
            .post("/v1/plugins/murmur/activate", b"")?
            .expect(200)?;
        ensure!(newer["current_version"] == "2", "{newer}");
        let back = admin
            .post("/v1/plugins/murmur/rollback", b"")?
            .expect(200)?;
        ensure!(back["current_version"] == "1", "{back}");
        admin
            .post("/v1/plugins/murmur/rollback", b"")?
            .expect_error(409, "no earlier version")?;
        admin
            .post("/v1/plugins/nothing/rollback", b"")?
            .expect_error(404, "no plugin named")?;

        // Removal is refused while the plugin is in use.
        admin
            .delete("/v1/plugins/murmur")?
            .expect_error(409, "broker-wide")?;
        admin
            .post_json("/v1/plugins/partitioner-default/activate", &json!({}))?
            .expect(200)?;
        ensure!(admin.plugin("murmur")?["default_for_kind"] == false);
        ensure!(admin.plugin("partitioner-default")?["default_for_kind"] == true);

        // Per topic: the topic config names it.
        let bound = admin
            .post_json("/v1/plugins/murmur/activate", &json!({"topic": "orders"}))?
            .expect(200)?;
        ensure!(bound["default_for_kind"] == false, "{bound}");
        ensure!(
            persisted_overrides(broker, "orders")?
                .get("policy.partitioner")
                .map(String::as_str)
                == Some("murmur"),
            "the metadata file binds orders to murmur"
        );
        ensure!(described_partitioner(broker, "orders")?.as_deref() == Some("murmur"));
        admin
            .delete("/v1/plugins/murmur")?
            .expect_error(409, "bound to topics orders")?;

        // Unbound, it goes.
        admin
            .post_json(
                "/v1/plugins/partitioner-default/activate",
                &json!({"topic": "orders"}),
            )?
            .expect(200)?;
        let removed = admin.delete("/v1/plugins/murmur")?.expect(200)?;
        ensure!(removed["removed"] == "murmur", "{removed}");
        admin
            .get("/v1/plugins/murmur")?
            .expect_error(404, "no plugin named")?;
        admin
            .delete("/v1/plugins/murmur")?
            .expect_error(404, "no plugin named")?;
        admin
            .delete("/v1/plugins/acks-default")?
            .expect_error(409, "built in")?;
        admin
            .get("/v2/nothing")?
            .expect_error(404, "no such endpoint")?;
        admin.delete("/metrics")?.expect_error(405, "method")?;

        // The admin API stops with the broker: SIGTERM still exits cleanly.
        let status = broker.terminate()?;
        ensure!(status.success(), "exit status {status}");
        Ok(())
    })
}

/// One record as the test sends it over HTTP.
#[derive(Debug, Clone)]
struct Sent {
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, String)>,
    partition: Option<u32>,
}

impl Sent {
    fn json(&self) -> Value {
        let mut record = json!({"key": self.key, "value": self.value});
        if !self.headers.is_empty() {
            record["headers"] = self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        if let Some(partition) = self.partition {
            record["partition"] = partition.into();
        }
        record
    }
}

/// A record read back: offset, key, value, headers.
type ReadBack = (i64, Option<String>, Option<String>, Vec<(String, String)>);

/// Reads `count` records of `topic`'s `partition` from offset 0.
fn consume_partition(
    broker: &BrokerProcess,
    topic: &str,
    partition: i32,
    count: usize,
) -> anyhow::Result<Vec<ReadBack>> {
    let consumer = assigned_consumer(broker, &[])?;
    let text = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8_lossy(b).into_owned());
    Ok(
        read_partition(&consumer, topic, partition, Offset::Beginning, count)?
            .iter()
            .map(|message| {
                (
                    message.offset(),
                    text(message.key()),
                    text(message.payload()),
                    message
                        .headers()
                        .map(|headers| {
                            headers
                                .iter()
                                .map(|h| (h.key.to_string(), text(h.value).unwrap_or_default()))
                                .collect()
                        })
                        .unwrap_or_default(),
                )
            })
            .collect(),
    )
}

/// Creates a topic with `weir topics --create` (HTTP produce, like Kafka's Produce, never creates
/// one).
fn create_topic(broker: &BrokerProcess, topic: &str, partitions: u32) -> anyhow::Result<()> {
    let partitions = partitions.to_string();
    let created = weir_tests::broker::run_weir(
        &[
            "topics",
            "--bootstrap-server",
            &broker.bootstrap(),
            "--create",
            "--topic",
            topic,
            "--partitions",
            &partitions,
            "--replication-factor",
            "1",
        ],
        "",
    )?;
    ensure!(created.status.success(), "creating {topic}: {created:?}");
    Ok(())
}

#[test]
fn http_produce_places_keys_with_the_partitioner_and_records_read_back() -> anyhow::Result<()> {
    with_broker(&["num.partitions=4"], &[], |broker| {
        let admin = Admin::of(broker)?;
        let partition_count = 4u32;
        let sent: Vec<Sent> = (0..40)
            .map(|index| Sent {
                key: match index {
                    7 | 23 => None,
                    _ => Some(format!("user-{}", index % 9)),
                },
                value: (index != 11).then(|| format!("event {index}")),
                headers: if index % 5 == 0 {
                    vec![
                        ("source".into(), "http".into()),
                        ("n".into(), index.to_string()),
                    ]
                } else {
                    Vec::new()
                },
                partition: (index == 13).then_some(2),
            })
            .collect();
        let body = json!({"records": sent.iter().map(Sent::json).collect::<Vec<_>>()});
        create_topic(broker, "events", partition_count)?;
        let answer = admin
            .post_json("/v1/topics/events/records", &body)?
            .expect(200)?;
        let offsets = answer["offsets"]
            .as_array()
            .ok_or_else(|| anyhow!("no offsets in {answer}"))?;
        ensure!(offsets.len() == sent.len(), "{answer}");

        // Placement: keys on their murmur2 partition, the named partition where named; offsets
        // dense per partition, in record order.
        let mut expected: BTreeMap<u32, Vec<(i64, &Sent)>> = BTreeMap::new();
        for (record, placed) in sent.iter().zip(offsets) {
            let partition = placed["partition"]
                .as_u64()
                .ok_or_else(|| anyhow!("{placed}"))? as u32;
            let offset = placed["offset"]
                .as_i64()
                .ok_or_else(|| anyhow!("{placed}"))?;
            ensure!(partition < partition_count, "{placed}");
            match (&record.partition, &record.key) {
                (Some(named), _) => ensure!(partition == *named, "{record:?} -> {placed}"),
                (None, Some(key)) => ensure!(
                    partition
                        == weir_partitioner_default::partition_for_key(
                            key.as_bytes(),
                            partition_count
                        ),
                    "{record:?} -> {placed}"
                ),
                (None, None) => {}
            }
            let on_partition = expected.entry(partition).or_default();
            ensure!(
                offset == on_partition.len() as i64,
                "offset {offset} on partition {partition}: {answer}"
            );
            on_partition.push((offset, record));
        }
        ensure!(expected.len() > 1, "the keys should spread: {answer}");

        // Read back with librdkafka: every record, key, value and header where it was placed.
        for (partition, records) in &expected {
            let consumed = consume_partition(broker, "events", *partition as i32, records.len())?;
            for ((offset, record), (got_offset, key, value, headers)) in
                records.iter().zip(&consumed)
            {
                ensure!(offset == got_offset, "{record:?} at {got_offset}");
                ensure!(&record.key == key, "{record:?}: key {key:?}");
                ensure!(&record.value == value, "{record:?}: value {value:?}");
                let mut sent_headers = record.headers.clone();
                sent_headers.sort();
                let mut got_headers = headers.clone();
                got_headers.sort();
                ensure!(
                    sent_headers == got_headers,
                    "{record:?}: headers {headers:?}"
                );
            }
        }

        // A topic bound to an installed partitioner: its plugin is called (metrics say so).
        admin
            .post("/v1/plugins?name=murmur", PARTITIONER)?
            .expect(201)?;
        admin
            .post_json("/v1/plugins/murmur/activate", &json!({"topic": "events"}))?
            .expect(200)?;
        let answer = admin
            .post_json(
                "/v1/topics/events/records",
                &json!({"records": [{"key": "user-1", "value": "again"}]}),
            )?
            .expect(200)?;
        ensure!(
            answer["offsets"][0]["partition"]
                == weir_partitioner_default::partition_for_key(b"user-1", partition_count),
            "{answer}"
        );
        let metrics = admin.get("/metrics")?;
        ensure!(metrics.status == 200, "{metrics:?}");
        for needle in [
            "# TYPE weir_policy_calls_total counter",
            "weir_policy_calls_total{policy=\"partitioner\",plugin=\"partitioner-default\"",
            "weir_policy_calls_total{policy=\"partitioner\",plugin=\"murmur\",version=\"1\"} 1",
            "weir_policy_calls_total{policy=\"acks\",plugin=\"acks-default\"",
            "weir_topics 1",
            "weir_partitions 4",
            "weir_partition_log_end_offset{topic=\"events\",partition=\"",
            "weir_partition_high_watermark{topic=\"events\",partition=\"",
        ] {
            ensure!(
                metrics.text.contains(needle),
                "/metrics lacks {needle}:\n{}",
                metrics.text
            );
        }

        // Bad input: a reason for each, nothing written, the broker still up.
        let records = "/v1/topics/events/records";
        admin
            .post(records, b"{\"records\": [")?
            .expect_error(400, "not")?;
        admin.post(records, b"[1, 2]")?.expect_error(400, "not")?;
        admin
            .post_json(records, &json!({"records": []}))?
            .expect_error(400, "empty")?;
        admin
            .post_json(records, &json!({"records": [{"val": "typo"}]}))?
            .expect_error(400, "unknown field")?;
        admin
            .post_json(records, &json!({"records": [{"value": 5}]}))?
            .expect_error(400, "invalid type")?;
        let body = admin
            .post_json(
                records,
                &json!({"records": [{"value": "x", "partition": 9}]}),
            )?
            .expect_error(404, "partition 9 does not exist")?;
        ensure!(body["error_code"] == 3, "{body}");
        let body = admin
            .post_json(
                "/v1/topics/bad%20name!/records",
                &json!({"records": [{"value": "x"}]}),
            )?
            .expect(400)?;
        ensure!(body["error_code"] == 17, "{body}");
        // Producing never creates a topic (only Metadata does): 404, and nothing is created.
        let body = admin
            .post_json(
                "/v1/topics/never-created/records",
                &json!({"records": [{"value": "x"}]}),
            )?
            .expect_error(404, "does not exist")?;
        ensure!(body["error_code"] == 3, "{body}");
        let metrics = admin.get("/metrics")?.text;
        ensure!(
            !metrics.contains("topic=\"never-created\""),
            "an HTTP produce created the topic:\n{metrics}"
        );
        // A record larger than max.message.bytes (1 MiB) but within the body limit.
        let big = "x".repeat(2 << 20);
        let body = admin
            .post_json(records, &json!({"records": [{"value": big}]}))?
            .expect(400)?;
        ensure!(body["error_code"] == 10, "MESSAGE_TOO_LARGE: {body}");
        // Over the 8 MiB body limit: 413 before the body is parsed.
        let status = oversized_post(broker.admin_port, records, 9 << 20)?;
        ensure!(status == 413, "HTTP {status} for a 9 MiB body");
        ensure!(
            admin.get("/v1/plugins")?.status == 200,
            "the broker survives"
        );
        let metrics = admin.get("/metrics")?.text;
        let total: u64 = metrics
            .lines()
            .filter(|line| line.starts_with("weir_partition_log_end_offset{topic=\"events\""))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        ensure!(total == 41, "bad requests wrote nothing: {total} records");

        // acks=-1 semantics: a topic this one broker cannot satisfy is refused, retriably.
        let runtime = runtime()?;
        let kafka_admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
            rdkafka_clients::client_config(broker).create()?;
        let strict =
            rdkafka::admin::NewTopic::new("strict", 1, rdkafka::admin::TopicReplication::Fixed(1))
                .set("min.insync.replicas", "2");
        rdkafka_clients::block_on(
            &runtime,
            "CreateTopics",
            kafka_admin.create_topics([&strict], &admin_options()),
        )??;
        let body = admin
            .post_json(
                "/v1/topics/strict/records",
                &json!({"records": [{"value": "x"}]}),
            )?
            .expect(503)?;
        ensure!(body["error_code"] == 19, "NOT_ENOUGH_REPLICAS: {body}");
        ensure!(body["offsets"][0]["offset"].is_null(), "{body}");
        Ok(())
    })
}

/// Sends a POST announcing `length` bytes of body, writes what the server reads, and returns
/// the status it answers with (the server answers 413 without reading everything).
fn oversized_post(port: u16, path: &str, length: usize) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )?;
    // The server may stop reading (and close) once it has seen enough: write errors are fine.
    let chunk = vec![b' '; 64 << 10];
    let mut written = 0;
    while written < length {
        match stream.write(&chunk[..chunk.len().min(length - written)]) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n,
        }
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status in {text:?}"))?;
    Ok(status)
}

/// A different but equally valid component: the partitioner with a custom section appended.
fn with_custom_section(component: &[u8], payload: &[u8]) -> Vec<u8> {
    let name = b"weir-test";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(payload);
    assert!(section.len() < 128, "one-byte LEB128 size");
    let mut bytes = component.to_vec();
    bytes.push(0);
    bytes.push(section.len() as u8);
    bytes.extend_from_slice(&section);
    bytes
}

#[test]
fn plugin_dir_installs_and_activates_what_appears_there() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let plugin_dir = dir
        .path()
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 temp dir"))?;
    with_broker(&[], &["--plugin-dir", plugin_dir], |broker| {
        let admin = Admin::of(broker)?;
        // A bad file is logged and skipped; the broker carries on.
        std::fs::write(dir.path().join("broken.wasm"), b"not a component")?;
        std::fs::write(dir.path().join("notes.txt"), b"ignored")?;
        std::fs::write(dir.path().join("dropped.wasm"), PARTITIONER)?;
        wait_for("dropped.wasm to be active", || {
            let answer = admin.get("/v1/plugins/dropped")?;
            Ok(answer.status == 200
                && answer.body["default_for_kind"] == true
                && answer.body["current_version"] == "1")
        })?;
        wait_for("the refusal of broken.wasm in the log", || {
            Ok(broker.log().contains("plugin file refused"))
        })?;
        admin
            .get("/v1/plugins/broken")?
            .expect_error(404, "no plugin named")?;

        // New bytes under the same name: a new version, activated.
        std::fs::write(
            dir.path().join("dropped.wasm"),
            with_custom_section(PARTITIONER, b"v2"),
        )?;
        wait_for("the new version of dropped.wasm to be active", || {
            let info = admin.plugin("dropped")?;
            Ok(info["current_version"] == "2" && info["default_for_kind"] == true)
        })?;
        create_topic(broker, "t", 1)?;
        let answer = admin
            .post_json(
                "/v1/topics/t/records",
                &json!({"records": [{"key": "k", "value": "v"}]}),
            )?
            .expect(200)?;
        ensure!(answer["offsets"][0]["offset"] == 0, "{answer}");
        let metrics = admin.get("/metrics")?.text;
        ensure!(
            metrics.contains(
                "weir_policy_calls_total{policy=\"partitioner\",plugin=\"dropped\",version=\"2\"} 1"
            ),
            "{metrics}"
        );
        Ok(())
    })
}

/// The key-prefix example partitioner ("eu:" keys to partition 0, "us:" keys to 1).
fn key_prefix_partitioner() -> &'static [u8] {
    static COMPONENTS: weir_tests::plugins::Components =
        weir_tests::plugins::Components::new(&["weir-example-key-prefix-partitioner"]);
    COMPONENTS.get("weir-example-key-prefix-partitioner")
}

/// `weir produce` without `--partition` places records with the topic's own partitioner plugin,
/// fetched from the admin API (`GET /v1/plugins/{name}/component`), as the broker would; when it
/// cannot fetch it, it refuses rather than place records by another rule.
#[test]
fn weir_produce_places_records_with_the_topics_partitioner_plugin() -> anyhow::Result<()> {
    with_broker(&[], &[], |broker| {
        let admin = Admin::of(broker)?;
        let bootstrap = broker.bootstrap();
        let admin_url = broker.admin_url();
        create_topic(broker, "routed", 4)?;
        admin
            .post("/v1/plugins?name=prefix", key_prefix_partitioner())?
            .expect(201)?;
        admin
            .get("/v1/plugins/prefix/component")?
            .expect_error(404, "never been activated")?;
        admin
            .post_json("/v1/plugins/prefix/activate", &json!({"topic": "routed"}))?
            .expect(200)?;
        let served = admin
            .agent
            .get(format!("{admin_url}/v1/plugins/prefix/component"))
            .call()?;
        ensure!(served.status() == 200, "{served:?}");
        ensure!(
            served
                .headers()
                .get("x-weir-plugin-version")
                .map(|v| v.as_bytes())
                == Some(b"1"),
            "{served:?}"
        );
        let served = served.into_body().read_to_vec()?;
        ensure!(
            served == key_prefix_partitioner(),
            "the served component differs"
        );
        admin
            .get("/v1/plugins/nothing/component")?
            .expect_error(404, "no plugin named")?;

        let produce = |admin_url: &str| {
            weir_tests::broker::run_weir(
                &[
                    "produce",
                    "--bootstrap-server",
                    &bootstrap,
                    "--admin-url",
                    admin_url,
                    "--topic",
                    "routed",
                    "--key-separator",
                    "|",
                ],
                "eu:1|a\nus:7|b\neu:9|c\nus:2|d\n",
            )
        };
        let produced = produce(&admin_url)?;
        ensure!(produced.status.success(), "{produced:?}");
        // The built-in would put these keys by murmur2; the plugin routes them by prefix.
        let keys = |records: Vec<ReadBack>| -> Vec<Option<String>> {
            records.into_iter().map(|(_, key, _, _)| key).collect()
        };
        let eu = keys(consume_partition(broker, "routed", 0, 2)?);
        ensure!(eu == [Some("eu:1".into()), Some("eu:9".into())], "{eu:?}");
        let us = keys(consume_partition(broker, "routed", 1, 2)?);
        ensure!(us == [Some("us:7".into()), Some("us:2".into())], "{us:?}");

        let nowhere = format!("http://127.0.0.1:{}", weir_tests::broker::free_port());
        let refused = produce(&nowhere)?;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        ensure!(
            refused.status.code() == Some(1)
                && stderr.contains("the partitioner plugin 'prefix', which could not be fetched"),
            "{refused:?}"
        );
        Ok(())
    })
}
