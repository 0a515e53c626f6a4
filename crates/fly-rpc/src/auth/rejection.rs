//! Why a request was refused.

use std::time::Duration;

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
