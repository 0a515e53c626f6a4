//! A write in the primary region: run here, next to the primary, with the
//! same exactly-once record and the same retry rule as a forwarded write.

use std::sync::Arc;
use std::time::Duration;

use super::attempt_outcome::{Failure, Outcome};
use super::reply::Reply;
use super::retry_policy::{Backoff, Deadline};
use super::server_state::ServerState;
use super::transaction::{Progress, run_once_noting};
use crate::error::Error;
use crate::mutation::Mutation;
use crate::request_key::RequestKey;
use crate::wal_position::WalPosition;

/// Runs `mutation` on the local database (the primary) under `key`, in a
/// task of its own: a caller that is dropped (a client gone, a timeout)
/// never leaves COMMIT half-done, and the write's record tells its outcome
/// to a retry with the same request id.
///
/// An attempt whose failure proves it did not run (no connection, a
/// connection that died before COMMIT was sent, a server shutting down or
/// in recovery while the leader moves), or whose COMMIT's outcome is
/// unknown, is retried with the same request id on a fresh connection,
/// by the [retry policy](super::retry_policy) until `deadline`: the record answers
/// a retry of a write that did commit, so it commits once, and a
/// PostgreSQL failover costs a primary-region caller latency, as it costs
/// a forwarded one. At the deadline an unknown outcome is
/// [`Error::MaybeCommitted`] with the id; a definite failure keeps its
/// class.
pub(super) async fn write_locally<M: Mutation>(
    state: Arc<ServerState>,
    args: String,
    key: RequestKey,
    deadline: Deadline,
) -> Result<Reply<M::Output>, Error> {
    let request_id = key.id.clone();
    let task = tokio::spawn(attempts::<M>(state, args, key, deadline));
    match task.await {
        Ok(result) => result,
        // A panic in the mutation: its record, if any, still tells.
        Err(e) => Err(Error::maybe_committed(
            M::NAME,
            &request_id,
            1,
            format!("the write's task ended abnormally: {e}"),
        )),
    }
}

async fn attempts<M: Mutation>(
    state: Arc<ServerState>,
    args: String,
    key: RequestKey,
    deadline: Deadline,
) -> Result<Reply<M::Output>, Error> {
    let mut backoff = Backoff::new();
    let mut attempt = 0u32;
    // An attempt's COMMIT had an unknown outcome: the write may have
    // committed, and only its record can tell.
    let mut maybe = false;
    loop {
        attempt += 1;
        let (e, unknown) = match one_attempt::<M>(&state, &args, &key, &deadline).await? {
            Ok(Outcome::Committed(output, position)) => {
                return Ok(reply(output, Some(position), attempt));
            }
            // Committed; only the consistency token misses its LSN.
            Ok(Outcome::CommittedLsnUnknown(output)) => return Ok(reply(output, None, attempt)),
            Err(Failure::NotCommitted(e)) => return Err(e),
            Err(Failure::Unknown(e)) => (e, true),
            Err(Failure::NotStarted(e)) => (e, false),
        };
        maybe |= unknown;
        if deadline.passed() {
            return Err(at_deadline::<M>(e, maybe, &key, attempt));
        }
        metrics::counter!("fly_postgres_write_retries_total", "mutation" => M::NAME).increment(1);
        tracing::warn!(error = %e, attempt, unknown, request_id = %key.id, "local write did not finish; retrying with the same request id");
        // The pause took what was left: no attempt would get any.
        if !backoff.pause(&deadline).await {
            return Err(at_deadline::<M>(e, maybe, &key, attempt));
        }
    }
}

fn reply<O>(output: O, position: Option<WalPosition>, attempts: u32) -> Reply<O> {
    Reply {
        output,
        position,
        primary_us: None,
        attempts,
    }
}

/// One attempt in a task of its own, ended by the deadline unless its
/// COMMIT is under way.
async fn one_attempt<M: Mutation>(
    state: &Arc<ServerState>,
    args: &str,
    key: &RequestKey,
    deadline: &Deadline,
) -> Result<Result<Outcome<M::Output>, Failure>, Error> {
    // Each attempt gets the mutation anew from its arguments, as a
    // forwarded write does: what runs here is what would run if this
    // write came from another region.
    let mutation: M = serde_json::from_str(args).map_err(|e| Error::Decode {
        message: format!(
            "the arguments of `{}` do not survive JSON (as a forwarded write's must): {e}",
            M::NAME
        ),
    })?;
    // A database that goes silent (a partition: no reset, no answer)
    // would hold an attempt forever; the write's deadline ends the wait
    // for it, as it ends a forwarded write's. The attempt itself runs on
    // in its task (cancelling sqlx mid-exchange could leave a broken
    // connection in the pool) but may no longer reach COMMIT unless it
    // already has: exactly one of the two is decided.
    let progress = Arc::new(Progress::default());
    let mut running = tokio::spawn({
        let (state, key, progress) = (Arc::clone(state), key.clone(), Arc::clone(&progress));
        async move { run_once_noting(&state, mutation, Some(&key), &progress).await }
    });
    let left = deadline.left();
    let joined = match tokio::time::timeout(left, &mut running).await {
        Ok(joined) => joined,
        Err(_) => match cut_short(state, left, &progress).await {
            Some(failure) => Ok(Err(failure)),
            // COMMIT is under way: its answer, or the connection's
            // failure, says more than "unknown" would.
            None => running.await,
        },
    };
    Ok(joined.unwrap_or_else(|panicked| {
        Err(Failure::Unknown(Error::Primary {
            message: format!("the write's attempt ended abnormally: {panicked}"),
        }))
    }))
}

/// An attempt the deadline caught, by how far it got: still waiting for a
/// connection (or BEGIN's answer) is a pool failure, explained as one;
/// inside the transaction it is given up and nothing will commit; with
/// COMMIT under way it cannot be given up (`None`).
async fn cut_short(state: &ServerState, waited: Duration, progress: &Progress) -> Option<Failure> {
    if !progress.abandon() {
        return None;
    }
    if progress.began() {
        return Some(Failure::NotStarted(Error::Primary {
            message: format!(
                "the write did not finish within its deadline ({waited:?} for this attempt): \
                 the database went silent or the mutation ran longer; nothing was committed"
            ),
        }));
    }
    Some(Failure::NotStarted(
        crate::pool_diagnosis::explain_pool_error(&state.pool, sqlx::Error::PoolTimedOut).await,
    ))
}

/// The error a write ends with at its deadline: "maybe committed" with its
/// id when any attempt's COMMIT had an unknown outcome, else the last
/// attempt's own.
fn at_deadline<M: Mutation>(last: Error, maybe: bool, key: &RequestKey, attempts: u32) -> Error {
    if maybe {
        Error::maybe_committed(
            M::NAME,
            &key.id,
            attempts,
            format!("the write's outcome is unknown: {last}"),
        )
    } else {
        last
    }
}
