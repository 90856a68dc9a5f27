//! The `weir` command: a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// See `weir::alloc`: a hostile length field in a request must not abort the broker.
#[global_allocator]
static ALLOCATOR: weir::alloc::Allocator = weir::alloc::Allocator;

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "A Kafka-compatible broker whose policies are WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker. With no flags: one node on 127.0.0.1:9092, data in ./weir-data.
    Serve {
        /// A TOML file of broker configs, with Kafka's property names (`"log.dirs" = "/data"`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override one config, e.g. `--set num.partitions=3`. Repeatable; applied after --config.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Log format: `text` (readable) or `json`.
        #[arg(long, default_value = "text")]
        log_format: LogFormat,
        /// Watch DIR: a `*.wasm` file that appears or changes there is installed under its file
        /// name (without .wasm) and activated broker-wide.
        #[arg(long, value_name = "DIR")]
        plugin_dir: Option<PathBuf>,
    },
    /// Create, list, describe, delete and alter topics, like kafka-topics.sh.
    Topics(weir::cli::topics::TopicsArgs),
    /// Send lines from standard input as records, like kafka-console-producer.sh.
    Produce(weir::cli::produce::ProduceArgs),
    /// Print a topic's records, one per line, like kafka-console-consumer.sh.
    Consume(weir::cli::consume::ConsumeArgs),
    /// List consumer groups, or describe one's offsets and lag, like kafka-consumer-groups.sh.
    Groups(weir::cli::groups::GroupsArgs),
    /// Describe the cluster: brokers, the active controller, the voters.
    Cluster(weir::cli::cluster::ClusterArgs),
    /// Manage a broker's policy plugins over its admin API, or test a component locally.
    Plugin(weir::cli::plugin::PluginArgs),
    /// Inspect partition logs on disk.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Inspect the metadata log (the controller quorum's) on disk.
    Metadata {
        #[command(subcommand)]
        command: MetadataCommand,
    },
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Print the batches of a segment (.log), the entries of an index (.index, .timeindex), or
    /// every segment of a partition directory, like kafka-dump-log.sh.
    Dump {
        /// A .log, .index or .timeindex file, or a partition directory.
        path: PathBuf,
        /// Also print every record's offset, timestamp, key and value (UTF-8 or hex).
        #[arg(long)]
        records: bool,
    },
}

#[derive(Debug, Subcommand)]
enum MetadataCommand {
    /// Print the metadata snapshot's records and the log entries after it, like
    /// kafka-dump-log.sh --cluster-metadata-decoder.
    Dump {
        /// A data directory (`log.dirs`) or its `__cluster_metadata` directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // openraft narrates every vote and membership step at info: keep its warnings only.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(
    config: Option<PathBuf>,
    overrides: Vec<String>,
    log_format: LogFormat,
    admin: weir::admin::AdminOptions,
) -> ExitCode {
    init_logging(log_format);
    let config = match weir::config::BrokerConfig::load(config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("weir serve: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("weir serve: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(weir::broker::serve::run(config, admin)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("weir serve: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            overrides,
            log_format,
            plugin_dir,
        } => serve(
            config,
            overrides,
            log_format,
            weir::admin::AdminOptions { plugin_dir },
        ),
        Command::Topics(args) => weir::cli::run("topics", weir::cli::topics::run(args)),
        Command::Produce(args) => weir::cli::run("produce", weir::cli::produce::run(args)),
        Command::Consume(args) => weir::cli::run("consume", weir::cli::consume::run(args)),
        Command::Groups(args) => weir::cli::run("groups", weir::cli::groups::run(args)),
        Command::Cluster(args) => weir::cli::run("cluster", weir::cli::cluster::run(args)),
        Command::Plugin(args) => weir::cli::finish("plugin", weir::cli::plugin::run(args)),
        Command::Metadata {
            command: MetadataCommand::Dump { data_dir },
        } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let outcome = weir::tools::metadata_dump::dump(&data_dir, &mut out)
                .and_then(|()| Ok(std::io::Write::flush(&mut out)?));
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    drop(out);
                    eprintln!("weir metadata dump: {error:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Log {
            command: LogCommand::Dump { path, records },
        } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match weir::tools::log_dump::dump(&path, records, &mut out) {
                Ok(summary) if summary.damaged => {
                    drop(out);
                    eprintln!(
                        "weir log dump: {} is damaged (see the error lines above)",
                        path.display()
                    );
                    ExitCode::from(1)
                }
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => {
                    drop(out);
                    eprintln!("weir log dump: {error}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
