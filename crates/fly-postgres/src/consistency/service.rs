//! The service that waits for a request's token and raises it in the
//! response.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use tower_layer::Layer;
use tower_service::Service;

use super::layer::ConsistencyLayer;
use super::mode::{Consistency, WaitFallback};
use super::request_token::{requested_mode, token_text};
use super::token::{Rejected, Token};
use super::{LSN_COOKIE, LSN_HEADER};
use crate::error::Error;
use crate::lsn::Lsn;
use crate::middleware_support::{take_ready, text_response};
use crate::request_record::{RequestRecord, recording};
use crate::wal_position::WalPosition;

/// See [`super::ConsistencyLayer`].
#[derive(Debug, Clone)]
pub struct ConsistencyService<S> {
    inner: S,
    config: ConsistencyLayer,
}

impl<S> ConsistencyService<S> {
    pub(super) fn new(inner: S, config: ConsistencyLayer) -> Self {
        ConsistencyService { inner, config }
    }
}

/// The standard header browsers' developer tools show per request.
const SERVER_TIMING: header::HeaderName = header::HeaderName::from_static("server-timing");

/// The furthest a plain LSN may be ahead of what the replica last
/// replayed. A plain LSN is unsigned: anyone can send one, and one far
/// ahead would hold its request for the whole wait. 64 MiB of WAL is more
/// than a replica that keeps up lags behind a write its client just made.
const PLAIN_LSN_MAX_LEAD: u64 = 64 << 20;

/// What a request's token asks for, once read.
struct Incoming {
    token: Token,
    /// A plain LSN, on a layer that still accepts them.
    plain: Option<Lsn>,
}

fn rejected(reason: Rejected) {
    metrics::counter!("fly_postgres_consistency_tokens_rejected_total", "reason" => reason.reason())
        .increment(1);
    tracing::debug!(reason = reason.reason(), "consistency token ignored");
}

fn read_token(headers: &HeaderMap, config: &ConsistencyLayer) -> Incoming {
    let mut incoming = Incoming {
        token: Token::default(),
        plain: None,
    };
    let Some(text) = token_text(headers) else {
        return incoming;
    };
    match Token::decode(text, config.repo.token_keys()) {
        Ok(token) => incoming.token = token,
        Err(Rejected::PlainLsn) if config.accept_plain_lsn => {
            let lsn: Option<Lsn> = text.parse().ok();
            let seen = config.repo.tracker().last_replayed();
            // Without a replay position to measure the lead against (the
            // tracker has not polled yet, or this is the primary, where
            // nothing waits), a plain LSN is not trusted.
            match (lsn, seen) {
                (Some(lsn), Some(seen))
                    if lsn.as_u64().saturating_sub(seen.as_u64()) <= PLAIN_LSN_MAX_LEAD =>
                {
                    incoming.plain = Some(lsn);
                }
                _ => rejected(Rejected::Malformed),
            }
        }
        Err(reason) => rejected(reason),
    }
    incoming
}

/// The mode a request is served in: its header's, at most the layer's
/// ceiling (or its own mode, when that is stronger), else the layer's; and
/// whether the header asked for more than it got.
fn served_mode(config: &ConsistencyLayer, requested: Option<Consistency>) -> (Consistency, bool) {
    let (mode, capped) = mode_for(
        config.mode,
        config.max_header_mode,
        config.min_header_bound,
        requested,
    );
    if capped {
        metrics::counter!("fly_postgres_consistency_header_capped_total").increment(1);
    }
    (mode, capped)
}

/// [`served_mode`] for a layer of `own` mode, with its ceiling and its
/// tightest header bound.
fn mode_for(
    own: Consistency,
    max_header_mode: Consistency,
    min_header_bound: Duration,
    requested: Option<Consistency>,
) -> (Consistency, bool) {
    let Some(mut requested) = requested else {
        return (own, false);
    };
    let mut capped = false;
    if let Consistency::Bounded(max) = requested {
        // A header may always ask for the layer's own bound.
        let floor = match own {
            Consistency::Bounded(own) => own.min(min_header_bound),
            _ => min_header_bound,
        };
        if max < floor {
            requested = Consistency::Bounded(floor);
            capped = true;
        }
    }
    let ceiling = max_header_mode.max(own);
    if requested > ceiling {
        (ceiling, true)
    } else {
        (requested, capped)
    }
}

