//! Where the time of one write went: RPC, transaction, replication wait.

use std::time::Duration;

/// The phases of one write, as the library measured them.
///
/// From [`Write::timed`](crate::Write::timed); the
/// [`ConsistencyLayer`](crate::ConsistencyLayer) also sends them to browsers
/// as a `Server-Timing` header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteTimings {
    /// From the call to the output, everything included.
    pub total: Duration,
    /// Forwarded writes: from the first attempt to the primary region's
    /// reply, retries and their backoff included. `None` for a write this
    /// instance ran itself.
    pub rpc: Option<Duration>,
    /// The write's transaction next to the primary, BEGIN to the commit LSN
    /// (for a forwarded write, as the primary region measured it; `None` when
    /// its reply did not say, as from an older version).
    pub primary: Option<Duration>,
    /// Waiting for the local replica to replay the commit; `None` with
    /// [`Write::no_wait`](crate::Write::no_wait) or in the primary region.
    pub replication_wait: Option<Duration>,
    /// Attempts the write took: RPC attempts, or for a write this instance
    /// ran itself, its attempts on the local database (more than one when
    /// the first ones met a connection that died, as in a failover).
    pub attempts: u32,
}

impl WriteTimings {
    /// The phases as a `Server-Timing` header value (milliseconds), e.g.
    /// `fly-write;dur=61.9, fly-rpc;dur=60.8, fly-primary;dur=0.4,
    /// fly-replication-wait;dur=0.9`.
    pub fn server_timing(&self) -> String {
        let mut parts = vec![metric("fly-write", "write", self.total)];
        if let Some(rpc) = self.rpc {
            parts.push(metric("fly-rpc", "RPC to the primary region", rpc));
        }
        if let Some(primary) = self.primary {
            parts.push(metric("fly-primary", "transaction on the primary", primary));
        }
        if let Some(wait) = self.replication_wait {
            parts.push(metric(
                "fly-replication-wait",
                "wait for the local replica",
                wait,
            ));
        }
        parts.join(", ")
    }

    /// Adds the phases of a later write of the same request.
    pub(crate) fn add(&mut self, other: &WriteTimings) {
        fn sum(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
            match (a, b) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or_default() + b.unwrap_or_default()),
            }
        }
        self.total += other.total;
        self.rpc = sum(self.rpc, other.rpc);
        self.primary = sum(self.primary, other.primary);
        self.replication_wait = sum(self.replication_wait, other.replication_wait);
        self.attempts += other.attempts;
    }
}

/// One `Server-Timing` metric, in milliseconds.
pub(crate) fn metric(name: &str, description: &str, duration: Duration) -> String {
    format!(
        "{name};desc=\"{description}\";dur={:.3}",
        duration.as_secs_f64() * 1e3
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_lists_the_phases_that_happened() {
        let local = WriteTimings {
            total: Duration::from_micros(1500),
            primary: Some(Duration::from_micros(1200)),
            ..WriteTimings::default()
        };
        assert_eq!(
            local.server_timing(),
            "fly-write;desc=\"write\";dur=1.500, \
             fly-primary;desc=\"transaction on the primary\";dur=1.200"
        );
        let mut forwarded = WriteTimings {
            total: Duration::from_millis(62),
            rpc: Some(Duration::from_millis(61)),
            primary: None,
            replication_wait: Some(Duration::from_millis(1)),
            attempts: 1,
        };
        forwarded.add(&local);
        assert_eq!(forwarded.total, Duration::from_micros(63_500));
        assert_eq!(forwarded.primary, Some(Duration::from_micros(1200)));
        assert_eq!(forwarded.attempts, 1);
        assert!(forwarded.server_timing().contains("fly-rpc;desc="));
        assert!(forwarded.server_timing().contains("fly-replication-wait;"));
    }
}
