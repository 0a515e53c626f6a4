//! The identity of one logical write: its request id, and a digest of what
//! it does, so a reused id with different content is refused, not replayed.

use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Longest request id accepted (an `Idempotency-Key` is usually a UUID).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A write's request id with the digest of its mutation name and arguments.
#[derive(Debug, Clone)]
pub(crate) struct RequestKey {
    pub(crate) id: String,
    pub(crate) digest: String,
    /// How long its record is kept: long for a caller-chosen id (a client
    /// may retry tomorrow), short for a generated one (only this call's
    /// retries use it).
    pub(crate) keep: Duration,
}

impl RequestKey {
    /// Digests `args` (any JSON the mutation serializes to) in canonical form:
    /// object keys sorted, so a map field serialized in another order by a
    /// client's retry still matches.
    pub(crate) fn new(
        id: String,
        mutation: &str,
        args: &serde_json::Value,
        keep: Duration,
    ) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(mutation.as_bytes());
        hasher.update([0]);
        hasher.update(args.to_string().as_bytes());
        RequestKey {
            id,
            digest: hex::encode(hasher.finalize()),
            keep,
        }
    }

    /// The key of `mutation` under `id`.
    pub(crate) fn of<M: Serialize>(
        id: String,
        name: &str,
        mutation: &M,
        keep: Duration,
    ) -> Result<Self, Error> {
        Self::with_args(id, name, mutation, keep).map(|(key, _)| key)
    }

    /// The key of `mutation` under `id`, and the mutation's JSON text.
    pub(crate) fn with_args<M: Serialize>(
        id: String,
        name: &str,
        mutation: &M,
        keep: Duration,
    ) -> Result<(Self, String), Error> {
        // Through the text, as a forwarded write's arguments arrive: the two
        // paths must digest the same value (an f32 differs otherwise).
        let text = args_json(name, mutation)?;
        let key = Self::of_json(id, name, &text, keep).map_err(|e| not_serialized(name, e))?;
        Ok((key, text))
    }

    /// The key of arguments given as JSON text, digested in canonical form
    /// whatever order the text lists their fields in.
    pub(crate) fn of_json(
        id: String,
        name: &str,
        args: &str,
        keep: Duration,
    ) -> Result<Self, serde_json::Error> {
        let args: serde_json::Value = serde_json::from_str(args)?;
        Ok(RequestKey::new(id, name, &args, keep))
    }
}

/// `mutation`'s arguments as the JSON text a forwarded write carries.
pub(crate) fn args_json<M: Serialize>(name: &str, mutation: &M) -> Result<String, Error> {
    serde_json::to_string(mutation).map_err(|e| not_serialized(name, e))
}

fn not_serialized(name: &str, e: serde_json::Error) -> Error {
    Error::Decode {
        message: format!("mutation `{name}` does not serialize: {e}"),
    }
}

/// A fresh random request id (128 bits, hex).
pub(crate) fn generate() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Checks a caller-chosen request id: 1 to 128 characters out of
/// `A-Z a-z 0-9 - _ . :` (UUIDs, ULIDs and hex all fit).
pub(crate) fn validate(id: &str) -> Result<(), Error> {
    let reason = if id.is_empty() {
        "it is empty".to_owned()
    } else if id.len() > MAX_REQUEST_ID_LEN {
        format!(
            "it is {} bytes long; at most {MAX_REQUEST_ID_LEN} are allowed",
            id.len()
        )
    } else if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        format!("it contains {bad:?}; only letters, digits and - _ . : are allowed")
    } else {
        return Ok(());
    };
    Err(Error::InvalidRequestId { reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_uuids_and_refuses_the_rest() {
        assert!(validate("0b6e4a4e-9c1f-4a8e-8f4e-2f4c1b0f9a77").is_ok());
        assert!(validate("order:42.retry_1").is_ok());
        for bad in ["", "with space", "new\nline", "ünï", &"x".repeat(129)] {
            assert!(
                matches!(validate(bad), Err(Error::InvalidRequestId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn digest_ignores_key_order_but_not_values() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"b":[1,2],"a":1}"#).unwrap();
        let c: serde_json::Value = serde_json::from_str(r#"{"a":2,"b":[1,2]}"#).unwrap();
        let day = Duration::from_secs(86_400);
        let key = |v| RequestKey::new("id".into(), "m", v, day).digest;
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        assert_ne!(
            key(&a),
            RequestKey::new("id".into(), "other", &a, day).digest
        );
    }
}
