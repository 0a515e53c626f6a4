//! A write run directly on the primary over PostgreSQL, from any region
//! ([`WriteMode::Direct`](crate::WriteMode::Direct), or the direct fallback
//! when no primary-region instance takes a forwarded write): one
//! transaction across the distance, with the same exactly-once record.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Repo;
use super::attempt_outcome::{Failure, Outcome};
use super::reply::Reply;
use super::retry_policy::{Backoff, Deadline};
use super::server_state::ServerState;
use super::transaction::{position_on_another_connection, run_once};
use super::wire::Forwarded;
use crate::error::Error;
use crate::mutation::Mutation;
use crate::request_key::RequestKey;
use crate::wal_position::WalPosition;

/// Runs the mutation in one transaction on the primary, with `request_id`'s
/// exactly-once record. After forwarding failed with `forwarded`, a direct
/// attempt that could not even start leaves the forwarded outcome as the
/// answer.
pub(super) async fn direct<M: Mutation>(
    repo: &Repo,
    call: &Forwarded<M>,
    request_id: &str,
    forwarded: Option<Error>,
) -> Result<Reply<M::Output>, Error> {
    let Some(state) = &repo.inner.direct else {
        return Err(Error::Config(
            "direct writes need the repo's primary_url() or primary_pool()".into(),
        ));
    };
    match run_direct(state, call, request_id).await? {
        Ok(reply) => Ok(reply),
        Err(Failure::NotStarted(e)) => match forwarded {
            Some(forwarded) => {
                tracing::warn!(error = %e, "the direct write could not start either");
                Err(forwarded)
            }
            None => Err(e),
        },
        // Its id is recorded as failed: no earlier attempt commits later.
        Err(Failure::NotCommitted(e)) => Err(e),
        Err(Failure::Unknown(e)) => Err(Error::maybe_committed(
            M::NAME,
            request_id,
            1,
            match forwarded {
                Some(forwarded) => format!(
                    "forwarding failed ({forwarded}), then COMMIT's outcome on the primary is \
                     unknown: {e}"
                ),
                None => format!("COMMIT's outcome on the primary is unknown: {e}"),
            },
        )),
    }
}

async fn run_direct<M: Mutation>(
    state: &ServerState,
    call: &Forwarded<M>,
    request_id: &str,
) -> Result<Result<Reply<M::Output>, Failure>, Error> {
    let mutation = call.clone().mutation()?;
    let keep = state.retention.of(call.generated_id());
    let key = RequestKey::of(request_id.to_owned(), M::NAME, &mutation, keep)?;
    state.served.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let outcome = run_once(state, mutation, Some(&key)).await;
    let primary_us = u64::try_from(started.elapsed().as_micros()).ok();
    let (output, position) = match outcome {
        Ok(Outcome::Committed(output, position)) => (output, position),
        Ok(Outcome::CommittedLsnUnknown(output)) => match position_after_commit(state).await {
            Some(position) => (output, position),
            None => return Err(Error::committed_position_unknown(&output)),
        },
        // Only a write without a request id keeps no record.
        Ok(Outcome::Unsettled(_, _, e)) => return Ok(Err(Failure::Unknown(e))),
        Err(f) => return Ok(Err(f)),
    };
    Ok(Ok(Reply {
        output,
        position: Some(position),
        primary_us,
        attempts: 0,
    }))
}

/// The primary's position after a commit whose own LSN could not be read
/// (`run_once` already asked twice): asked a few more times on fresh
/// connections. The write is never run again, and never called anything
/// but committed.
async fn position_after_commit(state: &ServerState) -> Option<WalPosition> {
    let deadline = Deadline::after(Duration::from_millis(500));
    let mut backoff = Backoff::new();
    for _ in 0..3 {
        if let Ok(position) = position_on_another_connection(state).await {
            return Some(position);
        }
        if !backoff.pause(&deadline).await {
            break;
        }
    }
    None
}
