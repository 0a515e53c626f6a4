//! A mutation shipped to the primary region as a fly-rpc procedure.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fly_rpc::{CallContext, Procedure};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::server_state::ServerState;
use super::transaction::{Failure, Outcome, run_once};
use crate::app_error::AppError;
use crate::db_error::DbError;
use crate::error::Error;
use crate::lsn::Lsn;
use crate::mutation::Mutation;
use crate::request_key::RequestKey;
use tracing::Instrument;

/// The mutation, serialized once so a retry resends the same bytes.
#[derive(Serialize)]
#[serde(bound = "")]
pub(crate) struct Forwarded<M> {
    args: Box<RawValue>,
    /// The library generated the request id (the caller did not choose
    /// one), so the record only has to outlive this call's retries.
    /// Absent from older callers: kept as long as a chosen one then.
    generated: bool,
    #[serde(skip)]
    _mutation: PhantomData<fn() -> M>,
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
        serde_json::from_str::<M>(wire.args.get()).map_err(|e| {
            serde::de::Error::custom(format!("arguments of `{}` do not decode: {e}", M::NAME))
        })?;
        Ok(Forwarded {
            args: wire.args,
            generated: wire.generated,
            _mutation: PhantomData,
        })
    }
}

impl<M> Clone for Forwarded<M> {
    fn clone(&self) -> Self {
        Forwarded {
            args: self.args.clone(),
            generated: self.generated,
            _mutation: PhantomData,
        }
    }
}

impl<M: Mutation> Forwarded<M> {
    /// The mutation back from its serialized arguments (for a direct write
    /// after the forwarded attempts).
    pub(crate) fn mutation(&self) -> Result<M, Error> {
        serde_json::from_str(self.args.get()).map_err(|e| Error::Decode {
            message: format!("arguments of `{}` do not decode: {e}", M::NAME),
        })
    }

