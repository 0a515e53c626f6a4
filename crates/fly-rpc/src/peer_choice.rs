//! Which instance of a region to try first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Round robin over a region's instances, with the ones that failed recently
/// moved to the back (still tried last: the failure may have been brief).
#[derive(Debug)]
pub(crate) struct PeerChoice {
    next: AtomicUsize,
    failed: Mutex<HashMap<SocketAddr, Instant>>,
    quarantine: Duration,
}

impl PeerChoice {
    pub(crate) fn new(quarantine: Duration) -> Self {
        PeerChoice {
            next: AtomicUsize::new(0),
            failed: Mutex::new(HashMap::new()),
            quarantine,
        }
    }

    /// The order in which to try `instances`.
    pub(crate) fn order(&self, mut instances: Vec<SocketAddr>) -> Vec<SocketAddr> {
        if instances.is_empty() {
            return instances;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % instances.len();
        instances.rotate_left(start);
        let now = Instant::now();
        let failed = self.lock();
        let recently_failed = |addr: &SocketAddr| {
            failed
                .get(addr)
                .is_some_and(|at| now.duration_since(*at) < self.quarantine)
        };
        // A stable sort keeps the round-robin order within each group.
        instances.sort_by_key(recently_failed);
        instances
    }

    pub(crate) fn failed(&self, addr: SocketAddr) {
        self.lock().insert(addr, Instant::now());
    }

    pub(crate) fn succeeded(&self, addr: SocketAddr) {
        let mut failed = self.lock();
        if !failed.is_empty() {
            failed.remove(&addr);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Instant>> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn rotates_and_demotes_failed_peers() {
        let choice = PeerChoice::new(Duration::from_secs(5));
        let all = vec![addr(1), addr(2), addr(3)];
        let first: Vec<_> = (0..3).map(|_| choice.order(all.clone())[0]).collect();
        assert_eq!(first, all, "round robin");
        choice.failed(addr(2));
        for _ in 0..3 {
            assert_eq!(*choice.order(all.clone()).last().unwrap(), addr(2));
        }
        choice.succeeded(addr(2));
        let firsts: Vec<_> = (0..3).map(|_| choice.order(all.clone())[0]).collect();
        assert!(firsts.contains(&addr(2)));
        assert!(choice.order(Vec::new()).is_empty());
    }
}
