//! What travels between regions for a forwarded write: the call (the
//! mutation's arguments, serialized once), the committed reply, and the
//! error kinds, which the request record also keeps.

use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::app_error::AppError;
use crate::db_error::DbError;
use crate::error::Error;
use crate::lsn::Lsn;
use crate::mutation::Mutation;

/// The mutation, serialized once so a retry resends the same bytes.
#[derive(Serialize)]
#[serde(bound = "")]
pub(crate) struct Forwarded<M> {
    pub(super) args: Box<RawValue>,
    /// The library generated the request id (the caller did not choose
    /// one), so the record only has to outlive this call's retries.
    /// Absent from older callers: kept as long as a chosen one then.
    pub(super) generated: bool,
    /// The arguments decoded on arrival (where they are checked), taken
    /// by the handler so they are not decoded again; never sent. In a
    /// mutex only so the call stays `Sync` for any `M: Send` (it is only
    /// ever reached through `&mut`, never locked).
    #[serde(skip)]
    pub(super) decoded: Mutex<Option<M>>,
}

/// Checks on arrival that the arguments decode as `M`, so that a request
/// with bad arguments is refused by the RPC layer itself (HTTP 400 with the
/// decode error) before any transaction begins.
impl<'de, M: Mutation> Deserialize<'de> for Forwarded<M> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            args: Box<RawValue>,
            #[serde(default)]
            generated: bool,
        }
        let wire = Wire::deserialize(deserializer)?;
        let decoded = serde_json::from_str::<M>(wire.args.get()).map_err(|e| {
            serde::de::Error::custom(format!("arguments of `{}` do not decode: {e}", M::NAME))
        })?;
        Ok(Forwarded {
            args: wire.args,
            generated: wire.generated,
            decoded: Mutex::new(Some(decoded)),
        })
    }
}

/// A retry resends the same bytes; the decoded form stays with the
/// original (a caller's copy never has one).
impl<M> Clone for Forwarded<M> {
    fn clone(&self) -> Self {
        Forwarded {
            args: self.args.clone(),
            generated: self.generated,
            decoded: Mutex::new(None),
        }
    }
}

impl<M: Mutation> Forwarded<M> {
    /// The mutation: as decoded on arrival, or back from its serialized
    /// arguments (for a direct write after the forwarded attempts).
    pub(crate) fn mutation(&mut self) -> Result<M, Error> {
        let decoded = self
            .decoded
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(decoded) = decoded.take() {
            return Ok(decoded);
        }
        serde_json::from_str(self.args.get()).map_err(|e| Error::Decode {
            message: format!("arguments of `{}` do not decode: {e}", M::NAME),
        })
    }

    /// The arguments' JSON text, as sent.
    pub(crate) fn args(&self) -> &str {
        self.args.get()
    }

    pub(crate) fn new(mutation: &M, generated_id: bool) -> Result<Self, Error> {
        let args = serde_json::value::to_raw_value(mutation).map_err(|e| Error::Decode {
            message: format!("mutation `{}` does not serialize: {e}", M::NAME),
        })?;
        Ok(Forwarded {
            args,
            generated: generated_id,
            decoded: Mutex::new(None),
        })
    }

    /// Whether the library generated the write's request id.
    pub(crate) fn generated_id(&self) -> bool {
        self.generated
    }
}

/// A committed write's output and the LSN to wait for.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Committed<O> {
    pub(crate) output: O,
    pub(crate) lsn: Lsn,
    /// The primary's timeline at the commit (absent in replies from
    /// versions that did not send it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeline: Option<u32>,
    /// Microseconds the transaction took next to the primary (absent in
    /// replies from versions that did not measure it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) primary_us: Option<u64>,
}

/// How a failed forwarded write travels back.
#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
pub(crate) enum WireError {
    #[error("{0}")]
    Database(DbError),
    #[error("{0}")]
    App(AppError),
    #[error("{0}")]
    BadArgs(String),
    #[error("{0}")]
    Primary(String),
    /// The write could not start next to the primary (no connection, a
    /// read-only database): nothing ran; worth retrying.
    #[error("{0}")]
    Unavailable(String),
    /// Retry with the same request id: the write may have committed (or
    /// did, but its LSN is unknown); the retry answers from the record.
    #[error("{0}")]
    Retry(String),
    /// This node does not serve forwarded ad-hoc statements.
    #[error("ad-hoc statements are disabled on the primary region's node")]
    AdHocDisabled,
    /// The request id belongs to another write.
    #[error("request id {request_id} is recorded for another write")]
    Reused {
        request_id: String,
        recorded_mutation: String,
    },
    /// The mutation's `fetch_one` found no row: a definite failure, as in
    /// the primary region (a 404, not a 503 a client would retry forever).
    /// An older peer reads this kind as "may have run", which a retry with
    /// the request id settles.
    #[error("{0}")]
    NotFound(String),
}

impl WireError {
    /// The wire form of a definite failure: the answer to the caller, and
    /// what the request record keeps.
    pub(crate) fn of(error: &Error) -> Self {
        match error {
            Error::Database(db) => WireError::Database(db.clone()),
            Error::App(app) => WireError::App(app.clone()),
            Error::RequestIdReused {
                request_id,
                recorded_mutation,
            } => WireError::Reused {
                request_id: request_id.clone(),
                recorded_mutation: recorded_mutation.clone(),
            },
            Error::Sql(sqlx::Error::RowNotFound) => WireError::NotFound(error.to_string()),
            other => WireError::Primary(other.to_string()),
        }
    }
}

impl From<Error> for WireError {
    fn from(error: Error) -> Self {
        WireError::of(&error)
    }
}

impl From<WireError> for Error {
    fn from(error: WireError) -> Self {
        match error {
            WireError::Database(db) => Error::Database(db),
            WireError::App(app) => Error::App(app),
            WireError::BadArgs(message) => Error::Rpc(fly_rpc::Error::BadRequest {
                peer: "primary region".into(),
                status: 400,
                message,
            }),
            WireError::Primary(message)
            | WireError::Retry(message)
            | WireError::Unavailable(message) => Error::Primary { message },
            WireError::Reused {
                request_id,
                recorded_mutation,
            } => Error::RequestIdReused {
                request_id,
                recorded_mutation,
            },
            WireError::AdHocDisabled => Error::AdHocStatementsDisabled { on_primary: true },
            WireError::NotFound(_) => Error::Sql(sqlx::Error::RowNotFound),
        }
    }
}
