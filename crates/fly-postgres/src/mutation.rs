//! Typed writes that run next to the primary.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;

use crate::error::Error;

/// A write, as a typed value: its fields are the arguments, [`Mutation::run`]
/// the statements. From a replica region the value is shipped in one RPC to
/// an instance in the primary region, which runs it in one transaction next
/// to the primary; in the primary region it runs locally.
///
/// Return [`Error::app`] for failures of the app's own type; any `?` on a
/// sqlx error becomes [`Error::Database`], matchable in every region. App
/// state registered with [`crate::RepoBuilder::state`] is in reach through
/// [`crate::state`]. Register every mutation on every instance
/// ([`crate::RepoBuilder::mutation`]): an unregistered one is refused in
/// every region, with [`Error::UnknownProcedure`].
///
/// **`run` may run more than once for one write.** The write commits once
/// (its request id is recorded in the same transaction), but two attempts
/// can meet: a retry after a timeout or a dropped connection while the
/// first attempt is still running, or the same `Idempotency-Key` sent
/// twice at once. Both run `run`; one commits, the other rolls back and
/// answers with the first one's recorded output. So whatever `run` does
/// outside its transaction (an email, an HTTP call, a counter in memory)
/// can happen twice: do it after the write returns, make it idempotent, or
/// write it to an outbox table inside the transaction.
///
/// ```
/// use fly_postgres::{Error, Mutation, sqlx};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Rename { id: i64, title: String }
///
/// impl Mutation for Rename {
///     const NAME: &'static str = "rename_todo";
///     type Output = bool; // whether the todo existed
///
///     async fn run(self, tx: &mut sqlx::PgConnection) -> Result<bool, Error> {
///         let done = sqlx::query("update todos set title = $1 where id = $2")
///             .bind(&self.title)
///             .bind(self.id)
///             .execute(&mut *tx)
///             .await?;
///         Ok(done.rows_affected() == 1)
///     }
/// }
/// ```
pub trait Mutation: Serialize + DeserializeOwned + Send + 'static {
    /// The stable wire name; keep it across versions of the app.
    const NAME: &'static str;

    /// What the write returns to the caller.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// The statements, on a connection inside the write's transaction (the
    /// library begins and commits it; do not commit here).
    fn run(self, tx: &mut PgConnection)
    -> impl Future<Output = Result<Self::Output, Error>> + Send;
}
