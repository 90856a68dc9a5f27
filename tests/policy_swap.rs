//! Hot swap of plugin versions under load.
//!
//! In process: threads partition records and decide produce requests in a loop while another
//! thread activates version A, version B and rolls back, over and over. No call fails, every
//! answer is one that either version gives, and once an activation or rollback returns, the
//! very next call answers with the version it made current.
//!
//! Across processes: a real broker (`weir serve`) takes acks=all produce requests from
//! librdkafka while its admin API installs, activates and rolls back acks plugin versions over
//! and over: every delivery succeeds, and reading the partition back gives every record exactly
//! once.

#[path = "support/rdkafka_clients.rs"]
#[allow(dead_code)]
mod rdkafka_clients;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weir::policy::wit::acks::{Decision, ReplicaProgress, Request, Stage};
use weir::policy::{Policies, PolicyConfig, defaults};
use weir_tests::plugins::Components;

/// The broker's default sandbox limits (`policy.*` in `host/src/config.rs`).
const CONFIG: PolicyConfig = PolicyConfig {
    election_call_timeout: Duration::from_millis(10),
    call_timeout: Duration::from_millis(2),
    memory_max_bytes: 16 << 20,
};

const SWAP_PLUGINS: &[&str] = &[
    "weir-test-swap-a",
    "weir-test-swap-b",
    "weir-test-hostile-acks",
    "weir-test-acks-slow",
];

/// A component by package name, built once per test binary.
fn component(package: &str) -> &'static [u8] {
    static COMPONENTS: Components = Components::new(SWAP_PLUGINS);
    COMPONENTS.get(package)
}

fn acks_request(stage: Stage, high_watermark: i64) -> Request {
    Request {
        stage,
        acks: -1,
        min_insync_replicas: 2,
        replicas: (1..=3)
            .map(|broker_id| ReplicaProgress {
                broker_id,
                in_isr: true,
                log_end_offset: 100,
                rack_id: None,
            })
            .collect(),
        leader_log_end_offset: 100,
        high_watermark,
        flushed_offset: 100,
        last_offset: 99,
        elapsed_ms: 1,
    }
}

/// What the registry does with `current` and its rollback history, mirrored to know which
/// version must answer after each operation.
#[derive(Debug, Default)]
struct Model {
    current: Option<&'static str>,
    history: Vec<&'static str>,
}

impl Model {
    fn activate(&mut self, version: &'static str) {
        if self.current != Some(version)
            && let Some(previous) = self.current.replace(version)
        {
            self.history.push(previous);
        }
    }

    fn rollback(&mut self) -> bool {
        match self.history.pop() {
            Some(previous) => {
                self.current = Some(previous);
                true
            }
            None => false,
        }
    }
}

