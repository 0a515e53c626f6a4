//! `flypg`: the fly-postgres command line (benchmarks; the demo and status
//! come with later work).

mod bench;
mod percentiles;

use clap::{Parser, Subcommand};

/// fly-postgres: one PostgreSQL primary and nearby replicas as one local database.
#[derive(Debug, Parser)]
#[command(name = "flypg", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmarks that print the numbers behind the README's claims.
    Bench {
        #[command(subcommand)]
        which: bench::Bench,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flypg: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Bench { which } => bench::run(which).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flypg: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
