//! Request authentication: HMAC-SHA256 over the request, keyed by the
//! cluster's shared secret, with a timestamp window and replay protection.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

mod canonical;
mod headers;
mod rejection;
mod replay;
#[cfg(test)]
mod tests;

use canonical::{HmacSha256, fields, mac};
use headers::Presented;
pub(crate) use headers::Signed;
pub(crate) use rejection::Rejection;
use replay::SeenIds;

/// Secrets shorter than this are refused: a guessable secret is no secret.
pub(crate) const MIN_SECRET_LEN: usize = 16;

/// Signs outgoing and verifies incoming requests.
pub(crate) struct Auth {
    key: Option<Vec<u8>>,
    /// Secrets that still verify but no longer sign (a rotation in
    /// progress), tried after `key`.
    previous: Vec<Vec<u8>>,
    window: Duration,
    started_ms: u64,
    seen: Mutex<SeenIds>,
}

// By hand: a derived Debug would print the secrets' bytes into any log
// line or panic message that shows a value holding an `Auth`.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("previous", &self.previous.len())
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// The signed fields besides method, path and body.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extra<'a> {
    pub(crate) idempotency_key: Option<&'a str>,
    pub(crate) caller_region: Option<&'a str>,
    pub(crate) require_primary: bool,
}

/// A request whose headers are authentic (the MAC covers the body's
/// digest, so it is checked before any body byte is read); the body itself
/// is checked against that digest by [`Auth::finish`].
#[derive(Debug)]
pub(crate) struct Pending {
    body_sha256: Option<[u8; 32]>,
}

/// Where a request arrived: the target the caller signed must be one of
/// these.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival<'a> {
    /// The `host:port` the request names (HTTP/2 `:authority` or `Host`).
    pub(crate) target: Option<&'a str>,
    /// The accepted socket's local address.
    pub(crate) local: Option<SocketAddr>,
    /// Addresses this node is configured to be reached at (a proxy, a
    /// load balancer, a NAT).
    pub(crate) advertised: &'a [SocketAddr],
}

impl Auth {
    /// `key: None` is the explicit insecure mode: nothing is signed or checked.
    #[cfg(test)]
    pub(crate) fn new(key: Option<Vec<u8>>, window: Duration) -> Self {
        Self::rotating(key, Vec::new(), window)
    }

    /// Signs with `key`; verifies with `key`, then each of `previous`
    /// (`key: None`: the insecure mode, nothing signed or checked).
    pub(crate) fn rotating(key: Option<Vec<u8>>, previous: Vec<Vec<u8>>, window: Duration) -> Self {
        Auth {
            key,
            previous,
            window,
            started_ms: unix_millis(),
            seen: Mutex::new(SeenIds::new()),
        }
    }

    /// Keys for another purpose (`context`), derived from the cluster
    /// secret with HMAC-SHA256, so the secret itself never leaves this
    /// module: the current secret's first, then one per previous secret.
    /// Without a secret (one region, or insecure mode) a key made at random
    /// once per process, so what it signs verifies only in this process.
    pub(crate) fn derive_keys(&self, context: &str) -> Vec<[u8; 32]> {
        let derive = |secret: &[u8]| -> [u8; 32] {
            let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            mac.update(b"fly-rpc derived key\0");
            mac.update(context.as_bytes());
            mac.finalize().into_bytes().into()
        };
        match &self.key {
            Some(key) => std::iter::once(key)
                .chain(&self.previous)
                .map(|secret| derive(secret))
                .collect(),
            None => {
                static PROCESS_KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
                vec![derive(PROCESS_KEY.get_or_init(rand::random))]
            }
        }
    }

    /// Signs a request to `target` (the `host:port` it is sent to).
    pub(crate) fn sign(
        &self,
        method: &str,
        path: &str,
        target: &str,
        extra: Extra<'_>,
        body: &[u8],
    ) -> Signed {
        self.sign_at(unix_millis(), method, path, target, extra, body)
    }

