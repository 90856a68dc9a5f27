//! The controller quorum with three real `weir serve` processes on 127.0.0.1 (combined mode:
//! each a broker and a voter): they agree on one active controller and on the registered
//! brokers; SIGKILL of the active controller elects another, which fences the dead broker, and
//! the node comes back and catches up; a SIGSTOPped broker is fenced within its session timeout
//! and unfenced after SIGCONT; a node restarted after the metadata log was snapshotted restores
//! from the snapshot. What nodes agree on is read over the wire (DescribeCluster v2, with fenced
//! brokers), from librdkafka and kafka-python, and from `weir cluster describe` /
//! `weir metadata dump`. Admin requests and plugin operations work through any broker, and the
//! other layouts run too: a dedicated broker following the quorum as a learner, and dedicated
//! controllers serving dedicated brokers.
//!
//! Timeouts used: `broker.session.timeout.ms=2000`, `broker.heartbeat.interval.ms=200`, Raft
//! election timeout 1000 ms (`controller.quorum.election.timeout.ms`' default).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use kafka_protocol::messages::{ApiKey, DescribeClusterRequest};
use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir::cli::Client;
use weir_tests::broker::{BrokerProcess, run_weir};

#[allow(dead_code)]
#[path = "support/rdkafka_clients.rs"]
mod rdkafka_clients;
use rdkafka_clients::{admin_options, assigned_consumer, block_on, client_config, runtime};

const SESSION_TIMEOUT_MS: u64 = 2000;
/// Bound on every wait for the cluster to reach a state.
const WAIT: Duration = Duration::from_secs(60);

/// The lifecycle timeouts every node of these tests uses.
fn lifecycle_config() -> Vec<String> {
    vec![
        format!("broker.session.timeout.ms={SESSION_TIMEOUT_MS}"),
        "broker.heartbeat.interval.ms=200".to_string(),
    ]
}

fn cluster(extra: &[&str]) -> anyhow::Result<Vec<BrokerProcess>> {
    let mut config = lifecycle_config();
    config.extend(extra.iter().map(|item| item.to_string()));
    let config: Vec<&str> = config.iter().map(String::as_str).collect();
    BrokerProcess::start_cluster(3, &config)
}

/// What one node says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    cluster_id: String,
    controller: i32,
    /// Broker id -> fenced.
    brokers: BTreeMap<i32, bool>,
}

fn view(node: &BrokerProcess) -> anyhow::Result<View> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let call = async {
            let mut client = Client::connect(&node.bootstrap()).await?;
            let version = client.version(ApiKey::DescribeCluster)?;
            ensure!(
                version >= 2,
                "DescribeCluster v{version} cannot list fenced brokers"
            );
            let response = client
                .send(
                    version,
                    &DescribeClusterRequest::default().with_include_fenced_brokers(true),
                )
                .await?;
            Ok(View {
                cluster_id: response.cluster_id.to_string(),
                controller: response.controller_id.0,
                brokers: response
                    .brokers
                    .iter()
                    .map(|broker| (broker.broker_id.0, broker.is_fenced))
                    .collect(),
            })
        };
        tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .map_err(|_| anyhow!("DescribeCluster to {} timed out", node.bootstrap()))?
    })
}

