//! The whole broker, measured from outside with a real Kafka client (librdkafka via `rdkafka`).
//!
//! A `weir serve` child process listens on a free loopback port with its data in a temporary
//! directory. Every figure is printed beside a reference measured in the same run on the same
//! machine, because load from other processes, the disk and the page cache move both alike:
//!
//! - references: loopback TCP throughput (a `TcpStream` pair moving 1 GiB in 64 KiB writes) and the
//!   raw file write rate (1 GiB in 1 MiB writes, no fsync, into the broker's temporary directory);
//! - producer throughput (1 KiB records with acks=1 and acks=all on 1 and 8 partitions, 100 B
//!   records with acks=1 on 1 partition) against both, and the broker's CPU time per record
//!   (utime + stime from `/proc/<pid>/stat`) against the targets: < 0.5 µs for 1 KiB, < 0.05 µs
//!   for 100 B;
//! - the kernel floor under that CPU figure, measured right before each producer run: the CPU a
//!   thread spends only receiving 1 GiB from loopback TCP into 1 MiB requests and appending each
//!   to a file, per KiB, times the bytes the run put on the loopback interface per record. The
//!   broker cannot use less than its kernel's cost of moving the bytes in and onto the page cache,
//!   so broker / floor is what the broker itself adds (and a target below the floor cannot be met
//!   on that machine by any broker that reads sockets and writes through the page cache);
//! - consumer throughput over the first producer run's topic (1 KiB records, one partition, read
//!   from offset 0 while page-cache warm), against loopback TCP;
//! - end-to-end latency at 1000 records/s (linger.ms=0, acks=1): p50/p99/p999, target p99 < 1 ms,
//!   printed with the CPU time the hypervisor took from the machine meanwhile (`steal` in
//!   `/proc/stat`): on a virtual machine whose host is busy, the tail measures the host;
//! - broker RSS when idle after start (target < 50 MiB) and after creating a 1000-partition topic,
//!   on a broker of its own so the other runs neither see those partitions nor inflate the figure.
//!
//! Each producer run's topic is deleted after it: on a virtual machine, page-cache pages taken
//! from memory nobody touched lately cost up to ten times pages just freed, so runs that kept
//! their data would each meet colder memory than the one before and drift apart for reasons that
//! are not the broker's. The file reference is written twice for the same reason; both figures
//! are printed.
//!
//! MB is 10^6 bytes throughout. The client shares the machine's cores with the broker, so the
//! throughput figures are those of the pair; the CPU figures separate the broker's share.
//!
//! `cargo bench -p weir --bench broker` runs the full measurement (under a minute on 2 cores).
//! Without `--bench` among the arguments (`cargo test --benches`, an unoptimised build) or with
//! `--quick`, it is a smoke pass of a few thousand records that checks every path runs and asserts
//! no target.
//!
//! `WEIR_BENCH_PERF=<file>` appends one more run of the first producer measurement selected (1 KiB
//! acks=1 unless `WEIR_BENCH_ONLY` picks another) with `perf record -p <broker pid>` attached,
//! writing `<file>`; `WEIR_BENCH_PERF_CALL_GRAPH` picks perf's `--call-graph` mode
//! (default `fp`; `dwarf` gives usable stacks for a binary built without frame pointers).
//! `WEIR_BENCH_DIR` picks the parent of the temporary directory (default: the system's).
//! `WEIR_BENCH_BROKER=<path>` measures another `weir` binary (say, a copy built before a change,
//! for an A/B comparison under the same load). `WEIR_BENCH_ONLY=<text>` runs only the
//! measurements whose label contains `<text>` (e.g. `100 B`, `acks=1 p=1`, `consume`, `latency`,
//! `RSS`).

#[path = "support/table.rs"]
mod table;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use table::{Row, print_table, verdict};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Bytes in a (decimal) megabyte, the unit every rate is printed in.
const MB: f64 = 1e6;

/// Write size of the loopback TCP reference: a typical socket buffer-sized write.
const TCP_WRITE_BYTES: usize = 64 * KIB;
/// Write size of the raw file reference: the size of a large producer batch.
const FILE_WRITE_BYTES: usize = MIB;

/// Broker CPU per 1 KiB record produced, in µs (from the performance issue).
const TARGET_CPU_1KIB_US: f64 = 0.5;
/// Broker CPU per 100 B record produced, in µs.
const TARGET_CPU_100B_US: f64 = 0.05;
/// End-to-end p99 at a moderate rate, in ms.
const TARGET_P99_MS: f64 = 1.0;
/// Idle broker RSS, in MiB.
const TARGET_IDLE_RSS_MIB: f64 = 50.0;

/// How long the broker gets to open its data directory and listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one admin or metadata request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on waiting for the last deliveries of a producer run.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// Partitions of the topic the RSS measurement creates.
const RSS_TOPIC_PARTITIONS: i32 = 1000;
/// Rate of the latency run, in records per second.
const LATENCY_RATE: u32 = 1000;
/// Latency records sent before the measured ones: connection set-up and first fetches are not
/// what the figure is about.
const LATENCY_WARMUP: usize = 200;
/// Value size of the latency records (the first 8 bytes carry the sequence number).
const LATENCY_VALUE_BYTES: usize = 100;

/// How much each measurement moves. Benchmark mode uses enough to dwarf start-up costs and clock
/// tick granularity; smoke mode only checks the code paths run.
#[derive(Debug, Clone, Copy)]
struct Scale {
    benchmarking: bool,
    reference_bytes: usize,
    /// Records of each 1 KiB producer run (capped by `send_cap`).
    records_1kib: usize,
    /// Records of the 100 B producer run (capped by `send_cap`).
    records_100b: usize,
    /// Longest a producer run keeps sending; a slow broker cuts the run short instead of blowing
    /// the time budget, and the figures are computed from what was actually sent.
    send_cap: Duration,
    /// Measured records of the latency run (after the warm-up).
    latency_records: usize,
    /// Pause before the idle RSS reading, so start-up allocations have settled.
    idle_settle: Duration,
}

