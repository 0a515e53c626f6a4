//! A write forwarded to the primary region: one RPC per attempt, retried
//! under the write's request id by the [retry policy](super::retry_policy)
//! until its deadline.

use std::sync::atomic::Ordering;

use fly_rpc::CallOptions;

use super::Repo;
use super::reply::Reply;
use super::retry_policy::{Backoff, Deadline};
use super::rpc_failure::{AttemptFailure, classify};
use super::wire::{Committed, Forwarded};
use crate::error::Error;
use crate::mutation::Mutation;
use crate::wal_position::WalPosition;

/// The RPC, retried with the same request id until `deadline`, after every
/// failure that can be transient (refused or broken connections, a
/// timeout, an instance that is not primary, none discovered), with the
/// policy's backoff and fresh discovery between attempts. The primary
/// region records the id with the write, so a retry of a write that did
/// commit returns its recorded output instead of running it twice: an
/// instance that restarts during a deploy costs latency, not an error.
///
/// When the deadline passes the outcome is told truthfully: nothing was
/// sent ([`Error::NoPrimaryNode`]), or a request may have reached the
/// primary region ([`Error::RpcTimeout`] / [`Error::MaybeCommitted`] with
/// the id).
pub(super) async fn forward<M: Mutation>(
    repo: &Repo,
    call: &Forwarded<M>,
    deadline: Deadline,
    request_id: &str,
) -> Result<Reply<M::Output>, Error> {
    let candidates = candidate_regions(repo).await;
    let mut tries = Tries::default();
    let mut backoff = Backoff::new();
    loop {
        if deadline.passed() {
            return Err(tries.give_up(M::NAME, &candidates[0], request_id, deadline));
        }
        tries.attempts += 1;
        tracing::Span::current().record("attempts", tries.attempts);
        let region = candidates[tries.turn % candidates.len()].as_str();
        let error = match attempt(repo, region, call, deadline, request_id).await {
            Ok(reply) => {
                return Ok(Reply {
                    attempts: tries.attempts,
                    ..reply
                });
            }
            Err(e) => e,
        };
        match classify(error) {
            AttemptFailure::Transient { sent, error } => {
                tries.sent_any |= sent;
                if tries.next_region(candidates.len()) {
                    // Following the primary: this region did not take it
                    // (or did not answer); offer it to the next region
                    // before backing off. The request id keeps it one
                    // commit wherever it lands.
                    tracing::info!(region, error = %error, "no primary here; trying the next region");
                    tries.last = Some(error);
                    continue;
                }
                repo.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("fly_postgres_write_retries_total", "mutation" => M::NAME)
                    .increment(1);
                tracing::warn!(error = %error, attempt = tries.attempts, sent, "forwarded write attempt failed; retrying with the same request id");
                tries.last = Some(error);
                backoff.pause(&deadline).await;
            }
            AttemptFailure::Final {
                maybe,
                settles,
                said,
                error,
            } => {
                return Err(if maybe || tries.sent_any && !settles {
                    Error::maybe_committed(M::NAME, request_id, tries.attempts, said)
                } else {
                    error
                });
            }
        }
    }
}

/// One RPC to `region` with its share of what is left of the deadline.
async fn attempt<M: Mutation>(
    repo: &Repo,
    region: &str,
    call: &Forwarded<M>,
    deadline: Deadline,
    request_id: &str,
) -> Result<Reply<M::Output>, fly_rpc::Error> {
    let inner = &repo.inner;
    let mut options = CallOptions::new()
        .timeout(deadline.attempt_share())
        .idempotency_key(request_id)
        .require_primary();
    if inner.config.force_forward {
        options = options.through_wire();
    }
    let Committed {
        output,
        lsn,
        timeline,
        primary_us,
    } = inner.node.call(region, call.clone(), options).await?;
    if let Some(follower) = &inner.follow {
        follower.taken_by(region);
    }
    let position = WalPosition::new(timeline, lsn);
    // The primary had it: a measure of the replica's lag that needs no
    // privilege on the replica.
    repo.primary_reached(position);
    Ok(Reply {
        output,
        position: Some(position),
        primary_us,
        attempts: 0,
    })
}

/// What the attempts so far have shown.
#[derive(Default)]
struct Tries {
    attempts: u32,
    /// Index into the candidate regions.
    turn: usize,
    /// Some attempt may have reached the primary region.
    sent_any: bool,
    last: Option<fly_rpc::Error>,
}

impl Tries {
    /// Moves to the next candidate region; true while a round of the
    /// regions is not complete (no backoff before the next one).
    fn next_region(&mut self, regions: usize) -> bool {
        if regions <= 1 {
            return false;
        }
        self.turn += 1;
        !self.turn.is_multiple_of(regions)
    }

    /// The error at the deadline, by what the attempts showed.
    fn give_up(self, mutation: &str, primary: &str, request_id: &str, deadline: Deadline) -> Error {
        let Tries {
            attempts,
            sent_any,
            last,
            ..
        } = self;
        match last {
            // Every instance asked said it has no such mutation: the caller
            // learns which versions answered.
            Some(fly_rpc::Error::UnknownProcedure {
                name, peer_version, ..
            }) if !sent_any => Error::UnknownProcedure { name, peer_version },
            _ if !sent_any => Error::NoPrimaryNode {
                region: primary.to_owned(),
                tried: attempts as usize,
                last_error: last.map_or_else(|| "no attempt".to_owned(), |e| e.to_string()),
            },
            Some(fly_rpc::Error::Timeout { sent: true, .. }) => Error::RpcTimeout {
                mutation: mutation.to_owned(),
                after: deadline.budget(),
                request_id: request_id.to_owned(),
            },
            last => Error::maybe_committed(
                mutation,
                request_id,
                attempts,
                last.map_or_else(|| "no answer".to_owned(), |e| e.to_string()),
            ),
        }
    }
}

/// Where to send a forwarded write: the primary region, and when the repo
/// follows the primary, every other region discovery knows after it (not
/// this one: its database is not the primary, or the write would have run
/// here).
async fn candidate_regions(repo: &Repo) -> Vec<String> {
    let inner = &repo.inner;
    let mut candidates = vec![repo.primary_region()];
    if inner.follow.is_some()
        && let Ok(known) = inner.node.known_regions().await
    {
        for region in known {
            if region != inner.regions.my_region() && !candidates.contains(&region) {
                candidates.push(region);
            }
        }
    }
    candidates
}
