//! A call to another region: the request to its instances one after the
//! other until one settles it, asked again while none knows the procedure.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::coalesce::Outgoing;
use crate::error::Error;
use crate::procedure::Procedure;
use crate::state::NodeInner;

use super::failover::Failover;
use super::{CallOptions, outgoing};

/// First and longest pause before asking a region again when none of its
/// instances knew the procedure.
const SKEW_FIRST_BACKOFF: Duration = Duration::from_millis(25);
const SKEW_MAX_BACKOFF: Duration = Duration::from_millis(500);

/// A remote call that, when every instance of the region answers that it
/// does not know the procedure (a deploy in progress: they ran nothing),
/// asks again with backoff and fresh discovery until the deadline, then
/// returns [`Error::UnknownProcedure`] naming the versions that answered.
pub(super) async fn call_remote_until_known<P: Procedure>(
    inner: &NodeInner,
    region: &str,
    procedure: P,
    options: &CallOptions,
    timeout: Duration,
    deadline: Instant,
    sent: &AtomicUsize,
) -> Result<P::Output, Error> {
    let call = outgoing(procedure, options)?;
    let mut backoff = SKEW_FIRST_BACKOFF;
    loop {
        match call_remote::<P>(inner, region, &call, timeout, deadline, sent).await {
            Err(error @ Error::UnknownProcedure { .. }) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left <= backoff {
                    return Err(error);
                }
                tracing::info!(region, procedure = P::NAME, %error, "no instance knows the procedure yet (a deploy?); asking again");
                crate::metric::counter!("fly_rpc_skew_retries_total", "procedure" => P::NAME)
                    .increment(1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(SKEW_MAX_BACKOFF);
            }
            other => return other,
        }
    }
}

/// One pass over the region's instances, in the order [`crate::peer_choice`]
/// gives, until one settles the call.
async fn call_remote<P: Procedure>(
    inner: &NodeInner,
    region: &str,
    call: &Outgoing,
    timeout: Duration,
    deadline: Instant,
    sent: &AtomicUsize,
) -> Result<P::Output, Error> {
    // A resolver that does not answer (its own timeouts and attempts can
    // outlast a short call) must not hold the call past its deadline.
    let instances = tokio::time::timeout_at(deadline.into(), inner.discovery.instances(region))
        .await
        .map_err(|_| Error::Discovery {
            region: region.to_owned(),
            message: format!("discovery did not answer within the call's deadline ({timeout:?})"),
        })??;
    let mut failover = Failover::new(P::RETRY_SAFE || call.idempotency_key.is_some());
    let reachable = inner
        .client
        .reachable_first(inner.choice.order(instances), deadline)
        .await;
    for (peer, why) in reachable.unreachable {
        failover.unreachable(inner, region, peer, &why);
    }
    for peer in reachable.outrun {
        inner.choice.failed(peer);
    }
    for peer in reachable.order {
        failover.tried += 1;
        tracing::Span::current().record("peer", tracing::field::display(peer));
        sent.fetch_add(1, Ordering::Relaxed);
        let answer = tokio::time::timeout_at(
            deadline.into(),
            inner.coalescer.send(peer, call.clone(), deadline),
        )
        .await;
        let Ok(answer) = answer else {
            // A peer that accepts and never answers goes to the back of
            // the line, so a retry tries another one first.
            inner.peer_failed(region, peer);
            return Err(Error::Timeout {
                procedure: P::NAME,
                region: region.to_owned(),
                after: timeout,
                sent: true,
            });
        };
        if let ControlFlow::Break(outcome) =
            failover.consider::<P>(inner, region, peer, answer, sent)
        {
            return outcome;
        }
    }
    Err(failover.exhausted::<P>(region, sent))
}
