//! The headers that carry a request's signature: written when signing,
//! read back (present and well-formed) before verifying.

use axum::http::{HeaderMap, HeaderValue};

use super::{Extra, Rejection};
use crate::wire::{
    H_BODY_SHA256, H_CALLER_REGION, H_IDEMPOTENCY_KEY, H_REQUEST_ID, H_REQUIRE_PRIMARY,
    H_SIGNATURE, H_TIMESTAMP,
};

/// The headers a signed request carries.
pub(crate) struct Signed {
    pub(crate) timestamp: String,
    pub(crate) request_id: String,
    pub(crate) body_sha256: String,
    pub(crate) signature: Option<String>,
}

impl Signed {
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        let put = |headers: &mut HeaderMap, name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        put(headers, H_TIMESTAMP, &self.timestamp);
        put(headers, H_REQUEST_ID, &self.request_id);
        put(headers, H_BODY_SHA256, &self.body_sha256);
        if let Some(sig) = &self.signature {
            put(headers, H_SIGNATURE, sig);
        }
    }
}

/// A required header's value.
fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, Rejection> {
    headers
        .get(name)
        .ok_or(Rejection::Missing(name))?
        .to_str()
        .map_err(|_| Rejection::Malformed(name))
}

/// A request's signature headers as it presents them, each well-formed;
/// whether they verify is the MAC's to say.
pub(super) struct Presented<'a> {
    pub(super) timestamp: &'a str,
    pub(super) request_id: &'a str,
    pub(super) body_sha256: &'a str,
    pub(super) extra: Extra<'a>,
    /// The request id as a number, for the replay check.
    pub(super) id: u128,
    /// When it was signed, in milliseconds since the Unix epoch.
    pub(super) sent: u64,
    pub(super) signature: Vec<u8>,
    pub(super) digest: [u8; 32],
}

impl<'a> Presented<'a> {
    /// Reads the headers; the first missing or malformed one refuses the
    /// request.
    pub(super) fn read(headers: &'a HeaderMap) -> Result<Self, Rejection> {
        let timestamp = header(headers, H_TIMESTAMP)?;
        let request_id = header(headers, H_REQUEST_ID)?;
        let signature = header(headers, H_SIGNATURE)?;
        let body_sha256 = header(headers, H_BODY_SHA256)?;
        let optional = |name: &'static str| match headers.get(name) {
            Some(v) => v.to_str().map(Some).map_err(|_| Rejection::Malformed(name)),
            None => Ok(None),
        };
        let extra = Extra {
            idempotency_key: optional(H_IDEMPOTENCY_KEY)?,
            caller_region: optional(H_CALLER_REGION)?,
            require_primary: headers.contains_key(H_REQUIRE_PRIMARY),
        };
        if request_id.len() != 32 {
            return Err(Rejection::Malformed(H_REQUEST_ID));
        }
        let id =
            u128::from_str_radix(request_id, 16).map_err(|_| Rejection::Malformed(H_REQUEST_ID))?;
        let sent: u64 = timestamp
            .parse()
            .map_err(|_| Rejection::Malformed(H_TIMESTAMP))?;
        let signature = hex::decode(signature).map_err(|_| Rejection::Malformed(H_SIGNATURE))?;
        let digest: [u8; 32] = hex::decode(body_sha256)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or(Rejection::Malformed(H_BODY_SHA256))?;
        Ok(Presented {
            timestamp,
            request_id,
            body_sha256,
            extra,
            id,
            sent,
            signature,
            digest,
        })
    }
}
