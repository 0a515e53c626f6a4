//! Turning a peer's HTTP answer into an output or a typed error.

use std::net::SocketAddr;

use axum::http::StatusCode;

use crate::error::Error;
use crate::procedure::Procedure;
use crate::remote_error::RemoteError;
use crate::wire::{WireError, WireErrorKind};

/// The wire error in an answer's body, if it is one.
pub(crate) fn parse_wire_error(body: &[u8]) -> Option<WireError> {
    serde_json::from_slice(body).ok()
}

/// The peer's answer when it says it has no such procedure (an older or
/// newer build during a deploy): it ran nothing.
pub(crate) fn unknown_procedure(status: StatusCode, body: &[u8]) -> Option<WireError> {
    if status != StatusCode::NOT_FOUND {
        return None;
    }
    parse_wire_error(body).filter(|e| e.kind == WireErrorKind::UnknownProcedure)
}

/// Whether the answer is the peer saying it cannot serve primary-only calls.
pub(crate) fn is_not_primary(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE
        && parse_wire_error(body).is_some_and(|e| e.kind == WireErrorKind::NotPrimary)
}

/// A peer's answer to a call of `P`: its output, or the error it stands for.
pub(crate) fn decode_response<P: Procedure>(
    peer: SocketAddr,
    status: StatusCode,
    body: &[u8],
) -> Result<P::Output, Error> {
    if status == StatusCode::OK {
        // The procedure ran and answered: an output that does not decode
        // is its own error, so nobody mistakes it for a lost connection.
        return serde_json::from_slice(body).map_err(|e| Error::UndecodableOutput {
            procedure: P::NAME.to_owned(),
            peer: peer.to_string(),
            message: e.to_string(),
        });
    }
    Err(wire_error_to_error(peer, status, body, P::NAME))
}

/// A peer's error answer as the [`Error`] it stands for.
pub(crate) fn wire_error_to_error(
    peer: SocketAddr,
    status: StatusCode,
    body: &[u8],
    procedure: &str,
) -> Error {
    let Some(error) = parse_wire_error(body) else {
        return unexpected_answer(peer, status, body);
    };
    let peer_text = peer.to_string();
    match error.kind {
        WireErrorKind::Unauthorized => Error::Unauthorized {
            peer,
            reason: error.message,
        },
        WireErrorKind::UnknownProcedure => Error::UnknownProcedure {
            name: error.procedure.unwrap_or_else(|| procedure.to_owned()),
            peer: peer_text,
            peer_version: error.version.unwrap_or_else(|| "unknown".into()),
            peer_procedures: error.procedures.unwrap_or_default(),
        },
        WireErrorKind::BadRequest | WireErrorKind::PayloadTooLarge => Error::BadRequest {
            peer: peer_text,
            status: status.as_u16(),
            message: error.message,
        },
        WireErrorKind::Remote => Error::Remote(RemoteError::new(
            error.procedure.unwrap_or_else(|| procedure.to_owned()),
            error.message,
            error.payload.unwrap_or(serde_json::Value::Null),
        )),
        WireErrorKind::Panic => Error::HandlerPanicked {
            procedure: procedure.to_owned(),
            peer: peer_text,
        },
        WireErrorKind::Busy => Error::Busy {
            peer: peer_text,
            message: error.message,
        },
        WireErrorKind::NotPrimary | WireErrorKind::Internal => Error::Transport {
            peer: peer_text,
            message: error.message,
        },
        // A newer peer's kind: it may have run the call, so the outcome is
        // unknown (a retry with the same idempotency key settles it).
        WireErrorKind::Unknown => newer_kind(peer_text, status, &error.message),
    }
}

/// An answer that is no wire error (a proxy's page, say): its start is
/// shown, as the only clue to what answered.
fn unexpected_answer(peer: SocketAddr, status: StatusCode, body: &[u8]) -> Error {
    let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    Error::Transport {
        peer: peer.to_string(),
        message: format!("unexpected answer {status}: {snippet}"),
    }
}

/// An error kind from a newer peer.
fn newer_kind(peer: String, status: StatusCode, message: &str) -> Error {
    note_unknown_kind(&peer);
    Error::Transport {
        peer,
        message: format!(
            "answered {status} with an error kind this version does not know: {message}"
        ),
    }
}

/// Counts an error kind from a newer peer; logs the first one only, since
/// during a deploy every call to that peer would log the same line.
fn note_unknown_kind(peer: &str) {
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    crate::metric::counter!("fly_rpc_unknown_wire_errors_total").increment(1);
    if !LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            %peer,
            "a peer answered with an error kind this version does not know (a newer build?); \
             read as \"may have run\"; logged once"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_kind_from_a_newer_peer_reads_as_may_have_run() {
        let peer: SocketAddr = "127.0.0.1:7878".parse().unwrap();
        let body = br#"{"kind":"rate_limited_in_v9","message":"slow down"}"#;
        let error = wire_error_to_error(peer, StatusCode::TOO_MANY_REQUESTS, body, "p");
        assert!(error.may_have_run(), "{error:?}");
        assert!(error.to_string().contains("slow down"), "{error}");
        // A kind this version knows keeps its meaning.
        let body = br#"{"kind":"busy","message":"later"}"#;
        let error = wire_error_to_error(peer, StatusCode::SERVICE_UNAVAILABLE, body, "p");
        assert!(matches!(error, Error::Busy { .. }), "{error:?}");
    }
}