impl Scale {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().collect();
        // `cargo bench` passes `--bench`; `cargo test --benches` runs the binary without it.
        let benchmarking =
            args.iter().any(|arg| arg == "--bench") && !args.iter().any(|arg| arg == "--quick");
        if benchmarking {
            Scale {
                benchmarking,
                reference_bytes: 1024 * MIB,
                records_1kib: 1_000_000,
                records_100b: 3_000_000,
                send_cap: Duration::from_secs(15),
                latency_records: 10_000,
                idle_settle: Duration::from_secs(1),
            }
        } else {
            Scale {
                benchmarking,
                reference_bytes: 16 * MIB,
                records_1kib: 2_000,
                records_100b: 4_000,
                send_cap: Duration::from_secs(10),
                latency_records: 300,
                idle_settle: Duration::from_millis(100),
            }
        }
    }
}

/// A `weir serve` child process, killed when dropped.
#[derive(Debug)]
struct Broker {
    child: Child,
    port: u16,
    log_path: PathBuf,
}

impl Broker {
    /// Starts a broker with its data in `dir`/data and its output in `dir`/broker.log, and waits
    /// until it accepts connections.
    fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("picking a free port")?
            .port();
        let log_path = dir.join("broker.log");
        let log = File::create(&log_path).context("creating the broker log")?;
        let binary = std::env::var_os("WEIR_BENCH_BROKER")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_weir").into());
        let child = Command::new(binary)
            .arg("serve")
            .arg("--set")
            .arg(format!("listeners=PLAINTEXT://127.0.0.1:{port}"))
            .arg("--set")
            .arg(format!("log.dirs={}", dir.join("data").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // The broker's own default, pinned so a RUST_LOG=debug shell does not slow it down.
            .env("RUST_LOG", "info")
            .spawn()
            .context("starting weir serve")?;
        // From here on the guard kills the child if start-up fails.
        let mut broker = Broker {
            child,
            port,
            log_path,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = broker.child.try_wait()? {
                bail!("broker exited during start ({status}):\n{}", broker.log());
            }
            ensure!(
                Instant::now() < deadline,
                "broker did not listen within {START_TIMEOUT:?}:\n{}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(broker)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Fails if the broker died: every later figure would be a client timeout, not a measurement.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("broker exited ({status}):\n{}", self.log());
        }
        Ok(())
    }

    /// User plus system CPU time the broker has used so far (all threads).
    fn cpu(&self, tick: f64) -> anyhow::Result<Duration> {
        let (user, system) = self.cpu_split(tick)?;
        Ok(user + system)
    }

    /// User and system CPU time the broker has used so far (all threads), apart.
    fn cpu_split(&self, tick: f64) -> anyhow::Result<(Duration, Duration)> {
        process_cpu_split(&format!("/proc/{}/stat", self.pid()), tick)
    }

    /// Resident set size in MiB.
    fn rss_mib(&self) -> anyhow::Result<f64> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| anyhow!("no VmRSS line in {path}"))?
            .parse()
            .context("parsing VmRSS")?;
        Ok(kib / 1024.0)
    }

    /// The WARN and ERROR lines of the broker's output: anything there during a benchmark is a
    /// finding in itself.
    fn complaints(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| {
                line.contains("WARN") || line.contains("ERROR") || line.contains("panic")
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Best effort: the process may already be gone, and a drop has nowhere to report to.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of the process whose `stat` file is `path`, in clock ticks of `tick` seconds.
fn process_cpu(path: &str, tick: f64) -> anyhow::Result<Duration> {
    let (user, system) = process_cpu_split(path, tick)?;
    Ok(user + system)
}

/// (utime, stime) of the process whose `stat` file is `path`, in clock ticks of `tick` seconds.
fn process_cpu_split(path: &str, tick: f64) -> anyhow::Result<(Duration, Duration)> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces; fields after its closing
    // parenthesis start at field 3 (state), so utime (field 14) and stime (15) are the 12th and
    // 13th after it.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("malformed {path}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .ok_or_else(|| anyhow!("{path} is too short"))?
            .parse::<u64>()
            .with_context(|| format!("parsing field {} of {path}", index + 3))
    };
    let duration = |ticks: u64| Duration::from_secs_f64(ticks as f64 * tick);
    Ok((duration(ticks(11)?), duration(ticks(12)?)))
}

/// Bytes the loopback interface has carried since boot (`lo` in `/proc/net/dev`). During a
/// producer run that is the client's requests to the broker (the responses are a few bytes each),
/// framing and record overhead included: what the broker received.
fn loopback_bytes() -> anyhow::Result<u64> {
    let dev = std::fs::read_to_string("/proc/net/dev").context("reading /proc/net/dev")?;
    dev.lines()
        .find_map(|line| line.trim_start().strip_prefix("lo:"))
        .and_then(|counters| counters.split_whitespace().next())
        .ok_or_else(|| anyhow!("no loopback interface in /proc/net/dev"))?
        .parse()
        .context("parsing the loopback interface's received bytes")
}

/// CPU time the hypervisor has taken from this machine's vCPUs since boot (the `steal` column of
/// `/proc/stat`, all CPUs), if the kernel reports it.
fn machine_steal(tick: f64) -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let all_cpus = stat.lines().find(|line| line.starts_with("cpu "))?;
    let steal_ticks: u64 = all_cpus.split_whitespace().nth(8)?.parse().ok()?;
    Some(Duration::from_secs_f64(steal_ticks as f64 * tick))
}

