//! The WAL position a reader must wait for after a commit.

use sqlx::{PgConnection, Row};

use crate::error::Error;
use crate::lsn::Lsn;
use crate::wal_position::{WalPosition, timeline_of_walfile};

/// The statement that reads a commit's position and timeline: one round
/// trip, and the timeline is the one the flush position is on.
pub(crate) const COMMIT_POSITION_SQL: &str =
    "select pg_current_wal_flush_lsn()::text, pg_walfile_name(pg_current_wal_flush_lsn())";

/// The WAL position that covers everything this connection has committed:
/// call it on the primary, on the same connection, right after `COMMIT`.
///
/// It reads `pg_current_wal_flush_lsn()`, not `pg_current_wal_insert_lsn()`
/// (which the Elixir library used): when the insert position sits on an
/// 8 KiB WAL page boundary, the insert LSN points past the next page's
/// header, a position the replica's replay only reaches when some later WAL
/// arrives, so a waiter could stall for seconds. The flush position is at or
/// after the end of the commit record when `synchronous_commit` is not `off`
/// (the repo asks for a local flush when it is). It can still sit inside
/// another transaction's record that spans a page and is being flushed: then
/// the waiter waits until that record is complete, about `wal_writer_delay`
/// at worst, not seconds.
///
// Not run as a doctest: needs a running database.
/// ```no_run
/// # async fn demo(conn: &mut sqlx::PgConnection) -> Result<(), fly_postgres::Error> {
/// sqlx::query("insert into todos (title) values ('x')").execute(&mut *conn).await?;
/// let lsn = fly_postgres::advanced::commit_lsn(conn).await?;
/// # Ok(()) }
/// ```
pub async fn commit_lsn(conn: &mut PgConnection) -> Result<Lsn, Error> {
    Ok(commit_position(conn).await?.lsn)
}

/// [`commit_lsn`] with the primary's timeline.
pub(crate) async fn commit_position(conn: &mut PgConnection) -> Result<WalPosition, Error> {
    let row = sqlx::query(COMMIT_POSITION_SQL).fetch_one(conn).await?;
    position_of_row(&row, 0).map_err(Error::from)
}

/// The position in a row's columns `first` (the LSN as text) and
/// `first + 1` (its WAL file's name), as [`COMMIT_POSITION_SQL`] reads them.
pub(crate) fn position_of_row(
    row: &sqlx::postgres::PgRow,
    first: usize,
) -> Result<WalPosition, sqlx::Error> {
    let lsn = row
        .try_get::<String, _>(first)?
        .parse::<Lsn>()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let timeline = row
        .try_get::<Option<String>, _>(first + 1)?
        .as_deref()
        .and_then(timeline_of_walfile);
    Ok(WalPosition::new(timeline, lsn))
}
