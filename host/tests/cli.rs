//! `weir topics`, `weir produce`, `weir consume` and `weir plugin` end to end: a real
//! `weir serve` process on free ports, and the CLI run as a person runs it (arguments, standard
//! input, exit code, output).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use weir_partitioner_default::partition_for_key;

/// How long a broker gets to open its data directory and listen.
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one CLI invocation may run before the test calls it hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// `--timeout-ms` for consumers expected to find their records: generous, since they stop at
/// `--max-messages` long before it on a healthy broker.
const CONSUME_TIMEOUT_MS: &str = "15000";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("an ephemeral port")
}

/// A `weir serve` process in its own temporary data directory, killed when dropped.
struct Broker {
    child: Child,
    port: u16,
    admin_port: u16,
    log_path: PathBuf,
    _data: tempfile::TempDir,
}

impl Broker {
    fn start(extra_config: &[&str]) -> Broker {
        let data = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let admin_port = free_port();
        let log_path = data.path().join("broker.log");
        let log = std::fs::File::create(&log_path).expect("broker log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .arg("serve")
            .arg("--set")
            .arg(format!("listeners=PLAINTEXT://127.0.0.1:{port}"))
            .arg("--set")
            .arg(format!("log.dirs={}", data.path().join("data").display()))
            .arg("--set")
            .arg(format!("admin.listener=127.0.0.1:{admin_port}"));
        for item in extra_config {
            command.arg("--set").arg(item);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start weir serve");
        let mut broker = Broker {
            child,
            port,
            admin_port,
            log_path,
            _data: data,
        };
        let deadline = Instant::now() + BROKER_START_TIMEOUT;
        // The admin API listens once the data directory is open, after the Kafka listener.
        while TcpStream::connect(("127.0.0.1", port)).is_err()
            || TcpStream::connect(("127.0.0.1", admin_port)).is_err()
        {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("broker exited during start ({status}):\n{}", broker.log());
            }
            assert!(
                Instant::now() < deadline,
                "broker did not listen within {BROKER_START_TIMEOUT:?}:\n{}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// `weir plugin <args> --admin-url <this broker's admin API>`.
    fn plugin(&self, args: &[&str]) -> Run {
        let url = self.admin_url();
        let mut full = vec!["plugin"];
        full.extend_from_slice(args);
        full.extend(["--admin-url", url.as_str()]);
        weir(&full, "")
    }

    /// `weir <command> --bootstrap-server <this broker> <args>`.
    fn run(&self, command: &str, args: &[&str], stdin: &str) -> Run {
        let bootstrap = self.bootstrap();
        let mut full = vec![command, "--bootstrap-server", bootstrap.as_str()];
        full.extend_from_slice(args);
        weir(&full, stdin)
    }

    fn create_topic(&self, topic: &str, partitions: u32, configs: &[&str]) {
        let partitions = partitions.to_string();
        let mut args = vec![
            "--create",
            "--topic",
            topic,
            "--partitions",
            &partitions,
            "--replication-factor",
            "1",
        ];
        for config in configs {
            args.extend(["--config", config]);
        }
        let run = self.run("topics", &args, "");
        run.assert_success();
        assert_eq!(run.stdout, format!("Created topic {topic}.\n"));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One finished CLI invocation.
#[derive(Debug)]
struct Run {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_success(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "weir {}: {self:#?}",
            self.args.join(" ")
        );
    }

    fn assert_failure(&self, code: i32, stderr: &str) {
        assert_eq!(
            self.code,
            Some(code),
            "weir {}: {self:#?}",
            self.args.join(" ")
        );
        assert_eq!(
            self.stderr,
            stderr,
            "weir {}: {self:#?}",
            self.args.join(" ")
        );
    }
}

/// Runs the `weir` binary with `args`, feeding `stdin` and then closing it.
fn weir(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    let mut input = child.stdin.take().expect("stdin pipe");
    let bytes = stdin.as_bytes().to_vec();
    // Writing from a thread: a child that stops reading must not block the test.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout pipe")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr pipe")));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for weir") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("weir {args:?} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    Run {
        args: args.iter().map(|arg| arg.to_string()).collect(),
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// The TopicId field of a describe line, checked to look like Kafka's: 22 URL-safe base64
/// characters whose last one carries only the two bits 16 bytes leave over.
fn topic_id_of(describe: &str, topic: &str) -> String {
    let prefix = format!("Topic: {topic}\tTopicId: ");
    let line = describe
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no topic line for {topic} in:\n{describe}"));
    let id: String = line[prefix.len()..]
        .chars()
        .take_while(|character| *character != '\t')
        .collect();
    assert_eq!(id.len(), 22, "{id}");
    assert!(
        id.chars().all(|character| character.is_ascii_alphanumeric()
            || character == '-'
            || character == '_'),
        "{id}"
    );
    assert!(id.ends_with(['A', 'Q', 'g', 'w']), "{id}");
    id
}

/// What the broker under test serves (the test and the broker are built from the same source).
fn broker_serves(api: ApiKey) -> bool {
    weir::protocol::api::supported_versions(api).is_some()
}

#[test]
fn topics_create_list_describe_alter_delete() {
    let broker = Broker::start(&[]);
    broker.create_topic("plain", 1, &[]);
    broker.create_topic("orders", 3, &["retention.ms=86400000"]);

    let again = broker.run(
        "topics",
        &[
            "--create",
            "--topic",
            "orders",
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
        "",
    );
    again.assert_failure(
        1,
        "weir topics: cannot create topic 'orders': TOPIC_ALREADY_EXISTS: topic 'orders' already exists\n",
    );

    let list = broker.run("topics", &["--list"], "");
    list.assert_success();
    assert_eq!(list.stdout, "orders\nplain\n");

    // The exact kafka-topics.sh --describe format, tabs and all.
    let plain = broker.run("topics", &["--describe", "--topic", "plain"], "");
    plain.assert_success();
    let plain_id = topic_id_of(&plain.stdout, "plain");
    assert_eq!(
        plain.stdout,
        format!(
            "Topic: plain\tTopicId: {plain_id}\tPartitionCount: 1\tReplicationFactor: 1\tConfigs: \n\
             \tTopic: plain\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\n"
        )
    );

    let all = broker.run("topics", &["--describe"], "");
    all.assert_success();
    let orders_id = topic_id_of(&all.stdout, "orders");
    assert_ne!(orders_id, plain_id);
    let orders_configs = if broker_serves(ApiKey::DescribeConfigs) {
        "retention.ms=86400000"
    } else {
        ""
    };
    assert_eq!(
        all.stdout,
        format!(
            "Topic: orders\tTopicId: {orders_id}\tPartitionCount: 3\tReplicationFactor: 1\tConfigs: {orders_configs}\n\
             \tTopic: orders\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\n\
             \tTopic: orders\tPartition: 1\tLeader: 1\tReplicas: 1\tIsr: 1\n\
             \tTopic: orders\tPartition: 2\tLeader: 1\tReplicas: 1\tIsr: 1\n\
             {}",
            plain.stdout
        )
    );

    let alter = broker.run(
        "topics",
        &["--alter", "--topic", "orders", "--partitions", "4"],
        "",
    );
    if broker_serves(ApiKey::CreatePartitions) {
        alter.assert_success();
        let described = broker.run("topics", &["--describe", "--topic", "orders"], "");
        described.assert_success();
        assert!(
            described.stdout.contains("\tPartitionCount: 4\t")
                && described
                    .stdout
                    .ends_with("\tTopic: orders\tPartition: 3\tLeader: 1\tReplicas: 1\tIsr: 1\n"),
            "{described:#?}"
        );
        let shrink = broker.run(
            "topics",
            &["--alter", "--topic", "orders", "--partitions", "2"],
            "",
        );
        assert_eq!(shrink.code, Some(1), "{shrink:#?}");
        assert!(
            shrink.stderr.starts_with(
                "weir topics: cannot raise topic 'orders' to 2 partitions: INVALID_PARTITIONS"
            ),
            "{shrink:#?}"
        );
    } else {
        assert_eq!(alter.code, Some(1), "{alter:#?}");
        assert!(
            alter.stderr.contains("does not support CreatePartitions"),
            "{alter:#?}"
        );
    }

    broker
        .run("topics", &["--delete", "--topic", "plain"], "")
        .assert_success();
    let list = broker.run("topics", &["--list"], "");
    assert_eq!(list.stdout, "orders\n", "{list:#?}");
    broker
        .run("topics", &["--delete", "--topic", "plain"], "")
        .assert_failure(1, "weir topics: topic 'plain' does not exist\n");
    broker
        .run("topics", &["--describe", "--topic", "plain"], "")
        .assert_failure(1, "weir topics: topic 'plain' does not exist\n");
}

#[test]
fn keyed_lines_land_on_murmur2_partitions_and_come_back_in_order() {
    let broker = Broker::start(&[]);
    broker.create_topic("events", 3, &[]);
    let lines: Vec<(String, String)> = (0..30)
        .map(|index| (format!("user-{}", index % 7), format!("event {index}")))
        .collect();
    let input: String = lines
        .iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect();
    let produce = broker.run(
        "produce",
        &["--topic", "events", "--key-separator", "="],
        &input,
    );
    produce.assert_success();
    assert_eq!(produce.stdout, "");

    // All partitions at once: every record, key and value tab-separated.
    let consume = broker.run(
        "consume",
        &[
            "--topic",
            "events",
            "--from-beginning",
            "--max-messages",
            "30",
            "--timeout-ms",
            CONSUME_TIMEOUT_MS,
            "--property",
            "print.key=true",
        ],
        "",
    );
    consume.assert_success();
    assert_eq!(consume.stderr, "Processed a total of 30 messages\n");
    let mut consumed: Vec<&str> = consume.stdout.lines().collect();
    let mut expected: Vec<String> = lines
        .iter()
        .map(|(key, value)| format!("{key}\t{value}"))
        .collect();
    consumed.sort_unstable();
    expected.sort_unstable();
    assert_eq!(consumed, expected);

    // Each partition holds exactly the keys murmur2 sends there (the partitioner plugin's
    // choice), in the order they were written.
    let mut by_partition: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (key, value) in &lines {
        let partition = partition_for_key(key.as_bytes(), 3);
        by_partition
            .entry(partition)
            .or_default()
            .push(format!("{key}\t{value}"));
    }
    assert!(
        by_partition.len() > 1,
        "the keys should spread: {by_partition:?}"
    );
    for partition in 0..3 {
        let expected = by_partition.get(&partition).cloned().unwrap_or_default();
        let consume = broker.run(
            "consume",
            &[
                "--topic",
                "events",
                "--partition",
                &partition.to_string(),
                "--offset",
                "earliest",
                "--max-messages",
                &expected.len().to_string(),
                "--timeout-ms",
                "1000",
                "--property",
                "print.key=true",
            ],
            "",
        );
        consume.assert_success();
        assert_eq!(
            consume.stdout.lines().collect::<Vec<_>>(),
            expected,
            "partition {partition}"
        );
    }

    // From an explicit offset: the second record of the fullest partition.
    let (fullest, records) = by_partition
        .iter()
        .max_by_key(|(_, records)| records.len())
        .expect("some partition has records");
    let consume = broker.run(
        "consume",
        &[
            "--topic",
            "events",
            "--partition",
            &fullest.to_string(),
            "--offset",
            "1",
            "--max-messages",
            "1",
            "--timeout-ms",
            CONSUME_TIMEOUT_MS,
            "--property",
            "print.key=true",
        ],
        "",
    );
    consume.assert_success();
    assert_eq!(consume.stdout, format!("{}\n", records[1]));
}

#[test]
fn lines_without_keys_stick_to_one_partition_and_every_codec_round_trips() {
    let broker = Broker::start(&[]);
    broker.create_topic("spread", 3, &[]);
    broker
        .run("produce", &["--topic", "spread"], "a\nb\nc\n")
        .assert_success();
    // The partitioner plugin keeps null keys on one partition until a batch's worth of values
    // has gone there (Kafka's sticky partitioner, KIP-480): all three lines land together.
    let mut filled = Vec::new();
    for partition in ["0", "1", "2"] {
        let consume = broker.run(
            "consume",
            &[
                "--topic",
                "spread",
                "--partition",
                partition,
                "--offset",
                "earliest",
                "--timeout-ms",
                "1000",
                "--property",
                "print.key=true",
            ],
            "",
        );
        consume.assert_success();
        if !consume.stdout.is_empty() {
            filled.push(consume.stdout);
        }
    }
    assert_eq!(filled, ["null\ta\nnull\tb\nnull\tc\n"]);

    broker.create_topic("codecs", 1, &[]);
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    for codec in codecs {
        let produce = broker.run(
            "produce",
            &["--topic", "codecs", "--compression", codec, "--acks", "1"],
            &format!("{codec} one\n{codec} two\n"),
        );
        produce.assert_success();
    }
    // acks=0 gets no answer; the consumer below still finds the record.
    broker
        .run(
            "produce",
            &["--topic", "codecs", "--acks", "0"],
            "fire and forget\n",
        )
        .assert_success();
    let consume = broker.run(
        "consume",
        &[
            "--topic",
            "codecs",
            "--from-beginning",
            "--max-messages",
            "11",
            "--timeout-ms",
            CONSUME_TIMEOUT_MS,
        ],
        "",
    );
    consume.assert_success();
    let mut expected: String = codecs
        .iter()
        .map(|codec| format!("{codec} one\n{codec} two\n"))
        .collect();
    expected.push_str("fire and forget\n");
    assert_eq!(consume.stdout, expected);
}

#[test]
fn consumers_start_at_the_end_unless_told_otherwise() {
    let broker = Broker::start(&[]);
    broker.create_topic("news", 2, &[]);
    broker
        .run("produce", &["--topic", "news"], "old\n")
        .assert_success();
    let consume = broker.run("consume", &["--topic", "news", "--timeout-ms", "1000"], "");
    consume.assert_success();
    assert_eq!(consume.stdout, "");
    assert_eq!(consume.stderr, "Processed a total of 0 messages\n");

    let grouped = broker.run(
        "consume",
        &[
            "--topic",
            "news",
            "--from-beginning",
            "--group",
            "readers",
            "--max-messages",
            "1",
            "--timeout-ms",
            CONSUME_TIMEOUT_MS,
        ],
        "",
    );
    grouped.assert_success();
    assert_eq!(grouped.stdout, "old\n");
    assert_eq!(grouped.stderr, "Processed a total of 1 messages\n");
}

#[test]
fn broker_errors_are_printed_with_their_kafka_name() {
    let broker = Broker::start(&[]);
    // One broker can never satisfy min.insync.replicas=2, so acks=all fails per partition.
    broker.create_topic("strict", 2, &["min.insync.replicas=2"]);
    let produce = broker.run("produce", &["--topic", "strict", "--partition", "1"], "x\n");
    assert_eq!(produce.code, Some(1), "{produce:#?}");
    assert!(
        produce
            .stderr
            .starts_with("weir produce: partition 1 of topic 'strict': NOT_ENOUGH_REPLICAS"),
        "{produce:#?}"
    );
    // acks=1 asks only the leader, so the same write succeeds.
    broker
        .run(
            "produce",
            &["--topic", "strict", "--partition", "1", "--acks", "1"],
            "x\n",
        )
        .assert_success();
}

#[test]
fn an_unreachable_broker_is_named() {
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let expected = |command: &str| {
        format!("weir {command}: cannot connect to {bootstrap}: connection refused\n")
    };
    weir(&["topics", "--bootstrap-server", &bootstrap, "--list"], "")
        .assert_failure(1, &expected("topics"));
    weir(
        &["produce", "--bootstrap-server", &bootstrap, "--topic", "t"],
        "x\n",
    )
    .assert_failure(1, &expected("produce"));
    weir(
        &["consume", "--bootstrap-server", &bootstrap, "--topic", "t"],
        "",
    )
    .assert_failure(1, &expected("consume"));
}

#[test]
fn a_missing_topic_is_named() {
    // Without auto-creation a producer cannot create the topic by writing to it.
    let broker = Broker::start(&["auto.create.topics.enable=false"]);
    let expected = |command: &str| format!("weir {command}: topic 'nope' does not exist\n");
    broker
        .run("consume", &["--topic", "nope", "--timeout-ms", "1000"], "")
        .assert_failure(1, &expected("consume"));
    broker
        .run("produce", &["--topic", "nope"], "x\n")
        .assert_failure(1, &expected("produce"));
    broker
        .run("topics", &["--describe", "--topic", "nope"], "")
        .assert_failure(1, &expected("topics"));
}

#[test]
fn invalid_arguments_are_refused_with_a_reason() {
    let broker = Broker::start(&[]);
    broker.create_topic("one", 1, &[]);
    // No action: clap's own usage error.
    let run = broker.run("topics", &["--topic", "one"], "");
    assert_eq!(run.code, Some(2), "{run:#?}");
    broker
        .run("topics", &["--delete"], "")
        .assert_failure(2, "weir topics: --delete needs --topic\n");
    broker
        .run(
            "topics",
            &["--create", "--topic", "zero", "--partitions", "0"],
            "",
        )
        .assert_failure(2, "weir topics: --partitions must be at least 1\n");
    broker
        .run(
            "topics",
            &["--create", "--topic", "bad", "--config", "retention.ms"],
            "",
        )
        .assert_failure(
            2,
            "weir topics: --config expects key=value, got 'retention.ms'\n",
        );
    broker
        .run("produce", &["--topic", "one", "--partition", "7"], "x\n")
        .assert_failure(
            2,
            "weir produce: partition 7 does not exist: topic 'one' has 1 partition(s)\n",
        );
    let run = broker.run("consume", &["--topic", "one", "--offset", "3"], "");
    assert_eq!(run.code, Some(2), "--offset needs --partition: {run:#?}");
    let run = broker.run("produce", &["--topic", "one", "--acks", "2"], "x\n");
    assert_eq!(run.code, Some(2), "{run:#?}");

    // A line without the separator stops the producer, after the lines before it went out.
    broker
        .run(
            "produce",
            &["--topic", "one", "--key-separator", ":"],
            "k:first\nno separator\nk:never\n",
        )
        .assert_failure(2, "weir produce: line 2 has no key separator ':'\n");
    let consume = broker.run(
        "consume",
        &["--topic", "one", "--from-beginning", "--timeout-ms", "1500"],
        "",
    );
    consume.assert_success();
    assert_eq!(consume.stdout, "first\n");
}

/// A partitioner component (the built-in's bytes) and junk, written where the CLI can read them.
fn component_files() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let good = dir.path().join("partitioner.wasm");
    std::fs::write(&good, weir::policy::defaults::PARTITIONER).expect("write component");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"this is not a component").expect("write junk");
    let path = |p: PathBuf| p.to_str().expect("UTF-8 path").to_string();
    (dir, path(good), path(junk))
}

#[test]
fn plugin_test_runs_the_scenarios_locally() {
    let (dir, good, junk) = component_files();
    // The built-in scenarios: each printed with its decision, all passing.
    let run = weir(&["plugin", "test", &good], "");
    run.assert_success();
    assert!(run.stdout.starts_with("PASS  "), "{run:#?}");
    assert!(run.stdout.contains("=>  partition "), "{run:#?}");
    assert!(!run.stdout.contains("FAIL"), "{run:#?}");
    assert!(
        run.stdout.lines().last().is_some_and(
            |line| line.starts_with("partitioner plugin ") && line.ends_with(" scenarios pass")
        ),
        "{run:#?}"
    );

    // The user's scenarios, with expectations: one right, one wrong.
    let expected = partition_for_key(b"order-7", 5);
    let scenarios = dir.path().join("scenarios.json");
    std::fs::write(
        &scenarios,
        format!(
            r#"{{"scenarios": [
                {{"name": "order-7 goes to its murmur2 partition",
                  "partition": {{"key": "order-7", "partition_count": 5}},
                  "expect": {{"partition": {expected}}}}},
                {{"name": "null key", "partition": {{"key": null, "partition_count": 5}}}}
            ]}}"#
        ),
    )
    .expect("write scenarios");
    let scenarios = scenarios.to_str().expect("UTF-8 path");
    let run = weir(&["plugin", "test", &good, "--scenarios", scenarios], "");
    run.assert_success();
    assert!(
        run.stdout.contains(&format!(
            "PASS  order-7 goes to its murmur2 partition  =>  {{\"partition\":{expected}}}\n"
        )),
        "{run:#?}"
    );
    assert!(run.stdout.contains("PASS  null key  =>  "), "{run:#?}");

    let wrong = dir.path().join("wrong.json");
    std::fs::write(
        &wrong,
        format!(
            r#"{{"scenarios": [{{"name": "wrong", "partition": {{"key": "order-7", "partition_count": 5}}, "expect": {{"partition": {}}}}}]}}"#,
            (expected + 1) % 5
        ),
    )
    .expect("write scenarios");
    let run = weir(
        &[
            "plugin",
            "test",
            &good,
            "--scenarios",
            wrong.to_str().expect("UTF-8"),
        ],
        "",
    );
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stdout.contains(&format!(
            "FAIL  wrong  =>  {{\"partition\":{expected}}}\n      expected partition = {}, got {expected}\n",
            (expected + 1) % 5
        )),
        "{run:#?}"
    );
    assert!(
        run.stderr.starts_with("weir plugin: ") && run.stderr.contains("fails 1 of "),
        "{run:#?}"
    );

    // An election scenario for a partitioner, junk, a missing file, a bad scenarios file.
    std::fs::write(&wrong, r#"{"scenarios": [{"name": "e", "acks": {}}]}"#).expect("write");
    let run = weir(
        &[
            "plugin",
            "test",
            &good,
            "--scenarios",
            wrong.to_str().expect("UTF-8"),
        ],
        "",
    );
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("is not a scenarios file"), "{run:#?}");
    let run = weir(&["plugin", "test", &junk], "");
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .starts_with(&format!("weir plugin: {junk}: compiling the component: ")),
        "{run:#?}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "one line: {run:#?}");
    let missing = dir.path().join("missing.wasm");
    let missing = missing.to_str().expect("UTF-8");
    weir(&["plugin", "test", missing], "").assert_failure(
        1,
        &format!("weir plugin: cannot read {missing}: No such file or directory (os error 2)\n"),
    );
}

#[test]
fn plugin_commands_manage_a_brokers_plugins() {
    let broker = Broker::start(&[]);
    let (_dir, good, junk) = component_files();
    let run = broker.plugin(&["install", &good, "--name", "murmur"]);
    run.assert_success();
    assert_eq!(
        run.stdout,
        "Installed partitioner plugin 'murmur' version 1. Activate it with: weir plugin activate murmur --version 1\n"
    );
    broker
        .plugin(&["install", &good, "--name", "murmur", "--version", "2.0"])
        .assert_success();
    let run = broker.plugin(&["install", &junk, "--name", "junk"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    let prefix = format!(
        "weir plugin: POST {}/v1/plugins: HTTP 400: compiling the component: ",
        broker.admin_url()
    );
    assert!(run.stderr.starts_with(&prefix), "{run:#?}");

    let run = broker.plugin(&["activate", "murmur", "--version", "1"]);
    run.assert_success();
    assert_eq!(
        run.stdout,
        "Activated plugin 'murmur' version 1 as the broker-wide partitioner plugin.\n"
    );
    let list = broker.plugin(&["list"]);
    list.assert_success();
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{list:#?}");
    assert!(lines[0].starts_with("NAME "), "{list:#?}");
    let murmur: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(
        murmur,
        ["murmur", "partitioner", "1", "1,2.0", "broker-wide"]
    );
    let builtin: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(builtin[0], "partitioner-default");
    assert_eq!(builtin[4], "built-in");

    broker.create_topic("orders", 3, &[]);
    let run = broker.plugin(&[
        "activate",
        "murmur",
        "--version",
        "2.0",
        "--topic",
        "orders",
    ]);
    run.assert_success();
    assert_eq!(
        run.stdout,
        "Activated plugin 'murmur' version 2.0 for topic 'orders' (policy.partitioner=murmur).\n"
    );
    let describe = broker.run("topics", &["--describe", "--topic", "orders"], "");
    describe.assert_success();
    assert!(
        describe.stdout.contains("policy.partitioner=murmur"),
        "{describe:#?}"
    );
    // `weir produce` fetches the topic's partitioner from the admin API and runs it itself.
    let admin_url = broker.admin_url();
    let produce = broker.run(
        "produce",
        &[
            "--topic",
            "orders",
            "--key-separator",
            ":",
            "--admin-url",
            &admin_url,
        ],
        "k:v\n",
    );
    produce.assert_success();
    assert_eq!(produce.stderr, "");

    let run = broker.plugin(&["rollback", "murmur"]);
    run.assert_success();
    assert_eq!(run.stdout, "Rolled back plugin 'murmur' to version 1.\n");
    let run = broker.plugin(&["rollback", "murmur"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .contains("HTTP 409: `murmur` has no earlier version"),
        "{run:#?}"
    );
    let run = broker.plugin(&["remove", "murmur"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr.contains("HTTP 409: `murmur` is the broker-wide"),
        "{run:#?}"
    );
    broker
        .plugin(&["activate", "partitioner-default"])
        .assert_success();
    broker
        .plugin(&["activate", "partitioner-default", "--topic", "orders"])
        .assert_success();
    let run = broker.plugin(&["remove", "murmur"]);
    run.assert_success();
    assert_eq!(run.stdout, "Removed plugin 'murmur'.\n");
    let run = broker.plugin(&["activate", "murmur"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .ends_with("HTTP 404: no plugin named `murmur` is installed\n"),
        "{run:#?}"
    );
}

#[test]
fn an_unreachable_admin_api_is_named() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let run = weir(&["plugin", "list", "--admin-url", &url], "");
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr.starts_with(&format!(
            "weir plugin: cannot reach the admin API at {url}: "
        )),
        "{run:#?}"
    );
    let run = weir(&["plugin", "install", "/no/such.wasm", "--name", "x"], "");
    run.assert_failure(
        1,
        "weir plugin: cannot read /no/such.wasm: No such file or directory (os error 2)\n",
    );
}
