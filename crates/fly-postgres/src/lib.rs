//! Use one PostgreSQL primary and read replicas in other regions as if they
//! were one local database: reads run on the nearby replica, writes run in the
//! primary region, and a writer waits until its local replica has replayed
//! the write, so it reads its own writes. The Rust successor of Fly.io's
//! `fly_postgres`.
//!
//! The parts, one concept each:
//! - [`Repo`]: the local pool ([`Repo::local`]), typed writes
//!   ([`Repo::write`] of a [`macro@mutation`] function's arguments, or of
//!   any [`Mutation`]), ad-hoc statements
//!   ([`Repo::execute`], [`Repo::write_fetch_one`] with [`query`]), exactly-once
//!   forwarding, [`Repo::migrate`];
//! - [`Error`]: one matchable enum ([`DbError`] keeps the primary's SQLSTATE
//!   and constraint; [`Error::app`] carries the app's own errors);
//! - [`Tracker`]: waits until the local replica has replayed an [`Lsn`], one
//!   poller per database however many wait; [`advanced::commit_lsn`] gives the LSN;
//! - [`ConsistencyLayer`] (read-your-writes, bounded-staleness, session and strong reads
//!   across requests and regions, by a signed token) and [`FlyReplayLayer`]
//!   (`fly-replay` to the primary region);
//! - [`database_url_from_env`] / [`rewrite_database_url`]: `DATABASE_URL`
//!   pointed at the nearest database; [`read_only`]: replica-like dev pools.
//!
//! `sqlx` is re-exported so an app uses the same `PgPool` type as this crate.
//! The [`guide`] module holds the guides: adding the library to an existing
//! app, deploying on Fly.io, consistency, reliability, topologies, security,
//! operations, testing, and a map from the Elixir library's API to this one.
//!
//! One region, as on a laptop (this example runs as a test against a real
//! PostgreSQL server; in a second region the same code forwards the writes).
//! It is a crate of its own (`standalone_crate`): the doctests merged into
//! one binary would otherwise register each other's mutations.
//!
//! ```rust,standalone_crate
//! use std::time::Duration;
//! use fly_postgres::{Error, Repo, query, sqlx};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Todo { id: i64, title: String }
//!
//! /// A write, run next to the primary from any region; registered by itself.
//! #[fly_postgres::mutation]
//! async fn create_todo(tx: &mut sqlx::PgConnection, title: String) -> Result<i64, Error> {
//!     Ok(sqlx::query_scalar("insert into todos (title) values ($1) returning id")
//!         .bind(title)
//!         .fetch_one(&mut *tx)
//!         .await?)
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let cluster = fly_postgres_testkit::PgCluster::start().await?;
//! # let database_url = cluster.primary().url();
//! let repo = Repo::builder()
//!     .database_url(database_url) // on Fly: fly_postgres::database_url_from_env()?
//!     .ad_hoc_statements(true) // off by default: it lets RPC peers run any SQL
//!     .start()
//!     .await?;
//! if repo.regions().is_primary() {
//!     repo.migrate().await?; // the exactly-once table
//!     sqlx::query("create table todos (id bigserial primary key, title text unique)")
//!         .execute(repo.local())
//!         .await?;
//! }
//!
//! // Writes: next to the primary; return once the local replica has them.
//! let id = repo.write(create_todo::args("milk".into())).await?;
//! repo.write(create_todo::args("eggs".into())).no_wait().await?;
//! repo.write(create_todo::args("tea".into()))
//!     .rpc_timeout(Duration::from_secs(2))
//!     .replication_timeout(Duration::from_secs(1))
//!     .await?;
//!
//! // Reads: the local database, plain sqlx.
//! let n: i64 = sqlx::query_scalar("select count(*) from todos").fetch_one(repo.local()).await?;
//! assert_eq!(n, 3);
//!
//! // Ad-hoc statements (opted in above), RETURNING rows as any Deserialize type.
//! let todo: Todo = repo
//!     .write_fetch_one(query("update todos set title = $1 where id = $2 returning id, title").bind("oat milk").bind(id))
//!     .await?;
//! assert_eq!(todo, Todo { id, title: "oat milk".into() });
//!
//! // Errors raised on the primary are matchable here.
//! match repo.write(create_todo::args("eggs".into())).await {
//!     Err(e) if e.is_unique_violation() => println!("already there"),
//!     Err(Error::ReplicationTimeout { committed_lsn, .. }) => println!("committed at {committed_lsn}, not yet here"),
//!     other => panic!("a duplicate title: {other:?}"),
//! }
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod app_error;
mod app_state;
mod commit_lsn;
mod consistency;
mod database_url;
mod db_error;
mod error;
mod error_kind;
mod fly_replay;
pub mod guide;
mod lsn;
mod middleware_support;
mod mutation;
mod pool_diagnosis;
mod pool_options;
mod read_only;
mod replica_lag;
mod repo;
mod request_key;
mod request_record;
mod shared_polls;
mod shutdown_signal;
mod statement;
mod timeline_view;
mod tracker;
mod wal_position;
mod write_timings;

#[cfg(feature = "axum")]
mod edge;

pub use sqlx;

pub use fly_postgres_macros::mutation;

/// What `#[mutation]`'s expansion refers to; not an API.
#[doc(hidden)]
pub mod __private {
    pub use crate::repo::AutoMutation;
    pub use inventory;
    pub use serde;
}

/// fly-rpc, whose types appear in this crate's API ([`Error::Rpc`],
/// [`RepoBuilder::node`]): the same version, without a second dependency.
pub use fly_rpc;

/// Building blocks below the [`Repo`], for tools and tests that need them;
/// an app does not.
pub mod advanced {
    pub use crate::commit_lsn::commit_lsn;
    pub use crate::repo::rpc_and_wait;
    pub use crate::tracker::TrackerStats;
}

pub use app_error::AppError;
pub use app_state::state;
pub use consistency::{
    CONSISTENCY_HEADER, Consistency, ConsistencyLayer, ConsistencyService, LSN_COOKIE, LSN_HEADER,
    MAX_STALENESS_BOUND, READ_FROM_HEADER, UnknownConsistency, WaitFallback, forget_written_lsn,
};
pub use database_url::{REPLICA_PORT, database_url_from_env, rewrite_database_url};
pub use db_error::DbError;
pub use error::{Error, WriteOutcome};
pub use error_kind::ErrorKind;
pub use fly_replay::{
    FLY_REPLAY_HEADER, FlyReplayLayer, FlyReplayService, ReplayInPrimary, replay_response,
};
pub use lsn::{Lsn, LsnParseError};
pub use mutation::Mutation;
pub use pool_diagnosis::explain_pool_error;
pub use pool_options::pool_options;
pub use read_only::read_only;
pub use replica_lag::{ReplicaLag, ReplicaState};
pub use repo::{
    MIGRATION_SQL, Repo, RepoBuilder, RepoStats, Timed, Write, WriteMode, Written, WrittenWrite,
};
pub use request_key::MAX_REQUEST_ID_LEN;
pub use shutdown_signal::shutdown_signal;
pub use statement::{Param, Statement, StatementResult, query};
pub use tracker::{DEFAULT_POLL_INTERVAL, Tracker, TrackerBuilder};
pub use wal_position::WalPosition;
pub use write_timings::WriteTimings;

#[cfg(feature = "axum")]
pub use edge::{
    ErrorResponse, IDEMPOTENCY_KEY, IdempotencyKey, IdempotencyKeyRejection, REPLICATED_HEADER,
};
