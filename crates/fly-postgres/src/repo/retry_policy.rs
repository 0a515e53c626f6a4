//! The one retry policy of every write path (in the primary region,
//! forwarded, and directly on the primary): one deadline, set when the
//! write starts and handed down, one backoff, and one rule for what may be
//! repeated.
//!
//! An attempt is repeated only when repeating cannot commit the write
//! twice: it provably did not run (no connection, a refusal before the
//! transaction, a database in recovery), or its outcome is unknown and it
//! is repeated under the same request id, whose record answers with the
//! first commit's output. A definite failure is never repeated. fly-rpc
//! retries what only it can see (another instance of the same region, an
//! instance that lacks the procedure during a deploy); this policy retries
//! the write, which needs the request record.

use std::time::Duration;

// tokio's clock, so the policy runs on paused time in tests.
use tokio::time::Instant;

/// An attempt gets at least this long (unless less is left): a write
/// across an ocean needs a few round trips of slack.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);
/// Backoff between attempts: 25 ms, doubling, capped at 500 ms, so an
/// instance back after a 1 s restart is found within ~0.5 s.
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// When a write's attempts must end.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// `budget` from now.
    pub(super) fn after(budget: Duration) -> Self {
        Deadline {
            at: Instant::now() + budget,
            budget,
        }
    }

    /// The whole budget it was set with.
    pub(super) fn budget(&self) -> Duration {
        self.budget
    }

    /// What is left of it.
    pub(super) fn left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub(super) fn passed(&self) -> bool {
        self.left().is_zero()
    }

    /// One attempt's time: half of what is left (so a hung instance leaves
    /// time to try another), at least [`MIN_ATTEMPT`], at most all of it.
    pub(super) fn attempt_share(&self) -> Duration {
        let left = self.left();
        (left / 2).max(MIN_ATTEMPT).min(left)
    }
}

/// The pause between two attempts.
#[derive(Debug)]
pub(super) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff {
            next: FIRST_BACKOFF,
        }
    }

    /// Sleeps the next pause (never past `deadline`); false when the
    /// deadline passed meanwhile, so no attempt would get any time.
    pub(super) async fn pause(&mut self, deadline: &Deadline) -> bool {
        tokio::time::sleep(self.next.min(deadline.left())).await;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        !deadline.passed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_gets_half_of_what_is_left_within_bounds() {
        let deadline = Deadline::after(Duration::from_secs(4));
        let share = deadline.attempt_share();
        assert!(share <= Duration::from_secs(2) && share > Duration::from_millis(1900));
        let short = Deadline::after(Duration::from_millis(100));
        assert!(short.attempt_share() <= Duration::from_millis(100));
        let small = Deadline::after(Duration::from_millis(400));
        assert!(small.attempt_share() >= Duration::from_millis(240));
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_doubles_to_its_cap_and_stops_at_the_deadline() {
        let deadline = Deadline::after(Duration::from_secs(2));
        let mut backoff = Backoff::new();
        let mut pauses = Vec::new();
        loop {
            let before = Instant::now();
            let more = backoff.pause(&deadline).await;
            pauses.push(before.elapsed());
            if !more {
                break;
            }
        }
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(&ms[..6], &[25, 50, 100, 200, 400, 500]);
        assert!(deadline.passed());
        assert!(*ms.last().unwrap() <= 500);
    }
}