    fn sign_at(
        &self,
        millis: u64,
        method: &str,
        path: &str,
        target: &str,
        extra: Extra<'_>,
        body: &[u8],
    ) -> Signed {
        let timestamp = millis.to_string();
        let request_id = hex::encode(rand::random::<[u8; 16]>());
        let body_sha256 = hex::encode(Sha256::digest(body));
        let signature = self.key.as_ref().map(|key| {
            let fields = fields(
                method,
                path,
                target,
                &timestamp,
                &request_id,
                &body_sha256,
                extra,
            );
            hex::encode(mac(key, &fields).finalize().into_bytes())
        });
        Signed {
            timestamp,
            request_id,
            body_sha256,
            signature,
        }
    }

    /// Every check, before any body byte is read: headers present and
    /// well-formed, the MAC (over the headers and the body's signed digest,
    /// so a stranger never gets further), then timestamp inside the window,
    /// signed after this node started, target one of this node's
    /// addresses, and the request id used once.
    pub(crate) fn precheck(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        arrival: Arrival<'_>,
    ) -> Result<Pending, Rejection> {
        let Some(key) = &self.key else {
            return Ok(Pending { body_sha256: None });
        };
        let presented = Presented::read(headers)?;
        let target = arrival.target.ok_or(Rejection::WrongTarget)?;
        let verified_by = self.verified_by(key, method, path, target, &presented)?;
        self.check_time(presented.sent)?;
        if !is_own(target, arrival) {
            return Err(Rejection::WrongTarget);
        }
        self.remember(presented.id)?;
        // Tells an operator when the previous secret is no longer used, so
        // it can be removed.
        crate::metric::counter!(
            "fly_rpc_server_verified_total",
            "secret" => if verified_by == 0 { "current" } else { "previous" }
        )
        .increment(1);
        Ok(Pending {
            body_sha256: Some(presented.digest),
        })
    }

    /// Which secret signed the request: 0 for `key`, then the previous
    /// ones in order.
    fn verified_by(
        &self,
        key: &[u8],
        method: &str,
        path: &str,
        target: &str,
        presented: &Presented<'_>,
    ) -> Result<usize, Rejection> {
        let fields = fields(
            method,
            path,
            target,
            presented.timestamp,
            presented.request_id,
            presented.body_sha256,
            presented.extra,
        );
        // verify_slice compares in constant time.
        std::iter::once(key)
            .chain(self.previous.iter().map(Vec::as_slice))
            .position(|key| mac(key, &fields).verify_slice(&presented.signature).is_ok())
            .ok_or(Rejection::BadSignature)
    }

    /// The request was signed inside the window around now, and after
    /// this node started (a restart forgets the ids seen before it).
    fn check_time(&self, sent: u64) -> Result<(), Rejection> {
        let skew = unix_millis().abs_diff(sent);
        if u128::from(skew) > self.window.as_millis() {
            return Err(Rejection::Stale(self.window));
        }
        if sent < self.started_ms {
            return Err(Rejection::BeforeStart);
        }
        Ok(())
    }

    /// Checks the body against its signed digest. The handler runs only
    /// after this is `Ok`.
    pub(crate) fn finish(&self, pending: Pending, body: &[u8]) -> Result<(), Rejection> {
        match pending.body_sha256 {
            Some(digest) if Sha256::digest(body).as_slice() != digest.as_slice() => {
                Err(Rejection::BodyMismatch)
            }
            _ => Ok(()),
        }
    }

    /// Accepts each request id once. Only ids of requests with a valid MAC
    /// get here, so strangers cannot fill the sets.
    fn remember(&self, id: u128) -> Result<(), Rejection> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.remember(id, self.window)
    }
}

/// Whether `target` names this node: the socket the request came in on, or
/// an advertised address. IPv4-mapped IPv6 (a dual-stack listener) counts
/// as IPv4.
fn is_own(target: &str, arrival: Arrival<'_>) -> bool {
    let Ok(target) = target.parse::<SocketAddr>() else {
        return false;
    };
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let target = canonical(target);
    arrival.local.map(canonical) == Some(target)
        || arrival.advertised.iter().any(|a| canonical(*a) == target)
}
fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
