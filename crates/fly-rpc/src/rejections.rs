//! Refused requests: always counted, logged at a bounded rate, so an
//! unauthenticated flood cannot fill the disk.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one log line per reason per this interval.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub(crate) struct Rejections {
    by_reason: Mutex<HashMap<&'static str, Tally>>,
}

#[derive(Debug)]
struct Tally {
    logged: Instant,
    since: u64,
}

impl Rejections {
    /// Counts a refusal in `fly_rpc_server_rejections_total{reason}` and logs
    /// it unless a line for the same reason was written in the last
    /// [`LOG_INTERVAL`] (the next line then says how many were not logged).
    pub(crate) fn record(&self, reason: &'static str, detail: &dyn std::fmt::Display) {
        crate::metric::counter!("fly_rpc_server_rejections_total", "reason" => reason).increment(1);
        let suppressed = {
            let mut by_reason = self.by_reason.lock().unwrap_or_else(|p| p.into_inner());
            match by_reason.get_mut(reason) {
                Some(tally) if tally.logged.elapsed() < LOG_INTERVAL => {
                    tally.since += 1;
                    return;
                }
                Some(tally) => {
                    let suppressed = tally.since;
                    tally.logged = Instant::now();
                    tally.since = 0;
                    suppressed
                }
                None => {
                    by_reason.insert(
                        reason,
                        Tally {
                            logged: Instant::now(),
                            since: 0,
                        },
                    );
                    0
                }
            }
        };
        tracing::warn!(
            reason,
            %detail,
            suppressed,
            "refused an RPC request (at most one line per reason every {LOG_INTERVAL:?}; \
             `suppressed` counts the ones not logged since the last line)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_one_line_per_reason_per_interval() {
        let r = Rejections::default();
        for _ in 0..10_000 {
            r.record("bad_signature", &"x");
            r.record("stale", &"x");
        }
        let by_reason = r.by_reason.lock().unwrap();
        assert_eq!(by_reason["bad_signature"].since, 9_999);
        assert_eq!(by_reason["stale"].since, 9_999);
    }
}
