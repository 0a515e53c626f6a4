//! A write in the primary region: run here, next to the primary, exactly
//! once, with the same retry rule as a forwarded write.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use super::attempt_outcome::{Failure, Outcome};
use super::local_write_end::Ended;
use super::reply::Reply;
use super::retry_policy::{Backoff, Deadline};
use super::server_state::ServerState;
use super::transaction::{Progress, position_on_another_connection, run_once_noting};
use super::unrecorded::Final;
use super::xact_probe::XactRef;
use super::xact_settle::{Settled, settle};
use crate::error::Error;
use crate::mutation::Mutation;
use crate::request_key::RequestKey;
use crate::wal_position::WalPosition;

/// Runs the mutation (from its JSON `args`) on the local database (the
/// primary) under request id `id`, in a task of its own: a caller that is
/// dropped (a client gone, a timeout) never leaves COMMIT half-done.
///
/// With a `key` the write keeps an exactly-once record, as a forwarded one
/// does, which answers a retry with the same id. Without one it keeps
/// none: its outcome stays in this process until the caller takes it (see
/// [`super::unrecorded`]), and a COMMIT whose answer was lost is settled
/// by asking the database whether the transaction committed (see
/// [`super::xact_settle`]) before anything runs again.
///
/// An attempt whose failure proves it did not run (no connection, a
/// connection that died before COMMIT was sent, a server shutting down or
/// in recovery while the leader moves), or whose COMMIT's outcome is
/// unknown, is retried on a fresh connection, by the [retry
/// policy](super::retry_policy) until `deadline`, once the record or the
/// database says the write did not commit: it commits once, and a
/// PostgreSQL failover costs a primary-region caller latency, as it costs a
/// forwarded one. At the deadline an unknown outcome is
/// [`Error::MaybeCommitted`] with the id that settles it; a definite
/// failure keeps its class.
pub(super) async fn write_locally<M: Mutation>(
    state: Arc<ServerState>,
    args: String,
    id: String,
    key: Option<RequestKey>,
    deadline: Deadline,
) -> Result<Reply<M::Output>, Error> {
    // Without a record, the outcome is kept in this process until the
    // caller takes it: a caller that is gone left it for a retry by id.
    let ticket = key
        .is_none()
        .then(|| state.unrecorded.register(&id, M::NAME, &args));
    let task = tokio::spawn({
        let (state, id, ticket) = (Arc::clone(&state), id.clone(), ticket.clone());
        async move {
            let attempts = attempts::<M>(&state, args, &id, key.as_ref(), deadline);
            let ended = match AssertUnwindSafe(attempts).catch_unwind().await {
                Ok(ended) => ended,
                // A panic in the mutation: a record, if any, still tells;
                // without one, nothing can.
                Err(_) => Ended::Failed(Error::maybe_committed(
                    M::NAME,
                    &id,
                    1,
                    "the write's task ended abnormally (a panic in the mutation?)",
                )),
            };
            match ticket {
                // Its caller gets "maybe committed"; a retry settles it from
                // what is kept.
                Some(ticket) if matches!(ended, Ended::Unsettled { .. }) => {
                    ticket.keep(ended.kept());
                    Some(ended)
                }
                // Left in the slot for the caller to take.
                Some(ticket) => {
                    ticket.end(ended);
                    None
                }
                None => Some(ended),
            }
        }
    });
    let ended = match (task.await, &ticket) {
        (Ok(Some(ended)), _) => ended,
        (Ok(None), Some(ticket)) => state
            .unrecorded
            .take::<Ended<M::Output>>(&id, ticket, Ended::kept)
            .unwrap_or_else(|| {
                Ended::Failed(Error::maybe_committed(
                    M::NAME,
                    &id,
                    1,
                    "the write's outcome was not where it was left",
                ))
            }),
        // Only a write without a record leaves its outcome; the task
        // cannot panic, but the runtime may be shutting down.
        (Ok(None), None) | (Err(_), None) => {
            return Err(Error::maybe_committed(
                M::NAME,
                &id,
                1,
                "the write's task ended abnormally",
            ));
        }
        (Err(e), Some(ticket)) => {
            let why = format!("the write's task ended abnormally: {e}");
            ticket.keep(Final::Unknown(why.clone()));
            return Err(Error::maybe_committed(M::NAME, &id, 1, why));
        }
    };
    ended.into_result(M::NAME, &id)
}

/// A COMMIT whose answer was lost, of a write without a record.
struct Unsettled<O> {
    output: O,
    xact: XactRef,
    pid: i32,
    error: Error,
}

