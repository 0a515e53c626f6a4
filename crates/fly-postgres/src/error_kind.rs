//! What kind of failure an [`Error`] is, for a client: the one mapping
//! from which the HTTP answer (status and `code`) is derived.

use crate::error::Error;

/// The kind of an [`Error`], from [`Error::kind`]: what a client can do
/// about it. [`ErrorKind::as_str`] is the `code` of the JSON error body
/// and [`ErrorKind::http_status`] its status.
///
/// ```
/// use fly_postgres::{Error, ErrorKind};
///
/// let error = Error::Config("no DATABASE_URL".into());
/// assert_eq!(error.kind(), ErrorKind::Internal);
/// assert_eq!(error.kind().http_status(), 500);
/// assert_eq!(ErrorKind::MaybeCommitted.as_str(), "maybe_committed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The write committed although the call failed: never send it again.
    Committed,
    /// The write may have committed: settle it with its request id.
    MaybeCommitted,
    /// No primary-region instance could take the write; nothing was
    /// written.
    PrimaryUnreachable,
    /// A unique or foreign-key constraint refused the write.
    Conflict,
    /// A check or not-null constraint refused the data.
    Invalid,
    /// A serialization failure or deadlock: nothing was written; try again.
    TryAgain,
    /// The database could not be reached or could not serve.
    Unavailable,
    /// The mutation failed with the app's own error.
    Rejected,
    /// A write of this session was lost in a failover.
    WriteLost,
    /// The request id was already used for a different write.
    RequestIdReused,
    /// The request id is malformed.
    BadRequest,
    /// A statement expected a row and found none.
    NotFound,
    /// Anything a client cannot act on (configuration, a bug).
    Internal,
}

impl ErrorKind {
    /// The kind as the `code` of an error body and a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Committed => "committed",
            ErrorKind::MaybeCommitted => "maybe_committed",
            ErrorKind::PrimaryUnreachable => "primary_unreachable",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Invalid => "invalid",
            ErrorKind::TryAgain => "try_again",
            ErrorKind::Unavailable => "database_unavailable",
            ErrorKind::Rejected => "rejected",
            ErrorKind::WriteLost => "write_lost",
            ErrorKind::RequestIdReused => "idempotency_key_reused",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Internal => "internal",
        }
    }

    /// The HTTP status an app answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Committed => 202,
            ErrorKind::BadRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::WriteLost => 410,
            ErrorKind::Invalid | ErrorKind::Rejected | ErrorKind::RequestIdReused => 422,
            ErrorKind::Internal => 500,
            ErrorKind::MaybeCommitted
            | ErrorKind::PrimaryUnreachable
            | ErrorKind::TryAgain
            | ErrorKind::Unavailable => 503,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The kind of failure, for a client; exhaustive over the variants, so
    /// a new one must be placed here.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ReplicationTimeout { .. } | Error::CommittedButUnreadable { .. } => {
                ErrorKind::Committed
            }
            Error::MaybeCommitted { .. } | Error::RpcTimeout { .. } => ErrorKind::MaybeCommitted,
            Error::NoPrimaryNode { .. }
            | Error::Unauthorized { .. }
            | Error::UnknownProcedure { .. }
            | Error::Rpc(_)
            | Error::Primary { .. } => ErrorKind::PrimaryUnreachable,
            Error::Database(db) => {
                if db.is_unique_violation() || db.is_foreign_key_violation() {
                    ErrorKind::Conflict
                } else if db.is_check_violation() || db.is_not_null_violation() {
                    ErrorKind::Invalid
                } else if db.is_serialization_failure() || db.is_deadlock() {
                    ErrorKind::TryAgain
                } else if db.is_unavailable() {
                    ErrorKind::Unavailable
                } else {
                    ErrorKind::Internal
                }
            }
            Error::App(_) => ErrorKind::Rejected,
            Error::WriteLost { .. } => ErrorKind::WriteLost,
            Error::RequestIdReused { .. } => ErrorKind::RequestIdReused,
            Error::InvalidRequestId { .. } => ErrorKind::BadRequest,
            Error::Sql(sqlx::Error::RowNotFound) => ErrorKind::NotFound,
            Error::NoConnection { .. } | Error::ReplicaUnavailable { .. } => ErrorKind::Unavailable,
            Error::Sql(_) if self.is_unavailable() => ErrorKind::Unavailable,
            Error::Sql(_)
            | Error::AdHocStatementsDisabled { .. }
            | Error::Decode { .. }
            | Error::Config(_)
            | Error::MissingEnv { .. }
            | Error::InvalidDatabaseUrl { .. }
            | Error::InvalidLsn(_)
            | Error::TrackerStart(_)
            | Error::TrackerStopped
            | Error::Listener(_) => ErrorKind::Internal,
        }
    }
}
