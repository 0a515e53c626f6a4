//! The todo app's own refusals, in the library's error shape: every
//! failure a client sees, the library's (`fly_postgres::Error`) and the
//! app's, is one JSON body with one set of codes.

use axum::http::StatusCode;

/// An error answer: `fly_postgres::ErrorResponse`, which every
/// `fly_postgres::Error` converts into with the status of its class.
pub use fly_postgres::ErrorResponse as ApiError;

/// A body the server could not take, with the extractor's status when that
/// is the reason (413 too big, 415 wrong content type) and 400 otherwise.
pub(crate) fn unreadable_body(status: StatusCode, message: impl Into<String>) -> ApiError {
    let status = match status {
        s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, "bad_request", message)
}

/// 400: the request itself is wrong.
pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// 404: no such todo.
pub(crate) fn not_found(id: i64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no todo with id {id}"),
    )
}
