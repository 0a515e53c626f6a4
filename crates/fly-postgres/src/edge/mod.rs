//! The HTTP edge for axum apps (feature `axum`): the write outcome classes
//! carried to clients as statuses and JSON bodies, the `Idempotency-Key`
//! header as a write's request id, and serving with a graceful stop.
//!
//! - [`ErrorResponse`], and `IntoResponse` for [`crate::Error`]: every
//!   failure as `{"error": code, "message", "committed": true|false|"unknown",
//!   "request_id"?}` with the status a client can act on;
//! - [`IdempotencyKey`]: the header, validated by the request-id rule;
//! - `IntoResponse` for [`crate::Written`]: a committed write's output with
//!   `fly-replicated: true|false`;
//! - [`crate::Repo::serve`]: the app's port and the RPC port, both stopped
//!   by SIGTERM with what is in flight finished.

mod error_response;
mod idempotency_key;
mod serve;
mod written_response;

pub use error_response::ErrorResponse;
pub use idempotency_key::{IDEMPOTENCY_KEY, IdempotencyKey, IdempotencyKeyRejection};
pub use written_response::REPLICATED_HEADER;
