//! The canonical form a request's MAC covers, for signing and verifying
//! alike.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::Extra;

pub(super) type HmacSha256 = Hmac<Sha256>;

/// What the MAC covers, in order: the fields every signed request has (the
/// body through its SHA-256), then the optional ones with their presence.
pub(super) struct Fields<'a> {
    always: [&'a str; 6],
    /// Idempotency key, caller region, require-primary (a flag: only its
    /// presence means anything to the server, so its value is not signed).
    optional: [Option<&'a str>; 3],
}

/// The one canonical form, for signing and verifying alike.
pub(super) fn fields<'a>(
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
pub(super) fn mac(key: &[u8], fields: &Fields<'_>) -> HmacSha256 {
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
