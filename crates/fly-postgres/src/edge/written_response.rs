//! A committed write as a response.

use axum::Json;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::repo::Written;

/// Tells the client whether its next read in this region is sure to see
/// the write (`true`), or may not yet (`false`: not waited for, or the
/// replica was late). Either way the write committed.
pub const REPLICATED_HEADER: &str = "fly-replicated";

/// `200` with the output as JSON and [`REPLICATED_HEADER`]; wrap it as
/// `(StatusCode::CREATED, written)` for another status.
impl<T: Serialize> IntoResponse for Written<T> {
    fn into_response(self) -> Response {
        let mut response = Json(self.output).into_response();
        response.headers_mut().insert(
            REPLICATED_HEADER,
            HeaderValue::from_static(if self.replicated { "true" } else { "false" }),
        );
        response
    }
}
