//! The client side of a call: local dispatch, or the request to a peer with
//! failover across the region's instances.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use tracing::{Instrument, Span};

use crate::answer::decode_response;
use crate::coalesce::Outgoing;
use crate::error::Error;
use crate::procedure::Procedure;
use crate::state::NodeInner;

mod failover;
mod local;
mod options;
mod remote;

pub use options::CallOptions;

/// Runs `procedure` in `region`, here or on a peer, within the call's
/// deadline; records the call's span and metrics.
pub(crate) async fn call<P: Procedure>(
    inner: &NodeInner,
    region: &str,
    procedure: P,
    options: CallOptions,
) -> Result<P::Output, Error> {
    let timeout = options.timeout.unwrap_or(inner.config.rpc_timeout);
    let local = region == inner.regions.my_region();
    let span = call_span::<P>(region, local);
    let started = Instant::now();
    let deadline = started + timeout;
    // Requests that may have reached a peer (or the local handler): a
    // timeout is only "may have run" when at least one did.
    let sent = AtomicUsize::new(0);
    let work = async {
        if local {
            sent.fetch_add(1, Ordering::Relaxed);
            local::call_local(inner, procedure, options).await
        } else {
            remote::call_remote_until_known::<P>(
                inner, region, procedure, &options, timeout, deadline, &sent,
            )
            .await
        }
    };
    let result = match tokio::time::timeout(timeout, work.instrument(span.clone())).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            procedure: P::NAME,
            region: region.to_owned(),
            after: timeout,
            sent: sent.load(Ordering::Relaxed) > 0,
        }),
    };
    record_outcome::<P, _>(&span, region, started, &result);
    result
}

/// The span a call runs in; its peer and outcome are filled in later.
fn call_span<P: Procedure>(region: &str, local: bool) -> Span {
    tracing::info_span!(
        "fly_rpc.call",
        procedure = P::NAME,
        region,
        local,
        peer = tracing::field::Empty,
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    )
}

/// The call's outcome and duration, on its span and in the metrics.
fn record_outcome<P: Procedure, T>(
    span: &Span,
    region: &str,
    started: Instant,
    result: &Result<T, Error>,
) {
    let elapsed = started.elapsed();
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    span.record("outcome", outcome);
    span.record("duration_ms", elapsed.as_secs_f64() * 1e3);
    crate::metric::histogram!(
        "fly_rpc_call_duration_seconds",
        "procedure" => P::NAME, "region" => region.to_owned(), "outcome" => outcome
    )
    .record(elapsed.as_secs_f64());
    if let Err(e) = result {
        crate::metric::counter!(
            "fly_rpc_call_failures_total",
            "procedure" => P::NAME, "region" => region.to_owned(), "kind" => e.kind()
        )
        .increment(1);
    }
}

/// Runs `procedure` on the one instance at `peer`, without failover: for
/// calls between siblings of a region, where the caller picks the instance.
pub(crate) async fn call_instance<P: Procedure>(
    inner: &NodeInner,
    peer: std::net::SocketAddr,
    procedure: P,
    options: CallOptions,
) -> Result<P::Output, Error> {
    let timeout = options.timeout.unwrap_or(inner.config.rpc_timeout);
    let call = outgoing(procedure, &options)?;
    let answer = tokio::time::timeout(timeout, inner.coalescer.send_alone(peer, &call))
        .await
        .map_err(|_| Error::Timeout {
            procedure: P::NAME,
            region: format!("instance {peer}"),
            after: timeout,
            sent: true,
        })?;
    match answer {
        Ok((status, body)) => decode_response::<P>(peer, status, &body),
        Err(failure) => Err(Error::Transport {
            peer: peer.to_string(),
            message: failure.message,
        }),
    }
}

/// The call's arguments as they travel.
fn encode<P: Procedure>(procedure: &P) -> Result<Bytes, Error> {
    serde_json::to_vec(procedure)
        .map(Bytes::from)
        .map_err(|e| Error::Codec {
            procedure: P::NAME,
            message: e.to_string(),
        })
}

/// `procedure` encoded, with the options a peer sees, in the caller's
/// trace: what every attempt of a remote call sends.
fn outgoing<P: Procedure>(procedure: P, options: &CallOptions) -> Result<Outgoing, Error> {
    Ok(Outgoing::new(
        P::NAME,
        options.idempotency_key.clone(),
        options.require_primary,
        encode(&procedure)?,
    ))
}
