//! How one attempt at a write's transaction ended: the outcome every path
//! (here, forwarded, direct) sorts by.

use super::xact_probe::XactProbe;
use crate::error::Error;
use crate::wal_position::WalPosition;

/// How a write ended, when it did not simply fail.
#[derive(Debug)]
pub(crate) enum Outcome<O> {
    /// Committed; readers wait for this LSN.
    Committed(O, WalPosition),
    /// Committed, but the LSN could not be read afterwards (the connection
    /// broke right after COMMIT). A retry with the same request id answers
    /// with the recorded output and a fresh LSN.
    CommittedLsnUnknown(O),
    /// A write without a record whose COMMIT answer was lost: the output,
    /// and what settles whether it committed.
    Unsettled(O, XactProbe, Error),
}

/// Why a write did not commit, or may not have.
#[derive(Debug)]
pub(crate) enum Failure {
    /// It did not commit (rolled back, or refused).
    NotCommitted(Error),
    /// COMMIT's outcome is unknown (the connection failed, or the server
    /// stopped while COMMIT waited): it may or may not have committed.
    /// Only a retry with the same request id can tell, safely.
    Unknown(Error),
    /// The write could not start (no connection, a read-only database after
    /// a failover): nothing ran, and the request id was not claimed, so this
    /// says nothing about an earlier attempt. Worth retrying.
    NotStarted(Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::NotCommitted(error)
    }
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        Failure::NotCommitted(error.into())
    }
}
