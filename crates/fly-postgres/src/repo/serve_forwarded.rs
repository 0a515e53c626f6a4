//! The primary region's side of a forwarded write: the mutation arrives as
//! a fly-rpc procedure, runs in one transaction under the caller's request
//! id, and goes back as [`Committed`] or a [`WireError`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use fly_rpc::{CallContext, Procedure};
use tracing::Instrument;

use super::attempt_outcome::{Failure, Outcome};
use super::server_state::ServerState;
use super::transaction::run_once;
use super::wire::{Committed, Forwarded, WireError};
use crate::mutation::Mutation;
use crate::request_key::RequestKey;
use crate::statement::Statement;

impl<M: Mutation> Procedure for Forwarded<M> {
    const NAME: &'static str = M::NAME;
    type Output = Committed<M::Output>;
    type Error = WireError;
    type State = ServerState;

    async fn run(
        mut self,
        state: Arc<ServerState>,
        ctx: CallContext,
    ) -> Result<Committed<M::Output>, WireError> {
        refuse_ad_hoc::<M>(&state, &ctx)?;
        let key = request_key::<M>(&self, &state, &ctx)?;
        let mutation = self
            .mutation()
            .map_err(|e| WireError::BadArgs(e.to_string()))?;
        state.served.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "fly_postgres.serve_write",
            mutation = M::NAME,
            caller_region = %ctx.caller_region,
            request_id = ctx.idempotency_key.as_deref().unwrap_or(""),
        );
        let started = Instant::now();
        let outcome = run_once(&state, mutation, key.as_ref())
            .instrument(span)
            .await;
        let primary_us = u64::try_from(started.elapsed().as_micros()).ok();
        reply::<M>(&state, outcome, primary_us)
    }
}

/// Forwarded ad-hoc statements run only where the node opted in.
fn refuse_ad_hoc<M: Mutation>(state: &ServerState, ctx: &CallContext) -> Result<(), WireError> {
    if M::NAME == <Statement as Mutation>::NAME && !state.ad_hoc_statements {
        metrics::counter!("fly_postgres_ad_hoc_refused_total", "from" => "forwarded").increment(1);
        tracing::debug!(caller_region = %ctx.caller_region, "refused a forwarded ad-hoc statement: ad_hoc_statements is off");
        return Err(WireError::AdHocDisabled);
    }
    Ok(())
}

/// The write's request key. Request ids come from the network: the same
/// rule as the caller's (they go into SQL text and the record), checked
/// before anything runs.
fn request_key<M: Mutation>(
    call: &Forwarded<M>,
    state: &ServerState,
    ctx: &CallContext,
) -> Result<Option<RequestKey>, WireError> {
    let Some(id) = &ctx.idempotency_key else {
        return Ok(None);
    };
    crate::request_key::validate(id).map_err(|e| WireError::BadArgs(e.to_string()))?;
    let keep = state.retention.of(call.generated_id());
    RequestKey::of_json(id.clone(), M::NAME, call.args(), keep)
        .map(Some)
        .map_err(|e| WireError::BadArgs(format!("arguments of `{}` do not decode: {e}", M::NAME)))
}

/// What the caller is told: the commit, or a failure it can act on (retry
/// with the same id when the write may have run, or could not start).
fn reply<M: Mutation>(
    state: &ServerState,
    outcome: Result<Outcome<M::Output>, Failure>,
    primary_us: Option<u64>,
) -> Result<Committed<M::Output>, WireError> {
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
        // Only a write without a request id keeps no record.
        Ok(Outcome::Unsettled(_, _, e)) | Err(Failure::Unknown(e)) => Err(WireError::Retry(
            format!("COMMIT's outcome is unknown ({e}); retry with the same request id"),
        )),
        Err(Failure::NotCommitted(e)) => Err(e.into()),
        Err(Failure::NotStarted(e)) => Err(WireError::Unavailable(format!(
            "the write could not start next to the primary: {e}"
        ))),
    }
}
