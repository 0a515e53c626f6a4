//! Reading each instance's answer during a pass over a region: whether it
//! settles the call, or the next instance is tried, and what the pass
//! reports when none settled it.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;

use crate::answer::{decode_response, is_not_primary, unknown_procedure};
use crate::client::TransportFailure;
use crate::coalesce::Answer;
use crate::error::Error;
use crate::procedure::Procedure;
use crate::state::NodeInner;
use crate::wire::WireError;

/// What a pass over a region's instances learned from those that did not
/// settle the call.
pub(super) struct Failover {
    /// The call may be sent again after a connection broke mid-request.
    retry_safe: bool,
    pub(super) tried: usize,
    last_error: Option<String>,
    /// Versions of the instances that answered "no such procedure".
    unknown_to: Vec<String>,
    unknown_answers: usize,
    peer_procedures: Vec<String>,
}

impl Failover {
    pub(super) fn new(retry_safe: bool) -> Self {
        Failover {
            retry_safe,
            tried: 0,
            last_error: None,
            unknown_to: Vec::new(),
            unknown_answers: 0,
            peer_procedures: Vec::new(),
        }
    }

    /// `Break` with the call's outcome when `peer`'s answer settles it;
    /// `Continue` when the next instance is to be tried.
    pub(super) fn consider<P: Procedure>(
        &mut self,
        inner: &NodeInner,
        region: &str,
        peer: SocketAddr,
        answer: Answer,
        sent: &AtomicUsize,
    ) -> ControlFlow<Result<P::Output, Error>> {
        match answer {
            Err(failure) if failure.before_sending || self.retry_safe => {
                self.transport_failed(inner, region, peer, &failure, sent);
            }
            Err(failure) => {
                inner.peer_failed(region, peer);
                return ControlFlow::Break(Err(not_retry_safe::<P>(peer, failure)));
            }
            Ok((status, body)) if is_not_primary(status, &body) => {
                self.not_primary(inner, region, peer, sent);
            }
            Ok((status, body)) => match unknown_procedure(status, &body) {
                Some(answer) => self.unknown_procedure::<P>(region, peer, answer, sent),
                None => return ControlFlow::Break(settle::<P>(inner, peer, status, &body, sent)),
            },
        }
        ControlFlow::Continue(())
    }

    /// An instance no connection could be made to (see
    /// [`crate::head_start`]): the call was not sent to it.
    pub(super) fn unreachable(
        &mut self,
        inner: &NodeInner,
        region: &str,
        peer: SocketAddr,
        why: &str,
    ) {
        self.tried += 1;
        tracing::warn!(%peer, region, error = why, "RPC peer unreachable; trying the next instance");
        self.last_error = Some(format!("{peer}: {why}"));
        inner.peer_failed(region, peer);
        crate::metric::counter!("fly_rpc_failovers_total", "region" => region.to_owned())
            .increment(1);
    }

    /// A broken connection the call may be sent again after.
    fn transport_failed(
        &mut self,
        inner: &NodeInner,
        region: &str,
        peer: SocketAddr,
        failure: &TransportFailure,
        sent: &AtomicUsize,
    ) {
        if failure.before_sending {
            sent.fetch_sub(1, Ordering::Relaxed);
        }
        tracing::warn!(%peer, region, error = %failure.message, "RPC peer failed; trying the next instance");
        self.last_error = Some(format!("{peer}: {}", failure.message));
        inner.peer_failed(region, peer);
        crate::metric::counter!("fly_rpc_failovers_total", "region" => region.to_owned())
            .increment(1);
    }

    /// An instance that may not serve primary-only calls: it answered
    /// without running the call.
    fn not_primary(
        &mut self,
        inner: &NodeInner,
        region: &str,
        peer: SocketAddr,
        sent: &AtomicUsize,
    ) {
        sent.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(%peer, region, "peer is not primary; trying the next instance");
        self.last_error = Some(format!("{peer}: not primary"));
        inner.choice.failed(peer);
        crate::metric::counter!("fly_rpc_failovers_total", "region" => region.to_owned())
            .increment(1);
    }

    /// An instance of another build (a deploy in progress): it ran
    /// nothing, and a sibling may have the procedure.
    fn unknown_procedure<P: Procedure>(
        &mut self,
        region: &str,
        peer: SocketAddr,
        answer: WireError,
        sent: &AtomicUsize,
    ) {
        sent.fetch_sub(1, Ordering::Relaxed);
        let version = answer.version.unwrap_or_else(|| "unknown".into());
        self.peer_procedures = answer.procedures.unwrap_or_default();
        tracing::info!(%peer, region, %version, procedure = P::NAME, "peer does not know the procedure; trying the next instance");
        self.last_error = Some(format!(
            "{peer} (version {version}): no procedure `{}`",
            P::NAME
        ));
        if !self.unknown_to.contains(&version) {
            self.unknown_to.push(version);
        }
        self.unknown_answers += 1;
    }

    /// The error of a pass no instance settled: "unknown procedure" when
    /// every instance said so (the caller may ask again), else "no node".
    pub(super) fn exhausted<P: Procedure>(self, region: &str, sent: &AtomicUsize) -> Error {
        let tried = self.tried;
        if self.unknown_answers > 0 && self.unknown_answers == tried {
            return Error::UnknownProcedure {
                name: P::NAME.to_owned(),
                peer: format!("{tried} instance(s) of region {region}"),
                peer_version: self.unknown_to.join(", "),
                peer_procedures: self.peer_procedures,
            };
        }
        Error::NoNodeInRegion {
            region: region.to_owned(),
            tried,
            sent: sent.load(Ordering::Relaxed),
            last_error: self.last_error,
        }
    }
}

/// A broken connection after the request may have arrived, for a call
/// that must not run twice.
fn not_retry_safe<P: Procedure>(peer: SocketAddr, failure: TransportFailure) -> Error {
    Error::Transport {
        peer: peer.to_string(),
        message: format!(
            "{} (the call may have run; `{}` is not marked retry-safe)",
            failure.message,
            P::NAME
        ),
    }
}

/// The call's outcome from the instance that answered it.
fn settle<P: Procedure>(
    inner: &NodeInner,
    peer: SocketAddr,
    status: StatusCode,
    body: &[u8],
    sent: &AtomicUsize,
) -> Result<P::Output, Error> {
    inner.choice.succeeded(peer);
    let earlier = sent.load(Ordering::Relaxed).saturating_sub(1);
    match decode_response::<P>(peer, status, body) {
        // This instance refused without running the call, but an earlier
        // one may have received it: the outcome is not this answer's to
        // settle.
        Err(e)
            if earlier > 0
                && !e.may_have_run()
                && !matches!(e, Error::Remote(_) | Error::UndecodableOutput { .. }) =>
        {
            Err(Error::Transport {
                peer: peer.to_string(),
                message: format!("{e}; an instance tried before it may have received the call"),
            })
        }
        other => other,
    }
}
