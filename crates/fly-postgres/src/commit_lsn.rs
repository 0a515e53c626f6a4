//! The WAL position a reader must wait for after a commit.

use sqlx::PgConnection;

use crate::error::Error;
use crate::lsn::Lsn;

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
/// ```no_run
/// # async fn demo(conn: &mut sqlx::PgConnection) -> Result<(), fly_postgres::Error> {
/// sqlx::query("insert into todos (title) values ('x')").execute(&mut *conn).await?;
/// let lsn = fly_postgres::commit_lsn(conn).await?;
/// # Ok(()) }
/// ```
pub async fn commit_lsn(conn: &mut PgConnection) -> Result<Lsn, Error> {
    let text: String = sqlx::query_scalar("select pg_current_wal_flush_lsn()::text")
        .fetch_one(conn)
        .await?;
    Ok(text.parse()?)
}
