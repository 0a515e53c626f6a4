//! What a tracker offers the code that shares one region's replay polls
//! among the instances watching the same database: an instance whose
//! sibling polls for it asks that sibling instead of its own poller, and
//! answers its siblings' asks from its own tracker.
//!
//! A link does not keep the tracker alive: once the last [`Tracker`] is
//! dropped, [`SiblingLink::stopped`] says so and waits stop being answered.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::waiters::Waiter;
use super::{Shared, Tracker};
use crate::lsn::Lsn;

/// What this tracker's waiters need now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// A fresh position (see [`Tracker::fresh_position`]); the answer
    /// serves the callers registered before this poll number.
    Fresh { poll: u64 },
    /// The lowest position anyone waits for.
    Reach(Lsn),
}

/// The tracker as its region's siblings see it; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct SiblingLink {
    shared: Arc<Shared>,
    label: Arc<str>,
}

impl Tracker {
    /// The link the region's shared polling works through.
    pub(crate) fn sibling_link(&self) -> SiblingLink {
        SiblingLink {
            shared: Arc::clone(&self.shared),
            label: Arc::clone(&self.label),
        }
    }
}

impl SiblingLink {
    /// Tells trackers apart: the same on every clone, random per tracker.
    pub(crate) fn id(&self) -> u64 {
        self.shared.id
    }

    /// The tracker's `tracker` metrics label.
    pub(crate) fn label(&self) -> Arc<str> {
        Arc::clone(&self.label)
    }

    /// Whether the tracker is gone (its last handle dropped).
    pub(crate) fn stopped(&self) -> bool {
        self.shared.shutdown.load(Ordering::Acquire)
    }

    /// The server the poller's connection reaches (`None` until it has
    /// connected).
    pub(crate) fn server(&self) -> Option<Arc<str>> {
        self.shared.lock().server.clone()
    }

    /// Whether a sibling polls for this tracker now.
    pub(crate) fn is_delegated(&self) -> bool {
        self.shared.delegated.load(Ordering::Acquire)
    }

    /// Hands polling to a sibling (`true`) or takes it back (`false`,
    /// waking the poller so no wait is left unanswered).
    pub(crate) fn set_delegated(&self, on: bool) {
        let was = self.shared.delegated.swap(on, Ordering::AcqRel);
        if was && !on {
            self.shared.lock().asked = None;
            self.shared.wake.notify_one();
        }
    }

    /// Waits until a waiter needs a position and says which; `None` once
    /// the tracker is gone. Marks the need as asked, so a later wait below
    /// it wakes [`SiblingLink::need_changed`].
    pub(crate) async fn next_need(&self) -> Option<Need> {
        loop {
            let notified = self.shared.feed_wake.notified();
            if self.stopped() {
                return None;
            }
            {
                let mut state = self.shared.lock();
                if !state.fresh.is_empty() {
                    state.polls_started += 1;
                    state.asked = None;
                    return Some(Need::Fresh {
                        poll: state.polls_started,
                    });
                }
                if let Some(target) = state.waiters.min_target() {
                    state.asked = Some(target);
                    return Some(Need::Reach(target));
                }
                state.asked = None;
            }
            notified.await;
        }
    }

    /// Resolves when a need more pressing than the one asked arrived (a
    /// wait below it, a fresh-position caller) or the tracker stopped.
    pub(crate) async fn need_changed(&self) {
        self.shared.feed_wake.notified().await;
    }

    /// Records a sibling's answer for `need`, as the poller records its own.
    pub(crate) fn publish(&self, need: Need, in_recovery: bool, replayed: Option<Lsn>) {
        self.shared.sibling_answers.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("fly_postgres_tracker_sibling_answers_total", "tracker" => Arc::clone(&self.label))
            .increment(1);
        let poll = match need {
            Need::Fresh { poll } => poll,
            // Fresh-position callers all asked for poll 1 or later.
            Need::Reach(_) => 0,
        };
        self.shared.lock().asked = None;
        self.shared.publish(poll, in_recovery, replayed);
    }

    /// What this tracker knows now: whether the database is out of
    /// recovery, and the highest replay position seen.
    pub(crate) fn known(&self) -> (bool, Option<Lsn>) {
        let state = self.shared.lock();
        let primary = state
            .primary_until
            .is_some_and(|until| until > Instant::now());
        (!primary, state.replayed)
    }

    /// Waits (at most `timeout`) until replay covers `target`, answered by
    /// this tracker's own polls (or its own sibling's); read the outcome
    /// with [`SiblingLink::known`]. Not counted among the tracker's waits:
    /// they are the asking sibling's.
    pub(crate) async fn wait_until(&self, target: Lsn, timeout: Duration) {
        let _ = self.shared.wait(target, timeout, Waiter::Sibling).await;
    }

    /// Waits (at most `timeout`) for a poll that starts after this call;
    /// `false` if none answered in time.
    pub(crate) async fn fresh(&self, timeout: Duration) -> bool {
        matches!(self.shared.fresh(timeout).await, Some(Ok(_)))
    }
}
