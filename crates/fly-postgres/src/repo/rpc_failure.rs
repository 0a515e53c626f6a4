//! What one attempt of a forwarded write learned from fly-rpc, decided in
//! one place: whether another attempt may follow, and what the caller is
//! told when none does. The primary region's error is decoded once, here.

use std::sync::atomic::{AtomicBool, Ordering};

use super::wire::WireError;
use crate::error::Error;

/// How one attempt of a forwarded write failed.
#[derive(Debug)]
pub(super) enum AttemptFailure {
    /// Worth another attempt with the same request id before the deadline.
    /// `sent`: the request may have reached the primary region (so the
    /// write may have committed).
    Transient { sent: bool, error: fly_rpc::Error },
    /// No other attempt follows. `maybe`: this attempt may have run
    /// (a panic, a broken answer). `settles`: the answer came from the
    /// write's own transaction, which claimed the request id, so no earlier
    /// attempt committed either; a refusal before the handler ran (auth,
    /// unknown procedure, bad request) says nothing about them.
    Final {
        maybe: bool,
        settles: bool,
        /// What the primary region said, as said (for "maybe committed").
        said: String,
        error: Error,
    },
}

/// Sorts a fly-rpc failure of one attempt.
pub(super) fn classify(error: fly_rpc::Error) -> AttemptFailure {
    let sent = error.may_have_run();
    match error {
        fly_rpc::Error::Timeout { .. }
        | fly_rpc::Error::Transport { .. }
        | fly_rpc::Error::NoNodeInRegion { .. }
        | fly_rpc::Error::Busy { .. }
        | fly_rpc::Error::Discovery { .. } => AttemptFailure::Transient { sent, error },
        // Every instance asked lacked the mutation until the attempt's
        // deadline (a deploy in progress): nothing ran; a sibling or the
        // next build may have it.
        fly_rpc::Error::UnknownProcedure { .. } => AttemptFailure::Transient { sent: false, error },
        fly_rpc::Error::Remote(ref remote) => match remote.decode::<WireError>() {
            // The primary region could not start the write (pool, failover):
            // nothing ran for this attempt.
            Ok(WireError::Unavailable(_)) => AttemptFailure::Transient { sent: false, error },
            // It may have committed; the record will tell.
            Ok(WireError::Retry(_)) => AttemptFailure::Transient { sent: true, error },
            Ok(wire) => AttemptFailure::Final {
                maybe: false,
                settles: settles(&wire),
                said: error.to_string(),
                error: wire.into(),
            },
            // A kind a newer build sends: it may have run the write, so only
            // a retry with the same request id can settle it.
            Err(_) => {
                note_unknown_wire_error(remote.message());
                AttemptFailure::Transient { sent: true, error }
            }
        },
        // The write's own transaction answered "committed".
        fly_rpc::Error::UndecodableOutput { .. } => AttemptFailure::Final {
            maybe: sent,
            settles: true,
            said: error.to_string(),
            error: from_rpc(error),
        },
        error => AttemptFailure::Final {
            maybe: sent,
            settles: false,
            said: error.to_string(),
            error: from_rpc(error),
        },
    }
}

/// Whether a definite answer came from the write's own transaction.
fn settles(wire: &WireError) -> bool {
    matches!(
        wire,
        WireError::Database(_)
            | WireError::App(_)
            | WireError::Reused { .. }
            | WireError::Primary(_)
            | WireError::NotFound(_)
    )
}

/// Maps a definite fly-rpc failure of a forwarded call to the crate's error.
pub(crate) fn from_rpc(error: fly_rpc::Error) -> Error {
    match error {
        fly_rpc::Error::Remote(remote) => match remote.decode::<WireError>() {
            Ok(wire) => wire.into(),
            Err(_) => Error::Primary {
                message: remote.message().to_owned(),
            },
        },
        // The primary region answered "committed" with an output this
        // build cannot read: committed, and saying so now beats retrying.
        fly_rpc::Error::UndecodableOutput {
            procedure, message, ..
        } => Error::CommittedButUnreadable {
            reason: format!(
                "`{procedure}` committed in the primary region, but its output does not \
                 decode here ({message}): its Output type must survive a JSON round trip"
            ),
            output: None,
        },
        other => Error::from(other),
    }
}

/// Counts a wire error this version cannot read; logs the first only.
fn note_unknown_wire_error(message: &str) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    metrics::counter!("fly_postgres_unknown_wire_errors_total").increment(1);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            message,
            "the primary region answered with an error this version cannot read (a newer \
             build?); retrying with the same request id to settle the write; logged once"
        );
    }
}
