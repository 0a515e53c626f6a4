//! The RPC endpoint: axum routes that check a request's headers before
//! reading its body, then authenticate, dispatch and isolate.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header::HOST};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::auth::{Arrival, Pending, Rejection};
use crate::body_budget::{BodyRefusal, BudgetedBody};
use crate::procedure::CallContext;
use crate::registry::{ErasedHandler, Outcome};
use crate::serve::ConnInfo;
use crate::state::NodeInner;
use crate::trace_context;
use crate::wire::{
    CALL_PATH, H_CALLER_REGION, H_IDEMPOTENCY_KEY, H_REQUIRE_PRIMARY, INFO_PATH, WireError,
    WireErrorKind,
};
use tracing::Instrument;

pub(crate) fn router(node: Arc<NodeInner>) -> Router {
    Router::new()
        .route(&format!("{CALL_PATH}{{name}}"), post(call))
        .route(INFO_PATH, get(info))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(node)
}

fn reply(status: StatusCode, error: WireError) -> Response {
    (status, axum::Json(error)).into_response()
}

async fn not_found() -> Response {
    reply(
        StatusCode::NOT_FOUND,
        WireError::new(WireErrorKind::BadRequest, "no such fly-rpc endpoint"),
    )
}

async fn method_not_allowed() -> Response {
    reply(
        StatusCode::METHOD_NOT_ALLOWED,
        WireError::new(
            WireErrorKind::BadRequest,
            "method not allowed on this fly-rpc endpoint",
        ),
    )
}

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
async fn authenticate(
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

async fn call(
    State(node): State<Arc<NodeInner>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let handler = node.registry.handler(&name);
    // Only registered names become labels: strangers cannot blow up the
    // metric's cardinality.
    let label = if handler.is_some() {
        name.clone()
    } else {
        "_unknown".to_owned()
    };
    let path = format!("{CALL_PATH}{name}");
    let response = match authenticate(&node, "POST", &path, request).await {
        Ok((headers, body)) => dispatch(&node, &name, handler, &headers, body).await,
        Err(response) => response,
    };
    let status = response.status();
    crate::metric::counter!("fly_rpc_server_requests_total", "procedure" => label, "status" => status.as_u16().to_string())
        .increment(1);
    response
}

async fn dispatch(
    node: &NodeInner,
    name: &str,
    handler: Option<ErasedHandler>,
    headers: &HeaderMap,
    body: BudgetedBody,
) -> Response {
    let Some(handler) = handler else {
        let mut error = WireError::new(
            WireErrorKind::UnknownProcedure,
            format!(
                "this node (version {}) has no procedure `{name}`",
                node.config.version
            ),
        );
        error.procedure = Some(name.to_owned());
        error.version = Some(node.config.version.clone());
        error.procedures = Some(node.registry.names());
        return reply(StatusCode::NOT_FOUND, error);
    };
    if headers.contains_key(H_REQUIRE_PRIMARY)
        && let Some(check) = &node.primary_check
        && !check().await
    {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            WireError::new(
                WireErrorKind::NotPrimary,
                "this node's database is not the primary",
            ),
        );
    }
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (span, trace) = trace_context::serving_span(name, headers);
    let ctx = CallContext {
        caller_region: header_text(H_CALLER_REGION).unwrap_or_default(),
        idempotency_key: header_text(H_IDEMPOTENCY_KEY),
        local: false,
        trace_context: trace.clone(),
    };
    // Its own task: a panic stays there (500, the node keeps serving), and a
    // caller that hangs up does not cancel a handler halfway through. The
    // body's bytes count against the budget until the handler is done. It
    // runs in the call's trace, so its own calls continue it.
    let outcome = tokio::spawn(
        trace_context::within(trace, async move {
            let outcome = handler(body.bytes.clone(), ctx).await;
            drop(body);
            outcome
        })
        .instrument(span),
    )
    .await;
    match outcome {
        Ok(Outcome::Ok(output)) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            output,
        )
            .into_response(),
        Ok(Outcome::BadArgs(message)) => {
            let mut error = WireError::new(WireErrorKind::BadRequest, message);
            error.procedure = Some(name.to_owned());
            reply(StatusCode::BAD_REQUEST, error)
        }
        Ok(Outcome::Failed { message, payload }) => {
            let mut error = WireError::new(WireErrorKind::Remote, message);
            error.procedure = Some(name.to_owned());
            error.payload = Some(payload);
            reply(StatusCode::UNPROCESSABLE_ENTITY, error)
        }
        Ok(Outcome::Unencodable(message)) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            WireError::new(
                WireErrorKind::Internal,
                format!("`{name}` produced a value that does not serialize: {message}"),
            ),
        ),
        Err(join) => {
            tracing::error!(
                procedure = name,
                panicked = join.is_panic(),
                "RPC handler did not finish"
            );
            let mut error =
                WireError::new(WireErrorKind::Panic, format!("procedure `{name}` panicked"));
            error.procedure = Some(name.to_owned());
            reply(StatusCode::INTERNAL_SERVER_ERROR, error)
        }
    }
}

async fn info(State(node): State<Arc<NodeInner>>, request: Request) -> Response {
    match authenticate(&node, "GET", INFO_PATH, request).await {
        Ok(_) => axum::Json(node.info()).into_response(),
        Err(response) => response,
    }
}
