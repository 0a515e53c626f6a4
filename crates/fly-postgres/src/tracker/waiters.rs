//! The set of pending waits, ordered by the LSN each one waits for.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use crate::lsn::Lsn;

/// Identifies one pending wait, so a cancelled wait can remove itself.
pub(super) type WaitKey = (Lsn, u64);

/// Pending waits. Ordering by LSN lets one replay position release all the
/// waits it covers with a single split, without touching the others.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    pending: BTreeMap<WaitKey, Pending>,
    next_id: u64,
}

/// One pending wait.
#[derive(Debug)]
struct Pending {
    tx: oneshot::Sender<()>,
    /// Woken before the others: a sibling instance's ask, whose answer
    /// wakes a whole instance's waiters in turn.
    first: bool,
}

/// Who waits: this instance's own caller, or a sibling instance asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiter {
    Own,
    Sibling,
}

impl Waiters {
    pub(super) fn insert(
        &mut self,
        target: Lsn,
        waiter: Waiter,
    ) -> (WaitKey, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let key = (target, self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        let first = waiter == Waiter::Sibling;
        self.pending.insert(key, Pending { tx, first });
        (key, rx)
    }

    pub(super) fn remove(&mut self, key: &WaitKey) {
        self.pending.remove(key);
    }

    /// Takes every wait whose target is at or below `replayed` out of the
    /// set; wake them with [`Released::wake`] once the set's lock is let go,
    /// so the woken tasks do not queue up on it.
    pub(super) fn release_up_to(&mut self, replayed: Lsn) -> Released {
        let still_pending = match replayed.as_u64().checked_add(1) {
            Some(next) => self.pending.split_off(&(Lsn::new(next), 0)),
            None => BTreeMap::new(),
        };
        Released(std::mem::replace(&mut self.pending, still_pending))
    }

    /// Takes every wait (the database is not in recovery).
    pub(super) fn release_all(&mut self) -> Released {
        self.release_up_to(Lsn::new(u64::MAX))
    }

    /// Drops every wait without waking it: each waiter sees the tracker stop.
    pub(super) fn abandon_all(&mut self) {
        self.pending.clear();
    }

    /// The lowest position anyone waits for.
    pub(super) fn min_target(&self) -> Option<Lsn> {
        self.pending.first_key_value().map(|((lsn, _), _)| *lsn)
    }

    /// The highest position anyone waits for.
    pub(super) fn max_target(&self) -> Option<Lsn> {
        self.pending.last_key_value().map(|((lsn, _), _)| *lsn)
    }

    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Waits taken out of the set, not yet woken.
#[must_use = "released waits must be woken"]
pub(super) struct Released(BTreeMap<WaitKey, Pending>);

impl Released {
    /// Wakes them, siblings' asks first (a woken task queues behind the
    /// ones woken before it, and a sibling's answer has a whole instance's
    /// waiters behind it); returns how many.
    pub(super) fn wake(self) -> usize {
        let count = self.0.len();
        let (first, rest): (Vec<_>, Vec<_>) = self.0.into_values().partition(|p| p.first);
        for pending in first.into_iter().chain(rest) {
            let _ = pending.tx.send(());
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_exactly_the_covered_waits() {
        let mut w = Waiters::default();
        let (_, mut a) = w.insert(Lsn::new(10), Waiter::Own);
        let (_, mut b) = w.insert(Lsn::new(20), Waiter::Own);
        let (_, mut c) = w.insert(Lsn::new(20), Waiter::Own);
        let (_, mut d) = w.insert(Lsn::new(21), Waiter::Own);
        assert_eq!(w.release_up_to(Lsn::new(9)).wake(), 0);
        assert_eq!(w.release_up_to(Lsn::new(20)).wake(), 3);
        assert!(a.try_recv().is_ok() && b.try_recv().is_ok() && c.try_recv().is_ok());
        assert!(d.try_recv().is_err());
        assert_eq!(w.len(), 1);
        assert_eq!(w.release_all().wake(), 1);
        assert!(d.try_recv().is_ok());
        assert!(w.is_empty());
    }

    #[test]
    fn removed_waits_leave_nothing() {
        let mut w = Waiters::default();
        let (key, _rx) = w.insert(Lsn::new(5), Waiter::Own);
        w.remove(&key);
        assert!(w.is_empty());
        let (_, rx) = w.insert(Lsn::new(u64::MAX), Waiter::Own);
        assert_eq!(w.release_all().wake(), 1);
        drop(rx);
    }
}