/// Seconds per clock tick of `/proc/<pid>/stat`. `getconf CLK_TCK` reports sysconf(_SC_CLK_TCK)
/// without unsafe code; Linux has used 100 on every common platform for decades.
fn clock_tick() -> f64 {
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse::<u32>().ok())
        .filter(|hz| *hz > 0);
    match hz {
        Some(hz) => 1.0 / f64::from(hz),
        None => {
            println!("note: `getconf CLK_TCK` failed; assuming 100 ticks per second");
            0.01
        }
    }
}

/// Sends `bytes` over loopback TCP in [`TCP_WRITE_BYTES`] writes to a thread running `receive`
/// on the accepted stream, and returns the bytes sent (`bytes` rounded up to whole writes), the time
/// until `receive` has seen the last one, and what `receive` returns. `receive` reads until end of
/// stream and says how many bytes it got.
fn over_loopback<R: Send + 'static>(
    bytes: usize,
    receive: impl FnOnce(TcpStream) -> anyhow::Result<(usize, R)> + Send + 'static,
) -> anyhow::Result<(usize, Duration, R)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the reference listener")?;
    let address = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> anyhow::Result<(usize, R)> {
        let (stream, _) = listener.accept()?;
        receive(stream)
    });
    let mut writer = TcpStream::connect(address).context("connecting to the reference listener")?;
    let chunk = vec![0x5au8; TCP_WRITE_BYTES];
    let start = Instant::now();
    let mut sent = 0;
    while sent < bytes {
        writer.write_all(&chunk)?;
        sent += chunk.len();
    }
    // Closing the write side is the reader's end-of-stream.
    writer.shutdown(std::net::Shutdown::Write)?;
    let (received, outcome) = reader
        .join()
        .map_err(|_| anyhow!("the reference reader panicked"))??;
    let elapsed = start.elapsed();
    ensure!(received == sent, "reader got {received} of {sent} bytes");
    Ok((sent, elapsed, outcome))
}

/// Loopback TCP throughput in MB/s: one thread reads what the other writes in
/// [`TCP_WRITE_BYTES`] writes, timed until the reader has seen the last byte.
fn loopback_tcp(bytes: usize) -> anyhow::Result<f64> {
    let (sent, elapsed, ()) = over_loopback(bytes, |mut stream| {
        let mut buffer = vec![0u8; TCP_WRITE_BYTES];
        let mut total = 0;
        loop {
            match stream.read(&mut buffer)? {
                0 => return Ok((total, ())),
                read => total += read,
            }
        }
    })?;
    Ok(sent as f64 / elapsed.as_secs_f64() / MB)
}

/// The kernel's share of a produce request, as a same-run floor for the broker's CPU per record:
/// CPU time, in ns per KiB, of a thread that only receives bytes from loopback TCP into
/// [`FILE_WRITE_BYTES`] requests and appends each to a file in `dir` (no fsync), as the broker
/// does with a produce request's records, and nothing else (no decoding, CRC, index or response).
/// The sender, the client's side, is not counted. The file is deleted afterwards, so a producer
/// run started right after it reuses its page-cache pages.
fn receive_and_append_floor(dir: &Path, bytes: usize) -> anyhow::Result<f64> {
    let path = dir.join("floor.bin");
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let (sent, _, cpu_ns) = over_loopback(bytes, move |mut stream| {
        let mut request = vec![0u8; FILE_WRITE_BYTES];
        let cpu_started = weir::clock::thread_cpu_time_ns();
        let mut total = 0;
        loop {
            let mut filled = 0;
            while filled < request.len() {
                match stream.read(&mut request[filled..])? {
                    0 => break,
                    read => filled += read,
                }
            }
            file.write_all(&request[..filled])?;
            total += filled;
            if filled < request.len() {
                let cpu_ns = weir::clock::thread_cpu_time_ns().saturating_sub(cpu_started);
                return Ok((total, cpu_ns));
            }
        }
    })?;
    std::fs::remove_file(&path)?;
    Ok(cpu_ns as f64 / (sent as f64 / KIB as f64))
}

/// Raw file write rate in MB/s: [`FILE_WRITE_BYTES`] writes to a new file in `dir`, no fsync
/// (Kafka's default flush policy, which the broker follows, leaves flushing to the OS too).
fn file_write(dir: &Path, bytes: usize) -> anyhow::Result<f64> {
    let path = dir.join("reference.bin");
    let chunk = vec![0x5au8; FILE_WRITE_BYTES];
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let start = Instant::now();
    let mut written = 0;
    while written < bytes {
        file.write_all(&chunk)?;
        written += chunk.len();
    }
    let elapsed = start.elapsed();
    drop(file);
    // The broker's runs need the space and the page cache more than this file does.
    std::fs::remove_file(&path)?;
    Ok(written as f64 / elapsed.as_secs_f64() / MB)
}

/// The admin futures need an executor; a current-thread runtime is enough because librdkafka's
/// own threads do the I/O and only complete the futures.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?)
}

fn client_config(broker: &Broker) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap())
        // The broker listens on 127.0.0.1 only; skip trying ::1.
        .set("broker.address.family", "v4");
    config
}

