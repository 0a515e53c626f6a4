//! The `Repo`: local reads, writes forwarded to the primary region, and the
//! wait that makes the caller read its own writes.

mod attempt_outcome;
mod auto_mutation;
mod builder;
mod commit_round_trip;
mod database_host;
mod direct_path;
mod forwarded_path;
mod local_write;
mod local_write_end;
mod pipeline;
mod position_flight;
mod positions;
mod primary_follower;
mod primary_status;
mod recorded_outcome;
mod reply;
mod retry_policy;
mod rpc_failure;
mod serve_forwarded;
mod server_state;
mod staleness;
mod startup;
mod stats;
mod sweeper;
mod timed;
mod transaction;
mod unrecorded;
mod unrecorded_retry;
mod wire;
mod write;
mod write_metrics;
mod write_mode;
mod written;
mod xact_probe;
mod xact_settle;

use std::sync::Arc;
use std::time::Duration;

use fly_rpc::{Node, Regions};
use serde::de::DeserializeOwned;
use sqlx::PgPool;

#[doc(hidden)]
pub use auto_mutation::AutoMutation;
pub use builder::RepoBuilder;
pub use stats::RepoStats;
pub use timed::Timed;
pub use write::Write;
pub use write_mode::WriteMode;
pub use written::{Written, WrittenWrite};

use crate::error::Error;
use crate::lsn::Lsn;
use crate::mutation::Mutation;
use crate::statement::{Statement, StatementResult};
use crate::tracker::Tracker;
use server_state::ServerState;

/// The SQL of the library's own table (exactly-once records), for apps that
/// run migrations with their own tool.
pub const MIGRATION_SQL: &str = include_str!("../../migrations/0001_fly_postgres_requests.sql");

#[derive(Debug, Clone, Copy)]
pub(crate) struct RepoConfig {
    pub(crate) rpc_timeout: Duration,
    pub(crate) replication_timeout: Duration,
    pub(crate) retention: Duration,
    pub(crate) write_mode: WriteMode,
    pub(crate) direct_fallback: bool,
    pub(crate) force_forward: bool,
    pub(crate) record_local_writes: bool,
}

pub(crate) struct RepoInner {
    pool: PgPool,
    tracker: Tracker,
    node: Node,
    regions: Regions,
    config: RepoConfig,
    server: Arc<ServerState>,
    /// Writes straight to the primary over PostgreSQL, when a primary URL
    /// or pool was given.
    direct: Option<Arc<ServerState>>,
    /// Whether the local database takes writes (cached briefly).
    status: Arc<primary_status::PrimaryStatus>,
    /// Set when the primary may move between regions.
    follow: Option<primary_follower::PrimaryFollower>,
    counters: stats::WriteCounters,
    sweeper: Option<tokio::task::JoinHandle<()>>,
    /// Follows the region's replay poll leader (see `shared_polls`).
    poll_sharing: Option<tokio::task::JoinHandle<()>>,
    sweeps: Arc<sweeper::SweepCounters>,
    timelines: crate::timeline_view::TimelineCache,
    token_keys: Vec<[u8; 32]>,
    /// The procedures this repo's node serves (its mutations among them).
    registered: std::collections::HashSet<String>,
    /// The primary's position asked of the primary region, one RPC at a
    /// time for every strong read waiting (outside the primary region).
    remote_positions: position_flight::PositionFlight,
    /// Looks at the local replica in the background (outside the primary
    /// region): whether it answers, and its lag.
    lag: Option<crate::replica_lag::LagMonitor>,
}

impl Drop for RepoInner {
    fn drop(&mut self) {
        for task in [&self.sweeper, &self.poll_sharing].into_iter().flatten() {
            task.abort();
        }
    }
}

/// One app database across regions: reads on the local database, writes
/// next to the primary, read-your-writes after each write.
///
/// Build it with [`Repo::builder`]; clone it freely (clones share the pool,
/// the tracker and the node).
///
// Not run as a doctest: needs a running database.
/// ```no_run
/// use fly_postgres::{Error, Mutation, Repo, sqlx};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
/// struct Todo { id: i64, title: String }
///
/// #[derive(Serialize, Deserialize)]
/// struct CreateTodo { title: String }
///
/// impl Mutation for CreateTodo {
///     const NAME: &'static str = "create_todo";
///     type Output = Todo;
///     async fn run(self, tx: &mut sqlx::PgConnection) -> Result<Todo, Error> {
///         Ok(sqlx::query_as("insert into todos (title) values ($1) returning id, title")
///             .bind(self.title)
///             .fetch_one(&mut *tx)
///             .await?)
///     }
/// }
///
/// # async fn demo() -> Result<(), Error> {
/// let repo = Repo::builder()
///     .database_url(fly_postgres::database_url_from_env()?)
///     .node(fly_rpc::Node::from_env().map_err(Error::from)?)
///     .mutation::<CreateTodo>()
///     .start()
///     .await?;
///
/// // Reads: plain sqlx on the local database.
/// let todos: Vec<Todo> = sqlx::query_as("select id, title from todos")
///     .fetch_all(repo.local())
///     .await?;
/// // Writes: run in the primary region; return once the local replica has them.
/// let todo = repo.write(CreateTodo { title: "buy milk".into() }).await?;
/// // Ad-hoc single statements, with RETURNING rows decoded into any type.
/// let n = repo
///     .execute(fly_postgres::query("update todos set title = upper(title) where id = $1").bind(todo.id))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Repo {
    inner: Arc<RepoInner>,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("regions", &self.inner.regions)
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

impl Repo {
    /// A builder; see [`RepoBuilder`] for every setting and its default.
    pub fn builder() -> RepoBuilder {
        RepoBuilder::new()
    }

