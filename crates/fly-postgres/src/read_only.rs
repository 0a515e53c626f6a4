//! Read-only connections, to act as a replica in local development.

use sqlx::postgres::PgConnectOptions;

/// Makes every connection opened with these options start its transactions
/// read-only (`default_transaction_read_only = on`, sent at connect time, no
/// extra round trip). A dev app pointed at a single database then fails writes
/// that bypass the primary the same way a real replica would (SQLSTATE 25006),
/// which is the Elixir library's `make_connection_read_only!`.
///
// Not run as a doctest: needs a running database.
/// ```no_run
/// use fly_postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
///
/// # async fn demo() -> Result<(), fly_postgres::sqlx::Error> {
/// let options = fly_postgres::read_only(PgConnectOptions::new().host("localhost"));
/// let pool = PgPoolOptions::new().connect_with(options).await?;
/// # Ok(()) }
/// ```
pub fn read_only(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("default_transaction_read_only", "on")])
}
