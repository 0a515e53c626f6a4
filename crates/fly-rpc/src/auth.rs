//! Request authentication: HMAC-SHA256 over the request, keyed by the
//! cluster's shared secret, with a timestamp window and replay protection.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::wire::{
    H_BODY_SHA256, H_CALLER_REGION, H_IDEMPOTENCY_KEY, H_REQUEST_ID, H_REQUIRE_PRIMARY,
    H_SIGNATURE, H_TIMESTAMP,
};

type HmacSha256 = Hmac<Sha256>;

/// Secrets shorter than this are refused: a guessable secret is no secret.
pub(crate) const MIN_SECRET_LEN: usize = 16;

/// Why a request was refused. Callers only ever see a generic "unauthorized";
/// the reason goes to a metric label and the (rate-limited) log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejection {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("malformed header {0}")]
    Malformed(&'static str),
    #[error("timestamp outside the allowed window of {0:?}")]
    Stale(Duration),
    #[error("signed before this node started")]
    BeforeStart,
    #[error("the body does not match its signed digest")]
    BodyMismatch,
    #[error("sent to another node's address")]
    WrongTarget,
    #[error("signature does not match")]
    BadSignature,
    #[error("request id already used")]
    Replayed,
}

impl Rejection {
    /// A short stable name, for the `reason` label.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Rejection::Missing(_) => "missing_header",
            Rejection::Malformed(_) => "malformed_header",
            Rejection::Stale(_) => "stale",
            Rejection::BeforeStart => "signed_before_start",
            Rejection::WrongTarget => "wrong_target",
            Rejection::BadSignature => "bad_signature",
            Rejection::BodyMismatch => "body_mismatch",
            Rejection::Replayed => "replayed",
        }
    }
}

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
    pub(crate) body_sha256: String,
    pub(crate) signature: Option<String>,
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
            seen: Mutex::new(SeenIds {
                current: HashSet::new(),
                previous: HashSet::new(),
                rotated: Instant::now(),
            }),
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
        let target = arrival.target.ok_or(Rejection::WrongTarget)?;
        let fields = fields(
            method,
            path,
            target,
            timestamp,
            request_id,
            body_sha256,
            extra,
        );
        // verify_slice compares in constant time.
        let verified_by = std::iter::once(key)
            .chain(&self.previous)
            .position(|key| mac(key, &fields).verify_slice(&signature).is_ok())
            .ok_or(Rejection::BadSignature)?;
        let skew = unix_millis().abs_diff(sent);
        if u128::from(skew) > self.window.as_millis() {
            return Err(Rejection::Stale(self.window));
        }
        if sent < self.started_ms {
            return Err(Rejection::BeforeStart);
        }
        if !is_own(target, arrival) {
            return Err(Rejection::WrongTarget);
        }
        self.remember(id)?;
        // Tells an operator when the previous secret is no longer used, so
        // it can be removed.
        crate::metric::counter!(
            "fly_rpc_server_verified_total",
            "secret" => if verified_by == 0 { "current" } else { "previous" }
        )
        .increment(1);
        Ok(Pending {
            body_sha256: Some(digest),
        })
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

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, Rejection> {
    headers
        .get(name)
        .ok_or(Rejection::Missing(name))?
        .to_str()
        .map_err(|_| Rejection::Malformed(name))
}

/// What the MAC covers, in order: the fields every signed request has (the
/// body through its SHA-256), then the optional ones with their presence.
struct Fields<'a> {
    always: [&'a str; 6],
    /// Idempotency key, caller region, require-primary (a flag: only its
    /// presence means anything to the server, so its value is not signed).
    optional: [Option<&'a str>; 3],
}

/// The one canonical form, for signing and verifying alike.
fn fields<'a>(
    method: &'a str,
    path: &'a str,
    target: &'a str,
    timestamp: &'a str,
    request_id: &'a str,
    body_sha256: &'a str,
    extra: Extra<'a>,
) -> Fields<'a> {
    Fields {
        always: [method, path, target, timestamp, request_id, body_sha256],
        optional: [
            extra.idempotency_key,
            extra.caller_region,
            extra.require_primary.then_some(""),
        ],
    }
}

