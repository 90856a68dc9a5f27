//! Consumer groups against a real broker: librdkafka consumers that `subscribe` split a topic's
//! partitions, hand them over when one leaves or dies, and resume from committed offsets after a
//! SIGKILL; the Python and kafkajs group consumers; `weir consume --group` and `weir groups`.
//!
//! Every broker here runs with `group.initial.rebalance.delay.ms=0`, so a group's first
//! generation does not wait Kafka's 3 s for more members; consumers use the smallest session
//! timeout the broker allows (6 s) and heartbeat every 500 ms.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use rdkafka::Message;
use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_tests::broker::{BrokerProcess, run_weir};
use weir_tests::clients::{client_scripts_dir, node_with_kafkajs, python_with_clients, run};

#[allow(dead_code)]
#[path = "support/rdkafka_clients.rs"]
mod rdkafka_clients;
use rdkafka_clients::{admin_options, block_on, client_config, runtime};

/// Broker configs every test here uses.
const BROKER_CONFIG: &[&str] = &["group.initial.rebalance.delay.ms=0"];
/// The consumers' session timeout: the broker's minimum, so a dead member goes quickly.
const SESSION_TIMEOUT_MS: u64 = 6000;
/// How long a rebalance or a handover may take here (a session timeout plus a few rejoins).
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(45);
/// Bound on one run of a client script.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
/// The child consumer process of the session-timeout test exits on its own after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);
/// Tells this test binary, run again as a child, to be a group member until it is killed.
const CHILD_ENV: &str = "WEIR_GROUPS_CHILD_BOOTSTRAP";

fn admin(broker: &BrokerProcess) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    client_config(broker)
        .create()
        .context("creating the admin client")
}

fn create_topic(broker: &BrokerProcess, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let admin = admin(broker)?;
    let results = block_on(
        &runtime,
        "CreateTopics",
        admin.create_topics(
            [&NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &admin_options(),
        ),
    )??;
    for result in results {
        result.map_err(|(topic, code)| anyhow!("creating {topic}: {code:?}"))?;
    }
    Ok(())
}

/// Produces `count` records `{topic}-{i}`, record i to partition i % partitions.
fn produce(
    broker: &BrokerProcess,
    topic: &str,
    partitions: i32,
    count: usize,
) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let mut config = client_config(broker);
    config
        .set("message.timeout.ms", "15000")
        .set("linger.ms", "5");
    let producer: FutureProducer = config.create().context("creating the producer")?;
    let mut pending = Vec::new();
    for index in 0..count {
        let value = format!("{topic}-{index}");
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(index as i32 % partitions)
            .payload(value.as_bytes());
        pending.push(
            producer
                .send_result(record)
                .map_err(|(error, _)| anyhow!("queueing record {index}: {error}"))?,
        );
    }
    block_on(&runtime, "delivery", async {
        for (index, delivery) in pending.into_iter().enumerate() {
            delivery
                .await
                .map_err(|_| anyhow!("record {index}: delivery report dropped"))?
                .map_err(|(error, _)| anyhow!("record {index}: {error}"))?;
        }
        Ok::<(), anyhow::Error>(())
    })?
}

/// A librdkafka group consumer (subscribe, not assign), committing only when told to.
fn group_consumer(bootstrap: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    group_consumer_with(bootstrap, group, &[])
}

