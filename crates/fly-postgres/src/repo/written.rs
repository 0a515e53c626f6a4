//! A write resolved as a client sees it: committed means success, whether
//! or not the local replica has it yet.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use super::pipeline::{run, unreadable};
use super::write::Write;
use crate::error::Error;
use crate::mutation::Mutation;

/// A committed write's output, and whether this region's replica had
/// replayed it when the call returned; from [`Write::written`].
///
/// `replicated: false` means a read here right after may miss the write
/// (it was not waited for, or the wait timed out); it is still committed
/// and must not be sent again. With the `axum` feature it is a response:
/// the output as JSON, with the header `fly-replicated: true|false`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Written<T> {
    /// The write's output.
    pub output: T,
    /// Whether the local replica had replayed the write.
    pub replicated: bool,
}

impl<T> Written<T> {
    /// A written output (for responses built by hand, and tests).
    pub fn new(output: T, replicated: bool) -> Self {
        Written { output, replicated }
    }
}

impl<'r, M: Mutation, T> Write<'r, M, T> {
    /// Resolves to [`Written`](crate::Written): the output, and whether the local replica
    /// had replayed the write when the call returned. A write that
    /// committed but was not replayed here in time
    /// ([`Error::ReplicationTimeout`]) is then a success with `replicated:
    /// false`, as it should be for a client: it must not be sent again.
    ///
    // Not run as a doctest: needs a running database.
    /// ```no_run
    /// # async fn demo(repo: fly_postgres::Repo, statement: fly_postgres::Statement) -> Result<(), fly_postgres::Error> {
    /// let written = repo.execute(statement).written().await?;
    /// if !written.replicated {
    ///     println!("{} rows changed; a read here may not see them yet", written.output);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn written(self) -> WrittenWrite<'r, M, T> {
        WrittenWrite(self)
    }
}

/// A [`Write`] that resolves to [`Written`]; from [`Write::written`].
#[must_use = "a write does nothing until awaited"]
pub struct WrittenWrite<'r, M: Mutation, T>(Write<'r, M, T>);

impl<'r, M: Mutation, T: Send + 'r> IntoFuture for WrittenWrite<'r, M, T> {
    type Output = Result<Written<T>, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'r>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let (finish, waited) = (self.0.finish, self.0.wait);
            match run(self.0).await {
                Ok((output, _)) => Ok(Written {
                    output: finish(output).map_err(unreadable)?,
                    replicated: waited,
                }),
                Err(error) => match error.committed_output::<M::Output>() {
                    // Only a replication timeout carries the output of a
                    // write that is otherwise fine; anything unreadable
                    // stays the committed-class error it is.
                    Ok(Some(output)) if matches!(error, Error::ReplicationTimeout { .. }) => {
                        Ok(Written {
                            output: finish(output).map_err(unreadable)?,
                            replicated: false,
                        })
                    }
                    _ => Err(error),
                },
            }
        })
    }
}