/// Each field and a newline; an optional field is `-` when absent and `+`
/// then its value when present.
fn mac(key: &[u8], fields: &Fields<'_>) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    // Header values cannot contain newlines, so the fields cannot run into
    // each other.
    for field in fields.always {
        mac.update(field.as_bytes());
        mac.update(b"\n");
    }
    // With its presence signed, a header sent empty is not one left out:
    // neither can be turned into the other on the way.
    for field in fields.optional {
        match field {
            Some(value) => {
                mac.update(b"+");
                mac.update(value.as_bytes());
            }
            None => mac.update(b"-"),
        }
        mac.update(b"\n");
    }
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

    const TARGET: &str = "127.0.0.1:7000";

    fn here() -> Arrival<'static> {
        Arrival {
            target: Some(TARGET),
            local: Some(TARGET.parse().unwrap()),
            advertised: &[],
        }
    }

    fn headers_of(signed: &Signed) -> HeaderMap {
        let mut h = HeaderMap::new();
        signed.apply(&mut h);
        h
    }

    fn verify(
        auth: &Auth,
        method: &str,
        path: &str,
        h: &HeaderMap,
        body: &[u8],
    ) -> Result<(), Rejection> {
        verify_at(auth, method, path, h, body, here())
    }

    fn verify_at(
        auth: &Auth,
        method: &str,
        path: &str,
        h: &HeaderMap,
        body: &[u8],
        arrival: Arrival<'_>,
    ) -> Result<(), Rejection> {
        let pending = auth.precheck(method, path, h, arrival)?;
        auth.finish(pending, body)
    }

    fn new_auth(window: Duration) -> Auth {
        Auth::new(Some(b"0123456789abcdef".to_vec()), window)
    }

    #[test]
    fn derived_keys_follow_the_secrets_and_the_context() {
        let window = Duration::from_secs(60);
        let old = Auth::new(Some(b"0123456789abcdef".to_vec()), window);
        let rotated = Auth::rotating(
            Some(b"fedcba9876543210".to_vec()),
            vec![b"0123456789abcdef".to_vec()],
            window,
        );
        let before = old.derive_keys("tokens");
        let after = rotated.derive_keys("tokens");
        assert_eq!(before.len(), 1);
        assert_eq!(after.len(), 2);
        // The previous secret's key is still there, after the current one.
        assert_eq!(after[1], before[0]);
        assert_ne!(after[0], before[0]);
        assert_ne!(old.derive_keys("other")[0], before[0]);
        // Not the secret itself.
        assert_ne!(&before[0][..16], b"0123456789abcdef");
        let insecure = Auth::new(None, window);
        assert_eq!(
            insecure.derive_keys("tokens"),
            insecure.derive_keys("tokens")
        );
        assert_ne!(insecure.derive_keys("tokens")[0], before[0]);
    }

    #[test]
    fn signed_requests_verify_once() {
        let auth = new_auth(Duration::from_secs(60));
        let extra = Extra {
            idempotency_key: Some("k"),
            ..Extra::default()
        };
        let signed = auth.sign("POST", "/p", TARGET, extra, b"{}");
        let mut h = headers_of(&signed);
        h.insert(H_IDEMPOTENCY_KEY, HeaderValue::from_static("k"));
        assert_eq!(verify(&auth, "POST", "/p", &h, b"{}"), Ok(()));
        // A replay is refused before its body would be read.
        assert_eq!(
            auth.precheck("POST", "/p", &h, here()).unwrap_err(),
            Rejection::Replayed
        );
    }

    #[test]
    fn replay_memory_rotates_but_never_forgets_within_two_windows() {
        let auth = new_auth(Duration::from_millis(20));
        let signed = auth.sign("POST", "/p", TARGET, Extra::default(), b"");
        let h = headers_of(&signed);
        assert_eq!(verify(&auth, "POST", "/p", &h, b""), Ok(()));
        // One rotation later the id sits in the previous generation.
        std::thread::sleep(Duration::from_millis(45));
        let fresh = headers_of(&auth.sign("POST", "/p", TARGET, Extra::default(), b""));
        assert_eq!(verify(&auth, "POST", "/p", &fresh, b""), Ok(()));
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
        let auth = new_auth(Duration::from_secs(60));
        let signed = || auth.sign("POST", "/p", TARGET, Extra::default(), b"{}");
        let h = || headers_of(&signed());
        assert_eq!(
            verify(&auth, "POST", "/p", &h(), b"{ }"),
            Err(Rejection::BodyMismatch)
        );
        assert_eq!(
            verify(&auth, "POST", "/q", &h(), b"{}"),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            verify(&auth, "GET", "/p", &h(), b"{}"),
            Err(Rejection::BadSignature)
        );
        let mut with_key = h();
        with_key.insert(H_IDEMPOTENCY_KEY, HeaderValue::from_static("x"));
        assert_eq!(
            verify(&auth, "POST", "/p", &with_key, b"{}"),
            Err(Rejection::BadSignature)
        );
        let mut made_primary = h();
        made_primary.insert(H_REQUIRE_PRIMARY, HeaderValue::from_static("1"));
        assert_eq!(
            verify(&auth, "POST", "/p", &made_primary, b"{}"),
            Err(Rejection::BadSignature)
        );
        let mut other_region = h();
        other_region.insert(H_CALLER_REGION, HeaderValue::from_static("fra"));
        assert_eq!(
            verify(&auth, "POST", "/p", &other_region, b"{}"),
            Err(Rejection::BadSignature)
        );
        let other = Auth::new(Some(b"fedcba9876543210".to_vec()), Duration::from_secs(60));
        assert_eq!(
            verify(&other, "POST", "/p", &h(), b"{}"),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn an_empty_optional_header_is_not_a_missing_one() {
        let auth = new_auth(Duration::from_secs(60));
        let empty_key = Extra {
            idempotency_key: Some(""),
            ..Extra::default()
        };
        let empty_region = Extra {
            caller_region: Some(""),
            ..Extra::default()
        };
        for (extra, name) in [
            (empty_key, H_IDEMPOTENCY_KEY),
            (empty_region, H_CALLER_REGION),
        ] {
            // Signed without the header, sent with it empty.
            let mut added = headers_of(&auth.sign("POST", "/p", TARGET, Extra::default(), b""));
            added.insert(name, HeaderValue::from_static(""));
            assert_eq!(
                verify(&auth, "POST", "/p", &added, b""),
                Err(Rejection::BadSignature),
                "{name} added empty"
            );
            // Signed with it empty, sent without it.
            let dropped = headers_of(&auth.sign("POST", "/p", TARGET, extra, b""));
            assert_eq!(
                verify(&auth, "POST", "/p", &dropped, b""),
                Err(Rejection::BadSignature),
                "{name} dropped"
            );
            // Each verifies as it was signed.
            let mut as_signed = headers_of(&auth.sign("POST", "/p", TARGET, extra, b""));
            as_signed.insert(name, HeaderValue::from_static(""));
            assert_eq!(
                verify(&auth, "POST", "/p", &as_signed, b""),
                Ok(()),
                "{name}"
            );
            let plain = headers_of(&auth.sign("POST", "/p", TARGET, Extra::default(), b""));
            assert_eq!(verify(&auth, "POST", "/p", &plain, b""), Ok(()), "{name}");
        }
        // The require-primary flag counts by its presence, whatever its value.
        let primary = Extra {
            require_primary: true,
            ..Extra::default()
        };
        let mut flagged = headers_of(&auth.sign("POST", "/p", TARGET, primary, b""));
        flagged.insert(H_REQUIRE_PRIMARY, HeaderValue::from_static(""));
        assert_eq!(verify(&auth, "POST", "/p", &flagged, b""), Ok(()));
        let unflagged = headers_of(&auth.sign("POST", "/p", TARGET, primary, b""));
        assert_eq!(
            verify(&auth, "POST", "/p", &unflagged, b""),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn the_canonical_form_marks_each_optional_field_present_or_absent() {
        let canonical = |extra: Extra<'_>| {
            let fields = fields("POST", "/p", TARGET, "1", "id", "digest", extra);
            let key = b"0123456789abcdef";
            hex::encode(mac(key, &fields).finalize().into_bytes())
        };
        let by_hand = |text: &str| {
            let mut mac = <HmacSha256 as KeyInit>::new_from_slice(b"0123456789abcdef").unwrap();
            mac.update(text.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        };
        let head = format!("POST\n/p\n{TARGET}\n1\nid\ndigest\n");
        assert_eq!(
            canonical(Extra::default()),
            by_hand(&format!("{head}-\n-\n-\n"))
        );
        let every = Extra {
            idempotency_key: Some("k"),
            caller_region: Some(""),
            require_primary: true,
        };
        assert_eq!(canonical(every), by_hand(&format!("{head}+k\n+\n+\n")));
    }

    #[test]
    fn debug_shows_no_secret() {
        let auth = Auth::rotating(
            Some(b"current-secret-0123".to_vec()),
            vec![b"previous-secret-4567".to_vec()],
            Duration::from_secs(60),
        );
        let shown = format!("{auth:?}");
        for secret in ["current-secret-0123", "previous-secret-4567"] {
            assert!(!shown.contains(secret), "{shown}");
            // Nor the bytes as a derived Debug prints them (`[99, 117, ...`).
            let bytes = format!("{:?}", &secret.as_bytes()[..4]);
            assert!(!shown.contains(bytes.trim_matches(['[', ']'])), "{shown}");
        }
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("previous: 1"), "{shown}");
    }

    #[test]
    fn a_request_for_a_sibling_is_refused_even_if_it_reaches_us() {
        let auth = new_auth(Duration::from_secs(60));
        let h = headers_of(&auth.sign("POST", "/p", TARGET, Extra::default(), b""));
        // Replayed to a sibling at another address, naming its real target.
        let sibling = Arrival {
            target: Some(TARGET),
            local: Some("127.0.0.1:7001".parse().unwrap()),
            advertised: &[],
        };
        assert_eq!(
            verify_at(&auth, "POST", "/p", &h, b"", sibling),
            Err(Rejection::WrongTarget)
        );
        // ... or with the target rewritten to the sibling's: the MAC breaks.
        let rewritten = Arrival {
            target: Some("127.0.0.1:7001"),
            local: Some("127.0.0.1:7001".parse().unwrap()),
            advertised: &[],
        };
        assert_eq!(
            verify_at(&auth, "POST", "/p", &h, b"", rewritten),
            Err(Rejection::BadSignature)
        );
        // An advertised address (a proxy in front of the node) is its own,
        // and a dual-stack socket's mapped address is its IPv4 one.
        let proxied = [TARGET.parse().unwrap()];
        let via_proxy = Arrival {
            target: Some(TARGET),
            local: Some("[::ffff:10.0.0.1]:7000".parse().unwrap()),
            advertised: &proxied,
        };
        let h = headers_of(&auth.sign("POST", "/p", TARGET, Extra::default(), b""));
        assert_eq!(verify_at(&auth, "POST", "/p", &h, b"", via_proxy), Ok(()));
        let mapped = Arrival {
            target: Some(TARGET),
            local: Some("[::ffff:127.0.0.1]:7000".parse().unwrap()),
            advertised: &[],
        };
        let h = headers_of(&auth.sign("POST", "/p", TARGET, Extra::default(), b""));
        assert_eq!(verify_at(&auth, "POST", "/p", &h, b"", mapped), Ok(()));
    }

    #[test]
    fn stale_early_and_missing_are_rejected() {
        let auth = new_auth(Duration::from_secs(60));
        let signed = auth.sign_at(
            unix_millis() - 61_000,
            "POST",
            "/p",
            TARGET,
            Extra::default(),
            b"",
        );
        assert_eq!(
            verify(&auth, "POST", "/p", &headers_of(&signed), b""),
            Err(Rejection::Stale(Duration::from_secs(60)))
        );
        // Inside the window, but signed before this node started.
        let restarted = Auth {
            started_ms: unix_millis() + 10_000,
            ..new_auth(Duration::from_secs(60))
        };
        let signed = restarted.sign("POST", "/p", TARGET, Extra::default(), b"");
        assert_eq!(
            verify(&restarted, "POST", "/p", &headers_of(&signed), b""),
            Err(Rejection::BeforeStart)
        );
        assert_eq!(
            verify(&auth, "POST", "/p", &HeaderMap::new(), b""),
            Err(Rejection::Missing(H_TIMESTAMP))
        );
    }
}
