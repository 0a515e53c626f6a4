//! Turning sqlx's bare "pool timed out" into the reason behind it.

use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{ConnectOptions, Connection};

use crate::error::Error;

/// How long the diagnosis's own connection attempt may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Explains a pool error: a [`sqlx::Error::PoolTimedOut`] becomes
/// [`Error::NoConnection`] with the reason, found by opening one connection
/// outside the pool; PostgreSQL's refusal ("sorry, too many clients
/// already", "the database system is starting up", a wrong password) is
/// quoted, and when the database accepts it the pool was simply too small
/// for its callers. Any other error converts as usual.
///
// Not run as a doctest: needs a database that refuses connections.
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), fly_postgres::Error> {
/// let conn = match pool.acquire().await {
///     Ok(conn) => conn,
///     Err(e) => return Err(fly_postgres::explain_pool_error(&pool, e).await),
/// };
/// # drop(conn); Ok(()) }
/// ```
pub async fn explain_pool_error(pool: &PgPool, error: sqlx::Error) -> Error {
    if !matches!(error, sqlx::Error::PoolTimedOut) {
        return error.into();
    }
    let max = pool.options().get_max_connections();
    let in_use = pool.size().saturating_sub(pool.num_idle() as u32);
    let options = (*pool.connect_options())
        .clone()
        .application_name("fly-postgres-pool-diagnosis")
        .disable_statement_logging();
    let probe = tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&options)).await;
    let reason = match probe {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            if in_use >= max {
                format!(
                    "all {max} connections of the pool were busy; the database accepts more, \
                     so raise the pool's max_connections or lower the concurrency"
                )
            } else {
                "the pool could not open connections in time, though one opens now".to_owned()
            }
        }
        Ok(Err(e)) => match e.as_database_error() {
            Some(db) => format!("the database refuses new connections: {}", db.message()),
            None => format!("the database cannot be reached: {e}"),
        },
        Err(_) => format!("the database did not accept a connection within {PROBE_TIMEOUT:?}"),
    };
    Error::NoConnection {
        in_use,
        max,
        reason,
    }
}
