//! Use one PostgreSQL primary and read replicas in other regions as if they
//! were one local database: reads run on the nearby replica, writes run in the
//! primary region, and a writer waits until its local replica has replayed
//! the write, so it reads its own writes. The Rust successor of Fly.io's
//! `fly_postgres`.
//!
//! Modules, one concept each:
//! - [`Lsn`]: a WAL position that parses, prints and orders like `pg_lsn`;
//! - [`Tracker`]: waits until the local replica has replayed an LSN, with one
//!   poller per database however many wait;
//! - [`commit_lsn`]: the LSN to wait for after a commit on the primary;
//! - [`database_url_from_env`] / [`rewrite_database_url`]: `DATABASE_URL`
//!   pointed at the nearest database;
//! - [`read_only`]: connections that behave like a replica's, for dev.
//!
//! `sqlx` is re-exported so an app uses the same `PgPool` type as this crate.
//!
//! ```no_run
//! use std::time::Duration;
//! use fly_postgres::{Tracker, commit_lsn, sqlx};
//!
//! # async fn demo() -> Result<(), fly_postgres::Error> {
//! let primary = sqlx::PgPool::connect("postgres://postgres@syd-db/app").await?;
//! let replica = sqlx::PgPool::connect("postgres://postgres@lax-db/app").await?;
//! let tracker = Tracker::new(&replica)?;
//!
//! let mut conn = primary.acquire().await?;
//! sqlx::query("insert into todos (title) values ('buy milk')").execute(&mut *conn).await?;
//! let lsn = commit_lsn(&mut conn).await?;
//!
//! tracker.wait_for(lsn, Duration::from_secs(5)).await?;
//! // The replica now has the row.
//! let n: i64 = sqlx::query_scalar("select count(*) from todos").fetch_one(&replica).await?;
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod app_error;
mod commit_lsn;
mod consistency;
mod database_url;
mod db_error;
mod error;
mod fly_replay;
mod lsn;
mod mutation;
mod read_only;
mod repo;
mod statement;
mod tracker;

pub use sqlx;

pub use app_error::AppError;
pub use commit_lsn::commit_lsn;
pub use consistency::{ConsistencyLayer, ConsistencyService, LSN_COOKIE, LSN_HEADER};
pub use database_url::{REPLICA_PORT, database_url_from_env, rewrite_database_url};
pub use db_error::DbError;
pub use error::Error;
pub use fly_replay::{
    FLY_REPLAY_HEADER, FlyReplayLayer, FlyReplayService, ReplayInPrimary, replay_response,
};
pub use lsn::{Lsn, LsnParseError};
pub use mutation::Mutation;
pub use read_only::read_only;
pub use repo::{MIGRATION_SQL, Repo, RepoBuilder, RepoStats, Write, rpc_and_wait};
pub use statement::{Param, Statement, StatementResult, query};
pub use tracker::{DEFAULT_POLL_INTERVAL, Tracker, TrackerBuilder, TrackerStats};
