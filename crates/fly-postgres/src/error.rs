//! The crate's one error type.

use std::fmt::Display;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::app_error::AppError;
use crate::db_error::DbError;
use crate::lsn::{Lsn, LsnParseError};

/// Everything `fly-postgres` can fail with. Match on the variant; new variants
/// may be added in minor releases.
///
/// A failed write is in one of three classes, and [`Error::outcome`] says
/// which as an exhaustive [`WriteOutcome`]: **committed** anyway (the
/// output is in [`Error::committed_output`]), **unknown**, "maybe
/// committed" (settle it by retrying with [`Error::request_id`]), or **not
/// committed** (every other variant).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// PostgreSQL refused a statement (here or on the primary). Nothing of
    /// the failed transaction was committed.
    #[error("database error: {0}")]
    Database(DbError),

    /// The mutation returned an error of the app's own type (see
    /// [`Error::app`]); its transaction was rolled back.
    #[error("{0}")]
    App(AppError),

    /// The local database failed in a way that is not PostgreSQL refusing a
    /// statement (connection, pool timeout, decode).
    #[error("local database error: {0}")]
    Sql(sqlx::Error),

    /// The write committed on the primary, but the local replica did not
    /// replay it in time. Do NOT retry it: it will become visible locally once
    /// replay catches up. `output` is the mutation's output as JSON (see
    /// [`Error::committed_output`]).
    #[error(
        "the write committed at {committed_lsn} on the primary, but the local replica \
         had replayed only up to {} after waiting {waited:?}",
        replayed.map_or_else(|| "an unknown position".to_owned(), |l| l.to_string())
    )]
    ReplicationTimeout {
        /// The committed write's WAL position that was waited for.
        committed_lsn: Lsn,
        /// The last replay position the tracker saw, if any.
        replayed: Option<Lsn>,
        /// How long the caller waited.
        waited: Duration,
        /// The committed write's output, when the wait followed a write.
        output: Option<serde_json::Value>,
    },

    /// The write committed, but its output could not be turned into the
    /// type the call asked for (for example `write_fetch_one` of a statement that
    /// returned no row). Do NOT retry it.
    #[error("the write committed, but its result could not be read: {reason}")]
    CommittedButUnreadable {
        /// Why the output did not fit.
        reason: String,
        /// The committed write's output as JSON, when it could be had (see
        /// [`Error::committed_output`]).
        output: Option<serde_json::Value>,
    },

    /// The write was sent to the primary region and no answer came back
    /// within its RPC deadline: it **may have committed**. Settle it by
    /// writing again with the same request id ([`crate::Write::request_id`]):
    /// the primary answers from its exactly-once record if the first attempt
    /// committed, and runs the write otherwise. Records are kept for the
    /// repo's `request_retention` (24 h by default).
    #[error(
        "the write `{mutation}` got no answer from the primary region within {after:?}; \
         it may have committed: retry with request id {request_id} to settle it"
    )]
    RpcTimeout {
        /// The mutation's name.
        mutation: String,
        /// The timeout that expired.
        after: Duration,
        /// The write's request id: retry with it to settle the outcome.
        request_id: String,
    },

    /// The write's outcome is unknown: a request reached (or may have
    /// reached) the primary region and no definite answer came back before
    /// the RPC deadline (for example the primary-region instance crashed
    /// after receiving it), or a primary-region write's COMMIT lost its
    /// connection and the database could not be asked in time whether it
    /// committed. Settle it by writing again with this `request_id`
    /// ([`crate::Write::request_id`]), which returns the first write's
    /// output if it did commit and runs the write otherwise. Records are
    /// kept for the repo's `request_retention` (24 h by default). For a
    /// primary-region write under a generated id, which keeps no record,
    /// the id names its transaction too (`<id>:x<transaction>:...`), so any
    /// process can settle it (see the [reliability
    /// guide](crate::guide::reliability)).
    #[error(
        "the write `{mutation}` may have committed ({reason}); {}",
        request_id.as_deref().map_or_else(
            || "no request id was recorded: check the data".to_owned(),
            |id| format!("retry with request id {id} to settle it"))
    )]
    MaybeCommitted {
        /// The mutation's name.
        mutation: String,
        /// The write's request id, to retry with.
        request_id: Option<String>,
        /// Attempts made.
        attempts: u32,
        /// The last failure seen.
        reason: String,
    },

    /// Nothing was written: no instance of the primary region could be
    /// reached before the RPC deadline, and no request left this instance
    /// (every connection was refused, or none was discovered). Safe to retry.
    #[error(
        "no instance in the primary region {region} could take the write \
         ({tried} attempts; nothing was written); last: {last_error}"
    )]
    NoPrimaryNode {
        /// The primary region.
        region: String,
        /// Attempts made.
        tried: usize,
        /// The last attempt's failure.
        last_error: String,
    },

    /// The request id was already used by a different write (another
    /// mutation, or other arguments) within the retention period. Nothing
    /// was written by this call.
    #[error(
        "request id {request_id} was already used by a different write \
         (`{recorded_mutation}` with other arguments or another mutation); \
         ids are remembered for the request retention (24 h by default)"
    )]
    RequestIdReused {
        /// The id.
        request_id: String,
        /// The mutation recorded under it.
        recorded_mutation: String,
    },

    /// Ad-hoc statements ([`crate::Repo::execute`] and the `fetch_*`
    /// calls) are off, here or on the primary region's node: they are
    /// opt-in with `RepoBuilder::ad_hoc_statements(true)` (in every
    /// region's repo), or write a mutation instead. Nothing was run.
    #[error(
        "ad-hoc statements are off{}: turn them on with RepoBuilder::ad_hoc_statements(true) \
         in every region's repo, or register a mutation instead; nothing was run",
        if *on_primary { " on the primary region's node" } else { "" }
    )]
    AdHocStatementsDisabled {
        /// Whether the primary region's node refused (rather than this repo).
        on_primary: bool,
    },

    /// A caller-chosen request id is not acceptable.
    #[error("invalid request id: {reason}")]
    InvalidRequestId {
        /// What is wrong with it.
        reason: String,
    },

    /// The primary region's node refused this node's credentials.
    #[error("the primary region refused the call: {reason}")]
    Unauthorized {
        /// Its reason.
        reason: String,
    },

    /// The node that was to run the write does not know this mutation: a
    /// primary-region node of another version (skew during a deploy, after
    /// its retries), or this very instance, which never registered it
    /// (`RepoBuilder::mutation`), in any region.
    #[error(
        "the node that was to run it (version {peer_version}) does not know mutation `{name}`: \
         every instance must register it (RepoBuilder::mutation)"
    )]
    UnknownProcedure {
        /// The mutation's name.
        name: String,
        /// The version the peer reports.
        peer_version: String,
    },

    /// Any other RPC failure (transport, bad request, a panic on the peer).
    /// Never an `Unauthorized` or `UnknownProcedure` one: the conversion
    /// from [`fly_rpc::Error`] lifts those into the variants above, so each
    /// failure has one place to be matched.
    #[error(transparent)]
    Rpc(fly_rpc::Error),

    /// The primary-region node failed outside PostgreSQL (for example its
    /// connection pool timed out).
    #[error("the primary region failed: {message}")]
    Primary {
        /// What it reported.
        message: String,
    },

    /// No database connection came within the pool's acquire timeout. The
    /// reason says why, as the database put it ("sorry, too many clients
    /// already") or as the pool saw it (every connection busy); see
    /// [`crate::explain_pool_error`].
    #[error(
        "no database connection within the pool's timeout ({in_use} of {max} in use): {reason}"
    )]
    NoConnection {
        /// Connections the pool had checked out.
        in_use: u32,
        /// The pool's `max_connections`.
        max: u32,
        /// Why a new connection could not be had.
        reason: String,
    },

    /// A row or output did not decode into the requested type.
    #[error("could not decode the result: {message}")]
    Decode {
        /// The decode error.
        message: String,
    },

    /// A statement's parameters or the repo's configuration are invalid.
    #[error("invalid configuration or input: {0}")]
    Config(String),

    /// A required environment variable is missing or empty.
    #[error("environment variable {name} is not set{hint}")]
    MissingEnv {
        /// The variable's name.
        name: &'static str,
        /// What to do about it (may be empty).
        hint: &'static str,
    },

    /// A database URL could not be parsed or rewritten.
    #[error("invalid database URL: {reason}")]
    InvalidDatabaseUrl {
        /// What is wrong with it (the URL's password is never included).
        reason: String,
    },

    /// A WAL position from the database or a peer was malformed.
    #[error(transparent)]
    InvalidLsn(#[from] LsnParseError),

    /// A session's write is gone: it committed on a timeline that an
    /// asynchronous failover abandoned past `switched_at`, before the write
    /// reached the standby that was promoted. The database will never show
    /// it; the client should be told so (HTTP 410) and may write it again.
    #[error(
        "the write at {position} was lost in a failover: timeline {timeline} took over at \
         {switched_at}, before the write reached it"
    )]
    WriteLost {
        /// Where the write committed.
        position: crate::wal_position::WalPosition,
        /// Where the database's current timeline left the write's.
        switched_at: Lsn,
        /// The database's current timeline.
        timeline: u32,
    },

    /// The replay tracker's thread could not be started.
    #[error("could not start the replay tracker thread: {0}")]
    TrackerStart(#[source] std::io::Error),

    /// The replay tracker's background task is gone.
    #[error("the replay tracker has stopped")]
    TrackerStopped,

    /// The local replica cannot serve a read now: it does not answer, or
    /// its reports contradict the primary's so its lag is unknown (see
    /// [`crate::ReplicaLag`]). Read from the primary instead (a
    /// [`crate::ConsistencyLayer`]'s fallback does).
    #[error("the local replica cannot serve this read: {reason}")]
    ReplicaUnavailable {
        /// Why, in words.
        reason: String,
    },

    /// The app's own listener failed while serving (see `Repo::serve`).
    #[error("the app's listener failed: {0}")]
    Listener(#[source] std::io::Error),
}

/// What a client is told about [`Error::WriteLost`], by the
/// `ConsistencyLayer` and by `ErrorResponse` alike.
pub(crate) const WRITE_LOST_ANSWER: &str = "an earlier write of this session was lost when the \
     database failed over: it is not in the database and will not appear; check and write it \
     again";

/// The one conversion from fly-rpc's errors: a refusal of this node's
/// credentials and an unknown procedure get their own variants; anything
/// else is [`Error::Rpc`].
impl From<fly_rpc::Error> for Error {
    fn from(error: fly_rpc::Error) -> Self {
        match error {
            fly_rpc::Error::Unauthorized { reason, .. } => Error::Unauthorized { reason },
            fly_rpc::Error::UnknownProcedure {
                name, peer_version, ..
            } => Error::UnknownProcedure { name, peer_version },
            other => Error::Rpc(other),
        }
    }
}

impl From<sqlx::Error> for Error {
    /// A database error becomes [`Error::Database`] (matchable by SQLSTATE
    /// wherever it is handled); anything else stays [`Error::Sql`].
    fn from(error: sqlx::Error) -> Self {
        match error.as_database_error() {
            Some(db) => Error::Database(DbError::from_sqlx(db)),
            None => Error::Sql(error),
        }
    }
}

/// Which of the three classes a failed write is in; from [`Error::outcome`].
///
/// ```
/// use fly_postgres::{Error, WriteOutcome};
///
/// fn advice(error: &Error) -> &'static str {
///     match error.outcome() {
///         WriteOutcome::Committed => "it was written: do not send it again",
///         WriteOutcome::NotCommitted => "nothing was written: safe to retry",
///         WriteOutcome::Unknown => "retry with the same request id to settle it",
///     }
/// }
/// # assert_eq!(advice(&Error::Config("x".into())), "nothing was written: safe to retry");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteOutcome {
    /// The write committed although the call failed (not replayed locally in
    /// time, or its output not readable as asked). Never retry it.
    Committed,
    /// Nothing was written: safe to retry, with or without the request id.
    NotCommitted,
    /// A request was sent and no definite answer came back: retry with the
    /// same [`Error::request_id`] to settle it.
    Unknown,
}

