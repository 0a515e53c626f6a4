//! The pool settings the repo uses for the pool it opens itself.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

/// Pool settings tuned for the repo: what [`RepoBuilder::database_url`]
/// opens, and a good start for a pool passed to [`RepoBuilder::pool`].
///
/// - No ping before each checkout (`test_before_acquire(false)`): sqlx
///   already pings every connection when it goes back to the pool, so the
///   extra round trip (0.1-0.5 ms on loopback) only guards connections that
///   died while idle. A write that meets one is retried on a fresh
///   connection by the repo; a read fails once per such connection.
/// - A connection is waited for at most 5 s (sqlx's default is 30 s): a
///   read on a dead replica should fail within the write timeouts.
///
/// ```
/// let options = fly_postgres::pool_options().max_connections(32);
/// # let _ = options;
/// ```
///
/// [`RepoBuilder::database_url`]: crate::RepoBuilder::database_url
/// [`RepoBuilder::pool`]: crate::RepoBuilder::pool
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5))
}
