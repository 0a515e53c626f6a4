//! The client side of a call: local dispatch, or the request to a peer with
//! failover across the region's instances.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::Instrument;

use crate::answer::{decode_response, is_not_primary, unknown_procedure};
use crate::coalesce::Outgoing;
use crate::error::Error;
use crate::procedure::{CallContext, Procedure};
use crate::remote_error::RemoteError;
use crate::state::NodeInner;

/// Per-call options; the defaults come from the node.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    timeout: Option<Duration>,
    idempotency_key: Option<String>,
    require_primary: bool,
    through_wire: bool,
}

impl CallOptions {
    /// Options with the node's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole call's deadline, every failover included (default: the
    /// node's `rpc_timeout`, 5 s unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A key that stays the same across retries of one logical call. The
    /// handler sees it in [`CallContext::idempotency_key`]; a call that
    /// carries one is retried on another instance after a broken connection.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Only an instance whose [`crate::PrimaryCheck`] passes may serve the
    /// call; others answer "not primary" and the next instance is tried. (A
    /// call to the node's own region runs locally, without the check.)
    pub fn require_primary(mut self) -> Self {
        self.require_primary = true;
        self
    }

    /// A call to the node's own region goes through the wire format, as a
    /// peer's would: the arguments serialized, the registered handler run
    /// on those bytes, its output or error serialized and decoded back.
    /// Only the network is skipped. For tests and development, so a type
    /// that does not survive JSON fails on a laptop, not in a second region.
    pub fn through_wire(mut self) -> Self {
        self.through_wire = true;
        self
    }
}

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
    let span = tracing::info_span!(
        "fly_rpc.call",
        procedure = P::NAME,
        region,
        local,
        peer = tracing::field::Empty,
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    let started = Instant::now();
    let deadline = started + timeout;
    // Requests that may have reached a peer (or the local handler): a
    // timeout is only "may have run" when at least one did.
    let sent = AtomicUsize::new(0);
    let work = async {
        if local {
            sent.fetch_add(1, Ordering::Relaxed);
            call_local(inner, procedure, options).await
        } else {
            call_remote_until_known::<P>(
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
    let elapsed = started.elapsed();
    let outcome = match &result {
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
    if let Err(e) = &result {
        crate::metric::counter!(
            "fly_rpc_call_failures_total",
            "procedure" => P::NAME, "region" => region.to_owned(), "kind" => e.kind()
        )
        .increment(1);
    }
    result
}

async fn call_local<P: Procedure>(
    inner: &NodeInner,
    procedure: P,
    options: CallOptions,
) -> Result<P::Output, Error> {
    let Some(state) = inner.registry.state::<P>() else {
        return Err(unknown_here::<P>(inner));
    };
    let ctx = CallContext {
        caller_region: inner.regions.my_region().to_owned(),
        idempotency_key: options.idempotency_key,
        local: true,
        trace_context: crate::trace_context::current_trace_context(),
    };
    if options.through_wire {
        return call_local_through_wire(inner, procedure, ctx).await;
    }
    // Spawned for the same isolation as a remote call: a panic becomes
    // an error and a timed-out caller does not cancel the handler.
    let trace = ctx.trace_context.clone();
    match tokio::spawn(crate::trace_context::within(
        trace,
        procedure.run(state, ctx),
    ))
    .await
    {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(error)) => Err(Error::Remote(RemoteError::new(
            P::NAME.to_owned(),
            error.to_string(),
            serde_json::to_value(&error).unwrap_or(serde_json::Value::Null),
        ))),
        Err(_) => Err(Error::HandlerPanicked {
            procedure: P::NAME.to_owned(),
            peer: HERE.to_owned(),
        }),
    }
}

/// How a local call names the node that served it.
const HERE: &str = "this node";

/// This node does not serve `P`.
fn unknown_here<P: Procedure>(inner: &NodeInner) -> Error {
    let info = inner.info();
    Error::UnknownProcedure {
        name: P::NAME.to_owned(),
        peer: HERE.to_owned(),
        peer_version: info.version,
        peer_procedures: info.procedures,
    }
}

/// [`call_local`] through the wire format: the same handler and the same
/// mapping of its outcome as a call from a peer, without the network.
async fn call_local_through_wire<P: Procedure>(
    inner: &NodeInner,
    procedure: P,
    ctx: CallContext,
) -> Result<P::Output, Error> {
    use crate::registry::Outcome;
    let args = encode(&procedure)?;
    drop(procedure);
    let Some(handler) = inner.registry.handler(P::NAME) else {
        return Err(unknown_here::<P>(inner));
    };
    let trace = ctx.trace_context.clone();
    let outcome = tokio::spawn(crate::trace_context::within(trace, handler(args, ctx))).await;
    match outcome {
        Ok(Outcome::Ok(bytes)) => {
            serde_json::from_slice(&bytes).map_err(|e| Error::UndecodableOutput {
                procedure: P::NAME.to_owned(),
                peer: HERE.to_owned(),
                message: e.to_string(),
            })
        }
        Ok(Outcome::BadArgs(message)) => Err(Error::BadRequest {
            peer: HERE.to_owned(),
            status: 400,
            message,
        }),
        Ok(Outcome::Failed { message, payload }) => Err(Error::Remote(RemoteError::new(
            P::NAME.to_owned(),
            message,
            payload,
        ))),
        Ok(Outcome::Unencodable(message)) => Err(Error::Transport {
            peer: HERE.to_owned(),
            message: format!(
                "`{}` produced a value that does not serialize: {message}",
                P::NAME
            ),
        }),
        Err(_) => Err(Error::HandlerPanicked {
            procedure: P::NAME.to_owned(),
            peer: HERE.to_owned(),
        }),
    }
}

/// First and longest pause before asking a region again when none of its
/// instances knew the procedure.
const SKEW_FIRST_BACKOFF: Duration = Duration::from_millis(25);
const SKEW_MAX_BACKOFF: Duration = Duration::from_millis(500);

/// A remote call that, when every instance of the region answers that it
/// does not know the procedure (a deploy in progress: they ran nothing),
/// asks again with backoff and fresh discovery until the deadline, then
/// returns [`Error::UnknownProcedure`] naming the versions that answered.
async fn call_remote_until_known<P: Procedure>(
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

async fn call_remote<P: Procedure>(
    inner: &NodeInner,
    region: &str,
    call: &Outgoing,
    timeout: Duration,
    deadline: Instant,
    sent: &AtomicUsize,
) -> Result<P::Output, Error> {
    let instances = inner.discovery.instances(region).await?;
    let retry_safe = P::RETRY_SAFE || call.idempotency_key.is_some();
    let mut tried = 0;
    let mut last_error = None;
    // Versions of the instances that answered "no such procedure".
    let mut unknown_to: Vec<String> = Vec::new();
    let mut unknown_answers = 0;
    let mut peer_procedures = Vec::new();
    for peer in inner.choice.order(instances) {
        tried += 1;
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
        match answer {
            Err(failure) if failure.before_sending || retry_safe => {
                if failure.before_sending {
                    sent.fetch_sub(1, Ordering::Relaxed);
                }
                tracing::warn!(%peer, region, error = %failure.message, "RPC peer failed; trying the next instance");
                last_error = Some(format!("{peer}: {}", failure.message));
                inner.peer_failed(region, peer);
                crate::metric::counter!("fly_rpc_failovers_total", "region" => region.to_owned())
                    .increment(1);
            }
            Err(failure) => {
                inner.peer_failed(region, peer);
                return Err(Error::Transport {
                    peer: peer.to_string(),
                    message: format!(
                        "{} (the call may have run; `{}` is not marked retry-safe)",
                        failure.message,
                        P::NAME
                    ),
                });
            }
            Ok((status, body)) if is_not_primary(status, &body) => {
                // It answered without running the call.
                sent.fetch_sub(1, Ordering::Relaxed);
                tracing::info!(%peer, region, "peer is not primary; trying the next instance");
                last_error = Some(format!("{peer}: not primary"));
                inner.choice.failed(peer);
                crate::metric::counter!("fly_rpc_failovers_total", "region" => region.to_owned())
                    .increment(1);
            }
            Ok((status, body)) => {
                if let Some(answer) = unknown_procedure(status, &body) {
                    // An instance of another build (a deploy in progress): it
                    // ran nothing, and a sibling may have the procedure.
                    sent.fetch_sub(1, Ordering::Relaxed);
                    let version = answer.version.unwrap_or_else(|| "unknown".into());
                    peer_procedures = answer.procedures.unwrap_or_default();
                    tracing::info!(%peer, region, %version, procedure = P::NAME, "peer does not know the procedure; trying the next instance");
                    last_error = Some(format!(
                        "{peer} (version {version}): no procedure `{}`",
                        P::NAME
                    ));
                    if !unknown_to.contains(&version) {
                        unknown_to.push(version);
                    }
                    unknown_answers += 1;
                    continue;
                }
                inner.choice.succeeded(peer);
                let earlier = sent.load(Ordering::Relaxed).saturating_sub(1);
                return match decode_response::<P>(peer, status, &body) {
                    // This instance refused without running the call, but an
                    // earlier one may have received it: the outcome is not
                    // this answer's to settle.
                    Err(e)
                        if earlier > 0
                            && !e.may_have_run()
                            && !matches!(e, Error::Remote(_) | Error::UndecodableOutput { .. }) =>
                    {
                        Err(Error::Transport {
                            peer: peer.to_string(),
                            message: format!(
                                "{e}; an instance tried before it may have received the call"
                            ),
                        })
                    }
                    other => other,
                };
            }
        }
    }
    if unknown_answers > 0 && unknown_answers == tried {
        return Err(Error::UnknownProcedure {
            name: P::NAME.to_owned(),
            peer: format!("{tried} instance(s) of region {region}"),
            peer_version: unknown_to.join(", "),
            peer_procedures,
        });
    }
    Err(Error::NoNodeInRegion {
        region: region.to_owned(),
        tried,
        sent: sent.load(Ordering::Relaxed),
        last_error,
    })
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
