//! The write's metric (`fly_postgres_write_seconds`) and its outcome label,
//! also for a write whose future was dropped before it finished.

use std::time::Instant;

use crate::error::Error;

/// Counts a write whose future was dropped before it finished
/// (`outcome="cancelled"`): its request id ([`crate::Write::id`]) settles it.
pub(super) struct Cancelled {
    mutation: &'static str,
    started: Instant,
    armed: bool,
}

impl Cancelled {
    pub(super) fn arm(mutation: &'static str, started: Instant) -> Self {
        Cancelled {
            mutation,
            started,
            armed: true,
        }
    }

    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        if self.armed {
            metrics::histogram!(
                "fly_postgres_write_seconds",
                "mutation" => self.mutation, "path" => "any", "outcome" => "cancelled"
            )
            .record(self.started.elapsed().as_secs_f64());
        }
    }
}

/// The outcome class of a finished write, as metrics and spans name it.
pub(super) fn outcome_label<T>(result: &Result<T, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) if e.is_committed() => "committed",
        Err(e) if e.is_maybe_committed() => "maybe_committed",
        Err(_) => "error",
    }
}

/// Records a finished write's duration by path and outcome.
pub(super) fn record<T>(
    mutation: &'static str,
    path: &'static str,
    started: Instant,
    result: &Result<T, Error>,
) {
    metrics::histogram!(
        "fly_postgres_write_seconds",
        "mutation" => mutation, "path" => path, "outcome" => outcome_label(result)
    )
    .record(started.elapsed().as_secs_f64());
}
