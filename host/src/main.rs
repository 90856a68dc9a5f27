//! The `weir` command: a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Inspect partition logs on disk.
    Log {
        #[command(subcommand)]
        command: LogCommand,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