/// A tiny deterministic generator for the swap sequence.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn hot_swap_under_load_never_fails_and_takes_effect_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = Policies::open(Some(dir.path()), CONFIG).expect("open");
    const PARTITIONS: u32 = 12;
    let name = "swapped";
    policies
        .install(name, Some("A"), component("weir-test-swap-a"), 1)
        .expect("install A");
    policies
        .install(name, Some("B"), component("weir-test-swap-b"), 2)
        .expect("install B");
    // An acks plugin swapped at the same time: the built-in's own bytes against the hostile
    // plugin, which answers as the built-in unless triggered (never here).
    let acks = "swapped-acks";
    policies
        .install(acks, Some("1"), defaults::ACKS, 1)
        .expect("install acks 1");
    policies
        .install(acks, Some("2"), component("weir-test-hostile-acks"), 2)
        .expect("install acks 2");
    policies.activate(acks, Some("1"), true).expect("acks 1");

    // Each key's answer under A (murmur2, as the built-in) and under B (one more, mod n).
    let keys: Vec<Vec<u8>> = (0..64).map(|i| format!("key-{i}").into_bytes()).collect();
    let under_a: Vec<u32> = keys
        .iter()
        .map(|key| policies.partition(Some("partitioner-default"), "t", Some(key), 0, PARTITIONS))
        .collect();
    let under_b: Vec<u32> = under_a.iter().map(|a| (a + 1) % PARTITIONS).collect();
    let expected = |version: &str| match version {
        "A" => &under_a,
        _ => &under_b,
    };
    let mut model = Model::default();
    policies
        .activate(name, Some("A"), true)
        .expect("activate A");
    model.activate("A");

    let stop = Arc::new(AtomicBool::new(false));
    let seen_a = Arc::new(AtomicU64::new(0));
    let seen_b = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);
    let keys = Arc::new(keys);
    let answers = Arc::new((under_a.clone(), under_b.clone()));
    let mut callers = Vec::new();
    for thread in 0..4usize {
        let policies = policies.clone();
        let stop = stop.clone();
        let keys = keys.clone();
        let answers = answers.clone();
        let (seen_a, seen_b) = (seen_a.clone(), seen_b.clone());
        callers.push(std::thread::spawn(move || {
            let (under_a, under_b) = &*answers;
            let mut calls = 0u64;
            let mut i = thread;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                i = (i + 7) % keys.len();
                match thread {
                    // One record at a time, broker-wide and by a topic's binding.
                    0 | 1 => {
                        let binding = (thread == 1).then_some(name);
                        let p = policies.partition(binding, "t", Some(&keys[i]), 10, PARTITIONS);
                        if p == under_a[i] {
                            seen_a.fetch_add(1, Ordering::Relaxed);
                        } else if p == under_b[i] {
                            seen_b.fetch_add(1, Ordering::Relaxed);
                        } else {
                            panic!("key {i}: partition {p} is neither A's nor B's");
                        }
                    }
                    // A batch answers wholly from one version.
                    2 => {
                        let batch: Vec<Option<&[u8]>> =
                            keys.iter().map(|k| Some(k.as_slice())).collect();
                        let sizes = vec![10; batch.len()];
                        let got = policies.partition_batch(None, "t", &batch, &sizes, PARTITIONS);
                        assert!(
                            &got == under_a || &got == under_b,
                            "a batch mixed versions or answered neither: {got:?}"
                        );
                    }
                    // Produce decisions while the acks plugin is swapped too.
                    _ => {
                        assert_eq!(
                            policies.decide(None, &acks_request(Stage::BeforeAppend, 50)),
                            Decision::Wait
                        );
                        assert_eq!(
                            policies.decide(None, &acks_request(Stage::AfterAppend, 50)),
                            Decision::Wait
                        );
                        assert_eq!(
                            policies.decide(None, &acks_request(Stage::AfterAppend, 100)),
                            Decision::Complete
                        );
                    }
                }
                calls += 1;
            }
            calls
        }));
    }

    let mut state = 0x5eed_u64;
    let mut swaps = 0;
    let mut refused_rollbacks = 0;
    let started = Instant::now();
    while swaps < 150 && Instant::now() < deadline {
        match next(&mut state) % 3 {
            0 => {
                policies
                    .activate(name, Some("A"), true)
                    .expect("activate A");
                model.activate("A");
            }
            1 => {
                policies
                    .activate(name, Some("B"), true)
                    .expect("activate B");
                model.activate("B");
            }
            _ => {
                let rolled = policies.rollback(name);
                assert_eq!(rolled.is_ok(), model.rollback(), "rollback: {rolled:?}");
                if rolled.is_err() {
                    refused_rollbacks += 1;
                }
            }
        }
        let version = model.current.expect("a current version");
        let info = policies.info(name).expect("info");
        assert_eq!(info.current_version.as_deref(), Some(version));
        // The version just made current answers the very next call, from this thread.
        let i = swaps % keys.len();
        assert_eq!(
            policies.partition(None, "t", Some(&keys[i]), 10, PARTITIONS),
            expected(version)[i],
            "swap {swaps}: the call after making {version} current"
        );
        let acks_version = if swaps % 2 == 0 { "1" } else { "2" };
        policies
            .activate(acks, Some(acks_version), true)
            .expect("activate acks");
        swaps += 1;
    }
    let swapping = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let calls: u64 = callers
        .into_iter()
        .map(|caller| caller.join().expect("a caller thread panicked"))
        .sum();
    eprintln!(
        "{swaps} swaps ({refused_rollbacks} rollbacks refused: nothing to roll back to) in \
         {swapping:?} while {calls} calls ran; A answered {}, B {}",
        seen_a.load(Ordering::Relaxed),
        seen_b.load(Ordering::Relaxed)
    );
    assert_eq!(swaps, 150, "the swaps did not finish in time");
    assert!(
        seen_a.load(Ordering::Relaxed) > 0 && seen_b.load(Ordering::Relaxed) > 0,
        "the callers never saw both versions"
    );
    for plugin in [name, acks, "partitioner-default", "acks-default"] {
        if policies.failure_count(plugin) != 0 {
            // The reasons tell a timing fault on a loaded machine (timeout, wall_clock) from a
            // wrong answer or a trap during the swap.
            let mut metrics = String::new();
            policies.render_metrics(&mut metrics);
            let failures: Vec<&str> = metrics
                .lines()
                .filter(|line| line.starts_with("weir_policy_failures_total"))
                .collect();
            panic!("{plugin} failed: {failures:#?}");
        }
    }

    // After the last swap, every thread sees the last version.
    let version = model.current.expect("a current version");
    let answers = std::thread::spawn({
        let policies = policies.clone();
        let keys = keys.clone();
        move || {
            keys.iter()
                .map(|key| policies.partition(None, "t", Some(key), 10, PARTITIONS))
                .collect::<Vec<_>>()
        }
    })
    .join()
    .expect("reader");
    assert_eq!(&answers, expected(version));
}