impl WriteOutcome {
    /// The outcome as the JSON value a client reads: `true`, `false` or
    /// `"unknown"`.
    pub fn as_json(self) -> serde_json::Value {
        match self {
            WriteOutcome::Committed => serde_json::Value::Bool(true),
            WriteOutcome::NotCommitted => serde_json::Value::Bool(false),
            WriteOutcome::Unknown => serde_json::Value::String("unknown".into()),
        }
    }
}

impl Error {
    /// Which class a failed write is in. The one classification:
    /// [`Error::is_committed`] and [`Error::is_maybe_committed`] read it.
    /// Errors that are not about a write (a failed read, bad configuration)
    /// are [`WriteOutcome::NotCommitted`]: nothing was written.
    pub fn outcome(&self) -> WriteOutcome {
        match self {
            Error::ReplicationTimeout { .. } | Error::CommittedButUnreadable { .. } => {
                WriteOutcome::Committed
            }
            Error::MaybeCommitted { .. } | Error::RpcTimeout { .. } => WriteOutcome::Unknown,
            Error::Database(_)
            | Error::App(_)
            | Error::Sql(_)
            | Error::NoPrimaryNode { .. }
            | Error::RequestIdReused { .. }
            | Error::AdHocStatementsDisabled { .. }
            | Error::InvalidRequestId { .. }
            | Error::Unauthorized { .. }
            | Error::UnknownProcedure { .. }
            | Error::Rpc(_)
            | Error::Primary { .. }
            | Error::NoConnection { .. }
            | Error::Decode { .. }
            | Error::Config(_)
            | Error::MissingEnv { .. }
            | Error::InvalidDatabaseUrl { .. }
            | Error::InvalidLsn(_)
            | Error::TrackerStart(_)
            | Error::TrackerStopped
            | Error::ReplicaUnavailable { .. }
            | Error::Listener(_)
            // It committed once, but nothing of it is in the database now:
            // writing it again is safe.
            | Error::WriteLost { .. } => WriteOutcome::NotCommitted,
        }
    }

