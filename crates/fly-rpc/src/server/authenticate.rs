//! Authenticating a request: its headers checked before its body is read,
//! the body read under the node's limits, then checked against the MAC.

use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header::HOST};
use axum::response::Response;

use crate::auth::{Arrival, Pending, Rejection};
use crate::body_budget::{BodyRefusal, BudgetedBody};
use crate::serve::ConnInfo;
use crate::state::NodeInner;
use crate::wire::{WireError, WireErrorKind};

use super::reply;

/// One answer for every unauthenticated request, whatever was wrong: a
/// stranger learns nothing (not even this node's clock). The reason goes
/// to the metric and the rate-limited log.
fn unauthorized(node: &NodeInner, rejection: Rejection, path: &str) -> Response {
    // The path is the stranger's text: quoted (no forged log lines) and cut.
    let shown: String = path.chars().take(128).collect();
    node.rejections
        .record(rejection.reason(), &format_args!("{rejection} ({shown:?})"));
    if rejection == Rejection::BeforeStart {
        // Authentic, but signed before this process started (a restart):
        // the caller is told to sign again; a replay gets nowhere.
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            WireError::new(
                WireErrorKind::Busy,
                "this node has just started; sign again",
            ),
        );
    }
    reply(
        StatusCode::UNAUTHORIZED,
        WireError::new(WireErrorKind::Unauthorized, "unauthorized"),
    )
}

fn refused(node: &NodeInner, refusal: &BodyRefusal) -> Response {
    let (status, kind, reason) = match refusal {
        BodyRefusal::TooLarge(_) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            WireErrorKind::PayloadTooLarge,
            "body_too_large",
        ),
        BodyRefusal::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            WireErrorKind::Busy,
            "body_budget_exhausted",
        ),
        BodyRefusal::Timeout(_) => (
            StatusCode::REQUEST_TIMEOUT,
            WireErrorKind::Busy,
            "body_timeout",
        ),
        BodyRefusal::Broken(_) => (
            StatusCode::BAD_REQUEST,
            WireErrorKind::BadRequest,
            "body_broken",
        ),
    };
    node.rejections.record(reason, refusal);
    reply(status, WireError::new(kind, refusal.to_string()))
}

/// The `host:port` the caller addressed: the HTTP/2 `:authority`, or the
/// HTTP/1.1 `Host` header.
fn target(parts: &Parts) -> Option<&str> {
    parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| parts.headers.get(HOST).and_then(|h| h.to_str().ok()))
}

/// Header checks, then the body under the node's limits, then the MAC.
pub(super) async fn authenticate(
    node: &NodeInner,
    method: &str,
    path: &str,
    request: Request,
) -> Result<(HeaderMap, BudgetedBody), Response> {
    let (parts, body) = request.into_parts();
    let conn = parts.extensions.get::<ConnInfo>();
    let arrival = Arrival {
        target: target(&parts),
        local: conn.map(|c| c.local),
        advertised: &node.config.advertised,
    };
    let pending: Pending = node
        .auth
        .precheck(method, path, &parts.headers, arrival)
        .map_err(|r| unauthorized(node, r, path))?;
    if let Some(conn) = conn {
        conn.trusted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let body = node
        .body_budget
        .read(&parts.headers, axum::body::Body::new(body))
        .await
        .map_err(|r| refused(node, &r))?;
    node.auth
        .finish(pending, &body.bytes)
        .map_err(|r| unauthorized(node, r, path))?;
    Ok((parts.headers, body))
}