fn group_consumer_with(
    bootstrap: &str,
    group: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<BaseConsumer> {
    let mut config = rdkafka::config::ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "1000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().context("creating a group consumer")
}

/// The partitions of `topic` assigned to `consumer` now.
fn assigned(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<BTreeSet<i32>> {
    Ok(consumer
        .assignment()?
        .elements_for_topic(topic)
        .iter()
        .map(|element| element.partition())
        .collect())
}

/// Polls every consumer in turn (which also serves their rebalances) until `done` holds or
/// `timeout` passes. Records read are handed to `on_record` with the consumer's index.
fn poll_until(
    consumers: &[&BaseConsumer],
    timeout: Duration,
    what: &str,
    mut on_record: impl FnMut(usize, String),
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        for (index, consumer) in consumers.iter().enumerate() {
            if let Some(message) = consumer.poll(Duration::from_millis(50)) {
                let message = message?;
                let value = message
                    .payload()
                    .map(|value| String::from_utf8_lossy(value).into_owned())
                    .unwrap_or_default();
                on_record(index, value);
            }
        }
    }
}

/// Polls `consumers` (which serves their rebalances; records are ignored) until `done` holds,
/// within [`REBALANCE_TIMEOUT`].
fn await_rebalance(
    consumers: &[&BaseConsumer],
    what: &str,
    done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    poll_until(consumers, REBALANCE_TIMEOUT, what, |_, _| {}, done)
}

/// Two members split a 4-partition topic 2/2; when one leaves, the other gets all four at
/// once (not after a session timeout). `strategy` is librdkafka's
/// `partition.assignment.strategy`: the broker only relays what the leader assigns, so the
/// eager (range) and the incremental (cooperative-sticky) protocols both ride on it.
fn split_and_hand_over(strategy: &str) -> anyhow::Result<()> {
    let broker = BrokerProcess::start(BROKER_CONFIG)?;
    let topic = "split";
    create_topic(&broker, topic, 4)?;
    produce(&broker, topic, 4, 40)?;
    let all: BTreeSet<i32> = (0..4).collect();
    let member = || {
        group_consumer_with(
            &broker.bootstrap(),
            "splitters",
            &[("partition.assignment.strategy", strategy)],
        )
    };

    let first = member()?;
    first.subscribe(&[topic])?;
    await_rebalance(&[&first], "the first consumer gets every partition", || {
        Ok(assigned(&first, topic)? == all)
    })
    .with_context(|| broker.log())?;

    let second = member()?;
    second.subscribe(&[topic])?;
    await_rebalance(
        &[&first, &second],
        "two consumers split the four partitions",
        || {
            let (a, b) = (assigned(&first, topic)?, assigned(&second, topic)?);
            Ok(
                a.len() == 2
                    && b.len() == 2
                    && a.union(&b).copied().collect::<BTreeSet<_>>() == all,
            )
        },
    )
    .with_context(|| broker.log())?;
    // kafka-consumer-groups.sh's view: each partition with its member and the member's host.
    let (described, _) = weir(&[
        "groups",
        "--bootstrap-server",
        &broker.bootstrap(),
        "--describe",
        "--group",
        "splitters",
    ])?;
    let members: BTreeSet<&str> = described
        .lines()
        .filter(|line| line.starts_with("splitters "))
        .map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            columns.get(6).copied().unwrap_or_default()
        })
        .collect();
    ensure!(
        described.matches("/127.0.0.1").count() == 4 && members.len() == 2,
        "every partition should show one of two members on /127.0.0.1:\n{described}"
    );

    // Dropping a librdkafka consumer closes it: LeaveGroup, so no session timeout to wait for.
    let left = Instant::now();
    drop(second);
    await_rebalance(&[&first], "the survivor gets every partition", || {
        Ok(assigned(&first, topic)? == all)
    })
    .with_context(|| broker.log())?;
    ensure!(
        left.elapsed() < Duration::from_millis(SESSION_TIMEOUT_MS),
        "the handover after a leave took {:?}, as long as a session timeout",
        left.elapsed()
    );
    Ok(())
}

#[test]
fn librdkafka_consumers_split_partitions_and_the_survivor_takes_all_after_a_leave()
-> anyhow::Result<()> {
    split_and_hand_over("range")
}

#[test]
fn cooperative_sticky_consumers_split_and_hand_over_incrementally() -> anyhow::Result<()> {
    split_and_hand_over("cooperative-sticky")
}

