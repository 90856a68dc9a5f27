//! Kafka's own Java tools against a three-node Weir cluster: the admin tool
//! (`org.apache.kafka.tools.TopicCommand`, from `org.apache.kafka:kafka-tools`) creates,
//! describes, lists, alters and deletes a topic, and refuses a replication factor above the
//! broker count; the Java client (`org.apache.kafka:kafka-clients`: Admin, KafkaProducer,
//! KafkaConsumer) runs `tests/java/ClusterClient.java`.
//!
//! The jars come from Maven Central: `.ci/run` copies `tests/java/pom.xml`'s dependencies to
//! `target/java-lib` (`mvn -f tests/java/pom.xml dependency:copy-dependencies
//! -DoutputDirectory=$PWD/target/java-lib`); `WEIR_JAVA_LIB` names another directory. `java` (17
//! or later) comes from `PATH`. Under CI (`CI` set) or with `WEIR_REQUIRE_CLIENTS=1` a missing
//! `java` or jar fails the tests; elsewhere they print why they skipped and pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use weir_tests::broker::BrokerProcess;
use weir_tests::clients::{missing, repo_root, run};

/// Bound on one run of a Java program; its own client calls time out well before.
const JAVA_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on each wait for the cluster to reach a state (metadata to spread, a topic to go).
const WAIT: Duration = Duration::from_secs(30);
/// The clients log through slf4j-simple (tests/java/pom.xml): warnings and errors only.
const LOG_LEVEL: &str = "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn";

/// `java` and the class path of the Kafka jars; `None` when the test should be skipped (an
/// error instead when clients are required).
struct Java {
    java: PathBuf,
    class_path: String,
}

fn java() -> anyhow::Result<Option<Java>> {
    let java = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("java"))
            .find(|candidate| candidate.is_file())
    });
    let Some(java) = java else {
        missing("java is not on PATH (apt-get install default-jdk-headless)".to_string())?;
        return Ok(None);
    };
    let lib = match std::env::var_os("WEIR_JAVA_LIB") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("target/java-lib"),
    };
    let jars: Vec<String> = std::fs::read_dir(&lib)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for artifact in ["kafka-clients-", "kafka-tools-"] {
        if !jars
            .iter()
            .any(|jar| jar.starts_with(artifact) && jar.ends_with(".jar"))
        {
            missing(format!(
                "no {artifact}*.jar in {} (mvn -f tests/java/pom.xml \
                 dependency:copy-dependencies -DoutputDirectory=$PWD/target/java-lib)",
                lib.display()
            ))?;
            return Ok(None);
        }
    }
    let lib = lib.to_str().context("the jar directory is not UTF-8")?;
    Ok(Some(Java {
        java,
        // `java` expands a trailing `*` to every jar in the directory itself.
        class_path: format!("{lib}/*"),
    }))
}

impl Java {
    /// `java -cp <jars> <main> <args>` within [`JAVA_TIMEOUT`]: (success, stdout + stderr).
    fn run(&self, main: &str, args: &[&str]) -> anyhow::Result<(bool, String)> {
        let mut all = vec![LOG_LEVEL, "-cp", &self.class_path, main];
        all.extend_from_slice(args);
        let started = Instant::now();
        let result = run(&self.java, &all, JAVA_TIMEOUT);
        eprintln!("java {main} {} ({:.1?})", args.join(" "), started.elapsed());
        result
    }

    /// Kafka's `kafka-topics.sh`: TopicCommand through `bootstrap`.
    fn topics(&self, bootstrap: &str, args: &[&str]) -> anyhow::Result<(bool, String)> {
        let mut all = vec!["--bootstrap-server", bootstrap];
        all.extend_from_slice(args);
        self.run("org.apache.kafka.tools.TopicCommand", &all)
    }
}

/// Three nodes with the default settings, each a broker and a controller quorum voter.
fn start_cluster() -> anyhow::Result<Vec<BrokerProcess>> {
    let started = Instant::now();
    let nodes = BrokerProcess::start_cluster(3, &[])?;
    eprintln!("three nodes listening after {:.1?}", started.elapsed());
    Ok(nodes)
}

/// Every node's log, for a failure message.
fn logs(nodes: &[BrokerProcess]) -> String {
    nodes
        .iter()
        .enumerate()
        .map(|(index, node)| format!("--- node {} log:\n{}", index + 1, node.log()))
        .collect()
}

