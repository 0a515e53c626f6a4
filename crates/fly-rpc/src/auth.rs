//! Request authentication: HMAC-SHA256 over the request, keyed by the
//! cluster's shared secret, with a timestamp window and replay protection.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::wire::{
    H_CALLER_REGION, H_IDEMPOTENCY_KEY, H_REQUEST_ID, H_REQUIRE_PRIMARY, H_SIGNATURE, H_TIMESTAMP,
};

type HmacSha256 = Hmac<Sha256>;

/// Secrets shorter than this are refused: a guessable secret is no secret.
pub(crate) const MIN_SECRET_LEN: usize = 16;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejection {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("malformed header {0}")]
    Malformed(&'static str),
    #[error("timestamp outside the allowed window of {0:?}")]
    Stale(Duration),
    #[error("signature does not match")]
    BadSignature,
    #[error("request id already used")]
    Replayed,
}

/// Signs outgoing and verifies incoming requests.
#[derive(Debug)]
pub(crate) struct Auth {
    key: Option<Vec<u8>>,
    window: Duration,
    seen: Mutex<SeenIds>,
}

/// Request ids accepted recently, in two generations: an id is remembered
/// for at least two windows (a replay must carry a timestamp within one
/// window of now), and forgetting a whole generation at once keeps the cost
/// per request constant however busy the node is.
#[derive(Debug)]
struct SeenIds {
    current: HashSet<u128>,
    previous: HashSet<u128>,
    rotated: Instant,
}

/// The signed fields besides method, path and body.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extra<'a> {
    pub(crate) idempotency_key: Option<&'a str>,
    pub(crate) caller_region: Option<&'a str>,
    pub(crate) require_primary: bool,
}

/// The headers a signed request carries.
pub(crate) struct Signed {
    pub(crate) timestamp: String,
    pub(crate) request_id: String,
    pub(crate) signature: Option<String>,
}

impl Auth {
    /// `key: None` is the explicit insecure mode: nothing is signed or checked.
    pub(crate) fn new(key: Option<Vec<u8>>, window: Duration) -> Self {
        Auth {
            key,
            window,
            seen: Mutex::new(SeenIds {
                current: HashSet::new(),
                previous: HashSet::new(),
                rotated: Instant::now(),
            }),
        }
    }

    pub(crate) fn sign(&self, method: &str, path: &str, extra: Extra<'_>, body: &[u8]) -> Signed {
        let timestamp = unix_millis().to_string();
        let request_id = hex::encode(rand::random::<[u8; 16]>());
        let signature = self.key.as_ref().map(|key| {
            let mac = mac(key, method, path, &timestamp, &request_id, extra, body);
            hex::encode(mac.finalize().into_bytes())
        });
        Signed {
            timestamp,
            request_id,
            signature,
        }
    }

