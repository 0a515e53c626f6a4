//! A todo list over fly-postgres, the template to copy: reads on the local
//! database, writes through typed mutations that run in the primary region,
//! configured only by environment variables, exactly as on Fly.io.
//!
//! | variable | meaning |
//! | --- | --- |
//! | `DATABASE_URL` | the app database (rewritten for the region on Fly, see `fly_postgres::database_url_from_env`) |
//! | `FLY_REGION` / `MY_REGION`, `PRIMARY_REGION` | this instance's region and the primary's |
//! | `FLY_APP_NAME` | on Fly: discovers peers by DNS, switches on the URL rewrite |
//! | `FLY_RPC_SECRET` | the shared secret of the app's instances |
//! | `FLY_RPC_PEERS` | off Fly: `region=ip:port,...;region=...` |
//! | `FLY_RPC_PORT` / `FLY_RPC_LISTEN` | where the RPC endpoint listens (default `[::]:7878`) |
//! | `PORT` / `HTTP_LISTEN` | where the HTTP API listens (default `[::]:8080`) |
//! | `METRICS_PORT` / `METRICS_LISTEN` | serve Prometheus metrics at `/metrics` there (default: off) |
//! | `PRIMARY_DATABASE_URL` | the primary, for reads that stop waiting for a lagging replica (`FLY_POSTGRES_WAIT_FALLBACK=primary-pool`) |
//! | `FLY_POSTGRES_CONSISTENCY`, `FLY_POSTGRES_MAX_WAIT_MS`, `FLY_POSTGRES_WAIT_FALLBACK` | the consistency layer (see `fly_postgres::ConsistencyLayer::from_env`) |
//! | `RUST_LOG` | the log filter: `info` by default; `target=level` directives such as `fly_postgres=debug,info` |
//!
// Not run as a doctest: serves until SIGTERM or Ctrl-C.
//! ```no_run
//! # async fn demo() -> Result<(), fly_postgres_todo::StartError> {
//! fly_postgres_todo::run_from_env().await?;
//! # Ok(()) }
//! ```

mod api_error;
mod instance;
mod ledger;
mod logging;
mod metrics_endpoint;
mod mutations;
mod page;
mod routes;
mod schema;

use std::net::SocketAddr;

use fly_postgres::Repo;

pub use api_error::ApiError;

/// The template app's fly.toml, as `fly deploy` reads it (the Fly world
/// of the demo and the drills deploys from it).
pub const FLY_TOML: &str = include_str!("../fly.toml");
pub use ledger::{AppendLedger, LedgerEntry};
pub use logging::log_to_stderr;
pub use mutations::{
    CreateBatch, CreateTodo, DeleteTodo, Todo, UpdateTodo, create_batch, create_todo, delete_todo,
    update_todo,
};
pub use routes::{router, router_with};
pub use schema::{SCHEMA, migrate};

/// Boxed errors of the app's startup.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// Registers the app's `impl Mutation` types on a repo builder (the
/// `#[fly_postgres::mutation]` functions register themselves).
pub fn mutations(builder: fly_postgres::RepoBuilder) -> fly_postgres::RepoBuilder {
    builder.mutation::<AppendLedger>()
}

/// Starts the repo from env, migrates in the primary region, and serves the
/// API until Ctrl-C or SIGTERM. Prints one line,
/// `todo listening http=ADDR rpc=ADDR region=R` (and `metrics=ADDR` with a
/// metrics port), once it accepts requests.
///
/// On SIGTERM (every deploy sends one) both listeners stop accepting at
/// once: callers in other regions fail over to a sibling instance, while the
/// requests and forwarded writes in flight finish and get their replies.
pub async fn run_from_env() -> Result<(), StartError> {
    run_from_env_with(mutations).await
}

/// [`run_from_env`] with the mutations `register` adds (the fault drills
/// run an "old build" that lacks one).
pub async fn run_from_env_with(
    register: fn(fly_postgres::RepoBuilder) -> fly_postgres::RepoBuilder,
) -> Result<(), StartError> {
    // First, so the repo's own metrics from the start are recorded.
    let metrics = match env_listen_addr("METRICS_LISTEN", "METRICS_PORT")? {
        Some(addr) => Some(metrics_endpoint::start(addr).await?),
        None => None,
    };
    let node = fly_rpc::Node::from_env()?;
    // What the node reports to `status` and in version-skew errors: the
    // image a deploy made (FLY_IMAGE_REF on Fly) or FLY_RPC_VERSION, which
    // from_env reads, else this crate's version.
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let node = if set("FLY_RPC_VERSION") || set("FLY_IMAGE_REF") {
        node
    } else {
        node.version(env!("CARGO_PKG_VERSION"))
    };
    // The app writes only through its typed mutations, so ad-hoc
    // statements stay off (the default): a node in the primary region has
    // no reason to run arbitrary SQL for its peers.
    let mut builder = register(Repo::builder())
        .database_url(fly_postgres::database_url_from_env()?)
        .node(node);
    if let Some(url) = std::env::var("PRIMARY_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
    {
        builder = builder.primary_url(url);
    }
    let repo = builder.start().await?;
    migrate(&repo).await?;
    let listener = tokio::net::TcpListener::bind(http_listen_addr()?).await?;
    println!(
        "todo listening http={} rpc={} region={}{}",
        listener.local_addr()?,
        repo.node()
            .local_addr()
            .map_or_else(|| "none".to_owned(), |a| a.to_string()),
        repo.regions().my_region(),
        metrics.map(|m| format!(" metrics={m}")).unwrap_or_default()
    );
    // Not `axum::serve`: this port faces the internet, and the library's
    // loop times out slow headers, slow bodies (408) and idle connections
    // and caps them; on SIGTERM both ports stop accepting and what is in
    // flight finishes.
    let consistency = fly_postgres::ConsistencyLayer::from_env(repo.clone())?;
    repo.serve(listener, router_with(consistency, repo.clone()))
        .await?;
    Ok(())
}

/// Prints this instance's regions and what every discovered peer reports
/// (region, address, build version, procedures), with the app's own
/// environment: `fly ssh console -C "todo status"` on Fly.
pub async fn print_status(json: bool) -> Result<(), StartError> {
    print!("{}", fly_rpc::StatusReport::from_env().await?.render(json));
    Ok(())
}

fn http_listen_addr() -> Result<SocketAddr, StartError> {
    Ok(env_listen_addr("HTTP_LISTEN", "PORT")?
        .unwrap_or(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 8080))))
}

/// A listen address from `addr_var` (`ip:port`), else from `port_var` (on
/// all interfaces), else none.
pub(crate) fn env_listen_addr(
    addr_var: &str,
    port_var: &str,
) -> Result<Option<SocketAddr>, StartError> {
    if let Ok(addr) = std::env::var(addr_var) {
        return addr
            .parse()
            .map(Some)
            .map_err(|_| format!("{addr_var} {addr:?} is not an ip:port address").into());
    }
    match std::env::var(port_var) {
        Ok(p) => p
            .parse::<u16>()
            .map(|port| Some(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))))
            .map_err(|_| format!("{port_var} {p:?} is not a port number").into()),
        Err(_) => Ok(None),
    }
}

/// The README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
