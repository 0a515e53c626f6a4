//! The RPC endpoint: axum routes that check a request's headers before
//! reading its body, then authenticate, dispatch and isolate.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header::HOST};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;

use crate::auth::{Arrival, Pending, Rejection};
use crate::batch_wire::{BATCH_CONTENT_TYPE, decode_request, encode_record};
use crate::body_budget::{BodyRefusal, BudgetedBody};
use crate::procedure::CallContext;
use crate::registry::{ErasedHandler, Outcome};
use crate::serve::ConnInfo;
use crate::state::NodeInner;
use crate::trace_context;
use crate::wire::{
    BATCH_PATH, CALL_PATH, H_CALLER_REGION, H_IDEMPOTENCY_KEY, H_REQUIRE_PRIMARY, INFO_PATH,
    WireError, WireErrorKind,
};
use tracing::Instrument;

pub(crate) fn router(node: Arc<NodeInner>) -> Router {
    let router = Router::new().route(&format!("{CALL_PATH}{{name}}"), post(call));
    // Without batches the path is unknown, as to a version before them.
    let router = if node.coalescer.enabled() {
        router.route(BATCH_PATH, post(batch))
    } else {
        router
    };
    router
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
    let known = handler.is_some();
    let path = format!("{CALL_PATH}{name}");
    let response = match authenticate(&node, "POST", &path, request).await {
        Ok((headers, body)) => {
            let bytes = body.bytes.clone();
            dispatch(&node, &name, handler, &headers, bytes, body)
                .await
                .into_response()
        }
        Err(response) => response,
    };
    count_request(&name, known, response.status());
    response
}

/// The metric label of batch requests refused as a whole.
const BATCH_LABEL: &str = "_batch";

/// Counts a served call under its procedure's name; only registered
/// (`known`) names become labels, so strangers cannot blow up the metric's
/// cardinality.
fn count_request(name: &str, known: bool, status: StatusCode) {
    let label = if known { name } else { "_unknown" }.to_owned();
    crate::metric::counter!("fly_rpc_server_requests_total", "procedure" => label, "status" => status.as_u16().to_string())
        .increment(1);
}

/// Several calls in one request: authenticated as a whole, every item
/// decoded before any runs, then each dispatched as a lone call would be,
/// concurrently, and its answer streamed back as soon as it is ready.
async fn batch(State(node): State<Arc<NodeInner>>, request: Request) -> Response {
    let (headers, body) = match authenticate(&node, "POST", BATCH_PATH, request).await {
        Ok(read) => read,
        Err(response) => {
            count_request(BATCH_LABEL, true, response.status());
            return response;
        }
    };
    let items = match decode_request(&body.bytes) {
        Ok(items) => items,
        Err(refusal) => {
            node.rejections.record("batch_malformed", &refusal);
            count_request(BATCH_LABEL, true, StatusCode::BAD_REQUEST);
            return reply(
                StatusCode::BAD_REQUEST,
                WireError::new(WireErrorKind::BadRequest, refusal.to_string()),
            );
        }
    };
    crate::metric::counter!("fly_rpc_server_batches_total").increment(1);
    let caller_region = headers.get(H_CALLER_REGION).cloned();
    // Every item's handler holds the batch's body budget until it is done.
    let held = Arc::new(body);
    let answers: FuturesUnordered<_> = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let (node, held) = (Arc::clone(&node), Arc::clone(&held));
            let mut item_headers = item.headers;
            if let Some(region) = &caller_region {
                item_headers.insert(H_CALLER_REGION, region.clone());
            }
            async move {
                let handler = node.registry.handler(&item.procedure);
                let known = handler.is_some();
                let answer = dispatch(
                    &node,
                    &item.procedure,
                    handler,
                    &item_headers,
                    item.body,
                    held,
                )
                .await;
                count_request(&item.procedure, known, answer.status);
                Ok::<_, std::convert::Infallible>(encode_record(index, answer.status, &answer.body))
            }
        })
        .collect();
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, BATCH_CONTENT_TYPE)],
        axum::body::Body::from_stream(answers),
    )
        .into_response()
}

/// A call's answer: what a lone request gets as its response, and a batch
/// item as its record.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    fn error(status: StatusCode, error: WireError) -> Self {
        Answer {
            status,
            // A struct of strings and JSON values always serializes.
            body: Bytes::from(serde_json::to_vec(&error).unwrap_or_default()),
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.body,
        )
            .into_response()
    }
}

/// Runs one authenticated call; `held` (its body's share of the budget)
/// is released when the handler is done.
async fn dispatch(
    node: &NodeInner,
    name: &str,
    handler: Option<ErasedHandler>,
    headers: &HeaderMap,
    bytes: Bytes,
    held: impl Send + 'static,
) -> Answer {
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
        return Answer::error(StatusCode::NOT_FOUND, error);
    };
    if headers.contains_key(H_REQUIRE_PRIMARY)
        && let Some(check) = &node.primary_check
        && !check().await
    {
        return Answer::error(
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
            let outcome = handler(bytes, ctx).await;
            drop(held);
            outcome
        })
        .instrument(span),
    )
    .await;
    match outcome {
        Ok(Outcome::Ok(output)) => Answer {
            status: StatusCode::OK,
            body: Bytes::from(output),
        },
        Ok(Outcome::BadArgs(message)) => {
            let mut error = WireError::new(WireErrorKind::BadRequest, message);
            error.procedure = Some(name.to_owned());
            Answer::error(StatusCode::BAD_REQUEST, error)
        }
        Ok(Outcome::Failed { message, payload }) => {
            let mut error = WireError::new(WireErrorKind::Remote, message);
            error.procedure = Some(name.to_owned());
            error.payload = Some(payload);
            Answer::error(StatusCode::UNPROCESSABLE_ENTITY, error)
        }
        Ok(Outcome::Unencodable(message)) => Answer::error(
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
            Answer::error(StatusCode::INTERNAL_SERVER_ERROR, error)
        }
    }
}

async fn info(State(node): State<Arc<NodeInner>>, request: Request) -> Response {
    match authenticate(&node, "GET", INFO_PATH, request).await {
        Ok(_) => axum::Json(node.info()).into_response(),
        Err(response) => response,
    }
}
