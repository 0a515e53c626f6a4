//! Every failure as a JSON body with the status a client can act on.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An HTTP error answer: `{"error": code, "message": text}`, and for a
/// failed write `"committed"`: `false` (nothing was written: safe to retry),
/// `"unknown"` with the `request_id` to retry with (as the
/// `Idempotency-Key` header) to settle it, or `true` (202, code
/// `committed`: it was written, but its result cannot be shown; do not
/// send it again).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    committed: Option<serde_json::Value>,
    request_id: Option<String>,
}

impl ApiError {
    /// A body the server could not take, with the extractor's status when
    /// that is the reason (413 too big, 415 wrong content type) and 400 for
    /// any other shape.
    pub fn unreadable_body(status: StatusCode, message: impl Into<String>) -> Self {
        let status = match status {
            s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            code: "bad_request",
            message: message.into(),
            committed: None,
            request_id: None,
        }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            committed: None,
            request_id: None,
        }
    }

    /// 404: no such todo.
    pub fn not_found(id: i64) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("no todo with id {id}"),
            committed: None,
            request_id: None,
        }
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code (`conflict`, `maybe_committed`, ...).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<fly_postgres::Error> for ApiError {
    fn from(error: fly_postgres::Error) -> Self {
        use fly_postgres::Error as E;
        let request_id = error.request_id().map(str::to_owned);
        if error.is_maybe_committed() {
            tracing::warn!(%error, "write outcome unknown");
            let message = match &request_id {
                Some(id) => format!(
                    "the write may have committed; repeat the request with the header \
                     `Idempotency-Key: {id}` to settle it ({error})"
                ),
                None => format!("the write may have committed: {error}"),
            };
            return ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "maybe_committed",
                message,
                committed: Some(json!("unknown")),
                request_id,
            };
        }
        if error.is_committed() {
            // Callers turn a committed write with its output into a success;
            // one without must still never read as failed.
            tracing::warn!(%error, "write committed, its result unknown here");
            return ApiError {
                status: StatusCode::ACCEPTED,
                code: "committed",
                message: format!("the write committed; do not send it again: {error}"),
                committed: Some(json!(true)),
                request_id,
            };
        }
        let (status, code) = match &error {
            E::Database(db) if db.is_unique_violation() => (StatusCode::CONFLICT, "conflict"),
            E::Database(db) if db.is_foreign_key_violation() => (StatusCode::CONFLICT, "conflict"),
            E::Database(db) if db.is_check_violation() || db.is_not_null_violation() => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
            }
            E::RequestIdReused { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            E::InvalidRequestId { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            E::NoPrimaryNode { .. }
            | E::Unauthorized { .. }
            | E::UnknownProcedure { .. }
            | E::Rpc(_)
            | E::Primary { .. } => (StatusCode::SERVICE_UNAVAILABLE, "primary_unreachable"),
            E::Sql(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            e if e.is_unavailable() => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = match code {
            "primary_unreachable" => format!(
                "the primary region cannot take writes right now; nothing was written: {error}"
            ),
            _ => error.to_string(),
        };
        if status.is_server_error() {
            tracing::warn!(%error, "request failed");
        }
        // Every failed write here is certainly not committed.
        let committed =
            (code != "database_unavailable" && code != "internal").then_some(json!(false));
        ApiError {
            status,
            code,
            message,
            committed,
            request_id,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code, "message": self.message});
        if let Some(committed) = self.committed {
            body["committed"] = committed;
        }
        if let Some(id) = self.request_id {
            body["request_id"] = json!(id);
        }
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn answer(error: fly_postgres::Error) -> (StatusCode, serde_json::Value) {
        let response = ApiError::from(error).into_response();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn unknown_outcomes_are_told_apart_from_nothing_written() {
        let (status, body) = answer(fly_postgres::Error::MaybeCommitted {
            mutation: "todo.create".into(),
            request_id: Some("abc123".into()),
            attempts: 9,
            reason: "connection reset".into(),
        })
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "maybe_committed");
        assert_eq!(body["committed"], "unknown");
        assert_eq!(body["request_id"], "abc123");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key: abc123")
        );

        let (status, body) = answer(fly_postgres::Error::RpcTimeout {
            mutation: "todo.create".into(),
            after: std::time::Duration::from_secs(5),
            request_id: "def456".into(),
        })
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["committed"], "unknown");
        assert_eq!(body["request_id"], "def456");

        let (status, body) = answer(fly_postgres::Error::NoPrimaryNode {
            region: "syd".into(),
            tried: 4,
            last_error: "connection refused".into(),
        })
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "primary_unreachable");
        assert_eq!(body["committed"], false);
        assert!(body.get("request_id").is_none());
    }

    #[tokio::test]
    async fn a_committed_write_never_answers_as_failed() {
        let (status, body) = answer(fly_postgres::Error::CommittedButUnreadable {
            reason: "its WAL position could not be read".into(),
            output: None,
        })
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body["error"], "committed");
        assert_eq!(body["committed"], true);
    }

    #[tokio::test]
    async fn a_database_out_of_reach_is_a_503_not_a_500() {
        let (status, body) = answer(fly_postgres::Error::NoConnection {
            in_use: 10,
            max: 10,
            reason: "the database refuses new connections: sorry, too many clients already".into(),
        })
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "database_unavailable");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("too many clients")
        );
    }
}