fn create_topic(broker: &Broker, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(broker)
        .create()
        .context("creating the admin client")?;
    let options = AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT));
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = runtime()?
        .block_on(async {
            // The timer must be created inside the runtime, hence the async block.
            tokio::time::timeout(REQUEST_TIMEOUT, admin.create_topics([&topic], &options)).await
        })
        .map_err(|_| anyhow!("creating {name} took over {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("creating {name}"))?;
    for result in results {
        result.map_err(|(topic, code)| anyhow!("creating {topic}: {code}"))?;
    }
    Ok(())
}

fn delete_topic(broker: &Broker, name: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(broker)
        .create()
        .context("creating the admin client")?;
    let options = AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT));
    let results = runtime()?
        .block_on(async {
            // The timer must be created inside the runtime, hence the async block.
            tokio::time::timeout(REQUEST_TIMEOUT, admin.delete_topics(&[name], &options)).await
        })
        .map_err(|_| anyhow!("deleting {name} took over {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("deleting {name}"))?;
    for result in results {
        result.map_err(|(topic, code)| anyhow!("deleting {topic}: {code}"))?;
    }
    Ok(())
}

/// Delivery outcomes of one producer run, counted from librdkafka's callback thread.
#[derive(Debug, Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

#[derive(Debug, Clone)]
struct CountingContext(Arc<Deliveries>);

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                // A poisoned lock only means another callback panicked; the count still stands.
                if let Ok(mut first) = self.0.first_error.lock() {
                    first.get_or_insert_with(|| error.to_string());
                }
            }
        }
    }
}

fn producer(
    broker: &Broker,
    settings: &[(&str, &str)],
) -> anyhow::Result<(BaseProducer<CountingContext>, Arc<Deliveries>)> {
    let deliveries = Arc::new(Deliveries::default());
    let mut config = client_config(broker);
    config
        // Uncompressed, so the broker's work is proportional to the bytes it is sent.
        .set("compression.type", "none")
        // librdkafka's default, pinned: the ~1 MB batch the targets assume.
        .set("batch.size", "1000000")
        // Deep enough that the sender rarely waits on the queue; a full queue is polled, not lost.
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097152")
        // A stuck broker shows up as failed deliveries well inside FLUSH_TIMEOUT.
        .set("message.timeout.ms", "60000");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let producer = config
        .create_with_context(CountingContext(Arc::clone(&deliveries)))
        .context("creating the producer")?;
    Ok((producer, deliveries))
}

/// Serves delivery reports until all `sent` records are reported. Instead of `flush()`, whose
/// rdkafka wrapper polls in 100 ms slices and so would add up to 100 ms to a run's time, this
/// polls in 1 ms slices (`BaseProducer::poll` always waits out its whole timeout).
fn wait_for_deliveries(
    producer: &BaseProducer<CountingContext>,
    deliveries: &Deliveries,
    sent: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + FLUSH_TIMEOUT;
    let reported =
        || deliveries.delivered.load(Ordering::Relaxed) + deliveries.failed.load(Ordering::Relaxed);
    while reported() < sent as u64 {
        ensure!(
            Instant::now() < deadline,
            "{} of {sent} deliveries reported within {FLUSH_TIMEOUT:?}",
            reported()
        );
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}

/// One producer measurement.
#[derive(Debug, Clone, Copy)]
struct ProduceSpec {
    label: &'static str,
    value_bytes: usize,
    acks: &'static str,
    partitions: i32,
    records: usize,
    /// Broker CPU per record the issue targets, in µs.
    cpu_target_us: f64,
}

#[derive(Debug, Clone)]
struct ProduceResult {
    spec: ProduceSpec,
    records: usize,
    elapsed: Duration,
    broker_cpu: Duration,
    /// The system (kernel) part of `broker_cpu`: socket reads and file writes, mostly.
    broker_system_cpu: Duration,
    /// What crossed the loopback interface meanwhile: the requests, with their framing and
    /// record overhead, and the small responses.
    loopback_bytes: u64,
    client_cpu: Duration,
}

impl ProduceResult {
    fn mb_per_s(&self) -> f64 {
        (self.records * self.spec.value_bytes) as f64 / self.elapsed.as_secs_f64() / MB
    }

    fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    fn broker_us_per_record(&self) -> f64 {
        self.broker_cpu.as_secs_f64() * 1e6 / self.records as f64
    }

    fn broker_system_us_per_record(&self) -> f64 {
        self.broker_system_cpu.as_secs_f64() * 1e6 / self.records as f64
    }

    /// The kernel's share of receiving and appending this run's bytes, per record, at
    /// `floor_ns_per_kib` (from [`receive_and_append_floor`]).
    fn floor_us_per_record(&self, floor_ns_per_kib: f64) -> f64 {
        self.loopback_bytes as f64 / KIB as f64 * floor_ns_per_kib / 1e3 / self.records as f64
    }

    fn client_us_per_record(&self) -> f64 {
        self.client_cpu.as_secs_f64() * 1e6 / self.records as f64
    }
}

/// Produces `spec.records` values of `spec.value_bytes` into a new topic as fast as librdkafka
/// takes them, and waits for every delivery. Time and CPU run from the first send to the last
/// delivery; topic creation and the producer's connection are outside both.
fn produce_run(
    broker: &Broker,
    spec: ProduceSpec,
    scale: &Scale,
    tick: f64,
    topic: &str,
) -> anyhow::Result<ProduceResult> {
    create_topic(broker, topic, spec.partitions)?;
    let (producer, deliveries) = producer(broker, &[("linger.ms", "5"), ("acks", spec.acks)])?;
    // Connects and learns the partition leaders before the clock starts.
    producer
        .client()
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .with_context(|| format!("metadata for {topic}"))?;
    let value = vec![0x61u8; spec.value_bytes];
    let client_stat = format!("/proc/{}/stat", std::process::id());

    let (broker_user_before, broker_system_before) = broker.cpu_split(tick)?;
    let loopback_before = loopback_bytes()?;
    let client_cpu_before = process_cpu(&client_stat, tick)?;
    let start = Instant::now();
    let mut sent = 0;
    while sent < spec.records {
        // Checking the clock every 1024 sends keeps it out of the send loop's cost.
        if sent % 1024 == 0 && start.elapsed() > scale.send_cap {
            break;
        }
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(value.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The queue drains as batches are acknowledged; serving the delivery
                    // callbacks is what frees it.
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((error, _)) => bail!("{}: send {sent} failed: {error}", spec.label),
            }
        }
        sent += 1;
        if sent % 4096 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    wait_for_deliveries(&producer, &deliveries, sent)
        .with_context(|| format!("{}: flushing {sent} records", spec.label))?;
    let elapsed = start.elapsed();
    let (broker_user, broker_system) = broker.cpu_split(tick)?;
    let broker_system_cpu = broker_system.saturating_sub(broker_system_before);
    let broker_cpu = broker_user.saturating_sub(broker_user_before) + broker_system_cpu;
    let loopback_bytes = loopback_bytes()?.saturating_sub(loopback_before);
    let client_cpu = process_cpu(&client_stat, tick)?.saturating_sub(client_cpu_before);

    let delivered = deliveries.delivered.load(Ordering::Relaxed);
    let failed = deliveries.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = deliveries
            .first_error
            .lock()
            .map(|first| first.clone().unwrap_or_default())
            .unwrap_or_default();
        bail!(
            "{}: {failed} of {sent} deliveries failed, first: {first}",
            spec.label
        );
    }
    ensure!(
        delivered == sent as u64,
        "{}: {delivered} of {sent} deliveries reported",
        spec.label
    );
    if sent < spec.records {
        println!(
            "note: {} stopped after {:?} at {sent} of {} records",
            spec.label, scale.send_cap, spec.records
        );
    }
    Ok(ProduceResult {
        spec,
        records: sent,
        elapsed,
        broker_cpu,
        broker_system_cpu,
        loopback_bytes,
        client_cpu,
    })
}

