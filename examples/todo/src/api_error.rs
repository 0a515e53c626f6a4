//! Every failure as a JSON body with the status a client can act on.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An HTTP error answer: `{"error": code, "message": text}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    /// 404: no such todo.
    pub fn not_found(id: i64) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("no todo with id {id}"),
        }
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<fly_postgres::Error> for ApiError {
    fn from(error: fly_postgres::Error) -> Self {
        use fly_postgres::Error as E;
        let (status, code) = match &error {
            E::Database(db) if db.is_unique_violation() => (StatusCode::CONFLICT, "conflict"),
            E::Database(db) if db.is_foreign_key_violation() => (StatusCode::CONFLICT, "conflict"),
            E::Database(db) if db.is_check_violation() || db.is_not_null_violation() => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
            }
            E::NoPrimaryNode { .. }
            | E::RpcTimeout { .. }
            | E::Unauthorized { .. }
            | E::UnknownProcedure { .. }
            | E::Rpc(_)
            | E::Primary { .. } => (StatusCode::SERVICE_UNAVAILABLE, "primary_unreachable"),
            E::Sql(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = match code {
            "primary_unreachable" => {
                format!("the primary region cannot take writes right now: {error}")
            }
            _ => error.to_string(),
        };
        if status.is_server_error() {
            tracing::warn!(%error, "request failed");
        }
        ApiError {
            status,
            code,
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}