/// Reads until `count` records arrived, then commits synchronously; returns the values read.
fn read_and_commit(consumer: &BaseConsumer, count: usize) -> anyhow::Result<Vec<String>> {
    let mut read = Vec::new();
    let deadline = Instant::now() + REBALANCE_TIMEOUT;
    while read.len() < count {
        ensure!(
            Instant::now() < deadline,
            "{} of {count} records within {REBALANCE_TIMEOUT:?}",
            read.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message?;
            read.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync)?;
    Ok(read)
}

#[test]
fn committed_offsets_survive_sigkill_and_a_new_member_resumes_exactly() -> anyhow::Result<()> {
    let mut broker = BrokerProcess::start(BROKER_CONFIG)?;
    let topic = "resume";
    create_topic(&broker, topic, 4)?;
    produce(&broker, topic, 4, 100)?;

    let first_read = {
        let consumer = group_consumer(&broker.bootstrap(), "resumers")?;
        consumer.subscribe(&[topic])?;
        read_and_commit(&consumer, 57).with_context(|| broker.log())?
        // Dropped here: it leaves the group before the broker dies.
    };
    broker.kill();
    broker.restart()?;

    let consumer = group_consumer(&broker.bootstrap(), "resumers")?;
    consumer.subscribe(&[topic])?;
    let second_read = read_and_commit(&consumer, 43).with_context(|| broker.log())?;
    // Nothing more arrives: the first reader's records are not read again.
    let mut extra = Vec::new();
    let quiet_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet_until {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            extra
                .push(String::from_utf8_lossy(message?.payload().unwrap_or_default()).into_owned());
        }
    }
    ensure!(extra.is_empty(), "records read after all 100: {extra:?}");

    let mut seen = BTreeMap::new();
    for value in first_read.iter().chain(&second_read) {
        *seen.entry(value.clone()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, count)| **count > 1).collect();
    ensure!(twice.is_empty(), "read twice: {twice:?}");
    let expected: BTreeSet<String> = (0..100).map(|index| format!("{topic}-{index}")).collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|value| !seen.contains_key(*value))
        .collect();
    ensure!(missing.is_empty(), "never read: {missing:?}");

    // The commits of the second reader, too, are what OffsetFetch returns.
    let committed = consumer.committed(rdkafka_clients::TIMEOUT)?;
    for element in committed.elements_for_topic(topic) {
        ensure!(
            element.offset() == rdkafka::Offset::Offset(25),
            "partition {} committed at {:?}",
            element.partition(),
            element.offset()
        );
    }
    Ok(())
}

/// KIP-345: a static member (`group.instance.id`) does not leave when it closes; a new consumer
/// with the same instance id takes its place at once (no session timeout to wait out) and
/// resumes from its commits.
#[test]
fn a_static_member_is_replaced_by_its_successor_at_once() -> anyhow::Result<()> {
    let broker = BrokerProcess::start(BROKER_CONFIG)?;
    let topic = "static";
    create_topic(&broker, topic, 2)?;
    produce(&broker, topic, 2, 20)?;
    let member = || {
        group_consumer_with(
            &broker.bootstrap(),
            "statics",
            &[("group.instance.id", "instance-a")],
        )
    };
    let first_read = {
        let consumer = member()?;
        consumer.subscribe(&[topic])?;
        read_and_commit(&consumer, 20).with_context(|| broker.log())?
    };
    ensure!(first_read.len() == 20);
    // More records under other values, so the successor's reads are told apart.
    let runtime = runtime()?;
    let producer: FutureProducer = client_config(&broker).create()?;
    block_on(&runtime, "delivery", async {
        for index in 0..10 {
            let value = format!("after-{index}");
            producer
                .send(
                    FutureRecord::<[u8], [u8]>::to(topic)
                        .partition(index % 2)
                        .payload(value.as_bytes()),
                    Duration::from_secs(15),
                )
                .await
                .map_err(|(error, _)| anyhow!("record {index}: {error}"))?;
        }
        Ok::<(), anyhow::Error>(())
    })??;
    let started = Instant::now();
    let consumer = member()?;
    consumer.subscribe(&[topic])?;
    let mut second_read = read_and_commit(&consumer, 10).with_context(|| broker.log())?;
    let took = started.elapsed();
    second_read.sort();
    let expected: Vec<String> = {
        let mut values: Vec<String> = (0..10).map(|index| format!("after-{index}")).collect();
        values.sort();
        values
    };
    ensure!(
        second_read == expected,
        "the successor read {second_read:?}"
    );
    ensure!(
        took < Duration::from_millis(SESSION_TIMEOUT_MS),
        "the successor waited {took:?}, as long as the old member's session"
    );
    // It replaced the first member rather than joining beside it after a leave.
    ensure!(
        broker.log().contains("static member replaced"),
        "no replacement in the broker log:\n{}",
        broker.log()
    );
    Ok(())
}

