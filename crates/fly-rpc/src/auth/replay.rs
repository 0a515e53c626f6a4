//! Replay protection: each request id is accepted once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::Rejection;

/// Request ids accepted recently, in two generations: an id is remembered
/// for at least two windows (a replay must carry a timestamp within one
/// window of now), and forgetting a whole generation at once keeps the cost
/// per request constant however busy the node is.
#[derive(Debug)]
pub(super) struct SeenIds {
    pub(super) current: HashSet<u128>,
    pub(super) previous: HashSet<u128>,
    pub(super) rotated: Instant,
}

impl SeenIds {
    pub(super) fn new() -> Self {
        SeenIds {
            current: HashSet::new(),
            previous: HashSet::new(),
            rotated: Instant::now(),
        }
    }

    /// Accepts `id` if it was not seen within two of the timestamp
    /// `window`s.
    pub(super) fn remember(&mut self, id: u128, window: Duration) -> Result<(), Rejection> {
        if self.rotated.elapsed() > window.saturating_mul(2) {
            self.previous = std::mem::take(&mut self.current);
            self.rotated = Instant::now();
        }
        if self.previous.contains(&id) || !self.current.insert(id) {
            return Err(Rejection::Replayed);
        }
        Ok(())
    }
}
