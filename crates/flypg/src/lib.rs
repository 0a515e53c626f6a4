//! `flypg`: the fly-postgres command line: the two-region demo, the fault
//! drills, benchmarks (feature `bench`) and status. The binary is a thin
//! wrapper around [`main`], so the crate's tests can build the binary with
//! the `bench` feature.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     flypg::main()
//! }
//! ```

#[cfg(feature = "bench")]
mod bench;
mod chaos;
mod demo;
mod fly_world;
mod percentiles;
mod pgbench;
mod probe;
mod rpc_node;
mod signal;
mod status;

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
    /// Two regions on one machine: a primary in syd, a replica in lax, the
    /// todo app in each, and a scripted walk through them.
    Demo(demo::DemoArgs),
    /// Fault drills (crash, rolling restart, replica down, load) against real
    /// processes, checked against a ledger of what each client was told.
    Chaos(chaos::ChaosArgs),
    /// Benchmarks that print the numbers behind the README's claims.
    #[cfg(feature = "bench")]
    Bench {
        #[command(subcommand)]
        which: bench::Bench,
    },
    /// Benchmarks (built with `--features bench`).
    #[cfg(not(feature = "bench"))]
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    /// This instance's regions and the peers it discovers (same env as the app).
    Status {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The example todo app, configured by env (the demo starts it).
    #[command(hide = true)]
    TodoApp,
    /// A bare RPC node configured by env (used by tests).
    #[command(hide = true)]
    RpcNode {
        /// The name the node answers `flypg.noop` with.
        #[arg(long, default_value = "node")]
        name: String,
    },
}

/// The todo app's mutations before `AppendLedger` was added: the
/// `#[mutation]` functions (they register themselves), without the ledger's.
fn old_build_mutations(builder: fly_postgres::RepoBuilder) -> fly_postgres::RepoBuilder {
    builder
}

/// Parses the command line and runs the command.
pub fn main() -> std::process::ExitCode {
    fly_postgres_todo::log_to_stderr("flypg", tracing::Level::WARN);
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
            Command::Demo(args) => demo::run(args).await,
            Command::Chaos(args) => chaos::run(args).await,
            Command::TodoApp => {
                // The skew drill's "old build": the ledger's mutation is
                // not there yet.
                let register = if std::env::var_os("FLYPG_DRILL_OLD_BUILD").is_some() {
                    old_build_mutations
                } else {
                    fly_postgres_todo::mutations
                };
                fly_postgres_todo::run_from_env_with(register)
                    .await
                    .map_err(|e| -> Box<dyn std::error::Error> { e.to_string().into() })
            }
            #[cfg(feature = "bench")]
            Command::Bench { which } => bench::run(which).await,
            #[cfg(not(feature = "bench"))]
            Command::Bench { args } => Err(format!(
                "this flypg was built without its benchmarks: cargo run --release -p flypg \
                 --features bench -- bench {}",
                args.join(" ")
            )
            .into()),
            Command::Status { json } => status::run(json).await,
            Command::RpcNode { name } => rpc_node::run(name).await,
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