#[derive(Debug, Clone)]
struct ConsumeResult {
    records: usize,
    bytes: usize,
    elapsed: Duration,
    broker_cpu: Duration,
}

/// Reads partition 0 of `topic` from offset 0 until `expected` records have arrived.
fn consume_run(
    broker: &Broker,
    topic: &str,
    expected: usize,
    tick: f64,
) -> anyhow::Result<ConsumeResult> {
    let consumer: BaseConsumer = client_config(broker)
        // librdkafka wants a group id before it allows assign(); nothing joins or commits.
        .set("group.id", "weir-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .context("creating the consumer")?;
    let mut assignment = TopicPartitionList::new();
    // Knowing the leader before assign() lets librdkafka fetch at once; otherwise it retries on
    // its offset-query timer, which leaves about 500 ms of idle start-up inside the measurement.
    consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .with_context(|| format!("metadata for {topic}"))?;
    assignment.add_partition_offset(topic, 0, Offset::Offset(0))?;
    consumer.assign(&assignment)?;

    let deadline = Instant::now() + FLUSH_TIMEOUT;
    let broker_cpu_before = broker.cpu(tick)?;
    let start = Instant::now();
    let mut records = 0;
    let mut bytes = 0;
    let mut next_offset = 0;
    while records < expected {
        ensure!(
            Instant::now() < deadline,
            "consumed {records} of {expected} records within {FLUSH_TIMEOUT:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                ensure!(
                    message.offset() == next_offset,
                    "expected offset {next_offset}, got {}",
                    message.offset()
                );
                next_offset += 1;
                records += 1;
                bytes += message.payload_len();
            }
            Some(Err(error)) => bail!("consuming {topic}: {error}"),
        }
    }
    let elapsed = start.elapsed();
    let broker_cpu = broker.cpu(tick)?.saturating_sub(broker_cpu_before);
    Ok(ConsumeResult {
        records,
        bytes,
        elapsed,
        broker_cpu,
    })
}

#[derive(Debug, Clone)]
struct LatencyResult {
    received: usize,
    expected: usize,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
}