/// `group.max.size=1`: a second librdkafka member of a full group is told
/// GROUP_MAX_SIZE_REACHED (a consumer error from poll), and the first keeps both partitions.
#[test]
fn a_join_beyond_group_max_size_gets_group_max_size_reached() -> anyhow::Result<()> {
    let config: Vec<&str> = BROKER_CONFIG
        .iter()
        .copied()
        .chain(["group.max.size=1"])
        .collect();
    let broker = BrokerProcess::start(&config)?;
    let topic = "capped";
    create_topic(&broker, topic, 2)?;
    let first = group_consumer(&broker.bootstrap(), "capped-group")?;
    first.subscribe(&[topic])?;
    await_rebalance(&[&first], "the first member's assignment", || {
        Ok(assigned(&first, topic)?.len() == 2)
    })
    .with_context(|| broker.log())?;

    let second = group_consumer(&broker.bootstrap(), "capped-group")?;
    second.subscribe(&[topic])?;
    let deadline = Instant::now() + REBALANCE_TIMEOUT;
    loop {
        ensure!(
            Instant::now() < deadline,
            "the second member was never told the group is full\n{}",
            broker.log()
        );
        // The first member keeps polling, so it stays in the group meanwhile.
        if let Some(Err(error)) = first.poll(Duration::from_millis(50)) {
            bail!("the first member: {error}");
        }
        match second.poll(Duration::from_millis(50)) {
            Some(Err(error))
                if error.rdkafka_error_code() == Some(RDKafkaErrorCode::GroupMaxSizeReached) =>
            {
                break;
            }
            Some(Err(error)) => bail!("the second member: {error}"),
            _ => {}
        }
    }
    ensure!(
        assigned(&first, topic)?.len() == 2,
        "the first member lost partitions"
    );
    ensure!(
        assigned(&second, topic)?.is_empty(),
        "the second member got partitions"
    );
    Ok(())
}

/// The child half of the session-timeout test: a group member that polls until it is killed
/// (or [`CHILD_LIFETIME`] passes). A no-op when run as an ordinary test.
#[test]
fn child_group_member() -> anyhow::Result<()> {
    let Ok(bootstrap) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let consumer = group_consumer(&bootstrap, "survivors")?;
    consumer.subscribe(&["survive"])?;
    let until = Instant::now() + CHILD_LIFETIME;
    while Instant::now() < until {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    // Never drop it: leaving the group is exactly what this member must not do.
    std::mem::forget(consumer);
    std::process::exit(0);
}

#[test]
fn a_member_killed_without_leaving_is_removed_after_its_session_timeout() -> anyhow::Result<()> {
    let broker = BrokerProcess::start(BROKER_CONFIG)?;
    let topic = "survive";
    create_topic(&broker, topic, 4)?;
    let all: BTreeSet<i32> = (0..4).collect();

    let survivor = group_consumer(&broker.bootstrap(), "survivors")?;
    survivor.subscribe(&[topic])?;
    await_rebalance(
        &[&survivor],
        "the survivor alone gets every partition",
        || Ok(assigned(&survivor, topic)? == all),
    )
    .with_context(|| broker.log())?;

    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "child_group_member",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, broker.bootstrap())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the child member")?;
    let split = await_rebalance(
        &[&survivor],
        "the child member takes half the partitions",
        || Ok(assigned(&survivor, topic)?.len() == 2),
    );
    if let Err(error) = split {
        let _ = child.kill();
        let _ = child.wait();
        return Err(error).with_context(|| broker.log());
    }
    // SIGKILL: no LeaveGroup, no more heartbeats.
    child.kill()?;
    child.wait()?;
    let killed = Instant::now();
    await_rebalance(
        &[&survivor],
        "the survivor takes the dead member's partitions",
        || Ok(assigned(&survivor, topic)? == all),
    )
    .with_context(|| broker.log())?;
    let took = killed.elapsed();
    // The dead member's last heartbeat was at most one interval (500 ms) before the kill.
    ensure!(
        took >= Duration::from_millis(SESSION_TIMEOUT_MS - 1000),
        "the handover took {took:?}: before the session timeout could pass"
    );
    Ok(())
}