impl<O> Unsettled<O> {
    fn ended(self, attempts: u32, why: Option<String>) -> Ended<O> {
        let error = match why {
            Some(why) => Error::Primary {
                message: format!("{}; {why}", self.error),
            },
            None => self.error,
        };
        Ended::Unsettled {
            output: self.output,
            xact: self.xact,
            pid: self.pid,
            error,
            attempts,
        }
    }
}

async fn attempts<M: Mutation>(
    state: &Arc<ServerState>,
    args: String,
    id: &str,
    key: Option<&RequestKey>,
    deadline: Deadline,
) -> Ended<M::Output> {
    let mut backoff = Backoff::new();
    let mut attempt = 0u32;
    // With a record: an attempt's COMMIT had an unknown outcome, so the
    // write may have committed, and only its record can tell.
    let mut maybe = false;
    // Without one: a COMMIT to settle before anything runs again.
    let mut unsettled: Option<Unsettled<M::Output>> = None;
    let system_id = match key {
        Some(_) => 0,
        None => match state.system_id().await {
            Ok(system_id) => system_id,
            Err(e) => return Ended::Failed(e),
        },
    };
    loop {
        let settling = match unsettled.take() {
            None => None,
            Some(u) => match settle(&state.pool, &u.xact, Some(u.pid)).await {
                Ok(Settled::Committed) => {
                    let position = position_on_another_connection(state).await.ok();
                    return Ended::Replied(reply(u.output, position, attempt));
                }
                Ok(Settled::NotCommitted) => {
                    tracing::warn!(request_id = %id, xid = u.xact.xid, "a write's lost COMMIT did not commit; running it again");
                    None
                }
                Ok(Settled::Undecidable(why)) => return u.ended(attempt, Some(why)),
                Ok(Settled::Pending(why)) => {
                    unsettled = Some(u);
                    Some(Error::Primary { message: why })
                }
                Err(e) => {
                    unsettled = Some(u);
                    Some(e)
                }
            },
        };
        let e = match settling {
            Some(e) => e,
            None => {
                attempt += 1;
                let (e, unknown) = match one_attempt::<M>(state, &args, key, &deadline).await {
                    Err(e) => return Ended::Failed(e),
                    Ok(Ok(Outcome::Committed(output, position))) => {
                        return Ended::Replied(reply(output, Some(position), attempt));
                    }
                    // Committed; only the consistency token misses its LSN.
                    Ok(Ok(Outcome::CommittedLsnUnknown(output))) => {
                        return Ended::Replied(reply(output, None, attempt));
                    }
                    Ok(Ok(Outcome::Unsettled(output, probe, error))) => {
                        let Some(xact) = probe.xact(system_id) else {
                            // It wrote nothing: COMMIT had nothing to lose.
                            let position = position_on_another_connection(state).await.ok();
                            return Ended::Replied(reply(output, position, attempt));
                        };
                        tracing::warn!(error = %error, request_id = %id, xid = xact.xid, "a write's COMMIT answer was lost; asking the database whether it committed");
                        unsettled = Some(Unsettled {
                            output,
                            xact,
                            pid: probe.pid,
                            error,
                        });
                        // Asked at once, on a fresh connection.
                        continue;
                    }
                    Ok(Err(Failure::NotCommitted(e))) => return Ended::Failed(e),
                    Ok(Err(Failure::Unknown(e))) => (e, true),
                    Ok(Err(Failure::NotStarted(e))) => (e, false),
                };
                maybe |= unknown;
                if !deadline.passed() {
                    metrics::counter!("fly_postgres_write_retries_total", "mutation" => M::NAME)
                        .increment(1);
                    tracing::warn!(error = %e, attempt, unknown, request_id = %id, "local write did not finish; retrying with the same request id");
                }
                e
            }
        };
        // The pause took what was left: no attempt would get any.
        if deadline.passed() || !backoff.pause(&deadline).await {
            return match unsettled {
                Some(u) => u.ended(attempt, None),
                None => Ended::Failed(at_deadline::<M>(e, maybe, id, attempt)),
            };
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
    key: Option<&RequestKey>,
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
        let (state, key, progress) = (Arc::clone(state), key.cloned(), Arc::clone(&progress));
        async move { run_once_noting(&state, mutation, key.as_ref(), &progress).await }
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
fn at_deadline<M: Mutation>(last: Error, maybe: bool, id: &str, attempts: u32) -> Error {
    if maybe {
        Error::maybe_committed(
            M::NAME,
            id,
            attempts,
            format!("the write's outcome is unknown: {last}"),
        )
    } else {
        last
    }
}
