//! Real broker processes for multi-process tests: each on its own free port and data directory,
//! started from the `weir` binary, stopped with SIGTERM or SIGKILL, restarted on the same port
//! and directory. A broker still running when its handle drops is killed.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

/// How long a broker gets to open its data directory and listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERMed broker gets to finish and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one run of the `weir` CLI may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// The `weir` binary of this test binary's profile (`<target>/<profile>/weir`). `cargo test
/// --workspace` builds it because the `weir` package has integration tests of its own.
pub fn weir_binary() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let target_dir = crate::plugins::target_dir();
    let profile_dir = test_binary
        .ancestors()
        .find(|dir| dir.parent() == Some(target_dir.as_path()))
        .expect("test binaries live under <target>/<profile>/");
    let binary = profile_dir.join("weir");
    assert!(
        binary.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (it builds the weir binary)",
        binary.display()
    );
    binary
}

/// Runs the `weir` CLI with `stdin` to completion (killed after [`CLI_TIMEOUT`]), returning its
/// exit status and output. The output goes to files, not pipes, so a chatty command can never
/// block on a full pipe while this side waits for it to exit.
pub fn run_weir(args: &[&str], stdin: &str) -> anyhow::Result<std::process::Output> {
    use std::io::{Read, Seek, Write};
    let mut stdout = tempfile::tempfile()?;
    let mut stderr = tempfile::tempfile()?;
    let mut child = Command::new(weir_binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        .spawn()
        .context("running weir")?;
    child
        .stdin
        .take()
        .context("the CLI's stdin")?
        .write_all(stdin.as_bytes())?;
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`weir {}` did not exit within {CLI_TIMEOUT:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |file: &mut std::fs::File| -> anyhow::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        file.rewind()?;
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    Ok(std::process::Output {
        status,
        stdout: read(&mut stdout)?,
        stderr: read(&mut stderr)?,
    })
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` distinct free ports. Every listener is held until all are bound: ports taken one after
/// another can come back equal, since the kernel may hand out a just-released port again (a
/// broker's Kafka and admin listeners once collided that way).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let ports = free_port_list(N);
    std::array::from_fn(|index| ports[index])
}

/// [`free_ports`] for a count known at run time.
pub fn free_port_list(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|listener| {
            listener
                .local_addr()
                .expect("a bound listener's address")
                .port()
        })
        .collect()
}

/// A topic's config overrides as the broker persisted them: the metadata log (snapshot and
/// entries) in its data directory, folded as a restarted node would.
pub fn persisted_overrides(
    broker: &BrokerProcess,
    topic: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let image = weir::tools::metadata_dump::read_image(&broker.data_dir)?;
    Ok(image
        .configs(&weir::controller::records::ConfigResource::Topic(
            topic.to_string(),
        ))
        .cloned()
        .unwrap_or_default())
}

#[derive(Debug)]
pub struct BrokerProcess {
    child: Option<Child>,
    pub port: u16,
    /// The HTTP admin API's port (`admin.listener`).
    pub admin_port: u16,
    pub data_dir: PathBuf,
    extra_config: Vec<String>,
    /// Arguments after `serve` beyond the configs (`--plugin-dir DIR`).
    extra_args: Vec<String>,
    log_path: PathBuf,
    /// A dedicated controller (`process.roles=controller`): no Kafka listener, so readiness
    /// is its admin API answering.
    dedicated_controller: bool,
    _temp: Option<tempfile::TempDir>,
}

impl BrokerProcess {
    /// Starts `nodes` brokers as one cluster, each also a voter of the controller quorum
    /// (combined mode), node ids 1..=nodes, each with its own Kafka, admin and controller port
    /// and data directory. `extra_config` applies to every node.
    pub fn start_cluster(nodes: usize, extra_config: &[&str]) -> anyhow::Result<Vec<Self>> {
        Self::start_quorum(nodes, false, extra_config)
    }

    /// Starts `nodes` dedicated controllers (`process.roles=controller`: voters with no Kafka
    /// listener), node ids 1..=nodes; brokers join them with [`Self::start_dedicated_broker`].
    pub fn start_controllers(nodes: usize, extra_config: &[&str]) -> anyhow::Result<Vec<Self>> {
        Self::start_quorum(nodes, true, extra_config)
    }

    fn start_quorum(
        nodes: usize,
        dedicated: bool,
        extra_config: &[&str],
    ) -> anyhow::Result<Vec<Self>> {
        let ports: Vec<[u16; 3]> = free_port_list(nodes * 3)
            .chunks(3)
            .map(|chunk| [chunk[0], chunk[1], chunk[2]])
            .collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(index, [_, _, controller])| format!("{}@127.0.0.1:{controller}", index + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut brokers = Vec::new();
        for (index, [port, admin_port, controller]) in ports.into_iter().enumerate() {
            let temp = tempfile::tempdir()?;
            let mut config = vec![
                format!("node.id={}", index + 1),
                if dedicated {
                    format!("listeners=CONTROLLER://127.0.0.1:{controller}")
                } else {
                    format!(
                        "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"
                    )
                },
                format!("controller.quorum.voters={voters}"),
            ];
            if dedicated {
                config.push("process.roles=controller".to_string());
            }
            config.extend(extra_config.iter().map(|item| item.to_string()));
            let mut broker = BrokerProcess {
                child: None,
                port,
                admin_port,
                log_path: temp.path().join("broker.log"),
                data_dir: temp.path().join("data"),
                extra_config: config,
                extra_args: Vec::new(),
                dedicated_controller: dedicated,
                _temp: Some(temp),
            };
            broker.launch()?;
            brokers.push(broker);
        }
        // A node listens once a controller has unfenced it, which takes a majority of the
        // voters: all of them are started before any is waited for.
        for broker in &mut brokers {
            broker.wait_ready()?;
        }
        Ok(brokers)
    }

    /// A dedicated broker (`process.roles=broker`, id `node_id`) in a fresh data directory,
    /// following the metadata log of `cluster`'s voters (nodes from [`Self::start_cluster`]) as
    /// a learner.
    pub fn start_dedicated_broker(
        cluster: &[BrokerProcess],
        node_id: usize,
        extra_config: &[&str],
    ) -> anyhow::Result<Self> {
        let voters = cluster
            .first()
            .and_then(|node| {
                node.extra_config
                    .iter()
                    .find(|item| item.starts_with("controller.quorum.voters="))
            })
            .context("a cluster from start_cluster names its voters")?
            .clone();
        let mut config = vec![
            format!("node.id={node_id}"),
            "process.roles=broker".to_string(),
            voters,
        ];
        config.extend(extra_config.iter().map(|item| item.to_string()));
        let config: Vec<&str> = config.iter().map(String::as_str).collect();
        Self::start(&config)
    }

    /// Starts a broker in a fresh temporary data directory. `extra_config` are `key=value` pairs.
    pub fn start(extra_config: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_args(extra_config, &[])
    }

    /// [`BrokerProcess::start`] with more `weir serve` arguments.
    pub fn start_with_args(extra_config: &[&str], extra_args: &[&str]) -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let data_dir = temp.path().join("data");
        let [port, admin_port] = free_ports();
        let mut broker = BrokerProcess {
            child: None,
            port,
            admin_port,
            log_path: temp.path().join("broker.log"),
            data_dir,
            extra_config: extra_config.iter().map(|item| item.to_string()).collect(),
            extra_args: extra_args.iter().map(|item| item.to_string()).collect(),
            dedicated_controller: false,
            _temp: Some(temp),
        };
        broker.spawn()?;
        Ok(broker)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The admin API's base URL.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.launch()?;
        self.wait_ready()
    }

    /// Starts the process without waiting for it to listen.
    fn launch(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut command = Command::new(weir_binary());
        command
            .arg("serve")
            .arg("--set")
            .arg(format!("listeners=PLAINTEXT://127.0.0.1:{}", self.port))
            .arg("--set")
            .arg(format!("log.dirs={}", self.data_dir.display()))
            .arg("--set")
            .arg(format!("admin.listener=127.0.0.1:{}", self.admin_port));
        for item in &self.extra_config {
            command.arg("--set").arg(item);
        }
        command.args(&self.extra_args);
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env("RUST_LOG", "info,openraft=warn")
            .spawn()
            .context("starting weir serve")?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let ready_port = if self.dedicated_controller {
            self.admin_port
        } else {
            self.port
        };
        loop {
            if TcpStream::connect(("127.0.0.1", ready_port)).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("broker exited during start ({status}):\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "broker did not listen within {START_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: no flush, no checkpoint, no clean-shutdown marker.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGSTOP: the process stays, but answers nothing (a GC pause, a stalled VM).
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// SIGCONT after [`BrokerProcess::pause`].
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().ok_or_else(|| anyhow!("broker is not running"))?;
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill {signal} {pid} failed");
        }
        Ok(())
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("broker is not running"))?;
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "broker did not exit within {STOP_TIMEOUT:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts again on the same port and data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("broker is still running");
        }
        self.spawn()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