/// One HTTP/1.1 request to the admin API on `port` (`Connection: close`): the status and the
/// body. Every read and write gives up after `rdkafka_clients::TIMEOUT`.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(rdkafka_clients::TIMEOUT))?;
    stream.set_write_timeout(Some(rdkafka_clients::TIMEOUT))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP response: {response:.200}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// [`http`] that must answer `expected`.
fn admin(port: u16, method: &str, path: &str, body: &[u8], expected: u16) -> String {
    let (status, text) =
        http(port, method, path, body).unwrap_or_else(|error| panic!("{method} {path}: {error:#}"));
    assert_eq!(status, expected, "{method} {path}: {text}");
    text
}

#[test]
fn acks_plugin_swapped_under_a_real_acks_all_producer_loses_nothing() {
    use rdkafka::Message;
    use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::Consumer;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka_clients::{TIMEOUT, admin_options, assigned_consumer, block_on, runtime};
    use weir_tests::broker::BrokerProcess;

    // The broker's own admin listener: a second port picked here could equal its Kafka port.
    let broker = BrokerProcess::start(&[]).expect("start the broker");
    let admin_port = broker.admin_port;
    // The admin API listens once the broker does; poll it.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match http(admin_port, "GET", "/v1/plugins", b"") {
            Ok((200, _)) => break,
            outcome if Instant::now() > deadline => panic!(
                "the admin API on {admin_port} did not answer within {TIMEOUT:?} \
                 ({outcome:?}):\n{}",
                broker.log()
            ),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }

    // Two versions of one acks plugin: the built-in's own bytes, and a slow one (0.3 ms of CPU
    // per decision) with the same answers.
    let name = "swapped-acks";
    admin(
        admin_port,
        "POST",
        &format!("/v1/plugins?name={name}&version=1"),
        defaults::ACKS,
        201,
    );
    admin(
        admin_port,
        "POST",
        &format!("/v1/plugins?name={name}&version=2"),
        component("weir-test-acks-slow"),
        201,
    );
    admin(
        admin_port,
        "POST",
        &format!("/v1/plugins/{name}/activate"),
        br#"{"version": "1"}"#,
        200,
    );

    let runtime = runtime().expect("runtime");
    let topic = "swapped";
    let client: AdminClient<DefaultClientContext> = rdkafka_clients::client_config(&broker)
        .create()
        .expect("admin client");
    let created = block_on(
        &runtime,
        "CreateTopics",
        client.create_topics(
            [&NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &admin_options(),
        ),
    )
    .expect("create the topic")
    .expect("CreateTopics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    // Swap versions in a loop until the producer is done.
    let done = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = std::thread::spawn({
        let (done, swaps) = (done.clone(), swaps.clone());
        move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let (path, body): (_, &[u8]) = match swaps.load(Ordering::Relaxed) % 3 {
                    0 => ("activate", br#"{"version": "2"}"#),
                    1 => ("rollback", b""),
                    _ => ("activate", br#"{"version": "1"}"#),
                };
                admin(
                    admin_port,
                    "POST",
                    &format!("/v1/plugins/{name}/{path}"),
                    body,
                    200,
                );
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    // acks=all, no idempotence: a request the broker failed would come back as a retry and
    // show up below as a duplicate, or as a failed delivery. Small waves of records, so that
    // produce requests keep arriving across many swaps.
    const MIN_RECORDS: usize = 3000;
    const MIN_SWAPS: u64 = 30;
    const WAVE: usize = 10;
    let producer: FutureProducer = rdkafka_clients::client_config(&broker)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "15000")
        .create()
        .expect("producer");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    let mut produced = 0usize;
    while (produced < MIN_RECORDS || swaps.load(Ordering::Relaxed) < MIN_SWAPS)
        && Instant::now() < deadline
    {
        let wave = produced..produced + WAVE;
        let pending: Vec<_> = wave
            .clone()
            .map(|i| {
                let value = format!("record-{i}");
                producer
                    .send_result(
                        FutureRecord::<[u8], _>::to(topic)
                            .partition(0)
                            .payload(&value),
                    )
                    .unwrap_or_else(|(error, _)| panic!("queueing record {i}: {error}"))
            })
            .collect();
        let results = block_on(&runtime, "deliveries", async {
            let mut results = Vec::new();
            for delivery in pending {
                results.push(delivery.await);
            }
            results
        })
        .expect("deliveries within the timeout");
        for (i, result) in wave.zip(results) {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => panic!("record {i} was not delivered: {error}"),
                Err(_) => panic!("record {i}: the delivery report was dropped"),
            }
        }
        produced += WAVE;
    }
    let producing = started.elapsed();
    done.store(true, Ordering::Relaxed);
    swapper.join().expect("the swapper panicked");
    let swaps = swaps.load(Ordering::Relaxed);
    eprintln!(
        "{produced} acks=all records in {producing:?} while the acks plugin swapped {swaps} times"
    );
    assert!(
        produced >= MIN_RECORDS && swaps >= MIN_SWAPS,
        "only {produced} records and {swaps} swaps within {producing:?}"
    );

    // Every record exactly once, in order.
    let consumer = assigned_consumer(&broker, &[]).expect("consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + TIMEOUT;
    let mut values = Vec::new();
    while values.len() < produced && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("a consumer error");
            values
                .push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    // Anything beyond what was produced (a duplicate) arrives right behind: give it a moment.
    let extra_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < extra_until {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            values
                .push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    let expected: Vec<String> = (0..produced).map(|i| format!("record-{i}")).collect();
    assert_eq!(values.len(), produced, "records lost or duplicated");
    assert_eq!(values, expected, "records out of order");

    let (_, metrics) = http(admin_port, "GET", "/metrics", b"").expect("metrics");
    let failures: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("weir_policy_failures_total{"))
        .filter(|line| !line.ends_with(" 0"))
        .collect();
    assert!(failures.is_empty(), "policy failures: {failures:?}");
    // Both versions decided produce requests.
    for version in ["1", "2"] {
        let series = format!(
            "weir_policy_calls_total{{policy=\"acks\",plugin=\"{name}\",version=\"{version}\"}} "
        );
        let calls: u64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
            .unwrap_or(0);
        eprintln!("version {version} decided {calls} times");
        assert!(calls > 0, "version {version} never decided:\n{metrics}");
    }
}