/// Polls until `check` returns `Some`, or fails after [`WAIT`] with the last reason.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> anyhow::Result<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(reason) if Instant::now() > deadline => {
                bail!("{what} did not happen within {WAIT:?}: {reason}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Waits until every node in `live` answers the same view, with a controller among `live`
/// and `expect` holding for it; returns that view.
fn wait_for_agreement(
    nodes: &[BrokerProcess],
    live: &[usize],
    what: &str,
    expect: impl Fn(&View) -> bool,
) -> anyhow::Result<View> {
    wait_for(what, || {
        let views: Vec<View> = live
            .iter()
            .map(|index| view(&nodes[*index]).map_err(|error| error.to_string()))
            .collect::<Result<_, _>>()?;
        let first = views[0].clone();
        if views.iter().any(|view| *view != first) {
            return Err(format!("nodes disagree: {views:?}"));
        }
        let controller_is_live = live
            .iter()
            .any(|index| index + 1 == first.controller as usize);
        if !controller_is_live || !expect(&first) {
            return Err(format!("agreed on {first:?}"));
        }
        Ok(first)
    })
}

fn all_unfenced(view: &View) -> bool {
    view.brokers == BTreeMap::from([(1, false), (2, false), (3, false)])
}

fn dump_of(node: &BrokerProcess) -> anyhow::Result<String> {
    let dump = run_weir(
        &[
            "metadata",
            "dump",
            "--data-dir",
            &node.data_dir.to_string_lossy(),
        ],
        "",
    )?;
    ensure!(
        dump.status.success(),
        "weir metadata dump failed: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    Ok(String::from_utf8_lossy(&dump.stdout).into_owned())
}

#[test]
fn three_nodes_agree_on_the_controller_and_the_brokers() -> anyhow::Result<()> {
    let nodes = cluster(&[])?;
    let agreed = wait_for_agreement(&nodes, &[0, 1, 2], "three registered brokers", all_unfenced)
        .with_context(|| nodes[0].log())?;
    ensure!(!agreed.cluster_id.is_empty());

    // librdkafka sees the same three brokers from every node.
    for node in &nodes {
        let consumer: BaseConsumer = client_config(node).create()?;
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
        let mut ids: Vec<i32> = metadata
            .brokers()
            .iter()
            .map(|broker| broker.id())
            .collect();
        ids.sort();
        ensure!(
            ids == [1, 2, 3],
            "librdkafka via {}: {ids:?}",
            node.bootstrap()
        );
    }

    // The operator's view: `weir cluster describe` names the controller, voters and brokers.
    let describe = run_weir(
        &[
            "cluster",
            "describe",
            "--bootstrap-server",
            &nodes[1].bootstrap(),
        ],
        "",
    )?;
    let text = String::from_utf8_lossy(&describe.stdout);
    ensure!(
        describe.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&describe.stderr)
    );
    ensure!(
        text.contains(&format!("LeaderId:        {}", agreed.controller)),
        "{text}"
    );
    ensure!(
        text.contains("CurrentVoters:   [1 CONTROLLER://127.0.0.1:"),
        "{text}"
    );
    for node in &nodes {
        ensure!(text.contains(&format!("127.0.0.1:{}", node.port)), "{text}");
    }

    // /metrics: one active controller, which sees three heartbeating brokers; nobody fenced.
    for (index, node) in nodes.iter().enumerate() {
        let metrics = ureq::get(format!("{}/metrics", node.admin_url()))
            .call()?
            .body_mut()
            .read_to_string()?;
        let active = index as i32 + 1 == agreed.controller;
        ensure!(
            metrics.contains(&format!("weir_controller_active {}\n", u8::from(active))),
            "{metrics}"
        );
        ensure!(metrics.contains(&format!("weir_controller_id {}\n", agreed.controller)));
        ensure!(
            metrics.contains("weir_registered_brokers 3\n")
                && metrics.contains("weir_fenced_brokers 0\n"),
            "{metrics}"
        );
        let heartbeats = metrics
            .lines()
            .filter(|line| line.starts_with("weir_broker_heartbeat_age_seconds{"))
            .count();
        ensure!(heartbeats == if active { 3 } else { 0 }, "{metrics}");
    }

    // Every node's metadata log holds the three registrations.
    for node in &nodes {
        let dump = dump_of(node)?;
        for id in 1..=3 {
            ensure!(
                dump.contains(&format!("\"type\":\"RegisterBroker\",\"broker_id\":{id}")),
                "{dump}"
            );
        }
    }
    Ok(())
}

#[test]
fn sigkill_of_the_active_controller_elects_another_that_fences_it_and_it_returns()
-> anyhow::Result<()> {
    const ROUNDS: usize = 10;
    let mut nodes = cluster(&[])?;
    let mut elections = Vec::new();
    let mut creations = Vec::new();
    let mut fencings = Vec::new();
    let mut view =
        wait_for_agreement(&nodes, &[0, 1, 2], "three registered brokers", all_unfenced)?;
    for round in 0..ROUNDS {
        let killed = view.controller as usize - 1;
        let live: Vec<usize> = (0..3).filter(|index| *index != killed).collect();
        let started = Instant::now();
        nodes[killed].kill();
        wait_for_agreement(&nodes, &live, "a new controller", |view| {
            view.controller != killed as i32 + 1
        })
        .with_context(|| format!("round {round}"))?;
        elections.push(started.elapsed());
        // CreateTopics works again: the first success after the kill.
        wait_for("CreateTopics after the failover", || {
            create_topic(&nodes, &live, &format!("after-failover-{round}"))
        })
        .with_context(|| format!("round {round}"))?;
        creations.push(started.elapsed());
        // It has committed the fencing of the dead one.
        let after = wait_for_agreement(&nodes, &live, "a new controller fencing the old", |view| {
            view.controller != killed as i32 + 1
                && view.brokers.get(&(killed as i32 + 1)) == Some(&true)
        })
        .with_context(|| format!("round {round}"))?;
        fencings.push(started.elapsed());
        ensure!(
            after.cluster_id == view.cluster_id,
            "the cluster id changed"
        );
        nodes[killed].restart()?;
        view = wait_for_agreement(
            &nodes,
            &[0, 1, 2],
            "the killed node back, unfenced",
            all_unfenced,
        )
        .with_context(|| format!("round {round}: {}", nodes[killed].log()))?;
    }
    for times in [&mut elections, &mut creations, &mut fencings] {
        times.sort();
    }
    eprintln!(
        "controller failover over {ROUNDS} SIGKILLs: to a new controller both survivors name \
         p50 {:?} max {:?}; to the first successful CreateTopics p50 {:?} max {:?}; to the old \
         one fenced p50 {:?} max {:?} (election timeout 1000 ms, session timeout \
         {SESSION_TIMEOUT_MS} ms)",
        elections[ROUNDS / 2],
        elections[ROUNDS - 1],
        creations[ROUNDS / 2],
        creations[ROUNDS - 1],
        fencings[ROUNDS / 2],
        fencings[ROUNDS - 1]
    );
    // Every topic created along the way survived every failover.
    for round in 0..ROUNDS {
        let name = format!("after-failover-{round}");
        ensure!(layout(&nodes[0], &name).is_ok(), "{name} lost");
    }
    Ok(())
}

#[test]
fn a_stopped_broker_is_fenced_and_unfenced_after_sigcont() -> anyhow::Result<()> {
    let nodes = cluster(&[])?;
    let view = wait_for_agreement(&nodes, &[0, 1, 2], "three registered brokers", all_unfenced)?;
    // A broker that is not the controller: its heartbeats stop, the controller notices.
    let stopped = (0..3)
        .find(|index| *index as i32 + 1 != view.controller)
        .expect("a follower");
    let live: Vec<usize> = (0..3).filter(|index| *index != stopped).collect();
    let id = stopped as i32 + 1;
    nodes[stopped].pause()?;
    let started = Instant::now();
    let fenced = wait_for_agreement(&nodes, &live, "the stopped broker fenced", |view| {
        view.brokers.get(&id) == Some(&true)
    });
    let waited = started.elapsed();
    nodes[stopped].resume()?;
    fenced?;
    // Not before its session ran out.
    ensure!(
        waited >= Duration::from_millis(SESSION_TIMEOUT_MS / 2),
        "fenced after only {waited:?}"
    );
    wait_for_agreement(
        &nodes,
        &[0, 1, 2],
        "the resumed broker unfenced",
        all_unfenced,
    )?;
    Ok(())
}

#[test]
fn a_terminated_broker_is_fenced_at_once_and_exits_cleanly() -> anyhow::Result<()> {
    let mut nodes = cluster(&[])?;
    let view = wait_for_agreement(&nodes, &[0, 1, 2], "three registered brokers", all_unfenced)?;
    let stopping = (0..3)
        .find(|index| *index as i32 + 1 != view.controller)
        .expect("a follower");
    let live: Vec<usize> = (0..3).filter(|index| *index != stopping).collect();
    let id = stopping as i32 + 1;
    let started = Instant::now();
    let status = nodes[stopping].terminate()?;
    ensure!(
        status.success(),
        "exit status {status}:\n{}",
        nodes[stopping].log()
    );
    ensure!(
        nodes[stopping]
            .log()
            .contains("controlled shutdown: the controller has fenced this broker"),
        "{}",
        nodes[stopping].log()
    );
    // Fenced by its own request: the others know at once, not a session timeout later.
    wait_for_agreement(&nodes, &live, "the stopped broker fenced", |view| {
        view.brokers.get(&id) == Some(&true)
    })?;
    let fenced_after = started.elapsed();
    ensure!(
        fenced_after < Duration::from_millis(SESSION_TIMEOUT_MS),
        "fenced only after {fenced_after:?}"
    );
    nodes[stopping].restart()?;
    wait_for_agreement(
        &nodes,
        &[0, 1, 2],
        "the restarted broker unfenced",
        all_unfenced,
    )?;
    Ok(())
}

#[test]
fn a_node_restarted_after_a_snapshot_restores_from_it() -> anyhow::Result<()> {
    let mut nodes = cluster(&["metadata.log.max.entries.between.snapshots=4"])?;
    let mut view =
        wait_for_agreement(&nodes, &[0, 1, 2], "three registered brokers", all_unfenced)?;
    // Restarts of a follower write registrations and (un)fencing until every node has taken a
    // snapshot and dropped the log before it.
    let follower = (0..3)
        .find(|index| *index as i32 + 1 != view.controller)
        .expect("a follower");
    let snapshot = |node: &BrokerProcess| {
        node.data_dir
            .join("__cluster_metadata")
            .join("quorum.snapshot")
            .exists()
    };
    let mut restarts = 0;
    while !nodes.iter().all(snapshot) {
        ensure!(
            restarts < 10,
            "no snapshot on every node after {restarts} restarts"
        );
        nodes[follower].kill();
        nodes[follower].restart()?;
        view = wait_for_agreement(&nodes, &[0, 1, 2], "the follower back", all_unfenced)?;
        restarts += 1;
    }
    let dump = dump_of(&nodes[follower])?;
    ensure!(dump.starts_with("snapshot "), "{dump}");
    ensure!(dump.contains("purged up to "), "{dump}");
    ensure!(
        !dump.contains("purged up to -1"),
        "the log was never purged:\n{dump}"
    );

    // The node restores from snapshot plus log and agrees with the others.
    nodes[follower].kill();
    nodes[follower].restart()?;
    let after = wait_for_agreement(
        &nodes,
        &[0, 1, 2],
        "the restored node agreeing",
        all_unfenced,
    )?;
    ensure!(
        after.cluster_id == view.cluster_id,
        "the cluster id changed"
    );
    ensure!(
        nodes[follower]
            .log()
            .contains("registered with the controller"),
        "{}",
        nodes[follower].log()
    );
    Ok(())
}

/// (partition, leader, replicas, ISR) of `topic` as librdkafka sees it through `node`.
type Layout = Vec<(i32, i32, Vec<i32>, Vec<i32>)>;

fn layout(node: &BrokerProcess, topic: &str) -> anyhow::Result<Layout> {
    let consumer: BaseConsumer = client_config(node).create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let found = metadata
        .topics()
        .iter()
        .find(|found| found.name() == topic)
        .ok_or_else(|| anyhow!("{topic} not in the metadata"))?;
    if let Some(error) = found.error() {
        bail!("{topic}: {error:?}");
    }
    let mut layout: Layout = found
        .partitions()
        .iter()
        .map(|partition| {
            (
                partition.id(),
                partition.leader(),
                partition.replicas().to_vec(),
                partition.isr().to_vec(),
            )
        })
        .collect();
    layout.sort();
    Ok(layout)
}

#[test]
fn a_topic_created_through_one_broker_is_the_same_on_all_three() -> anyhow::Result<()> {
    let nodes = cluster(&[])?;
    let view = wait_for_agreement(&nodes, &[0, 1, 2], "three registered brokers", all_unfenced)?;
    let runtime = runtime()?;
    // Through a broker that is not the controller: librdkafka sends CreateTopics to the
    // controller Metadata names.
    let entry = (0..3)
        .find(|index| *index as i32 + 1 != view.controller)
        .expect("a follower");
    let admin: AdminClient<DefaultClientContext> = client_config(&nodes[entry]).create()?;
    let topics = [
        NewTopic::new("spread", 6, TopicReplication::Fixed(3)),
        NewTopic::new("single", 3, TopicReplication::Fixed(1)),
    ];
    for result in block_on(
        &runtime,
        "CreateTopics",
        admin.create_topics(&topics, &admin_options()),
    )?? {
        result.map_err(|(topic, error)| anyhow!("creating {topic}: {error}"))?;
    }
    let too_many = NewTopic::new("too-many", 1, TopicReplication::Fixed(4));
    let refused = block_on(
        &runtime,
        "CreateTopics",
        admin.create_topics([&too_many], &admin_options()),
    )??;
    ensure!(
        matches!(
            &refused[0],
            Err((
                _,
                rdkafka::types::RDKafkaErrorCode::InvalidReplicationFactor
            ))
        ),
        "{refused:?}"
    );

    // Every node answers the same leaders, replicas and ISR.
    let spread = wait_for("the same layout from every node", || {
        let layouts: Vec<Layout> = nodes
            .iter()
            .map(|node| layout(node, "spread").map_err(|error| error.to_string()))
            .collect::<Result<_, _>>()?;
        if layouts.iter().any(|layout| *layout != layouts[0]) || layouts[0].len() != 6 {
            return Err(format!("{layouts:?}"));
        }
        Ok(layouts[0].clone())
    })?;
    for (partition, leader, replicas, isr) in &spread {
        let mut sorted = replicas.clone();
        sorted.sort();
        ensure!(
            sorted == [1, 2, 3],
            "partition {partition}: replicas {replicas:?}"
        );
        ensure!(
            replicas[0] == *leader && isr == replicas,
            "partition {partition}: {spread:?}"
        );
    }
    // kafka-python, an independent client stack, reads the same from every node.
    if let Some(python) = weir_tests::clients::python_with_clients()? {
        for node in &nodes {
            ensure!(
                kafka_python_layout(&python, node, "spread")? == spread,
                "kafka-python on {} disagrees with {spread:?}",
                node.bootstrap()
            );
        }
    }
    let leaders: std::collections::BTreeSet<i32> = spread.iter().map(|p| p.1).collect();
    ensure!(
        leaders.len() == 3,
        "leaders not spread over the brokers: {spread:?}"
    );

    // Records reach each partition's leader and read back from it.
    let producer: FutureProducer = client_config(&nodes[0]).set("acks", "all").create()?;
    for partition in 0..3 {
        let value = format!("record for partition {partition}");
        block_on(
            &runtime,
            "produce",
            producer.send(
                FutureRecord::<(), _>::to("single")
                    .partition(partition)
                    .payload(&value),
                Duration::from_secs(10),
            ),
        )?
        .map_err(|(error, _)| anyhow!("producing to single-{partition}: {error}"))?;
        let consumer = assigned_consumer(&nodes[2], &[])?;
        let read = rdkafka_clients::read_partition(
            &consumer,
            "single",
            partition,
            rdkafka::Offset::Beginning,
            1,
        )?;
        ensure!(
            rdkafka::message::Message::payload(&read[0]) == Some(value.as_bytes()),
            "partition {partition}"
        );
    }
    // A broker that does not lead a partition refuses its records with NOT_LEADER_OR_FOLLOWER
    // (so a client refreshes metadata and goes to the leader) and stores nothing.
    let single = layout(&nodes[0], "single")?;
    let (partition, leader, _, _) = single[0].clone();
    let other = (0..3)
        .find(|index| *index as i32 + 1 != leader)
        .expect("a non-leader");
    let code = produce_raw(&nodes[other], "single", partition)?;
    ensure!(
        code == kafka_protocol::ResponseError::NotLeaderOrFollower.code(),
        "produce to broker {} for single-{partition} (led by {leader}) answered {code}",
        other + 1
    );
    let code = fetch_raw(&nodes[other], "single", partition)?;
    ensure!(
        code == kafka_protocol::ResponseError::NotLeaderOrFollower.code(),
        "fetch from broker {} for single-{partition} (led by {leader}) answered {code}",
        other + 1
    );

    // Deleted through the controller: gone from every node's metadata and disk.
    let deleted = block_on(
        &runtime,
        "DeleteTopics",
        admin.delete_topics(&["spread"], &admin_options()),
    )??;
    deleted[0]
        .clone()
        .map_err(|(topic, error)| anyhow!("deleting {topic}: {error}"))?;
    wait_for("spread gone everywhere", || {
        for node in &nodes {
            let on_disk = std::fs::read_dir(&node.data_dir)
                .map_err(|error| error.to_string())?
                .flatten()
                .any(|entry| entry.file_name().to_string_lossy().starts_with("spread-"));
            if on_disk || layout(node, "spread").is_ok() {
                return Err(format!("spread still on {}", node.bootstrap()));
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// `topic`'s partitions as kafka-python's admin client describes them through `node`.
fn kafka_python_layout(
    python: &std::path::Path,
    node: &BrokerProcess,
    topic: &str,
) -> anyhow::Result<Layout> {
    const SCRIPT: &str = "import json, sys\n\
        from kafka import KafkaAdminClient\n\
        admin = KafkaAdminClient(bootstrap_servers=sys.argv[1])\n\
        (described,) = admin.describe_topics([sys.argv[2]])\n\
        print(json.dumps([[p['partition_index'], p['leader_id'], p['replica_nodes'], \
        p['isr_nodes']] for p in described['partitions']]))\n";
    let (success, output) = weir_tests::clients::run(
        python,
        &["-c", SCRIPT, &node.bootstrap(), topic],
        Duration::from_secs(60),
    )?;
    ensure!(success, "kafka-python describe_topics failed:\n{output}");
    let line = output
        .lines()
        .rev()
        .find(|line| line.starts_with('['))
        .ok_or_else(|| anyhow!("no layout in kafka-python's output:\n{output}"))?;
    let mut layout: Layout = serde_json::from_str(line)?;
    layout.sort();
    Ok(layout)
}

/// One record sent with a raw Produce (acks=1) straight to `node`, whatever the metadata says;
/// the partition's error code.
fn produce_raw(node: &BrokerProcess, topic: &str, partition: i32) -> anyhow::Result<i16> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use weir::storage::Compression;
    use weir::storage::records::{ProducerRecord, encode_producer_batch};

    let batch = encode_producer_batch(
        &[ProducerRecord {
            key: None,
            value: Some(b"misdirected"),
            headers: &[],
            timestamp: 0,
        }],
        Compression::None,
    )
    .map_err(anyhow::Error::msg)?;
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(bytes::Bytes::from(batch))),
                ]),
        ]);
    // By name: v12 is the last version that names topics.
    let response = send_raw(node, &request, 12)?;
    response
        .responses
        .first()
        .and_then(|topic| topic.partition_responses.first())
        .map(|partition| partition.error_code)
        .ok_or_else(|| anyhow!("no partition in the produce response"))
}

