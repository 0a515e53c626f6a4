//! Every [`Error`] as an HTTP answer a client can act on, with the write's
//! outcome class in the body, and nothing a stranger should not see.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{Error, WriteOutcome};
use crate::error_kind::ErrorKind;

/// An HTTP error answer: status, a machine-readable `code`, a message for
/// people, the write's outcome class, and the request id to settle an
/// unknown outcome with. As JSON:
///
/// ```json
/// {"error": "maybe_committed", "message": "...", "committed": "unknown", "request_id": "..."}
/// ```
///
/// `From<Error>` (and `IntoResponse for Error`) choose by class:
///
/// | error | status | `error` | `committed` |
/// | --- | --- | --- | --- |
/// | committed, output not shown ([`Error::ReplicationTimeout`], [`Error::CommittedButUnreadable`]) | 202 | `committed` | `true` |
/// | outcome unknown ([`Error::MaybeCommitted`], [`Error::RpcTimeout`]) | 503 | `maybe_committed` | `"unknown"`, with `request_id` |
/// | no primary-region instance took it, or it refused the call | 503 | `primary_unreachable` | `false` |
/// | unique or foreign-key violation | 409 | `conflict`, with `constraint` | `false` |
/// | check or not-null violation | 422 | `invalid`, with `constraint` | `false` |
/// | request id reused for another write | 422 | `idempotency_key_reused` | `false` |
/// | invalid request id | 400 | `bad_request` | `false` |
/// | the mutation's own error ([`Error::App`]: its `Display` is shown) | 422 | `rejected` | `false` |
/// | `fetch_one` found no row (`sqlx::Error::RowNotFound`) | 404 | `not_found` | `false` |
/// | the session's earlier write was lost in an asynchronous failover ([`Error::WriteLost`]) | 410 | `write_lost` | `false` |
/// | serialization failure or deadlock | 503 | `try_again` | `false` |
/// | database unreachable, out of connections, shutting down | 503 | `database_unavailable` | `false` |
/// | anything else (configuration, SQL errors, decode) | 500 | `internal` | `false` |
///
/// 503s carry `Retry-After: 1`. Messages are the library's own words: no
/// SQL, no addresses, no database message beyond the constraint's name;
/// the full error goes to the log (`warn` for 5xx, `debug` otherwise).
#[derive(Debug, Clone)]
pub struct ErrorResponse {
    status: StatusCode,
    code: &'static str,
    message: String,
    outcome: WriteOutcome,
    request_id: Option<String>,
    constraint: Option<String>,
}

impl ErrorResponse {
    /// An answer of the app's own (a 404, a validation failure): nothing
    /// was written.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ErrorResponse {
            status,
            code,
            message: message.into(),
            outcome: WriteOutcome::NotCommitted,
            request_id: None,
            constraint: None,
        }
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code (`conflict`, `maybe_committed`, ...).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The write's outcome class.
    pub fn outcome(&self) -> WriteOutcome {
        self.outcome
    }

    /// The request id to repeat the request with (as `Idempotency-Key`).
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "error": self.code,
            "message": self.message,
            "committed": self.outcome.as_json(),
        });
        if let Some(id) = &self.request_id {
            body["request_id"] = id.as_str().into();
        }
        if let Some(constraint) = &self.constraint {
            body["constraint"] = constraint.as_str().into();
        }
        body
    }
}

impl From<&Error> for ErrorResponse {
    fn from(error: &Error) -> Self {
        let outcome = error.outcome();
        let (status, code, message) = classify(error);
        let constraint = error
            .as_database_error()
            .filter(|_| {
                status == StatusCode::CONFLICT || status == StatusCode::UNPROCESSABLE_ENTITY
            })
            .and_then(|db| db.constraint())
            .map(str::to_owned);
        if status.is_server_error() {
            tracing::warn!(%error, status = status.as_u16(), "request failed");
        } else {
            tracing::debug!(%error, status = status.as_u16(), "request refused");
        }
        ErrorResponse {
            status,
            code,
            message,
            outcome,
            request_id: error.request_id().map(str::to_owned),
            constraint,
        }
    }
}

impl From<Error> for ErrorResponse {
    fn from(error: Error) -> Self {
        ErrorResponse::from(&error)
    }
}

/// Status, code and message of each error: status and code from its
/// [`ErrorKind`], the message written for a client.
fn classify(error: &Error) -> (StatusCode, &'static str, String) {
    let kind = error.kind();
    let status =
        StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, kind.as_str(), message(kind, error))
}

fn message(kind: ErrorKind, error: &Error) -> String {
    let on = |what: &str| match error.as_database_error().and_then(|db| db.constraint()) {
        Some(c) => format!("{what} (constraint {c})"),
        None => what.to_owned(),
    };
    match kind {
        ErrorKind::Committed => match error {
            Error::ReplicationTimeout { .. } => "the write committed, but this region's replica \
                 has not replayed it yet: do not send it again"
                .to_owned(),
            _ => "the write committed, but its result cannot be shown: do not send it again"
                .to_owned(),
        },
        ErrorKind::MaybeCommitted => match error.request_id() {
            Some(id) => format!(
                "the write may have committed; repeat the request with the header \
                 `Idempotency-Key: {id}` to settle it"
            ),
            None => "the write may have committed; check before sending it again".to_owned(),
        },
        ErrorKind::PrimaryUnreachable => {
            "the primary region cannot take writes right now; nothing was written".to_owned()
        }
        ErrorKind::Conflict
            if error
                .as_database_error()
                .is_some_and(|db| db.is_unique_violation()) =>
        {
            on("a row with this value already exists")
        }
        ErrorKind::Conflict => on("a row this refers to does not exist, or is still referred to"),
        ErrorKind::Invalid => on("the data is not valid"),
        ErrorKind::TryAgain => {
            "the write met a concurrent one; nothing was written, try again".to_owned()
        }
        ErrorKind::Unavailable => {
            "the database cannot serve right now; try again shortly".to_owned()
        }
        ErrorKind::Rejected => error.to_string(),
        ErrorKind::WriteLost => crate::error::WRITE_LOST_ANSWER.to_owned(),
        ErrorKind::RequestIdReused => "this Idempotency-Key was already used for a different \
             request; nothing was written"
            .to_owned(),
        ErrorKind::BadRequest => match error {
            Error::InvalidRequestId { reason } => format!("invalid Idempotency-Key: {reason}"),
            _ => "bad request".to_owned(),
        },
        ErrorKind::NotFound => "not found".to_owned(),
        _ => "internal error".to_owned(),
    }
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// See [`ErrorResponse`] for the status and body of each error.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        ErrorResponse::from(&self).into_response()
    }
}