fn weir(args: &[&str]) -> anyhow::Result<(String, String)> {
    let output = run_weir(args, "")?;
    let stdout = String::from_utf8(output.stdout)?;
    let stderr = String::from_utf8(output.stderr)?;
    if !output.status.success() {
        bail!(
            "weir {args:?} failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
    }
    Ok((stdout, stderr))
}

#[test]
fn weir_consume_with_a_group_continues_where_it_stopped() -> anyhow::Result<()> {
    let mut broker = BrokerProcess::start(BROKER_CONFIG)?;
    let topic = "console";
    create_topic(&broker, topic, 3)?;
    produce(&broker, topic, 3, 30)?;
    let bootstrap = broker.bootstrap();
    let consume = |extra: &[&str]| -> anyhow::Result<Vec<String>> {
        let mut args = vec![
            "consume",
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            topic,
            "--group",
            "console-group",
            "--from-beginning",
        ];
        args.extend_from_slice(extra);
        let (stdout, _) = weir(&args)?;
        Ok(stdout.lines().map(str::to_string).collect())
    };
    let first = consume(&["--max-messages", "12"])?;
    // A clean restart (SIGTERM) in between: the commits are on disk.
    let status = broker.terminate()?;
    ensure!(status.success(), "the broker exited with {status}");
    broker.restart()?;
    let second = consume(&["--max-messages", "11"])?;
    let third = consume(&["--timeout-ms", "3000"])?;
    ensure!(
        (first.len(), second.len(), third.len()) == (12, 11, 7),
        "read {} then {} then {} records",
        first.len(),
        second.len(),
        third.len()
    );
    let all: BTreeSet<&String> = first.iter().chain(&second).chain(&third).collect();
    ensure!(all.len() == 30, "{} distinct records of 30", all.len());

    // The group is listed and described like kafka-consumer-groups.sh prints it: nothing left.
    let (listed, _) = weir(&["groups", "--bootstrap-server", &bootstrap, "--list"])?;
    ensure!(
        listed.lines().any(|line| line == "console-group"),
        "--list:\n{listed}"
    );
    let (described, _) = weir(&[
        "groups",
        "--bootstrap-server",
        &bootstrap,
        "--describe",
        "--group",
        "console-group",
    ])?;
    let rows: Vec<Vec<&str>> = described
        .lines()
        .map(|line| line.split_whitespace().collect())
        .filter(|row: &Vec<&str>| row.first() == Some(&"console-group"))
        .collect();
    ensure!(rows.len() == 3, "--describe:\n{described}");
    for row in rows {
        // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
        ensure!(
            row.get(1) == Some(&topic)
                && row.get(3) == Some(&"10")
                && row.get(4) == Some(&"10")
                && row.get(5) == Some(&"0"),
            "--describe row {row:?}:\n{described}"
        );
    }

    // Deleting the topic deletes the group's offsets of it.
    weir(&[
        "topics",
        "--bootstrap-server",
        &bootstrap,
        "--delete",
        "--topic",
        topic,
    ])?;
    let (described, _) = weir(&[
        "groups",
        "--bootstrap-server",
        &bootstrap,
        "--describe",
        "--group",
        "console-group",
    ])?;
    ensure!(
        !described
            .lines()
            .any(|line| line.starts_with("console-group")),
        "offsets of a deleted topic:\n{described}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Other client stacks: confluent-kafka, kafka-python, kafkajs.

#[test]
fn python_group_consumers_consume_and_commit() -> anyhow::Result<()> {
    let Some(python) = python_with_clients()? else {
        return Ok(());
    };
    run_client_script(&python, "python_groups.py", |bootstrap| {
        vec!["--bootstrap".to_string(), bootstrap.to_string()]
    })
}

#[test]
fn kafkajs_group_consumer_consumes_and_commits() -> anyhow::Result<()> {
    let Some(node) = node_with_kafkajs()? else {
        return Ok(());
    };
    run_client_script(&node, "kafkajs_group.js", |bootstrap| {
        vec![bootstrap.to_string()]
    })
}

/// Starts a broker and runs `program tests/clients/<script> <args(bootstrap)>`; the script's
/// output (and, when it fails, the broker's log) is printed.
fn run_client_script(
    program: &Path,
    script: &str,
    args: impl FnOnce(&str) -> Vec<String>,
) -> anyhow::Result<()> {
    let broker = BrokerProcess::start(BROKER_CONFIG)?;
    let path = client_scripts_dir().join(script);
    let mut full = vec![
        path.to_str()
            .context("script path is not UTF-8")?
            .to_string(),
    ];
    full.extend(args(&broker.bootstrap()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    let (success, output) = run(program, &full, SCRIPT_TIMEOUT)?;
    println!("{output}");
    if !success {
        bail!("{script} failed:\n{output}\nbroker log:\n{}", broker.log());
    }
    Ok(())
}
