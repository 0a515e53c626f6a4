//! A write with a request id that may name a write which kept no record: a
//! generated id of this process (its future was dropped, or it was told
//! "maybe committed"), or a settle id (`<id>:x<xid>:...`, see
//! [`XactRef::settle_id`]) from any process. Such an id is settled before
//! anything runs: the first write's outcome answers if it committed, and
//! the write runs (with a record, under the id given) if it did not.

use std::time::Duration;

use super::attempt_outcome::{Failure, Outcome};
use super::local_write_end::Ended;
use super::server_state::ServerState;
use super::unrecorded::{Final, Found};
use super::xact_probe::XactRef;
use super::xact_settle::{Settled, settle};
use crate::error::Error;
use crate::mutation::Mutation;
use crate::request_key::RequestKey;

/// The answer to a retry with `key`, or `None` when the write is to run.
pub(super) async fn answer<M: Mutation>(
    state: &ServerState,
    key: &RequestKey,
) -> Option<Result<Outcome<M::Output>, Failure>> {
    let parsed = XactRef::parse_settle_id(&key.id);
    let base = parsed.map_or(key.id.as_str(), |(base, _)| base);
    if let Some(found) = state.unrecorded.find(base) {
        return from_this_process::<M>(state, key, base, found).await;
    }
    let (_, xact) = parsed?;
    let answer = match settle(&state.pool, &xact, None).await {
        Ok(Settled::NotCommitted) => return None,
        Ok(Settled::Committed) => {
            metrics::counter!("fly_postgres_deduplicated_writes_total", "mutation" => M::NAME)
                .increment(1);
            Failure::NotCommitted(Error::CommittedButUnreadable {
                reason: format!(
                    "the write with request id {base} committed (its transaction {} did); its \
                     output was kept only by the process that ran it, which no longer has it",
                    xact.xid
                ),
                output: None,
            })
        }
        Ok(Settled::Pending(why) | Settled::Undecidable(why)) => unknown(why),
        Err(e) => Failure::Unknown(e),
    };
    Some(Err(answer))
}

/// A write this process ran under `base`, kept in its table.
async fn from_this_process<M: Mutation>(
    state: &ServerState,
    key: &RequestKey,
    base: &str,
    found: Found,
) -> Option<Result<Outcome<M::Output>, Failure>> {
    let digest = RequestKey::of_json(base.to_owned(), M::NAME, &found.args, Duration::ZERO)
        .map(|first| first.digest);
    if found.mutation != M::NAME || digest.ok().as_ref() != Some(&key.digest) {
        return Some(Err(Failure::NotCommitted(Error::RequestIdReused {
            request_id: key.id.clone(),
            recorded_mutation: found.mutation.to_owned(),
        })));
    }
    // A write still running is awaited: it ends by its own deadline.
    found.slot.ended().await;
    let kept = found
        .slot
        .kept::<Ended<M::Output>>(Ended::kept)
        .unwrap_or_else(|| Final::Unknown("the write is still running".into()));
    match kept {
        Final::Committed { output, position } => Some(decoded::<M>(base, &output).map(|output| {
            deduplicated::<M>(base);
            match position {
                Some(position) => Outcome::Committed(output, position),
                None => Outcome::CommittedLsnUnknown(output),
            }
        })),
        Final::NotCommitted => {
            state.unrecorded.forget(base);
            None
        }
        Final::Unknown(why) => Some(Err(unknown(why))),
        Final::Unsettled { xact, pid, output } => match settle(&state.pool, &xact, Some(pid)).await
        {
            Ok(Settled::Committed) => {
                found.slot.settle(Final::Committed {
                    output: output.clone(),
                    position: None,
                });
                deduplicated::<M>(base);
                Some(decoded::<M>(base, &output).map(Outcome::CommittedLsnUnknown))
            }
            Ok(Settled::NotCommitted) => {
                state.unrecorded.forget(base);
                None
            }
            Ok(Settled::Pending(why) | Settled::Undecidable(why)) => Some(Err(unknown(why))),
            Err(e) => Some(Err(Failure::Unknown(e))),
        },
    }
}

fn decoded<M: Mutation>(id: &str, output: &str) -> Result<M::Output, Failure> {
    serde_json::from_str(output).map_err(|e| {
        Failure::Unknown(Error::Decode {
            message: format!("the kept output of request {id} does not decode: {e}"),
        })
    })
}

fn deduplicated<M: Mutation>(id: &str) {
    metrics::counter!("fly_postgres_deduplicated_writes_total", "mutation" => M::NAME).increment(1);
    tracing::info!(
        request_id = id,
        mutation = M::NAME,
        "answered a retried write from the outcome this process kept"
    );
}

fn unknown(why: String) -> Failure {
    Failure::Unknown(Error::Primary { message: why })
}
