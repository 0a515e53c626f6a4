//! The `Idempotency-Key` request header as a write's request id: a client
//! that repeats a request with the same key after any error (a timeout, a
//! 503 "maybe committed") gets the first write's result, not a second
//! write.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::error_response::ErrorResponse;

/// The header's name.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A request's `Idempotency-Key`, valid as a request id: 1 to 128
/// characters out of `A-Z a-z 0-9 - _ . :` (UUIDs, ULIDs and hex fit).
/// Pass it to [`crate::Write::request_id`], or take it as
/// `Option<IdempotencyKey>` (the header is optional then, but still
/// refused when invalid) and pass that to [`crate::Write::request_id_opt`].
///
/// **Keys are global unless scoped.** A key names one write for the whole
/// app: a client who learns or guesses another user's key could claim it
/// first, or read the recorded result of a write with the same arguments.
/// Where clients are not one party, scope each key to who sent it
/// ([`IdempotencyKey::scoped`] with the user, session or API key id), as
/// payment APIs do: two scopes never share a write.
///
// Not run as a doctest: a handler; the edge tests send it requests.
/// ```no_run
/// use axum::{Json, extract::State};
/// use fly_postgres::{Error, IdempotencyKey, Repo, Statement, Written};
///
/// async fn touch(
///     State(repo): State<Repo>,
///     key: Option<IdempotencyKey>,
/// ) -> Result<Written<u64>, Error> {
///     let update = fly_postgres::query("update counters set n = n + 1");
///     repo.execute(update).request_id_opt(key).written().await
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// A key checked by the request-id rule.
    pub fn new(key: impl Into<String>) -> Result<Self, IdempotencyKeyRejection> {
        let key = key.into();
        crate::request_key::validate(&key).map_err(|e| IdempotencyKeyRejection::Invalid {
            reason: match e {
                crate::Error::InvalidRequestId { reason } => reason,
                other => other.to_string(),
            },
        })?;
        Ok(IdempotencyKey(key))
    }

    /// The key as seen within `scope` (the user, session or API key that
    /// sent it): the same key from two scopes names two writes, and within
    /// one scope it names one, as before. The result is the request id the
    /// write is recorded under (`<scope digest>.<key>`, or a digest of a key
    /// too long for both); scoping it again in the same scope returns it
    /// unchanged, so a client that repeats a request with the id a
    /// "maybe committed" answer named reaches the same write.
    ///
    /// ```
    /// use fly_postgres::IdempotencyKey;
    ///
    /// let key = IdempotencyKey::new("order-17")?;
    /// let alice = key.clone().scoped("user:alice");
    /// let bob = key.scoped("user:bob");
    /// assert_ne!(alice, bob);
    /// assert_eq!(alice.clone().scoped("user:alice"), alice);
    /// assert!(alice.as_str().ends_with(".order-17"));
    /// # Ok::<(), fly_postgres::IdempotencyKeyRejection>(())
    /// ```
    pub fn scoped(self, scope: impl AsRef<[u8]>) -> IdempotencyKey {
        use sha2::Digest;
        let digest = sha2::Sha256::new()
            .chain_update(b"fly-postgres idempotency scope\0")
            .chain_update(scope.as_ref())
            .finalize();
        let prefix = format!("{}.", &hex::encode(digest)[..16]);
        if self.0.starts_with(&prefix) {
            return self;
        }
        let id = format!("{prefix}{}", self.0);
        if id.len() <= crate::MAX_REQUEST_ID_LEN {
            return IdempotencyKey(id);
        }
        let key_digest = hex::encode(sha2::Sha256::digest(self.0.as_bytes()));
        IdempotencyKey(format!("{prefix}h{}", &key_digest[..40]))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    fn from_parts(parts: &Parts) -> Result<Option<Self>, IdempotencyKeyRejection> {
        let mut values = parts.headers.get_all(IDEMPOTENCY_KEY).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(IdempotencyKeyRejection::Repeated);
        }
        let key = value
            .to_str()
            .map_err(|_| IdempotencyKeyRejection::Invalid {
                reason: "it is not visible ASCII; only letters, digits and - _ . : are allowed"
                    .into(),
            })?;
        IdempotencyKey::new(key).map(Some)
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> Self {
        key.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A required key: a request without one is refused.
impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = IdempotencyKeyRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        IdempotencyKey::from_parts(parts)?.ok_or(IdempotencyKeyRejection::Missing)
    }
}

/// An optional key: absent is `None`, invalid is still refused.
impl<S: Send + Sync> OptionalFromRequestParts<S> for IdempotencyKey {
    type Rejection = IdempotencyKeyRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        IdempotencyKey::from_parts(parts)
    }
}

/// Why an `Idempotency-Key` was refused: `400` with the rule in words
/// (`{"error": "bad_request", "committed": false, ...}`); the handler did
/// not run, nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyKeyRejection {
    /// The route requires the header and the request has none.
    #[error("this request needs an Idempotency-Key header")]
    Missing,
    /// The header was sent more than once.
    #[error("send the Idempotency-Key header once")]
    Repeated,
    /// The key breaks the rule.
    #[error(
        "invalid Idempotency-Key: {reason} (the rule: 1 to 128 characters out of \
         A-Z a-z 0-9 - _ . :, so a UUID fits)"
    )]
    Invalid {
        /// What is wrong with it.
        reason: String,
    },
}

impl IntoResponse for IdempotencyKeyRejection {
    fn into_response(self) -> Response {
        ErrorResponse::new(StatusCode::BAD_REQUEST, "bad_request", self.to_string()).into_response()
    }
}