/// Whether the client reached the app over HTTPS: the request's own
/// scheme, or `X-Forwarded-Proto: https` from the proxy in front (Fly's
/// terminates TLS and says so). A client that claims it falsely only gets
/// a cookie its own plain-HTTP requests will not carry.
fn came_over_https<B>(request: &Request<B>) -> bool {
    request.uri().scheme_str() == Some("https")
        || request
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

fn fell_back(to: &'static str) {
    metrics::counter!("fly_postgres_consistency_fallbacks_total", "to" => to).increment(1);
}

fn unavailable<B: From<String>>(text: &str) -> Response<B> {
    let mut response = text_response(StatusCode::SERVICE_UNAVAILABLE, text.to_owned());
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// How the wait before the handler ended, when the handler should not run
/// as usual.
enum Before<B> {
    /// Run it; `seen` is what the request may now say it saw, whether it
    /// reads from the primary, and how long it waited (when it had a
    /// position to wait for).
    Run {
        seen: Option<WalPosition>,
        from_primary: bool,
        waited: Option<Duration>,
    },
    /// Answer this instead.
    Answer(Response<B>),
}

async fn before<B: From<String>>(
    config: &ConsistencyLayer,
    mode: Consistency,
    incoming: &Incoming,
) -> Before<B> {
    let repo = &config.repo;
    if repo.replica_down()
        && let Some(fallback) = applicable_fallback(config).await
    {
        // Known down: no request waits to find out again. Without a
        // fallback the handler runs as usual: one that reads fails on its
        // own, one that does not (a health check) still answers.
        return fall_back_with(config, Some(fallback), None, REPLICA_DOWN);
    }
    let started = Instant::now();
    let target = match target(config, mode, incoming).await {
        Ok(Some(target)) => target,
        Ok(None) => {
            return Before::Run {
                seen: None,
                from_primary: false,
                waited: None,
            };
        }
        Err(Missed::Answer(answer)) => return Before::Answer(answer),
        Err(Missed::FallBack(why)) => return fall_back(config, None, why).await,
    };
    let limit = config
        .max_wait
        .map_or_else(|| repo.replication_timeout(), |(limit, _)| limit);
    // The limit covers the whole wait, also a replica that stopped
    // answering while the pool tries to reach it.
    let waited = tokio::time::timeout(limit, repo.wait_for_position(target, limit))
        .await
        .unwrap_or_else(|_| {
            Err(Error::ReplicaUnavailable {
                reason: "no answer within the wait's limit".into(),
            })
        });
    let seen = matches!(mode, Consistency::Session | Consistency::Strong).then_some(target);
    match waited {
        Ok(()) => Before::Run {
            seen,
            from_primary: false,
            waited: Some(started.elapsed()),
        },
        Err(Error::WriteLost { .. }) => Before::Answer(text_response(
            StatusCode::GONE,
            crate::error::WRITE_LOST_ANSWER.to_owned(),
        )),
        Err(e) => {
            if !matches!(e, Error::ReplicationTimeout { .. }) {
                repo.suspect_replica();
            }
            let why = if mode.staleness_bound().is_some() {
                NOT_FRESH_ENOUGH
            } else {
                NOT_CAUGHT_UP
            };
            fall_back(config, Some((seen, started)), why).await
        }
    }
}

const REPLICA_DOWN: &str = "this region's replica does not answer; try again shortly";
const NOT_CAUGHT_UP: &str = "this region's replica has not caught up with what your session wrote or saw yet; try again shortly";
const NOT_FRESH_ENOUGH: &str = "this region's replica is further behind the primary than the read's staleness bound; try again shortly";
const LAG_UNKNOWN: &str =
    "this region's replica cannot tell how far behind the primary it is; try again shortly";

/// The layer's fallback, if it applies here: `Replay` outside the primary
/// region, `PrimaryPool` with a primary pool, `Unavailable` always.
async fn applicable_fallback(config: &ConsistencyLayer) -> Option<WaitFallback> {
    let fallback = config.max_wait.map(|(_, fallback)| fallback)?;
    let applies = match fallback {
        WaitFallback::Replay => !config.repo.is_primary().await,
        WaitFallback::PrimaryPool => config.repo.has_primary_pool(),
        WaitFallback::Unavailable => true,
    };
    applies.then_some(fallback)
}

/// Why the handler cannot run on the local replica as usual.
enum Missed<B> {
    /// Answer this.
    Answer(Response<B>),
    /// Take the layer's fallback; the text explains a 503.
    FallBack(&'static str),
}

/// The layer's fallback, when the local replica cannot serve: replay in
/// the primary region, read from the primary pool, or 503 with `why`.
/// `waited`: what the request may say it saw, and when its wait began.
async fn fall_back<B: From<String>>(
    config: &ConsistencyLayer,
    waited: Option<(Option<WalPosition>, Instant)>,
    why: &'static str,
) -> Before<B> {
    let fallback = applicable_fallback(config).await;
    fall_back_with(config, fallback, waited, why)
}

/// [`fall_back`] once the applicable fallback is known (`None`: a 503).
fn fall_back_with<B: From<String>>(
    config: &ConsistencyLayer,
    fallback: Option<WaitFallback>,
    waited: Option<(Option<WalPosition>, Instant)>,
    why: &'static str,
) -> Before<B> {
    match fallback {
        Some(WaitFallback::Replay) => {
            fell_back("replay");
            Before::Answer(crate::fly_replay::replay_response(
                &config.repo.primary_region(),
            ))
        }
        Some(WaitFallback::PrimaryPool) => {
            fell_back("primary_pool");
            Before::Run {
                seen: waited.and_then(|(seen, _)| seen),
                from_primary: true,
                waited: waited.map(|(_, started)| started.elapsed()),
            }
        }
        _ => {
            fell_back("unavailable");
            Before::Answer(unavailable(why))
        }
    }
}

/// The position the request must wait for in `mode`: its token's (on this
/// database's system), a plain LSN it sent, for a strong read the
/// primary's, and for a bounded one what makes the replica fresh enough;
/// `None` when there is nothing to wait for.
async fn target<B: From<String>>(
    config: &ConsistencyLayer,
    mode: Consistency,
    incoming: &Incoming,
) -> Result<Option<WalPosition>, Missed<B>> {
    if mode == Consistency::Eventual {
        return Ok(None);
    }
    let repo = &config.repo;
    let mut target: Option<WalPosition> = None;
    if !incoming.token.is_empty() {
        let Ok(system_id) = repo.system_id().await else {
            repo.suspect_replica();
            return Err(Missed::FallBack(
                "the database cannot serve right now; try again shortly",
            ));
        };
        target = incoming.token.get(system_id);
    }
    if let Some(lsn) = incoming.plain {
        target = Some(WalPosition::latest(target, WalPosition::new(None, lsn)));
    }
    if let Some(max) = mode.staleness_bound() {
        return match repo.bounded_target(max).await {
            Ok(Some(fresh)) => Ok(Some(WalPosition::latest(target, fresh))),
            Ok(None) => Ok(target),
            Err(Error::ReplicaUnavailable { .. }) => Err(Missed::FallBack(LAG_UNKNOWN)),
            Err(e) => {
                tracing::warn!(error = %e, "a bounded read could not learn the primary's position");
                Err(Missed::FallBack(
                    "the primary region could not be asked for its position; try again shortly",
                ))
            }
        };
    }
    if mode != Consistency::Strong {
        return Ok(target);
    }
    match repo.strong_target(target).await {
        Ok(position) => Ok(Some(position)),
        Err(e) => {
            tracing::warn!(error = %e, "a strong read could not learn the primary's position");
            Err(Missed::Answer(unavailable(
                "the primary region could not be asked for its position; try again shortly",
            )))
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ConsistencyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let config = self.config.clone();
        let mode = requested_mode(request.headers());
        let incoming = read_token(request.headers(), &config);
        let secure = came_over_https(&request);
        Box::pin(async move {
            let (mode, capped) = match mode {
                Ok(mode) => served_mode(&config, mode),
                Err(e) => return Ok(text_response(StatusCode::BAD_REQUEST, e.to_string())),
            };
            let (seen, from_primary, waited) = match before(&config, mode, &incoming).await {
                Before::Run {
                    seen,
                    from_primary,
                    waited,
                } => (seen, from_primary, waited),
                Before::Answer(response) => return Ok(response),
            };
            let (response, mut record) = recording(seen, from_primary, inner.call(request)).await;
            let mut response = response?;
            if mode == Consistency::Session {
                // After the handler, so the token covers everything its
                // reads saw: on the primary, when they went there.
                let now = if from_primary || config.repo.replica_down() {
                    config.repo.primary_seen_position().await
                } else {
                    config.repo.seen_position().await
                };
                if let Some(now) = now {
                    record.seen = Some(WalPosition::latest(record.seen, now));
                }
            }
            if from_primary {
                response
                    .headers_mut()
                    .insert(super::READ_FROM_HEADER, HeaderValue::from_static("primary"));
            }
            if capped && let Ok(value) = HeaderValue::from_str(&mode.to_string()) {
                response
                    .headers_mut()
                    .insert(super::CONSISTENCY_HEADER, value);
            }
            server_timing(&mut response, waited, &record);
            respond_with_token(&config, incoming.token, &record, secure, &mut response).await;
            Ok(response)
        })
    }
}

fn server_timing<B>(response: &mut Response<B>, waited: Option<Duration>, record: &RequestRecord) {
    let mut timing: Vec<String> = waited
        .map(|waited| {
            crate::write_timings::metric("fly-lsn-wait", "wait for the session's token", waited)
        })
        .into_iter()
        .collect();
    timing.extend(record.timings.map(|t| t.server_timing()));
    if !timing.is_empty()
        && let Ok(value) = HeaderValue::from_str(&timing.join(", "))
    {
        response.headers_mut().append(SERVER_TIMING, value);
    }
}

/// Puts the raised token in the response (header and cookie), merged with
/// one an inner layer (another repo's) set already; nothing when it did
/// not rise.
async fn respond_with_token<B>(
    config: &ConsistencyLayer,
    mut token: Token,
    record: &RequestRecord,
    secure: bool,
    response: &mut Response<B>,
) {
    let repo = &config.repo;
    let mut raised = false;
    if record.written.is_some() || record.seen.is_some() {
        match repo.system_id().await {
            Ok(system_id) => {
                for position in [record.written, record.seen].into_iter().flatten() {
                    raised |= token.raise(system_id, position);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no consistency token: the database's identity could not be read")
            }
        }
    }
    let from_inner = response
        .headers()
        .get(LSN_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|text| Token::decode(text, repo.token_keys()).ok());
    if let Some(inner) = from_inner {
        token.merge(&inner);
        raised = true;
    }
    if !raised || token.is_empty() {
        return;
    }
    let Some(key) = repo.token_keys().first() else {
        return;
    };
    let text = token.encode(key);
    let headers = response.headers_mut();
    let others: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !v.as_bytes().starts_with(LSN_COOKIE.as_bytes()))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in others {
        headers.append(header::SET_COOKIE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&text) {
        headers.insert(LSN_HEADER, value);
    }
    let cookie = format!(
        "{LSN_COOKIE}={text}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
        config.cookie_max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.append(header::SET_COOKIE, value);
    }
}

impl<S> Layer<S> for ConsistencyLayer {
    type Service = ConsistencyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConsistencyService::new(inner, self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bounds_are_clamped_then_capped() {
        let ms = Duration::from_millis;
        let bounded = |d| Some(Consistency::Bounded(d));
        let session = Consistency::Session;
        let ryw = Consistency::ReadYourWrites;
        // Default layer: a tight header bound is raised to the floor.
        assert_eq!(
            mode_for(ryw, session, ms(1000), bounded(ms(1))),
            (Consistency::Bounded(ms(1000)), true)
        );
        assert_eq!(
            mode_for(ryw, session, ms(1000), bounded(ms(5000))),
            (Consistency::Bounded(ms(5000)), false)
        );
        // A ceiling below bounded reads caps any bound, tight or loose.
        for asked in [ms(1), ms(5000)] {
            assert_eq!(mode_for(ryw, ryw, ms(1000), bounded(asked)), (ryw, true));
        }
        // The layer's own bound is always allowed.
        let own = Consistency::Bounded(ms(200));
        assert_eq!(
            mode_for(own, session, ms(1000), bounded(ms(100))),
            (own, true)
        );
        assert_eq!(
            mode_for(own, session, ms(1000), bounded(ms(200))),
            (own, false)
        );
        assert_eq!(mode_for(own, session, ms(1000), None), (own, false));
    }
}