/// Runs `check` until it returns `Ok`, or fails after [`WAIT`] with its last reason.
fn wait_for<T>(
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<Result<T, String>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        match check()? {
            Ok(value) => return Ok(value),
            Err(reason) if Instant::now() > deadline => {
                bail!("{what} did not happen within {WAIT:?}: {reason}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// One partition line of `--describe`.
#[derive(Debug)]
struct Partition {
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

/// What `--describe --topic <topic>` printed: the header's fields and the partitions by number.
#[derive(Debug)]
struct Description {
    header: BTreeMap<String, String>,
    partitions: BTreeMap<i32, Partition>,
}

/// Parses TopicCommand's describe output: `Key: value` fields separated by tabs, one header
/// line (`Topic: t\tTopicId: ..\tPartitionCount: 6\tReplicationFactor: 3\tConfigs: ..`) and a
/// line per partition (`Topic: t\tPartition: 0\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2,3\t..`).
fn parse_describe(output: &str, topic: &str) -> Result<Description, String> {
    let ids = |value: &str| -> Result<Vec<i32>, String> {
        value
            .split(',')
            .filter(|id| !id.is_empty())
            .map(|id| {
                id.trim()
                    .parse()
                    .map_err(|_| format!("bad broker id {id:?}"))
            })
            .collect()
    };
    let mut header = None;
    let mut partitions = BTreeMap::new();
    for line in output.lines() {
        let fields: BTreeMap<String, String> = line
            .split('\t')
            .filter_map(|field| field.trim().split_once(':'))
            .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
            .collect();
        if fields.get("Topic").map(String::as_str) != Some(topic) {
            continue;
        }
        if let Some(partition) = fields.get("Partition") {
            let get = |key: &str| {
                fields
                    .get(key)
                    .cloned()
                    .ok_or_else(|| format!("no {key} in {line:?}"))
            };
            let partition: i32 = partition
                .parse()
                .map_err(|_| format!("bad partition in {line:?}"))?;
            let leader = get("Leader")?;
            partitions.insert(
                partition,
                Partition {
                    // `none` while a partition has no leader.
                    leader: leader.parse().unwrap_or(-1),
                    replicas: ids(&get("Replicas")?)?,
                    isr: ids(&get("Isr")?)?,
                },
            );
        } else if fields.contains_key("PartitionCount") {
            header = Some(fields);
        }
    }
    Ok(Description {
        header: header.ok_or_else(|| format!("no header line for {topic}"))?,
        partitions,
    })
}

/// Describes `topic` until it shows `partitions` partitions, each with a leader (a node may
/// learn of a change a moment after the controller committed it).
fn describe_until(
    java: &Java,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<(Description, String)> {
    wait_for(
        &format!("{topic} described with {partitions} partitions"),
        || {
            let (success, output) = java.topics(bootstrap, &["--describe", "--topic", topic])?;
            if !success {
                return Ok(Err(output));
            }
            let description = match parse_describe(&output, topic) {
                Ok(description) => description,
                Err(reason) => return Ok(Err(format!("{reason}:\n{output}"))),
            };
            let complete = description.partitions.len() == partitions as usize
                && description.partitions.keys().copied().eq(0..partitions)
                && description.partitions.values().all(|p| p.leader >= 0);
            Ok(if complete {
                Ok((description, output))
            } else {
                Err(output)
            })
        },
    )
}

/// Each partition: three distinct replicas among brokers 1..=3, the leader one of them, an ISR
/// that holds the leader and only replicas.
fn check_layout(description: &Description, output: &str) -> anyhow::Result<()> {
    ensure!(
        description
            .header
            .get("ReplicationFactor")
            .map(String::as_str)
            == Some("3"),
        "ReplicationFactor is not 3:\n{output}"
    );
    ensure!(
        description.header.get("PartitionCount").map(String::as_str)
            == Some(description.partitions.len().to_string().as_str()),
        "PartitionCount disagrees with the partition lines:\n{output}"
    );
    for (number, partition) in &description.partitions {
        let replicas: BTreeSet<i32> = partition.replicas.iter().copied().collect();
        ensure!(
            partition.replicas.len() == 3 && replicas == BTreeSet::from([1, 2, 3]),
            "partition {number}: replicas {:?}:\n{output}",
            partition.replicas
        );
        ensure!(
            replicas.contains(&partition.leader),
            "partition {number}: leader {} is not a replica:\n{output}",
            partition.leader
        );
        let isr: BTreeSet<i32> = partition.isr.iter().copied().collect();
        ensure!(
            isr.contains(&partition.leader)
                && isr.is_subset(&replicas)
                && isr.len() == partition.isr.len(),
            "partition {number}: ISR {:?}:\n{output}",
            partition.isr
        );
    }
    Ok(())
}

/// `--list` through `bootstrap`: the topic names, one a line.
fn list(java: &Java, bootstrap: &str) -> anyhow::Result<Vec<String>> {
    let (success, output) = java.topics(bootstrap, &["--list"])?;
    ensure!(success, "--list failed:\n{output}");
    Ok(output
        .lines()
        .map(|line| line.trim().to_string())
        .filter(|line| !line.is_empty())
        .collect())
}

#[test]
fn topic_command_creates_describes_alters_and_deletes_a_topic() -> anyhow::Result<()> {
    let Some(java) = java()? else {
        return Ok(());
    };
    let nodes = start_cluster()?;
    let bootstrap = nodes[1].bootstrap();
    let topic = "java-topics";
    let started = Instant::now();
    let result = (|| -> anyhow::Result<()> {
        let (success, output) = java.topics(
            &bootstrap,
            &[
                "--create",
                "--topic",
                topic,
                "--partitions",
                "6",
                "--replication-factor",
                "3",
            ],
        )?;
        println!("{output}");
        ensure!(success, "--create failed:\n{output}");
        ensure!(
            output.contains(&format!("Created topic {topic}.")),
            "--create:\n{output}"
        );

        let (description, output) = describe_until(&java, &bootstrap, topic, 6)?;
        println!("{output}");
        check_layout(&description, &output)?;
        ensure!(
            description.header.get("PartitionCount").map(String::as_str) == Some("6"),
            "{output}"
        );

        let listed = list(&java, &bootstrap)?;
        ensure!(
            listed.iter().any(|name| name == topic),
            "--list: {listed:?}"
        );

        // More brokers than the cluster has: Kafka refuses with INVALID_REPLICATION_FACTOR.
        let (success, output) = java.topics(
            &bootstrap,
            &[
                "--create",
                "--topic",
                "java-topics-rf4",
                "--partitions",
                "1",
                "--replication-factor",
                "4",
            ],
        )?;
        println!("{output}");
        ensure!(
            !success,
            "--create with replication factor 4 succeeded:\n{output}"
        );
        ensure!(
            output.contains("InvalidReplicationFactorException"),
            "--create with replication factor 4 did not fail with \
             InvalidReplicationFactorException:\n{output}"
        );
        let listed = list(&java, &bootstrap)?;
        ensure!(
            !listed.iter().any(|name| name == "java-topics-rf4"),
            "the refused topic is listed: {listed:?}"
        );

        let (success, output) = java.topics(
            &bootstrap,
            &["--alter", "--topic", topic, "--partitions", "8"],
        )?;
        println!("{output}");
        ensure!(success, "--alter --partitions 8 failed:\n{output}");
        let (description, output) = describe_until(&java, &bootstrap, topic, 8)?;
        println!("{output}");
        check_layout(&description, &output)?;

        let (success, output) = java.topics(&bootstrap, &["--delete", "--topic", topic])?;
        println!("{output}");
        ensure!(success, "--delete failed:\n{output}");
        wait_for(&format!("{topic} gone from --list"), || {
            let listed = list(&java, &bootstrap)?;
            Ok(if listed.iter().any(|name| name == topic) {
                Err(format!("{listed:?}"))
            } else {
                Ok(())
            })
        })?;
        Ok(())
    })();
    eprintln!("TopicCommand steps took {:.1?}", started.elapsed());
    result.with_context(|| logs(&nodes))
}

#[test]
fn java_client_admin_produce_and_consume() -> anyhow::Result<()> {
    let Some(java) = java()? else {
        return Ok(());
    };
    let program = repo_root().join("tests/java/ClusterClient.java");
    let program = program.to_str().context("the program path is not UTF-8")?;
    let nodes = start_cluster()?;
    // A single-file source program: `java` compiles it in memory first.
    let (success, output) = java.run(program, &[&nodes[2].bootstrap()])?;
    // Shown on failure, and with --nocapture: what the client saw at each step.
    println!("{output}");
    if !success {
        bail!("ClusterClient.java failed:\n{output}\n{}", logs(&nodes));
    }
    ensure!(
        output
            .lines()
            .any(|line| line.trim() == "OK produced=30 consumed=30"),
        "no OK line:\n{output}"
    );
    // `cluster id=<id> nodes=1,2,3 controller=<id>` from describeCluster.
    let cluster = output
        .lines()
        .find_map(|line| line.strip_prefix("cluster "))
        .with_context(|| format!("no describeCluster line:\n{output}"))?;
    let fields: BTreeMap<&str, &str> = cluster
        .split_whitespace()
        .filter_map(|field| field.split_once('='))
        .collect();
    ensure!(
        fields.get("nodes") == Some(&"1,2,3"),
        "describeCluster nodes: {cluster}"
    );
    ensure!(
        matches!(fields.get("controller"), Some(&("1" | "2" | "3"))),
        "describeCluster controller: {cluster}"
    );
    ensure!(
        fields.get("id").is_some_and(|id| !id.is_empty()),
        "describeCluster cluster id: {cluster}"
    );
    // Every partition with three replicas and its leader among them.
    let partitions: Vec<&str> = output
        .lines()
        .filter(|line| line.starts_with("partition "))
        .collect();
    ensure!(partitions.len() == 3, "describeTopics:\n{output}");
    Ok(())
}
