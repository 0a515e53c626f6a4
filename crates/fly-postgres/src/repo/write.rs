//! One write call and its options; awaiting it runs the
//! [pipeline](super::pipeline).

use std::time::Duration;

use super::Repo;
use crate::error::Error;
use crate::mutation::Mutation;
use crate::request_key;

/// A pending write; `.await` it. Built by [`Repo::write`],
/// [`Repo::execute`] and friends.
#[must_use = "a write does nothing until awaited"]
pub struct Write<'r, M: Mutation, T> {
    pub(super) repo: &'r Repo,
    pub(super) mutation: M,
    pub(super) finish: fn(M::Output) -> Result<T, Error>,
    pub(super) wait: bool,
    pub(super) rpc_timeout: Option<Duration>,
    pub(super) replication_timeout: Option<Duration>,
    /// Fixed when the write is created, so it is known before awaiting.
    pub(super) request_id: String,
    /// The caller chose the id (its record is kept longer).
    pub(super) chosen_id: bool,
    pub(super) direct_fallback: Option<bool>,
}

impl<'r, M: Mutation, T> Write<'r, M, T> {
    pub(crate) fn new(
        repo: &'r Repo,
        mutation: M,
        finish: fn(M::Output) -> Result<T, Error>,
    ) -> Self {
        Write {
            repo,
            mutation,
            finish,
            wait: true,
            rpc_timeout: None,
            replication_timeout: None,
            request_id: request_key::generate(),
            chosen_id: false,
            direct_fallback: None,
        }
    }

    /// The write's request id, known before the write is awaited: a fresh
    /// random one, or the one given to [`Write::request_id`]. If the
    /// future is dropped before it finishes (a client that went away, a
    /// `tokio::time::timeout`, a `select!`), the write may still commit:
    /// in the primary region it runs to its end in a task of its own, and
    /// a forwarded one may have reached the primary region. Either way a
    /// write with this id settles it: it answers with the first write's
    /// output if that one committed, and runs it otherwise. Ids the library
    /// generated are remembered for the repo's `generated_id_retention`
    /// (10 minutes by default): in the primary region by the process that
    /// ran the write (it keeps no record, see
    /// [`RepoBuilder::record_local_writes`](super::RepoBuilder::record_local_writes)),
    /// elsewhere by the primary's record.
    ///
    // Not run as a doctest: needs a running database.
    /// ```no_run
    /// # async fn demo(repo: fly_postgres::Repo, statement: fly_postgres::Statement, again: fly_postgres::Statement) -> Result<(), fly_postgres::Error> {
    /// let write = repo.execute(statement);
    /// let id = write.id().to_owned();
    /// match tokio::time::timeout(std::time::Duration::from_millis(50), write).await {
    ///     Ok(result) => { result?; }
    ///     // Gave up waiting: the same write with the same id settles it.
    ///     Err(_) => { repo.execute(again).request_id(id).await?; }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> &str {
        &self.request_id
    }

    /// The write's request id (default: a fresh random one). Pass a
    /// client's `Idempotency-Key` to make the write exactly-once end to end:
    /// a write with an id the primary has recorded (for the repo's
    /// `request_retention`, 24 h by default) returns the recorded output
    /// instead of running again, and one whose mutation or arguments differ
    /// fails with [`Error::RequestIdReused`]. 1 to 128 characters out of
    /// `A-Z a-z 0-9 - _ . :`; anything else fails with
    /// [`Error::InvalidRequestId`]. Also how an [`Error::MaybeCommitted`]
    /// is settled: write again with its [`Error::request_id`].
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = id.into();
        self.chosen_id = true;
        self
    }

    /// Returns as soon as the primary committed, without waiting for the
    /// local replica (the Elixir library's `await: false`): a read right
    /// after may not see the write yet.
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }

    /// Deadline of the RPC phase, every retry included (default: the repo's,
    /// 5 s unless set); each attempt gets a share of what is left.
    pub fn rpc_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_timeout = Some(timeout);
        self
    }

    /// How long to wait for the local replica (default: the repo's, 5 s
    /// unless set).
    pub fn replication_timeout(mut self, timeout: Duration) -> Self {
        self.replication_timeout = Some(timeout);
        self
    }

    /// Whether this write may run directly on the primary over PostgreSQL
    /// when no primary-region instance takes it (default: the repo's
    /// [`RepoBuilder::direct_fallback`](super::RepoBuilder::direct_fallback);
    /// `true` needs the repo's primary URL, or the write fails with
    /// [`Error::Config`]).
    pub fn direct_fallback(mut self, enabled: bool) -> Self {
        self.direct_fallback = Some(enabled);
        self
    }

    /// [`Write::request_id`] when a key is given: the request's
    /// `Idempotency-Key`, if the client sent one (with the `axum` feature,
    /// `Option<IdempotencyKey>` is an extractor).
    pub fn request_id_opt(self, id: Option<impl Into<String>>) -> Self {
        match id {
            Some(id) => self.request_id(id),
            None => self,
        }
    }
}