/// Sends `measured` + [`LATENCY_WARMUP`] records at [`LATENCY_RATE`] with linger.ms=0 and acks=1,
/// each value starting with its sequence number, while a consumer thread polls the same
/// partition; latency is the consumer's receive instant minus the producer's send instant.
fn latency_run(broker: &Broker, topic: &str, measured: usize) -> anyhow::Result<LatencyResult> {
    create_topic(broker, topic, 1)?;
    let total = LATENCY_WARMUP + measured;
    let interval = Duration::from_secs(1) / LATENCY_RATE;
    // Consumer and producer each finish setting up before the first record is sent.
    let ready = Arc::new(Barrier::new(2));

    let consumer_config = {
        let mut config = client_config(broker);
        config
            .set("group.id", "weir-bench-latency")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        config
    };
    let consumer_topic = topic.to_string();
    let consumer_ready = Arc::clone(&ready);
    // The receive deadline leaves the whole send schedule plus slack for a slow broker.
    let receive_for = interval * total as u32 + Duration::from_secs(15);
    let consumer = std::thread::spawn(move || -> anyhow::Result<Vec<Option<Instant>>> {
        let mut received = vec![None; total];
        let setup = || -> anyhow::Result<BaseConsumer> {
            let consumer: BaseConsumer = consumer_config.create()?;
            let mut assignment = TopicPartitionList::new();
            // Leader known before assign(), as in consume_run: no 500 ms offset-query retry.
            consumer.fetch_metadata(Some(&consumer_topic), REQUEST_TIMEOUT)?;
            assignment.add_partition_offset(&consumer_topic, 0, Offset::Offset(0))?;
            consumer.assign(&assignment)?;
            // One empty poll gets the fetcher connected and fetching.
            let _ = consumer.poll(Duration::from_millis(200));
            Ok(consumer)
        };
        let setup = setup();
        // Released even when set-up failed, so the producer never waits forever.
        consumer_ready.wait();
        let consumer = setup?;
        let deadline = Instant::now() + receive_for;
        let mut count = 0;
        while count < total && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(message)) => {
                    let now = Instant::now();
                    let sequence = message
                        .payload()
                        .and_then(|payload| payload.get(..8))
                        .and_then(|prefix| <[u8; 8]>::try_from(prefix).ok())
                        .map(u64::from_le_bytes)
                        .ok_or_else(|| anyhow!("a latency record without a sequence number"))?;
                    let slot = usize::try_from(sequence)
                        .ok()
                        .and_then(|index| received.get_mut(index))
                        .ok_or_else(|| anyhow!("sequence {sequence} out of range"))?;
                    if slot.is_none() {
                        *slot = Some(now);
                        count += 1;
                    }
                }
                Some(Err(error)) => bail!("latency consumer: {error}"),
            }
        }
        Ok(received)
    });

    let producer_result = (|| -> anyhow::Result<Vec<Instant>> {
        let setup = producer(broker, &[("linger.ms", "0"), ("acks", "1")]).and_then(
            |(producer, deliveries)| {
                producer
                    .client()
                    .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
                    .with_context(|| format!("metadata for {topic}"))?;
                Ok((producer, deliveries))
            },
        );
        ready.wait();
        let (producer, deliveries) = setup?;
        let mut sent_at = Vec::with_capacity(total);
        let mut value = vec![0x61u8; LATENCY_VALUE_BYTES];
        let start = Instant::now();
        for sequence in 0..total {
            let due = start + interval * sequence as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            value[..8].copy_from_slice(&(sequence as u64).to_le_bytes());
            sent_at.push(Instant::now());
            producer
                .send(BaseRecord::<(), [u8]>::to(topic).payload(value.as_slice()))
                .map_err(|(error, _)| anyhow!("latency send {sequence}: {error}"))?;
            producer.poll(Duration::ZERO);
        }
        wait_for_deliveries(&producer, &deliveries, total)?;
        let failed = deliveries.failed.load(Ordering::Relaxed);
        ensure!(failed == 0, "{failed} latency deliveries failed");
        Ok(sent_at)
    })();
    let received = consumer
        .join()
        .map_err(|_| anyhow!("the latency consumer panicked"))??;
    let sent_at = producer_result?;

    let mut latencies: Vec<Duration> = sent_at
        .iter()
        .zip(&received)
        .skip(LATENCY_WARMUP)
        .filter_map(|(sent, received)| received.map(|at| at.saturating_duration_since(*sent)))
        .collect();
    ensure!(!latencies.is_empty(), "no latency record came back");
    latencies.sort_unstable();
    let percentile = |fraction: f64| {
        let index = ((latencies.len() as f64 * fraction).ceil() as usize).saturating_sub(1);
        latencies[index.min(latencies.len() - 1)]
    };
    Ok(LatencyResult {
        received: latencies.len(),
        expected: measured,
        p50: percentile(0.50),
        p99: percentile(0.99),
        p999: percentile(0.999),
        max: latencies[latencies.len() - 1],
    })
}

/// Idle RSS of a fresh broker, then its RSS after creating a [`RSS_TOPIC_PARTITIONS`]-partition
/// topic. A broker of its own, so the throughput runs neither see those partitions nor leave
/// buffers behind in this figure.
fn rss_run(dir: &Path, scale: &Scale) -> anyhow::Result<(f64, f64)> {
    let broker = Broker::start(dir)?;
    std::thread::sleep(scale.idle_settle);
    let idle = broker.rss_mib()?;
    create_topic(&broker, "rss-1000", RSS_TOPIC_PARTITIONS)?;
    std::thread::sleep(scale.idle_settle);
    let loaded = broker.rss_mib()?;
    for line in broker.complaints() {
        println!("broker (RSS run) said: {line}");
    }
    Ok((idle, loaded))
}

