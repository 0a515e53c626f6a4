//! The RPC endpoint: axum routes that check a request's headers before
//! reading its body, then authenticate, dispatch and isolate.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::NodeInner;
use crate::wire::{BATCH_PATH, CALL_PATH, INFO_PATH, WireError, WireErrorKind};

mod authenticate;
mod batch;
mod dispatch;

use authenticate::authenticate;
use batch::batch;
use dispatch::dispatch;

/// The RPC endpoint's routes, serving `node`.
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

/// A wire error as a response.
fn reply(status: StatusCode, error: WireError) -> Response {
    (status, axum::Json(error)).into_response()
}

/// Any other path.
async fn not_found() -> Response {
    reply(
        StatusCode::NOT_FOUND,
        WireError::new(WireErrorKind::BadRequest, "no such fly-rpc endpoint"),
    )
}

/// A known path with the wrong method.
async fn method_not_allowed() -> Response {
    reply(
        StatusCode::METHOD_NOT_ALLOWED,
        WireError::new(
            WireErrorKind::BadRequest,
            "method not allowed on this fly-rpc endpoint",
        ),
    )
}

/// Serves a lone call.
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

/// Counts a served call under its procedure's name; only registered
/// (`known`) names become labels, so strangers cannot blow up the metric's
/// cardinality.
fn count_request(name: &str, known: bool, status: StatusCode) {
    let label = if known { name } else { "_unknown" }.to_owned();
    crate::metric::counter!("fly_rpc_server_requests_total", "procedure" => label, "status" => status.as_u16().to_string())
        .increment(1);
}

/// Serves a lone call.
async fn info(State(node): State<Arc<NodeInner>>, request: Request) -> Response {
    match authenticate(&node, "GET", INFO_PATH, request).await {
        Ok(_) => axum::Json(node.info()).into_response(),
        Err(response) => response,
    }
}
