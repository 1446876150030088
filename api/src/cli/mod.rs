//! The command line: `pds serve` (the default when no subcommand is given) and operator tools.
//! `run` takes the arguments and output streams so the integration suite drives it exactly as a
//! shell would.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod admin;
pub mod car_tools;
pub mod ops;

use crate::config::{Config, ProcessEnv};

#[derive(Parser, Debug)]
#[command(name = "pds", version, about = "An event-sourced AT Protocol Personal Data Server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the server (configuration from PDS_* environment variables).
    Serve,
    /// Create or upgrade the database schema (also done at every start), then print the log head.
    Migrate,
    /// Inspect, verify and compare repository CAR files.
    #[command(subcommand)]
    Car(CarCommand),
    /// Empty the read models and rebuild them from log position 0, in one transaction (an
    /// interrupted replay keeps the old ones). Run it with the server stopped.
    Replay {
        /// Only this projection (default: all of them).
        #[arg(long)]
        projection: Option<String>,
    },
    /// Rebuild the read models into scratch tables and report every difference from the live
    /// ones; exit 0 when they match, 1 otherwise. Best run with the server stopped or idle.
    Verify {
        /// Only this projection (default: all of them).
        #[arg(long)]
        projection: Option<String>,
    },
    /// Operator views of the event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Account and invite administration of a RUNNING server over HTTP (the `pdsadmin` jobs).
    Admin {
        /// The server (default: http://localhost:<PDS_PORT>).
        #[arg(long, global = true)]
        url: Option<String>,
        /// JSON output instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
}

#[derive(Subcommand, Debug)]
enum EventsCommand {
    /// Print events after a position, one per line (NDJSON with --json).
    Tail {
        /// Start after this log position (0: from the beginning).
        #[arg(long, default_value_t = 0)]
        from: i64,
        /// Keep following new events until interrupted.
        #[arg(long)]
        follow: bool,
        /// One JSON object per line: the envelope, payload as atproto JSON ($link, $bytes).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum CarCommand {
    /// Print the root, the commit and the record count per collection (JSON).
    Inspect { file: PathBuf },
    /// Check the commit signature, the MST structure and that every record is present.
    Verify {
        file: PathBuf,
        /// The DID the commit must belong to.
        #[arg(long)]
        did: Option<String>,
        /// The did:key the commit must be signed with.
        #[arg(long)]
        key: Option<String>,
    },
    /// JSON diff of B against A: created_nodes, deleted_nodes, record_ops, proof_nodes.
    Diff { a: PathBuf, b: PathBuf },
}

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // Unlocked handles: `serve` logs to stdout from every runtime thread, so holding the lock
    // here for the life of the process would block them all.
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    ExitCode::from(run(&args, &mut out, &mut err))
}

/// Runs the command line; returns the process exit code.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = if e.use_stderr() { write!(err, "{e}") } else { write!(out, "{e}") };
            return code;
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match serve() {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(err, "pds serve: {e:#}");
                1
            }
        },
        Command::Migrate => match migrate() {
            Ok(text) => {
                let _ = writeln!(out, "{text}");
                0
            }
            Err(e) => {
                let _ = writeln!(err, "pds migrate: {e:#}");
                1
            }
        },
        Command::Replay { projection } => {
            let progress: &mut dyn Write = &mut *err;
            match with_runtime(|config| async move { ops::replay(&config, projection.as_deref(), progress).await }) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(err, "pds replay: {e:#}");
                    1
                }
            }
        }
        Command::Verify { projection } => {
            match with_runtime(|config| async move { ops::verify(&config, projection.as_deref(), out).await }) {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(e) => {
                    let _ = writeln!(err, "pds verify: {e:#}");
                    1
                }
            }
        }
        Command::Events(EventsCommand::Tail { from, follow, json }) => {
            match with_runtime(|config| async move { ops::events_tail(&config, from, follow, json, out).await }) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(err, "pds events tail: {e:#}");
                    1
                }
            }
        }
        Command::Admin { url, json, command } => admin::run(command, url, json, out, err),
        Command::Car(cmd) => {
            let (name, result) = match &cmd {
                CarCommand::Inspect { file } => ("inspect", car_tools::inspect(file)),
                CarCommand::Verify { file, did, key } => ("verify", car_tools::verify(file, did.as_deref(), key.as_deref())),
                CarCommand::Diff { a, b } => ("diff", car_tools::diff(a, b)),
            };
            match result {
                Ok(report) => {
                    let text = serde_json::to_string_pretty(&report).unwrap_or_else(|_| report.to_string());
                    let _ = writeln!(out, "{text}");
                    0
                }
                Err(e) => {
                    let _ = writeln!(err, "pds car {name}: {e}");
                    1
                }
            }
        }
    }
}

/// Loads the configuration and runs `job` on a current-thread runtime.
fn with_runtime<T, F, Fut>(job: F) -> anyhow::Result<T>
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let config = Config::load(&ProcessEnv)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(job(config))
}

fn migrate() -> anyhow::Result<String> {
    let config = Config::load(&ProcessEnv)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let log = crate::server::open_log(&config).await?;
        let head = log.head().await?;
        Ok(format!(
            "{} database {} is up to date: position {}, seq {}",
            log.backend(),
            crate::server::redact(&config.database_url),
            head.position,
            head.seq
        ))
    })
}

fn serve() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PDS_LOG_LEVEL")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = Config::load(&ProcessEnv)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(crate::server::serve(config))
}
