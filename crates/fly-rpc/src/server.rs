//! The RPC endpoint: axum routes that authenticate, dispatch and isolate.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::auth::Rejection;
use crate::procedure::CallContext;
use crate::registry::{ErasedHandler, Outcome};
use crate::state::NodeInner;
use crate::wire::{
    CALL_PATH, H_CALLER_REGION, H_IDEMPOTENCY_KEY, H_REQUIRE_PRIMARY, INFO_PATH, WireError,
    WireErrorKind,
};

pub(crate) fn router(node: Arc<NodeInner>) -> Router {
    let limit = node.config.max_body;
    Router::new()
        .route(&format!("{CALL_PATH}{{name}}"), post(call))
        .route(INFO_PATH, get(info))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(node)
}

fn reply(status: StatusCode, error: WireError) -> Response {
    (status, axum::Json(error)).into_response()
}

fn unauthorized(rejection: Rejection) -> Response {
    reply(
        StatusCode::UNAUTHORIZED,
        WireError::new(WireErrorKind::Unauthorized, rejection.to_string()),
    )
}

async fn call(
    State(node): State<Arc<NodeInner>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let handler = node.registry.handler(&name);
    // Only registered names become labels: strangers cannot blow up the
    // metric's cardinality.
    let label = if handler.is_some() {
        name.clone()
    } else {
        "_unknown".to_owned()
    };
    let response = dispatch(&node, &name, handler, &headers, body).await;
    let status = response.status();
    metrics::counter!("fly_rpc_server_requests_total", "procedure" => label, "status" => status.as_u16().to_string())
        .increment(1);
    response
}

async fn dispatch(
    node: &NodeInner,
    name: &str,
    handler: Option<ErasedHandler>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                WireError::new(
                    WireErrorKind::PayloadTooLarge,
                    format!(
                        "request body is over the limit of {} bytes",
                        node.config.max_body
                    ),
                ),
            );
        }
        Err(rejection) => {
            return reply(
                StatusCode::BAD_REQUEST,
                WireError::new(WireErrorKind::BadRequest, rejection.body_text()),
            );
        }
    };
    let path = format!("{CALL_PATH}{name}");
    if let Err(rejection) = node.auth.verify("POST", &path, headers, &body) {
        tracing::warn!(procedure = name, %rejection, "rejected an unauthenticated RPC");
        return unauthorized(rejection);
    }
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
    if headers.contains_key(H_REQUIRE_PRIMARY) {
        if let Some(check) = &node.primary_check {
            if !check().await {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    WireError::new(
                        WireErrorKind::NotPrimary,
                        "this node's database is not the primary",
                    ),
                );
            }
        }
    }
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let ctx = CallContext {
        caller_region: header_text(H_CALLER_REGION).unwrap_or_default(),
        idempotency_key: header_text(H_IDEMPOTENCY_KEY),
        local: false,
    };
    // Its own task: a panic stays there (500, the node keeps serving), and a
    // caller that hangs up does not cancel a handler halfway through.
    let outcome = tokio::spawn(handler(body, ctx)).await;
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

async fn info(State(node): State<Arc<NodeInner>>, headers: HeaderMap) -> Response {
    if let Err(rejection) = node.auth.verify("GET", INFO_PATH, &headers, b"") {
        return unauthorized(rejection);
    }
    axum::Json(node.info()).into_response()
}