    /// The local database's pool (the primary in the primary region, the
    /// nearest replica elsewhere). Every sqlx read API works on it; so do
    /// migrations and job queues in the primary region.
    pub fn local(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The replay tracker of the local database.
    pub fn tracker(&self) -> &Tracker {
        &self.inner.tracker
    }

    /// The RPC node writes are forwarded through.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// This instance's regions (as configured: `PRIMARY_REGION` is a hint
    /// when the repo follows the primary; see [`Repo::primary_region`]).
    pub fn regions(&self) -> &Regions {
        &self.inner.regions
    }

    /// The region writes go to now: `PRIMARY_REGION`, or where the primary
    /// moved to when the repo follows it ([`RepoBuilder::follow_primary`]).
    pub fn primary_region(&self) -> String {
        match &self.inner.follow {
            Some(follower) => follower.current(),
            None => self.inner.regions.primary_region().to_owned(),
        }
    }

    /// Whether writes run here, on the local database: in the primary
    /// region, or, when the repo follows the primary, wherever the local
    /// database is out of recovery (checked at most once a second).
    pub async fn is_primary(&self) -> bool {
        match &self.inner.follow {
            Some(_) => self.inner.status.is_primary().await,
            None => self.inner.regions.is_primary(),
        }
    }

    /// Runs `mutation` next to the primary: here in the primary region,
    /// by one RPC elsewhere, then waits until the local replica has replayed
    /// it. Options: [`Write::no_wait`], [`Write::rpc_timeout`],
    /// [`Write::replication_timeout`].
    pub fn write<M: Mutation>(&self, mutation: M) -> Write<'_, M, M::Output> {
        Write::new(self, mutation, Ok)
    }

    /// Runs one ad-hoc statement like a write; resolves to the number of
    /// rows it changed.
    pub fn execute(&self, statement: Statement) -> Write<'_, Statement, u64> {
        Write::new(self, statement, |r: StatementResult| Ok(r.rows_affected()))
    }

    /// Runs one ad-hoc statement as a write, in the primary region, and
    /// resolves to its first `RETURNING` row as `T` (an error if it
    /// returned none). Not a read: reads are plain sqlx on
    /// [`Repo::local`] / [`Repo::reader`].
    pub fn write_fetch_one<T: DeserializeOwned>(
        &self,
        statement: Statement,
    ) -> Write<'_, Statement, T> {
        Write::new(self, statement, |r: StatementResult| {
            match r.decode_optional() {
                Ok(Some(row)) => Ok(row),
                Ok(None) => Err(r.unreadable(Error::Decode {
                    message: "the statement returned no row".into(),
                })),
                Err(e) => Err(r.unreadable(e)),
            }
        })
    }

    /// Runs one ad-hoc statement as a write, in the primary region, and
    /// resolves to its first `RETURNING` row as `T`, if any.
    pub fn write_fetch_optional<T: DeserializeOwned>(
        &self,
        statement: Statement,
    ) -> Write<'_, Statement, Option<T>> {
        Write::new(self, statement, |r: StatementResult| {
            r.decode_optional().map_err(|e| r.unreadable(e))
        })
    }

    /// Runs one ad-hoc statement as a write, in the primary region, and
    /// resolves to every `RETURNING` row as `T`.
    pub fn write_fetch_all<T: DeserializeOwned>(
        &self,
        statement: Statement,
    ) -> Write<'_, Statement, Vec<T>> {
        Write::new(self, statement, |r: StatementResult| {
            r.decode_all().map_err(|e| r.unreadable(e))
        })
    }

    /// Waits until the local database has replayed `lsn` (for example one a
    /// client carried from an earlier request), at most the repo's
    /// replication timeout.
    pub async fn wait_for(&self, lsn: Lsn) -> Result<(), Error> {
        self.inner
            .tracker
            .wait_for(lsn, self.inner.config.replication_timeout)
            .await
    }

    /// Creates the library's table (exactly-once records) if missing. Run it
    /// in the primary region, where the local database is the primary.
    pub async fn migrate(&self) -> Result<(), Error> {
        sqlx::raw_sql(MIGRATION_SQL)
            .execute(&self.inner.pool)
            .await?;
        Ok(())
    }

    /// Deletes the expired exactly-once records now, in batches (the repo
    /// also does it every sweep interval in the primary region); returns
    /// how many, or `None` when another instance is sweeping the database.
    pub async fn sweep(&self) -> Result<Option<u64>, Error> {
        sweeper::sweep(
            &self.inner.pool,
            self.inner.config.retention,
            &self.inner.sweeps,
        )
        .await
    }

    /// Stops as a deploy's SIGTERM needs: the RPC port stops accepting at
    /// once (callers in other regions move to a sibling instance), the
    /// forwarded writes in flight finish and get their replies (at most
    /// [`fly_rpc::DEFAULT_GRACE`]), then it returns. Writes of this
    /// instance's own and its pool keep working; a single-region repo
    /// returns at once. Calling it again waits for the same stop. With the
    /// `axum` feature, `Repo::serve` does this and the app's port together.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.inner.node.shutdown().await.map_err(Error::from)?;
        if let Some(task) = &self.inner.sweeper {
            task.abort();
        }
        Ok(())
    }
}

/// Runs `mutation` next to the primary and waits for local replay: the
/// Elixir library's `Fly.Postgres.rpc_and_wait`, for readers coming from it.
/// Same as `repo.write(mutation).await`.
pub async fn rpc_and_wait<M: Mutation>(repo: &Repo, mutation: M) -> Result<M::Output, Error> {
    repo.write(mutation).await
}
