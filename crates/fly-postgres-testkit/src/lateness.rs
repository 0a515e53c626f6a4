//! How late the latency proxy delivers bytes compared with their due time:
//! the precision a benchmark built on it can claim.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets of 5 µs up to 5 ms; later deliveries land in the last one.
const BUCKET_US: u64 = 5;
const BUCKETS: usize = 1000;

/// A lock-free histogram of delivery lateness.
#[derive(Debug)]
pub(crate) struct LatenessHistogram {
    buckets: Box<[AtomicU64]>,
    max_us: AtomicU64,
}

impl Default for LatenessHistogram {
    fn default() -> Self {
        LatenessHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }
}

impl LatenessHistogram {
    pub(crate) fn record(&self, late: Duration) {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        let index = usize::try_from(us / BUCKET_US).map_or(BUCKETS - 1, |i| i.min(BUCKETS - 1));
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Lateness {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let chunks: u64 = counts.iter().sum();
        let pct = |p: f64| {
            if chunks == 0 {
                return Duration::ZERO;
            }
            let rank = ((chunks as f64) * p / 100.0).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in counts.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    // The bucket's upper edge: never flatter than the truth.
                    return Duration::from_micros((i as u64 + 1) * BUCKET_US);
                }
            }
            Duration::from_micros(BUCKETS as u64 * BUCKET_US)
        };
        Lateness {
            chunks,
            p50: pct(50.0),
            p99: pct(99.0),
            max: Duration::from_micros(self.max_us.load(Ordering::Relaxed)),
        }
    }
}

/// How late a [`LatencyProxy`](crate::LatencyProxy) delivered the chunks it
/// delayed (write time minus due time), since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lateness {
    /// Chunks delivered after a delay.
    pub chunks: u64,
    /// Median lateness (rounded up to 5 µs).
    pub p50: Duration,
    /// 99th percentile (rounded up to 5 µs).
    pub p99: Duration,
    /// The latest delivery.
    pub max: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_round_up_to_the_bucket() {
        let h = LatenessHistogram::default();
        for us in [1, 2, 3, 12, 7_000] {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.chunks, 5);
        assert_eq!(s.p50, Duration::from_micros(5));
        assert_eq!(s.p99, Duration::from_millis(5));
        assert_eq!(s.max, Duration::from_millis(7));
    }
}
