//! The service that waits for a request's LSN and reports the LSN it wrote.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_service::Service;

use super::{LSN_COOKIE, LSN_HEADER, recording, requested_lsn};
use crate::middleware_support::{take_ready, text_response};
use crate::repo::Repo;

/// See [`super::ConsistencyLayer`].
#[derive(Debug, Clone)]
pub struct ConsistencyService<S> {
    inner: S,
    repo: Repo,
    cookie_max_age: Duration,
}

impl<S> ConsistencyService<S> {
    pub(super) fn new(inner: S, repo: Repo, cookie_max_age: Duration) -> Self {
        ConsistencyService {
            inner,
            repo,
            cookie_max_age,
        }
    }
}

/// The standard header browsers' developer tools show per request.
const SERVER_TIMING: header::HeaderName = header::HeaderName::from_static("server-timing");

/// More WAL than any real write can be ahead of a replica that was seen
/// recently: a client asking for that would only tie the request up until
/// the timeout.
const IMPLAUSIBLE_AHEAD: u64 = 64 << 30;

fn implausible(repo: &Repo, lsn: crate::lsn::Lsn) -> bool {
    repo.tracker()
        .last_replayed()
        .is_some_and(|seen| lsn.as_u64().saturating_sub(seen.as_u64()) > IMPLAUSIBLE_AHEAD)
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
        let repo = self.repo.clone();
        let max_age = self.cookie_max_age.as_secs();
        let wanted = requested_lsn(request.headers());
        Box::pin(async move {
            let mut lsn_wait = None;
            match wanted {
                Err(bad) => return Ok(text_response(StatusCode::BAD_REQUEST, bad.0)),
                Ok(Some(lsn)) if implausible(&repo, lsn) => {
                    return Ok(text_response(
                        StatusCode::BAD_REQUEST,
                        format!("LSN {lsn} is far ahead of anything this database has seen"),
                    ));
                }
                Ok(Some(lsn)) => {
                    let waiting = std::time::Instant::now();
                    let waited = repo.wait_for(lsn).await;
                    lsn_wait = Some(waiting.elapsed());
                    if let Err(e) = waited {
                        let mut response = text_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "this region's replica has not caught up with your last write yet: {e}"
                            ),
                        );
                        response
                            .headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                        return Ok(response);
                    }
                }
                Ok(None) => {}
            }
            let (response, written) = recording(inner.call(request)).await;
            let mut response = response?;
            let mut timing: Vec<String> = lsn_wait
                .map(|waited| {
                    crate::repo::server_timing_metric(
                        "fly-lsn-wait",
                        "wait for the client's last write",
                        waited,
                    )
                })
                .into_iter()
                .collect();
            timing.extend(written.timings.map(|t| t.server_timing()));
            if !timing.is_empty()
                && let Ok(value) = HeaderValue::from_str(&timing.join(", "))
            {
                response.headers_mut().append(SERVER_TIMING, value);
            }
            if let Some(lsn) = written.lsn {
                let headers = response.headers_mut();
                if let Ok(value) = HeaderValue::from_str(&lsn.to_string()) {
                    headers.insert(LSN_HEADER, value);
                }
                let cookie = format!(
                    "{LSN_COOKIE}={lsn}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
                );
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    headers.append(header::SET_COOKIE, value);
                }
            }
            Ok(response)
        })
    }
}