    /// Checks a request; the caller runs no handler unless this is `Ok`.
    pub(crate) fn verify(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), Rejection> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let timestamp = header(headers, H_TIMESTAMP)?;
        let request_id = header(headers, H_REQUEST_ID)?;
        let signature = header(headers, H_SIGNATURE)?;
        let optional = |name: &'static str| match headers.get(name) {
            Some(v) => v.to_str().map(Some).map_err(|_| Rejection::Malformed(name)),
            None => Ok(None),
        };
        let extra = Extra {
            idempotency_key: optional(H_IDEMPOTENCY_KEY)?,
            caller_region: optional(H_CALLER_REGION)?,
            require_primary: headers.contains_key(H_REQUIRE_PRIMARY),
        };
        let id =
            u128::from_str_radix(request_id, 16).map_err(|_| Rejection::Malformed(H_REQUEST_ID))?;
        let sent: u64 = timestamp
            .parse()
            .map_err(|_| Rejection::Malformed(H_TIMESTAMP))?;
        let skew = unix_millis().abs_diff(sent);
        if u128::from(skew) > self.window.as_millis() {
            return Err(Rejection::Stale(self.window));
        }
        let signature = hex::decode(signature).map_err(|_| Rejection::Malformed(H_SIGNATURE))?;
        // verify_slice compares in constant time.
        mac(key, method, path, timestamp, request_id, extra, body)
            .verify_slice(&signature)
            .map_err(|_| Rejection::BadSignature)?;
        self.remember(id)
    }

    /// Accepts each request id once. Only ids of requests with a valid
    /// signature get here, so strangers cannot fill the sets.
    fn remember(&self, id: u128) -> Result<(), Rejection> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.rotated.elapsed() > self.window.saturating_mul(2) {
            seen.previous = std::mem::take(&mut seen.current);
            seen.rotated = Instant::now();
        }
        if seen.previous.contains(&id) || !seen.current.insert(id) {
            return Err(Rejection::Replayed);
        }
        Ok(())
    }
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
        if let Some(sig) = &self.signature {
            put(headers, H_SIGNATURE, sig);
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, Rejection> {
    headers
        .get(name)
        .ok_or(Rejection::Missing(name))?
        .to_str()
        .map_err(|_| Rejection::Malformed(name))
}

fn mac(
    key: &[u8],
    method: &str,
    path: &str,
    timestamp: &str,
    request_id: &str,
    extra: Extra<'_>,
    body: &[u8],
) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    // Header values cannot contain newlines, so the fields cannot run into
    // each other; the body goes last and needs no terminator.
    let require_primary = if extra.require_primary { "1" } else { "" };
    for field in [
        method,
        path,
        timestamp,
        request_id,
        extra.idempotency_key.unwrap_or(""),
        extra.caller_region.unwrap_or(""),
        require_primary,
    ] {
        mac.update(field.as_bytes());
        mac.update(b"\n");
    }
    mac.update(body);
    mac
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(signed: &Signed) -> HeaderMap {
        let mut h = HeaderMap::new();
        signed.apply(&mut h);
        h
    }

    #[test]
    fn signed_requests_verify_once() {
        let auth = Auth::new(Some(b"0123456789abcdef".to_vec()), Duration::from_secs(60));
        let extra = Extra {
            idempotency_key: Some("k"),
            ..Extra::default()
        };
        let signed = auth.sign("POST", "/p", extra, b"{}");
        let mut h = headers_of(&signed);
        h.insert(H_IDEMPOTENCY_KEY, HeaderValue::from_static("k"));
        assert_eq!(auth.verify("POST", "/p", &h, b"{}"), Ok(()));
        assert_eq!(
            auth.verify("POST", "/p", &h, b"{}"),
            Err(Rejection::Replayed)
        );
    }

    #[test]
    fn replay_memory_rotates_but_never_forgets_within_two_windows() {
        let auth = Auth::new(
            Some(b"0123456789abcdef".to_vec()),
            Duration::from_millis(20),
        );
        let signed = auth.sign("POST", "/p", Extra::default(), b"");
        let h = headers_of(&signed);
        assert_eq!(auth.verify("POST", "/p", &h, b""), Ok(()));
        // One rotation later the id sits in the previous generation.
        std::thread::sleep(Duration::from_millis(45));
        let fresh = headers_of(&auth.sign("POST", "/p", Extra::default(), b""));
        assert_eq!(auth.verify("POST", "/p", &fresh, b""), Ok(()));
        let mut seen = auth.seen.lock().unwrap();
        assert!(
            seen.previous
                .contains(&u128::from_str_radix(&signed.request_id, 16).unwrap())
        );
        assert_eq!(seen.current.len(), 1);
        seen.rotated = Instant::now();
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let auth = Auth::new(Some(b"0123456789abcdef".to_vec()), Duration::from_secs(60));
        let signed = auth.sign("POST", "/p", Extra::default(), b"{}");
        let h = headers_of(&signed);
        assert_eq!(
            auth.verify("POST", "/p", &h, b"{ }"),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            auth.verify("POST", "/q", &h, b"{}"),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            auth.verify("GET", "/p", &h, b"{}"),
            Err(Rejection::BadSignature)
        );
        let mut with_key = h.clone();
        with_key.insert(H_IDEMPOTENCY_KEY, HeaderValue::from_static("x"));
        assert_eq!(
            auth.verify("POST", "/p", &with_key, b"{}"),
            Err(Rejection::BadSignature)
        );
        let mut made_primary = h.clone();
        made_primary.insert(H_REQUIRE_PRIMARY, HeaderValue::from_static("1"));
        assert_eq!(
            auth.verify("POST", "/p", &made_primary, b"{}"),
            Err(Rejection::BadSignature)
        );
        let mut other_region = h.clone();
        other_region.insert(H_CALLER_REGION, HeaderValue::from_static("fra"));
        assert_eq!(
            auth.verify("POST", "/p", &other_region, b"{}"),
            Err(Rejection::BadSignature)
        );
        let other = Auth::new(Some(b"fedcba9876543210".to_vec()), Duration::from_secs(60));
        assert_eq!(
            other.verify("POST", "/p", &h, b"{}"),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn stale_and_missing_are_rejected() {
        let auth = Auth::new(Some(b"0123456789abcdef".to_vec()), Duration::from_secs(60));
        let mut signed = auth.sign("POST", "/p", Extra::default(), b"");
        signed.timestamp = (unix_millis() - 61_000).to_string();
        assert_eq!(
            auth.verify("POST", "/p", &headers_of(&signed), b""),
            Err(Rejection::Stale(Duration::from_secs(60)))
        );
        assert_eq!(
            auth.verify("POST", "/p", &HeaderMap::new(), b""),
            Err(Rejection::Missing(H_TIMESTAMP))
        );
    }
}
