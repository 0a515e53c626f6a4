//! Running one authenticated call, lone or in a batch, and turning its
//! handler's outcome into the answer that travels back.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::task::JoinError;
use tracing::Instrument;

use crate::procedure::CallContext;
use crate::registry::{ErasedHandler, Outcome};
use crate::state::NodeInner;
use crate::trace_context::{self, TraceParent};
use crate::wire::{
    H_CALLER_REGION, H_IDEMPOTENCY_KEY, H_REQUIRE_PRIMARY, WireError, WireErrorKind,
};

/// A call's answer: what a lone request gets as its response, and a batch
/// item as its record.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Bytes,
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
pub(super) async fn dispatch(
    node: &NodeInner,
    name: &str,
    handler: Option<ErasedHandler>,
    headers: &HeaderMap,
    bytes: Bytes,
    held: impl Send + 'static,
) -> Answer {
    let Some(handler) = handler else {
        return unknown_procedure(node, name);
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
    let (span, trace) = trace_context::serving_span(name, headers);
    let ctx = call_context(headers, trace.clone());
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
    answer(name, outcome)
}

/// This node has no procedure `name`: the answer names this node's
/// version and procedures, which the caller's error reports.
fn unknown_procedure(node: &NodeInner, name: &str) -> Answer {
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
    Answer::error(StatusCode::NOT_FOUND, error)
}

/// What the handler learns of the call from its headers.
fn call_context(headers: &HeaderMap, trace: Option<TraceParent>) -> CallContext {
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    CallContext {
        caller_region: header_text(H_CALLER_REGION).unwrap_or_default(),
        idempotency_key: header_text(H_IDEMPOTENCY_KEY),
        local: false,
        trace_context: trace,
    }
}

/// The handler's outcome as it travels: its output, or a wire error of
/// the kind the caller maps back to the same [`crate::Error`].
fn answer(name: &str, outcome: Result<Outcome, JoinError>) -> Answer {
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