/// Sends `request` straight to `node` (at the highest version both sides serve, at most `cap`)
/// and returns its response, within 15 seconds.
fn send_raw<R: kafka_protocol::protocol::Request>(
    node: &BrokerProcess,
    request: &R,
    cap: i16,
) -> anyhow::Result<R::Response> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let call = async {
            let mut client = Client::connect(&node.bootstrap()).await?;
            let api = ApiKey::try_from(R::KEY).map_err(|()| anyhow!("API key {}", R::KEY))?;
            let version = client.version_up_to(api, cap)?;
            anyhow::Ok(client.send(version, request).await?)
        };
        tokio::time::timeout(Duration::from_secs(15), call)
            .await
            .map_err(|_| anyhow!("{} did not answer within 15 s", node.bootstrap()))?
    })
}

/// One CreateTopics (3 partitions, replication factor 3) sent to the controller that the first
/// of `live` names, as a client does; an error string while there is none or it refuses.
fn create_topic(nodes: &[BrokerProcess], live: &[usize], name: &str) -> Result<(), String> {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let controller = view(&nodes[live[0]])
        .map_err(|error| error.to_string())?
        .controller;
    let node = live
        .iter()
        .find(|index| **index as i32 + 1 == controller)
        .ok_or_else(|| format!("controller {controller} is not a live node"))?;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_num_partitions(3)
                .with_replication_factor(3),
        ]);
    let response = send_raw(&nodes[*node], &request, i16::MAX).map_err(|e| e.to_string())?;
    match response.topics.first() {
        Some(topic) if topic.error_code == 0 => Ok(()),
        other => Err(format!("CreateTopics answered {other:?}")),
    }
}

