//! Turning a peer's HTTP answer into an output or a typed error.

use std::net::SocketAddr;

use axum::http::StatusCode;

use crate::error::Error;
use crate::procedure::Procedure;
use crate::remote_error::RemoteError;
use crate::wire::{WireError, WireErrorKind};

pub(crate) fn parse_wire_error(body: &[u8]) -> Option<WireError> {
    serde_json::from_slice(body).ok()
}

/// Whether the answer is the peer saying it cannot serve primary-only calls.
pub(crate) fn is_not_primary(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE
        && parse_wire_error(body).is_some_and(|e| e.kind == WireErrorKind::NotPrimary)
}

pub(crate) fn decode_response<P: Procedure>(
    peer: SocketAddr,
    status: StatusCode,
    body: &[u8],
) -> Result<P::Output, Error> {
    if status == StatusCode::OK {
        // The procedure ran: an undecodable output is a broken answer, not
        // a local encoding problem (so the call counts as "may have run").
        return serde_json::from_slice(body).map_err(|e| Error::Transport {
            peer: peer.to_string(),
            message: format!("the output of `{}` does not decode: {e}", P::NAME),
        });
    }
    Err(wire_error_to_error(peer, status, body, P::NAME))
}

pub(crate) fn wire_error_to_error(
    peer: SocketAddr,
    status: StatusCode,
    body: &[u8],
    procedure: &str,
) -> Error {
    let Some(error) = parse_wire_error(body) else {
        let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Error::Transport {
            peer: peer.to_string(),
            message: format!("unexpected answer {status}: {snippet}"),
        };
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
    }
}