/// `perf record` attached to the broker for one extra producer run, when asked for.
fn profiled_run(
    broker: &Broker,
    spec: ProduceSpec,
    scale: &Scale,
    tick: f64,
    output: &str,
) -> anyhow::Result<()> {
    let call_graph =
        std::env::var("WEIR_BENCH_PERF_CALL_GRAPH").unwrap_or_else(|_| "fp".to_string());
    let mut perf = Command::new("perf")
        .args(["record", "--call-graph", &call_graph, "-o", output, "-p"])
        .arg(broker.pid().to_string())
        .stdin(Stdio::null())
        .spawn()
        .context("starting perf record")?;
    // perf needs a moment to attach to every thread before the run starts.
    std::thread::sleep(Duration::from_millis(500));
    let result = produce_run(broker, spec, scale, tick, "produce-profiled");
    // SIGINT is perf's signal to stop recording and write its file.
    let _ = Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status();
    let status = perf.wait()?;
    let result = result?;
    println!(
        "profiled run: {:.1} MB/s, {:.3} µs broker CPU/record (perf {status}) -> {output}",
        result.mb_per_s(),
        result.broker_us_per_record()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let scale = Scale::from_args();
    let tick = clock_tick();
    let base = std::env::var_os("WEIR_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let temp = tempfile::Builder::new()
        .prefix("weir-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("a temporary directory in {}", base.display()))?;
    println!(
        "weir broker benchmark ({} mode) in {}",
        if scale.benchmarking {
            "benchmark"
        } else {
            "smoke"
        },
        temp.path().display()
    );
    // Other processes on the machine move every figure; the load average says how busy it was.
    let loadavg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", loadavg().trim());
    let only = std::env::var("WEIR_BENCH_ONLY").ok();
    let selected = |label: &str| {
        only.as_ref()
            .is_none_or(|only| label.contains(only.as_str()))
    };
    let mut rows = Vec::new();

    // References first, before any broker exists to compete with them.
    let tcp = loopback_tcp(scale.reference_bytes)?;
    println!("reference: loopback TCP {tcp:.0} MB/s (64 KiB writes)");
    // Twice: the first write takes page-cache pages from memory nobody touched lately, which on a
    // virtual machine can cost ten times a page just freed; the second reuses the first's pages,
    // as each broker run reuses those of the topic deleted before it. The second is the
    // reference, the first shows how far fresh memory alone moves a figure.
    let file_cold = file_write(temp.path(), scale.reference_bytes)?;
    let file = file_write(temp.path(), scale.reference_bytes)?;
    println!(
        "reference: file write {file:.0} MB/s (1 MiB writes, no fsync; {file_cold:.0} MB/s \
         into fresh memory)"
    );
    rows.push(Row {
        what: "loopback TCP".into(),
        value: format!("{tcp:.0} MB/s"),
        reference: "-".into(),
        ratio: "-".into(),
        target: "reference".into(),
        verdict: String::new(),
    });
    rows.push(Row {
        what: "file write".into(),
        value: format!("{file:.0} MB/s"),
        reference: format!("{file_cold:.0} MB/s fresh"),
        ratio: format!("{:.2}", file / file_cold),
        target: "reference".into(),
        verdict: String::new(),
    });

    let mut idle_rss = None;
    if selected("RSS") {
        let rss_dir = temp.path().join("rss");
        std::fs::create_dir(&rss_dir)?;
        let (idle, rss_1000) = rss_run(&rss_dir, &scale)?;
        idle_rss = Some(idle);
        let idle_rss = idle;
        println!(
            "broker RSS: idle {idle_rss:.1} MiB, after a {RSS_TOPIC_PARTITIONS}-partition topic \
         {rss_1000:.1} MiB ({:.1} KiB/partition)",
            (rss_1000 - idle_rss) * 1024.0 / f64::from(RSS_TOPIC_PARTITIONS)
        );
        rows.push(Row {
            what: "RSS idle".into(),
            value: format!("{idle_rss:.1} MiB"),
            reference: "-".into(),
            ratio: "-".into(),
            target: format!("< {TARGET_IDLE_RSS_MIB} MiB"),
            verdict: verdict(idle_rss < TARGET_IDLE_RSS_MIB),
        });
        rows.push(Row {
            what: format!("RSS + {RSS_TOPIC_PARTITIONS}-partition topic"),
            value: format!("{rss_1000:.1} MiB"),
            reference: format!("{idle_rss:.1} MiB idle"),
            ratio: format!("{:.2}", rss_1000 / idle_rss),
            target: "-".into(),
            verdict: String::new(),
        });
    }

    let broker_dir = temp.path().join("broker");
    std::fs::create_dir(&broker_dir)?;
    let mut broker = Broker::start(&broker_dir)?;
    println!("broker pid {} on {}", broker.pid(), broker.bootstrap());

    let kib_spec = |label, acks, partitions| ProduceSpec {
        label,
        value_bytes: KIB,
        acks,
        partitions,
        records: scale.records_1kib,
        cpu_target_us: TARGET_CPU_1KIB_US,
    };
    let specs = [
        kib_spec("produce 1 KiB acks=1 p=1", "1", 1),
        kib_spec("produce 1 KiB acks=all p=1", "all", 1),
        kib_spec("produce 1 KiB acks=1 p=8", "1", 8),
        kib_spec("produce 1 KiB acks=all p=8", "all", 8),
        ProduceSpec {
            label: "produce 100 B acks=1 p=1",
            value_bytes: 100,
            acks: "1",
            partitions: 1,
            records: scale.records_100b,
            cpu_target_us: TARGET_CPU_100B_US,
        },
    ];
    let mut consume_row = None;
    for (index, spec) in specs.iter().enumerate() {
        // The consumer reads the first run's topic, so that run is needed for it too.
        let consume = index == 0 && selected("consume");
        if !selected(spec.label) && !consume {
            continue;
        }
        let topic = format!("produce-{index}");
        // Right before the run: the floor then sees the machine as the run does, and the run
        // reuses the page-cache pages the floor's file just gave back.
        let floor = receive_and_append_floor(temp.path(), scale.reference_bytes)?;
        let result = produce_run(&broker, *spec, &scale, tick, &topic)?;
        broker.check_alive()?;
        let floor_us = result.floor_us_per_record(floor);
        let over_floor = result.broker_us_per_record() / floor_us;
        println!(
            "{}: {} records in {:.2} s, {:.1} MB/s, {:.0} records/s, {:.3}x loopback TCP, \
             {:.3}x file write; broker CPU {:.3} µs/record ({:.3} system, target < {}), \
             {:.2}x the kernel floor of {floor_us:.3} µs/record ({:.0} bytes on loopback per record, \
             receive + append at {floor:.0} ns/KiB), client CPU {:.3} µs/record",
            spec.label,
            result.records,
            result.elapsed.as_secs_f64(),
            result.mb_per_s(),
            result.records_per_s(),
            result.mb_per_s() / tcp,
            result.mb_per_s() / file,
            result.broker_us_per_record(),
            result.broker_system_us_per_record(),
            spec.cpu_target_us,
            over_floor,
            result.loopback_bytes as f64 / result.records as f64,
            result.client_us_per_record(),
        );
        rows.push(Row {
            what: spec.label.into(),
            value: format!(
                "{:.1} MB/s {:.0}k rec/s",
                result.mb_per_s(),
                result.records_per_s() / 1e3
            ),
            reference: format!("{tcp:.0} TCP / {file:.0} file"),
            ratio: format!(
                "{:.3} / {:.3}",
                result.mb_per_s() / tcp,
                result.mb_per_s() / file
            ),
            target: "-".into(),
            verdict: String::new(),
        });
        rows.push(Row {
            what: "  broker CPU per record".into(),
            value: format!("{:.3} µs", result.broker_us_per_record()),
            reference: format!("{:.3} µs client", result.client_us_per_record()),
            ratio: format!("{:.2}", result.broker_us_per_record() / spec.cpu_target_us),
            target: format!("< {} µs", spec.cpu_target_us),
            verdict: verdict(result.broker_us_per_record() < spec.cpu_target_us),
        });
        rows.push(Row {
            what: "  kernel floor (ratio: broker / floor)".into(),
            value: format!("{floor_us:.3} µs"),
            reference: format!("{floor:.0} ns/KiB recv+append"),
            ratio: format!("{over_floor:.2}"),
            target: "-".into(),
            verdict: String::new(),
        });

        // The first run's topic is the pre-filled one (1 KiB records on one partition), read
        // while its pages are still in the page cache.
        if consume {
            let consumed = consume_run(&broker, &topic, result.records, tick)?;
            broker.check_alive()?;
            let consume_mb = consumed.bytes as f64 / consumed.elapsed.as_secs_f64() / MB;
            println!(
                "consume 1 KiB p=1: {} records in {:.2} s, {consume_mb:.1} MB/s, {:.0} \
                 records/s, {:.3}x loopback TCP; broker CPU {:.3} µs/record",
                consumed.records,
                consumed.elapsed.as_secs_f64(),
                consumed.records as f64 / consumed.elapsed.as_secs_f64(),
                consume_mb / tcp,
                consumed.broker_cpu.as_secs_f64() * 1e6 / consumed.records as f64,
            );
            consume_row = Some(Row {
                what: "consume 1 KiB p=1 from offset 0".into(),
                value: format!(
                    "{consume_mb:.1} MB/s {:.0}k rec/s",
                    consumed.records as f64 / consumed.elapsed.as_secs_f64() / 1e3
                ),
                reference: format!("{tcp:.0} TCP"),
                ratio: format!("{:.3}", consume_mb / tcp),
                target: "-".into(),
                verdict: String::new(),
            });
        }
        // Freeing the run's page cache lets the next run reuse it, so every run meets the same
        // memory as the warm file reference instead of ever colder fresh memory.
        delete_topic(&broker, &topic)?;
    }
    rows.extend(consume_row);

    if selected("latency") {
        let steal_before = machine_steal(tick);
        let latency = latency_run(&broker, "latency", scale.latency_records)?;
        // A virtual machine's vCPUs are sometimes not running at all: on a busy host, the tail
        // of this run measures the host, so the time the hypervisor took is printed beside it.
        let steal = steal_before
            .zip(machine_steal(tick))
            .map(|(before, after)| after.saturating_sub(before));
        broker.check_alive()?;
        let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
        println!(
            "end-to-end latency at {LATENCY_RATE} records/s: p50 {:.3} ms, p99 {:.3} ms, \
         p999 {:.3} ms, max {:.3} ms ({} of {} measured records received)",
            ms(latency.p50),
            ms(latency.p99),
            ms(latency.p999),
            ms(latency.max),
            latency.received,
            latency.expected,
        );
        let steal_text = steal.map_or_else(
            || "steal unknown".to_string(),
            |steal| format!("steal {:.0} ms", ms(steal)),
        );
        println!(
            "hypervisor steal during the latency run (both vCPUs): {steal_text} over {:.1} s",
            (Duration::from_secs(1) / LATENCY_RATE * scale.latency_records as u32).as_secs_f64()
        );
        if latency.received < latency.expected {
            println!(
                "note: {} latency records never arrived",
                latency.expected - latency.received
            );
        }
        rows.push(Row {
            what: format!("latency p50/p999 at {LATENCY_RATE}/s"),
            value: format!("{:.3} / {:.3} ms", ms(latency.p50), ms(latency.p999)),
            reference: format!("max {:.3} ms", ms(latency.max)),
            ratio: "-".into(),
            target: "-".into(),
            verdict: String::new(),
        });
        rows.push(Row {
            what: format!("latency p99 at {LATENCY_RATE}/s"),
            value: format!("{:.3} ms", ms(latency.p99)),
            reference: steal_text,
            ratio: format!("{:.2}", ms(latency.p99) / TARGET_P99_MS),
            target: format!("< {TARGET_P99_MS} ms"),
            verdict: verdict(
                ms(latency.p99) < TARGET_P99_MS && latency.received == latency.expected,
            ),
        });
    }

    let loaded_rss = broker.rss_mib()?;
    rows.push(Row {
        what: "RSS after the runs".into(),
        value: format!("{loaded_rss:.1} MiB"),
        reference: idle_rss.map_or("-".into(), |idle| format!("{idle:.1} MiB idle")),
        ratio: idle_rss.map_or("-".into(), |idle| format!("{:.2}", loaded_rss / idle)),
        target: "-".into(),
        verdict: String::new(),
    });

    if let Ok(output) = std::env::var("WEIR_BENCH_PERF")
        && let Some(spec) = specs.iter().find(|spec| selected(spec.label))
    {
        profiled_run(&broker, *spec, &scale, tick, &output)?;
    }

    let complaints = broker.complaints();
    if !complaints.is_empty() {
        println!("the broker logged {} warnings or errors:", complaints.len());
        for line in complaints.iter().take(20) {
            println!("  {line}");
        }
    }
    println!("load average at end: {}", loadavg().trim());
    print_table(&rows, scale.benchmarking);
    Ok(())
}
