//! `fleetstream`: a keyed, stateful stream processor for a transport operator's real-time
//! jobs — driver matching, fare settlement, overtime windows.

use fleetstream::commands;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Stream threads allocate and free many small buffers per record (keys, encoded values,
/// batches); mimalloc's thread-local free lists cost a fraction of glibc's bins there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "fleetstream",
    version,
    about = "Keyed, stateful stream processing for a transport operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the topology live (embedded log by default, Kafka with --brokers).
    Run(commands::run::RunArgs),
    /// Run the full topology over a file of input records and write every output topic.
    Replay(commands::replay::ReplayArgs),
    /// Export results for HR and accounting.
    #[command(subcommand)]
    Export(commands::export::ExportWhat),
    /// Generate synthetic input (a city, a depot) as JSON lines for replay.
    #[command(subcommand)]
    Generate(commands::generate::GenerateWhat),
    /// SQL over the state stores and result tables (a data directory, or a running instance).
    Sql(commands::sql::SqlArgs),
    /// Benchmarks: each figure beside the limit it stands on.
    Bench(commands::bench::BenchArgs),
    /// Drive a synthetic city through the edge API.
    Simulate(commands::simulate::SimulateArgs),
    /// Mint a bearer token for the edge API (development, tests, scripts).
    Token(commands::token::TokenArgs),
    /// Inspect the topics of the embedded log.
    #[command(subcommand)]
    Topics(commands::topics::TopicsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands whose output is the answer stay quiet unless RUST_LOG asks otherwise.
    let default_filter = match cli.command {
        Command::Sql(_) | Command::Token(_) => "warn",
        _ => "warn,fleetstream=info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(commands::run::run(args))),
        Command::Replay(args) => commands::replay::replay(&args).map(|report| {
            let outputs: Vec<String> = report.outputs.iter().map(|(t, n)| format!("{t}: {n}")).collect();
            eprintln!("replayed {} records; {}", report.inputs, outputs.join(", "));
        }),
        Command::Sql(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(commands::sql::sql(args))),
        Command::Export(what) => commands::export::export(&what),
        Command::Bench(args) => commands::bench::bench(&args).map(|_| ()),
        Command::Simulate(args) => {
            let json = args.json;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(commands::simulate::simulate(args)))
                .map(|summary| commands::simulate::print(&summary, json))
        }
        Command::Token(args) => commands::token::token(&args).map(|t| println!("{t}")),
        Command::Topics(command) => commands::topics::topics(&command),
        Command::Generate(what) => {
            commands::generate::generate(&what).map(|n| eprintln!("{n} records generated"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
