//! The crate's one error type.

use std::time::Duration;

use crate::lsn::{Lsn, LsnParseError};

/// Everything `fly-postgres` can fail with. Match on the variant; new variants
/// may be added in minor releases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The local database failed (connection, query, decode).
    #[error("local database error: {0}")]
    Sql(#[from] sqlx::Error),

    /// The local replica did not replay `committed_lsn` in time. The write
    /// that produced `committed_lsn` DID commit on the primary: do not retry
    /// it; it will become visible locally once replay catches up.
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
    },

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

    /// The replay tracker's thread could not be started.
    #[error("could not start the replay tracker thread: {0}")]
    TrackerStart(#[source] std::io::Error),

    /// The replay tracker's background task is gone (the tracker was shut
    /// down while a wait was pending).
    #[error("the replay tracker has stopped")]
    TrackerStopped,
}