    /// Whether the write may or may not have committed
    /// ([`Error::MaybeCommitted`], [`Error::RpcTimeout`]): do not report it
    /// as failed; settle it with [`Error::request_id`].
    pub fn is_maybe_committed(&self) -> bool {
        self.outcome() == WriteOutcome::Unknown
    }

    /// Whether the write certainly committed although the call failed
    /// ([`Error::ReplicationTimeout`], [`Error::CommittedButUnreadable`]):
    /// its output, where known, is in [`Error::committed_output`]. Do not
    /// retry it.
    pub fn is_committed(&self) -> bool {
        self.outcome() == WriteOutcome::Committed
    }

    /// The request id to retry with when the outcome is unknown (or the id
    /// that was refused as reused).
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::RpcTimeout { request_id, .. } | Error::RequestIdReused { request_id, .. } => {
                Some(request_id)
            }
            Error::MaybeCommitted { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// "Maybe committed": a request for `mutation` under `request_id` may
    /// have committed; the same id settles it. The one constructor.
    pub(crate) fn maybe_committed(
        mutation: &str,
        request_id: &str,
        attempts: u32,
        reason: impl Into<String>,
    ) -> Self {
        Error::MaybeCommitted {
            mutation: mutation.to_owned(),
            request_id: Some(request_id.to_owned()),
            attempts,
            reason: reason.into(),
        }
    }

    /// Committed, but where in the WAL is unknown, so this region cannot
    /// wait for it: committed-class, with the output.
    pub(crate) fn committed_position_unknown(output: &impl Serialize) -> Self {
        Error::CommittedButUnreadable {
            reason: "committed on the primary, but its WAL position could not be read to \
                     wait for, so this region may not show it yet"
                .to_owned(),
            output: serde_json::to_value(output).ok(),
        }
    }

    /// A failed wait for the replay of a committed write, as the write's
    /// error: always [`Error::ReplicationTimeout`], with the output (a
    /// tracker that stopped waited `waited` and saw no replay).
    pub(crate) fn with_committed_output(
        self,
        committed_lsn: Lsn,
        waited: Duration,
        output: &impl Serialize,
    ) -> Self {
        let output = serde_json::to_value(output).ok();
        match self {
            Error::ReplicationTimeout {
                replayed, waited, ..
            } => Error::ReplicationTimeout {
                committed_lsn,
                replayed,
                waited,
                output,
            },
            _ => Error::ReplicationTimeout {
                committed_lsn,
                replayed: None,
                waited,
                output,
            },
        }
    }

    /// Wraps an error of the app's own type, so a mutation can fail with it
    /// and the caller in any region gets it back with [`Error::app_error`].
    pub fn app<E: Serialize + Display>(error: E) -> Self {
        Error::App(AppError::new(&error))
    }

    /// The app's own error, when this is [`Error::App`] of that type.
    pub fn app_error<E: DeserializeOwned>(&self) -> Option<E> {
        match self {
            Error::App(app) => app.decode().ok(),
            _ => None,
        }
    }

    /// The database error, when PostgreSQL refused the statement.
    pub fn as_database_error(&self) -> Option<&DbError> {
        match self {
            Error::Database(db) => Some(db),
            _ => None,
        }
    }

    /// Whether the database (local, or the primary behind a write) could not
    /// be reached or could not serve: no connection, a broken one, a server
    /// shutting down or out of connections. Worth a retry later; for a write
    /// it means not committed (a write that may have is
    /// [`Error::is_maybe_committed`] instead).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::NoConnection { .. } => true,
            Error::Database(db) => db.is_unavailable(),
            Error::Sql(e) => crate::db_error::connection_failed(e),
            _ => false,
        }
    }

    /// Shorthand for a unique violation anywhere in the cluster.
    pub fn is_unique_violation(&self) -> bool {
        self.as_database_error()
            .is_some_and(DbError::is_unique_violation)
    }

    /// The output of a write that committed although the call failed
    /// ([`Error::is_committed`]): not replayed locally in time, or its
    /// result not readable as asked. For a mutation it is its `Output`; for
    /// an ad-hoc statement ([`crate::Repo::execute`] and the `fetch_*`
    /// calls) it is the [`crate::StatementResult`].
    ///
    /// `Ok(None)`: there is no output (the write did not commit, or
    /// committed without an output that could be had); `Err`
    /// ([`Error::Decode`]): the write committed with an output that is not
    /// a `T` (ask for the mutation's `Output` type). Either way a committed
    /// write stays committed: do not retry it.
    pub fn committed_output<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        match self {
            Error::ReplicationTimeout {
                output: Some(value),
                ..
            }
            | Error::CommittedButUnreadable {
                output: Some(value),
                ..
            } => T::deserialize(value).map(Some).map_err(|e| Error::Decode {
                message: format!(
                    "the committed output is not a {}: {e}",
                    std::any::type_name::<T>()
                ),
            }),
            _ => Ok(None),
        }
    }
}
