//! The `Idempotency-Key` request header, passed to the library as the
//! write's request id: a client that retries with the same key after any
//! error (a timeout, a 503 "maybe committed") gets the first write's result
//! instead of a second write.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::api_error::ApiError;

/// The header's name.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The request's `Idempotency-Key`, if it sent one.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get(IDEMPOTENCY_KEY) {
            None => Ok(IdempotencyKey(None)),
            Some(value) => value
                .to_str()
                .map(|key| IdempotencyKey(Some(key.to_owned())))
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII")),
        }
    }
}