/// A consumer's raw Fetch (v12, by topic name) of `topic`-`partition` from offset 0 sent straight
/// to `node`; the partition's error code.
fn fetch_raw(node: &BrokerProcess, topic: &str, partition: i32) -> anyhow::Result<i16> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let request = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let response = send_raw(node, &request, 12)?;
    response
        .responses
        .first()
        .and_then(|topic| topic.partitions.first())
        .map(|partition| partition.error_code)
        .ok_or_else(|| anyhow!("no partition in the fetch response"))
}

/// Sends a request again while it answers NOT_CONTROLLER (a controller election under load;
/// clients retry it the same way), then requires the first other error code to be success.
fn succeeds_through_elections(
    what: &str,
    mut send: impl FnMut() -> anyhow::Result<Option<i16>>,
) -> anyhow::Result<()> {
    let not_controller = kafka_protocol::ResponseError::NotController.code();
    let code = wait_for("an answer other than NOT_CONTROLLER", || {
        match send().map_err(|error| error.to_string())? {
            Some(code) if code == not_controller => Err("NOT_CONTROLLER".to_string()),
            other => Ok(other),
        }
    })?;
    ensure!(code == Some(0), "{what}: {code:?}");
    Ok(())
}

/// KIP-590's forwarding: admin requests sent to a broker that is not the active controller
/// reach the controller and succeed there, and Metadata's auto-creation through such a broker
/// creates the topic (it answers the new topic, which every node then has).
#[test]
fn admin_requests_sent_to_any_broker_reach_the_controller() -> anyhow::Result<()> {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::{
        CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};

    let name = |text: &str| TopicName(StrBytes::from_string(text.to_string()));
    let nodes = cluster(&[])?;
    let view = wait_for_agreement(&nodes, &[0, 1, 2], "three registered brokers", all_unfenced)?;
    let entry = (0..3)
        .find(|index| *index as i32 + 1 != view.controller)
        .expect("a node that is not the controller");
    let node = &nodes[entry];

    let create = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(name("forwarded"))
                .with_num_partitions(2)
                .with_replication_factor(3),
        ]);
    succeeds_through_elections(
        &format!("CreateTopics through broker {}", entry + 1),
        || {
            let created = send_raw(node, &create, i16::MAX)?;
            Ok(created.topics.first().map(|topic| topic.error_code))
        },
    )?;
    // As in Kafka, the creation is answered once the controller committed it; the entry broker
    // learns it from the metadata log a moment later.
    wait_for(
        "the forwarded topic on its entry broker",
        || match layout(node, "forwarded").map_err(|error| error.to_string())? {
            partitions if partitions.len() == 2 => Ok(()),
            partitions => Err(format!("{partitions:?}")),
        },
    )?;

    let grow = CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(name("forwarded"))
                .with_count(4)
                .with_assignments(None),
        ]);
    succeeds_through_elections(
        &format!("CreatePartitions through broker {}", entry + 1),
        || {
            let grown = send_raw(node, &grow, i16::MAX)?;
            Ok(grown.results.first().map(|topic| topic.error_code))
        },
    )?;
    wait_for("four partitions everywhere", || {
        for node in &nodes {
            let partitions = layout(node, "forwarded").map_err(|error| error.to_string())?;
            if partitions.len() != 4 {
                return Err(format!("{}: {partitions:?}", node.bootstrap()));
            }
        }
        Ok(())
    })?;

    // AlterConfigs from librdkafka, which sends it to any broker it knows: here only the one.
    let runtime = runtime()?;
    let admin: AdminClient<DefaultClientContext> = client_config(node).create()?;
    let altered = block_on(
        &runtime,
        "AlterConfigs",
        admin.alter_configs(
            [&AlterConfig::new(ResourceSpecifier::Topic("forwarded"))
                .set("retention.ms", "3600000")],
            &admin_options(),
        ),
    )??;
    ensure!(altered.iter().all(Result::is_ok), "{altered:?}");
    wait_for("the config on every node", || {
        for node in &nodes {
            let overrides = weir_tests::broker::persisted_overrides(node, "forwarded")
                .map_err(|error| error.to_string())?;
            if overrides.get("retention.ms").map(String::as_str) != Some("3600000") {
                return Err(format!("{}: {overrides:?}", node.bootstrap()));
            }
        }
        Ok(())
    })?;

    // Metadata with auto-creation allowed, through the same broker.
    let runtime_metadata = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let metadata = runtime_metadata.block_on(async {
        let mut client = Client::connect(&node.bootstrap()).await?;
        anyhow::Ok(client.metadata(Some(&["made-on-demand"]), true).await?)
    })?;
    let topic = metadata
        .topics
        .first()
        .ok_or_else(|| anyhow!("no topic in {metadata:?}"))?;
    ensure!(
        topic.error_code == 0 && !topic.partitions.is_empty(),
        "auto-creation through broker {}: {topic:?}",
        entry + 1
    );
    for node in &nodes {
        wait_for("the auto-created topic everywhere", || {
            layout(node, "made-on-demand").map_err(|error| error.to_string())
        })?;
    }

    let delete = DeleteTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            DeleteTopicState::default().with_name(Some(name("forwarded"))),
        ]);
    succeeds_through_elections(
        &format!("DeleteTopics through broker {}", entry + 1),
        || {
            let deleted = send_raw(node, &delete, i16::MAX)?;
            Ok(deleted.responses.first().map(|topic| topic.error_code))
        },
    )?;
    wait_for("forwarded gone everywhere", || {
        for node in &nodes {
            if layout(node, "forwarded").is_ok() {
                return Err(format!("still on {}", node.bootstrap()));
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// A node's plugin as its admin API reports it.
fn plugin_on(node: &BrokerProcess, name: &str) -> Result<serde_json::Value, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent
        .get(format!("{}/v1/plugins/{name}", node.admin_url()))
        .call()
        .map_err(|error| error.to_string())?;
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|error| error.to_string())?;
    if response.status() != 200 {
        return Err(format!("{}: {text}", response.status()));
    }
    serde_json::from_str(&text).map_err(|error| error.to_string())
}

/// The plugin registry lives in the metadata log: a plugin installed and activated through
/// one broker (not the controller) is active on all three from the same metadata offset, and a
/// node restarted afterwards runs it again from its log.
#[test]
fn a_plugin_installed_through_one_broker_is_active_on_all_three_at_one_offset() -> anyhow::Result<()>
{
    let nodes = cluster(&[])?;
    let view = wait_for_agreement(&nodes, &[0, 1, 2], "three registered brokers", all_unfenced)?;
    let entry = (0..3)
        .find(|index| *index as i32 + 1 != view.controller)
        .expect("a node that is not the controller");
    let component =
        std::env::temp_dir().join(format!("weir-cluster-plugin-{}.wasm", std::process::id()));
    std::fs::write(&component, weir::policy::defaults::PARTITIONER)?;
    let admin = nodes[entry].admin_url();
    let component_path = component.to_string_lossy().into_owned();
    let installed = run_weir(
        &[
            "plugin",
            "--admin-url",
            &admin,
            "install",
            &component_path,
            "--name",
            "spread",
        ],
        "",
    )?;
    let _ = std::fs::remove_file(&component);
    ensure!(
        installed.status.success(),
        "install: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let activated = run_weir(&["plugin", "--admin-url", &admin, "activate", "spread"], "")?;
    ensure!(
        activated.status.success(),
        "activate: {}",
        String::from_utf8_lossy(&activated.stderr)
    );

    let offset = wait_for("spread active broker-wide on every node", || {
        let mut offsets = Vec::new();
        for node in &nodes {
            let plugin = plugin_on(node, "spread")?;
            if plugin["current_version"] != "1" || plugin["default_for_kind"] != true {
                return Err(format!("{}: {plugin}", node.bootstrap()));
            }
            offsets.push(plugin["activated_at"].as_u64());
        }
        match offsets[0] {
            Some(offset) if offsets.iter().all(|o| *o == Some(offset)) => Ok(offset),
            _ => Err(format!("activation offsets differ: {offsets:?}")),
        }
    })?;

    // Restarted (its log replayed), a node runs the same version from the same offset.
    let restarted = (entry + 1) % 3;
    let mut nodes = nodes;
    nodes[restarted].kill();
    nodes[restarted].restart()?;
    let plugin = wait_for("spread after the restart", || {
        plugin_on(&nodes[restarted], "spread")
    })?;
    ensure!(
        plugin["current_version"] == "1"
            && plugin["default_for_kind"] == true
            && plugin["activated_at"].as_u64() == Some(offset),
        "{plugin}"
    );
    Ok(())
}

/// `process.roles=broker`: a fourth node that is not a voter follows the metadata log as a Raft
/// learner. It registers, is unfenced, shows as an observer of the quorum, gets replicas
/// placed on it and leads some, and after a SIGKILL and restart (on another metadata port) it
/// catches up on what was committed while it was down.
#[test]
fn a_dedicated_broker_follows_the_metadata_log_as_a_learner() -> anyhow::Result<()> {
    let nodes = cluster(&[])?;
    wait_for_agreement(&nodes, &[0, 1, 2], "three registered brokers", all_unfenced)?;
    let config = lifecycle_config();
    let config: Vec<&str> = config.iter().map(String::as_str).collect();
    let mut dedicated = BrokerProcess::start_dedicated_broker(&nodes, 4, &config)?;
    let four_unfenced = |nodes: &[BrokerProcess], dedicated: &BrokerProcess| {
        wait_for("four unfenced brokers, as every node sees them", || {
            for node in nodes.iter().chain([dedicated]) {
                let seen = view(node).map_err(|error| error.to_string())?;
                if seen.brokers.len() != 4 || seen.brokers.values().any(|fenced| *fenced) {
                    return Err(format!("{}: {seen:?}", node.bootstrap()));
                }
            }
            Ok(())
        })
    };
    four_unfenced(&nodes, &dedicated)?;

    let quorum = run_weir(
        &[
            "cluster",
            "describe",
            "--bootstrap-server",
            &nodes[0].bootstrap(),
        ],
        "",
    )?;
    let described = String::from_utf8_lossy(&quorum.stdout);
    let observers = described
        .lines()
        .find(|line| line.starts_with("CurrentObservers:"))
        .unwrap_or_default();
    let voters = described
        .lines()
        .find(|line| line.starts_with("CurrentVoters:"))
        .unwrap_or_default();
    ensure!(
        observers.contains("[4 ") && !voters.contains("4 ("),
        "broker 4 is an observer, not a voter:\n{described}"
    );

    // Placed on it like any broker: four partitions, replication factor 4.
    let runtime = runtime()?;
    let admin: AdminClient<DefaultClientContext> = client_config(&dedicated).create()?;
    for result in block_on(
        &runtime,
        "CreateTopics",
        admin.create_topics(
            &[NewTopic::new("everywhere", 4, TopicReplication::Fixed(4))],
            &admin_options(),
        ),
    )?? {
        result.map_err(|(topic, error)| anyhow!("creating {topic}: {error}"))?;
    }
    let layout_here = wait_for("the topic on the dedicated broker", || {
        layout(&dedicated, "everywhere").map_err(|error| error.to_string())
    })?;
    let led = layout_here
        .iter()
        .find(|(_, leader, _, _)| *leader == 4)
        .ok_or_else(|| anyhow!("broker 4 leads nothing: {layout_here:?}"))?;
    ensure!(
        produce_raw(&dedicated, "everywhere", led.0)? == 0,
        "the dedicated broker refused records for a partition it leads"
    );

    // Down and back (its metadata port changes): it catches up on a topic made meanwhile.
    dedicated.kill();
    create_topic_until_done(&nodes, "made-while-down")?;
    dedicated.restart()?;
    four_unfenced(&nodes, &dedicated)?;
    wait_for("the topic made while it was down", || {
        layout(&dedicated, "made-while-down").map_err(|error| error.to_string())
    })?;
    Ok(())
}

/// [`create_topic`] through the current controller, retried through elections.
fn create_topic_until_done(nodes: &[BrokerProcess], name: &str) -> anyhow::Result<()> {
    let live: Vec<usize> = (0..nodes.len()).collect();
    wait_for("CreateTopics to succeed", || {
        create_topic(nodes, &live, name)
    })
}

/// Kafka's production layout: three dedicated controllers (`process.roles=controller`, no Kafka
/// listener) and two dedicated brokers. Clients reach the quorum only through the brokers: they
/// name themselves controller (as Kafka's brokers name a live broker) and forward CreateTopics
/// and DescribeQuorum. Topics go on the brokers alone; after a SIGKILL of the active controller
/// another takes over and topics are created again.
#[test]
fn dedicated_controllers_serve_dedicated_brokers() -> anyhow::Result<()> {
    let config = lifecycle_config();
    let config: Vec<&str> = config.iter().map(String::as_str).collect();
    let mut controllers = BrokerProcess::start_controllers(3, &config)?;
    let brokers = [
        BrokerProcess::start_dedicated_broker(&controllers, 4, &config)?,
        BrokerProcess::start_dedicated_broker(&controllers, 5, &config)?,
    ];
    let two_brokers = || {
        wait_for("brokers 4 and 5 unfenced, as both see them", || {
            for broker in &brokers {
                let seen = view(broker).map_err(|error| error.to_string())?;
                if seen.brokers != BTreeMap::from([(4, false), (5, false)])
                    || !(4..=5).contains(&seen.controller)
                {
                    return Err(format!("{}: {seen:?}", broker.bootstrap()));
                }
            }
            Ok(())
        })
    };
    two_brokers()?;

    let described = run_weir(
        &[
            "cluster",
            "describe",
            "--bootstrap-server",
            &brokers[0].bootstrap(),
        ],
        "",
    )?;
    let text = String::from_utf8_lossy(&described.stdout);
    ensure!(
        described.status.success()
            && text.contains("CurrentVoters:   [1 ")
            && text.contains("CurrentObservers: [4 "),
        "{text}{}",
        String::from_utf8_lossy(&described.stderr)
    );

    for round in 0..2 {
        let name = format!("on-brokers-{round}");
        let request = {
            use kafka_protocol::messages::create_topics_request::CreatableTopic;
            use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
            use kafka_protocol::protocol::StrBytes;
            CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.clone())))
                        .with_num_partitions(4)
                        .with_replication_factor(2),
                ])
        };
        succeeds_through_elections(&format!("creating {name}"), || {
            let created = send_raw(&brokers[round % 2], &request, i16::MAX)?;
            Ok(created.topics.first().map(|topic| topic.error_code))
        })?;
        let placed = wait_for("the topic on both brokers", || {
            layout(&brokers[1 - round % 2], &name).map_err(|error| error.to_string())
        })?;
        for (partition, _, replicas, _) in &placed {
            let mut replicas = replicas.clone();
            replicas.sort();
            ensure!(replicas == [4, 5], "{name}-{partition}: {placed:?}");
        }
        if round == 0 {
            // The active controller, as DescribeQuorum names it through a broker.
            let leader = text
                .lines()
                .find_map(|line| line.strip_prefix("LeaderId:"))
                .and_then(|id| id.trim().parse::<usize>().ok())
                .ok_or_else(|| anyhow!("no LeaderId in {text}"))?;
            controllers[leader - 1].kill();
        }
    }
    two_brokers()?;
    Ok(())
}
