//! A write that also returns where its time went.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use super::pipeline::{run, unreadable};
use super::write::Write;
use crate::error::Error;
use crate::mutation::Mutation;
use crate::write_timings::WriteTimings;

impl<'r, M: Mutation, T> Write<'r, M, T> {
    /// Also returns where the write's time went ([`WriteTimings`]).
    ///
    // Not run as a doctest: needs a running database.
    /// ```no_run
    /// # async fn demo(repo: fly_postgres::Repo, statement: fly_postgres::Statement) -> Result<(), fly_postgres::Error> {
    /// let (rows, timings) = repo.execute(statement).timed().await?;
    /// println!("{rows} rows, RPC {:?}, replica wait {:?}", timings.rpc, timings.replication_wait);
    /// # Ok(()) }
    /// ```
    pub fn timed(self) -> Timed<'r, M, T> {
        Timed(self)
    }
}

/// A [`Write`] that also returns its [`WriteTimings`]; from [`Write::timed`].
#[must_use = "a write does nothing until awaited"]
pub struct Timed<'r, M: Mutation, T>(Write<'r, M, T>);

impl<'r, M: Mutation, T: Send + 'r> IntoFuture for Timed<'r, M, T> {
    type Output = Result<(T, WriteTimings), Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'r>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let finish = self.0.finish;
            let (output, timings) = run(self.0).await?;
            let output = finish(output).map_err(unreadable)?;
            Ok((output, timings))
        })
    }
}