    pub(crate) fn new(mutation: &M, generated_id: bool) -> Result<Self, Error> {
        let args = serde_json::value::to_raw_value(mutation).map_err(|e| Error::Decode {
            message: format!("mutation `{}` does not serialize: {e}", M::NAME),
        })?;
        Ok(Forwarded {
            args,
            generated: generated_id,
            _mutation: PhantomData,
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

impl<M: Mutation> Procedure for Forwarded<M> {
    const NAME: &'static str = M::NAME;
    type Output = Committed<M::Output>;
    type Error = WireError;
    type State = ServerState;

    async fn run(
        self,
        state: Arc<ServerState>,
        ctx: CallContext,
    ) -> Result<Committed<M::Output>, WireError> {
        if M::NAME == <crate::statement::Statement as Mutation>::NAME && !state.ad_hoc_statements {
            metrics::counter!("fly_postgres_ad_hoc_refused_total", "from" => "forwarded")
                .increment(1);
            tracing::debug!(caller_region = %ctx.caller_region, "refused a forwarded ad-hoc statement: ad_hoc_statements is off");
            return Err(WireError::AdHocDisabled);
        }
        let bad_args = |e: serde_json::Error| {
            WireError::BadArgs(format!("arguments of `{}` do not decode: {e}", M::NAME))
        };
        // Request ids come from the network: the same rule as the caller's
        // (they go into SQL text and the record), checked before anything
        // runs.
        if let Some(id) = &ctx.idempotency_key {
            crate::request_key::validate(id).map_err(|e| WireError::BadArgs(e.to_string()))?;
        }
        let mutation: M = serde_json::from_str(self.args.get()).map_err(bad_args)?;
        let key = match ctx.idempotency_key.clone() {
            Some(id) => {
                let args: serde_json::Value =
                    serde_json::from_str(self.args.get()).map_err(bad_args)?;
                Some(RequestKey::new(
                    id,
                    M::NAME,
                    &args,
                    state.retention.of(self.generated),
                ))
            }
            None => None,
        };
        state.served.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "fly_postgres.serve_write",
            mutation = M::NAME,
            caller_region = %ctx.caller_region,
            request_id = ctx.idempotency_key.as_deref().unwrap_or(""),
        );
        let started = std::time::Instant::now();
        let outcome = run_once(&state, mutation, key.as_ref())
            .instrument(span)
            .await;
        let primary_us = u64::try_from(started.elapsed().as_micros()).ok();
        match outcome {
            Ok(Outcome::Committed(output, position)) => {
                if let Some(hook) = &state.after_commit {
                    hook(M::NAME);
                }
                Ok(Committed {
                    output,
                    lsn: position.lsn,
                    timeline: position.timeline,
                    primary_us,
                })
            }
            Ok(Outcome::CommittedLsnUnknown(_)) => Err(WireError::Retry(
                "the write committed but its LSN could not be read; retry with the same request id"
                    .into(),
            )),
            Err(Failure::Unknown(e)) => Err(WireError::Retry(format!(
                "COMMIT's outcome is unknown ({e}); retry with the same request id"
            ))),
            Err(Failure::NotCommitted(e)) => Err(e.into()),
            Err(Failure::NotStarted(e)) => Err(WireError::Unavailable(format!(
                "the write could not start next to the primary: {e}"
            ))),
        }
    }
}

/// How one attempt of a forwarded write failed.
#[derive(Debug)]
pub(crate) enum AttemptFailure {
    /// Worth another attempt with the same request id before the deadline.
    /// `sent`: the request may have reached the primary region (so the
    /// write may have committed).
    Transient { sent: bool, error: fly_rpc::Error },
    /// The primary region answered for this request id: the write did not
    /// commit (or, for `maybe`, the answer settles nothing, such as a panic).
    Final { maybe: bool, error: fly_rpc::Error },
}

/// Sorts a fly-rpc failure of one attempt.
pub(crate) fn classify(error: fly_rpc::Error) -> AttemptFailure {
    let sent = error.may_have_run();
    match &error {
        fly_rpc::Error::Timeout { .. }
        | fly_rpc::Error::Transport { .. }
        | fly_rpc::Error::NoNodeInRegion { .. }
        | fly_rpc::Error::Busy { .. }
        | fly_rpc::Error::Discovery { .. } => AttemptFailure::Transient { sent, error },
        // Every instance asked lacked the mutation until the attempt's
        // deadline (a deploy in progress): nothing ran; a sibling or the
        // next build may have it.
        fly_rpc::Error::UnknownProcedure { .. } => AttemptFailure::Transient { sent: false, error },
        fly_rpc::Error::Remote(remote) => match remote.decode::<WireError>() {
            // The primary region could not start the write (pool, failover):
            // nothing ran for this attempt.
            Ok(WireError::Unavailable(_)) => AttemptFailure::Transient { sent: false, error },
            // It may have committed; the record will tell.
            Ok(WireError::Retry(_)) => AttemptFailure::Transient { sent: true, error },
            Ok(_) => AttemptFailure::Final {
                maybe: false,
                error,
            },
            // A kind a newer build sends: it may have run the write, so only
            // a retry with the same request id can settle it.
            Err(_) => {
                note_unknown_wire_error(remote.message());
                AttemptFailure::Transient { sent: true, error }
            }
        },
        _ => AttemptFailure::Final { maybe: sent, error },
    }
}

/// Maps a definite fly-rpc failure of a forwarded write to the crate's error.
pub(crate) fn from_rpc(error: fly_rpc::Error) -> Error {
    match error {
        fly_rpc::Error::Remote(remote) => match remote.decode::<WireError>() {
            Ok(wire) => wire.into(),
            Err(_) => Error::Primary {
                message: remote.message().to_owned(),
            },
        },
        fly_rpc::Error::Unauthorized { reason, .. } => Error::Unauthorized { reason },
        fly_rpc::Error::UnknownProcedure {
            name, peer_version, ..
        } => Error::UnknownProcedure { name, peer_version },
        // The primary region answered "committed" with an output this
        // build cannot read: committed, and saying so now beats retrying.
        fly_rpc::Error::UndecodableOutput {
            procedure, message, ..
        } => Error::CommittedButUnreadable {
            reason: format!(
                "`{procedure}` committed in the primary region, but its output does not \
                 decode here ({message}): its Output type must survive a JSON round trip"
            ),
            output: None,
        },
        other => Error::Rpc(other),
    }
}

/// Counts a wire error this version cannot read; logs the first only.
fn note_unknown_wire_error(message: &str) {
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    metrics::counter!("fly_postgres_unknown_wire_errors_total").increment(1);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            message,
            "the primary region answered with an error this version cannot read (a newer \
             build?); retrying with the same request id to settle the write; logged once"
        );
    }
}
