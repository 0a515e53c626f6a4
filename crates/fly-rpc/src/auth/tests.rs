//! Signing and verifying, and the refusals of requests that do not verify.

use std::time::Instant;

use axum::http::HeaderValue;

use super::*;
use crate::wire::{H_CALLER_REGION, H_IDEMPOTENCY_KEY, H_REQUIRE_PRIMARY, H_TIMESTAMP};

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
