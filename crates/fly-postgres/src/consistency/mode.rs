//! The consistency a read asks for.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The longest staleness bound [`Consistency::Bounded`] takes: a longer
/// one is almost certainly a unit mistake.
pub const MAX_STALENESS_BOUND: Duration = Duration::from_secs(24 * 60 * 60);

/// What a read sees, per [`crate::ConsistencyLayer`] and per request
/// (header [`super::CONSISTENCY_HEADER`], or [`crate::Repo::catch_up`]).
///
/// | mode | a read sees | cost |
/// | --- | --- | --- |
/// | `Eventual` | whatever the local replica has | none |
/// | `ReadYourWrites` (default) | the session's own writes | a wait for the written LSN |
/// | `Bounded(max)` | the session's own writes, and everything committed anywhere more than `max` before the read began | none while the replica is within `max`; else a wait, then the fallback |
/// | `Session` | also never an older state than the session saw before, on any instance or region | the token rises with reads too |
/// | `Strong` | everything committed anywhere before the read began | one RPC for the primary's position, then a wait |
///
/// Modes are ordered by strength (for [`crate::ConsistencyLayer::max_header_mode`]):
/// `Eventual < ReadYourWrites < Bounded(max) < Session < Strong`, and a
/// bounded mode with a shorter bound is the stronger one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Consistency {
    /// No wait: the local replica as it is.
    Eventual,
    /// Wait for the session's own writes (the token's position).
    #[default]
    ReadYourWrites,
    /// Read-your-writes, and at most `max` stale (bounded staleness, as
    /// CockroachDB's `with_max_staleness` or rqlite's `freshness`): the
    /// local replica serves the read when it holds everything the primary
    /// had `max` before the read began, as far as the primary's own reports
    /// show (see [`crate::ReplicaLag`]); otherwise the read waits for it,
    /// at most the layer's `max_wait`, then takes the layer's fallback.
    /// Header form: `bounded=2s` (at most [`MAX_STALENESS_BOUND`]).
    Bounded(Duration),
    /// Read-your-writes, and every response raises the token to what this
    /// instance's replica had replayed when the request began, so the
    /// session never sees an older state afterwards (monotonic reads,
    /// writes-follow-reads).
    Session,
    /// Before reading, ask the primary region for its current position and
    /// wait until the local replica has replayed it (Aurora's GLOBAL).
    Strong,
}

impl Consistency {
    /// Every mode without a parameter, in the order of their strength.
    pub const ALL: [Consistency; 4] = [
        Consistency::Eventual,
        Consistency::ReadYourWrites,
        Consistency::Session,
        Consistency::Strong,
    ];

    /// The mode's name (`eventual`, `read-your-writes`, `bounded`,
    /// `session`, `strong`); [`Display`](fmt::Display) adds a bound's
    /// duration (`bounded=2s`), as the header takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Eventual => "eventual",
            Consistency::ReadYourWrites => "read-your-writes",
            Consistency::Bounded(_) => "bounded",
            Consistency::Session => "session",
            Consistency::Strong => "strong",
        }
    }

    /// The staleness bound of a [`Consistency::Bounded`] mode.
    pub fn staleness_bound(self) -> Option<Duration> {
        match self {
            Consistency::Bounded(max) => Some(max),
            _ => None,
        }
    }

    /// The rank in the strength order; the bound orders bounded modes.
    fn rank(self) -> (u8, std::cmp::Reverse<Duration>) {
        let rank = match self {
            Consistency::Eventual => 0,
            Consistency::ReadYourWrites => 1,
            Consistency::Bounded(_) => 2,
            Consistency::Session => 3,
            Consistency::Strong => 4,
        };
        (
            rank,
            std::cmp::Reverse(self.staleness_bound().unwrap_or_default()),
        )
    }
}

impl PartialOrd for Consistency {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Consistency {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consistency::Bounded(max) => write!(f, "bounded={}", humantime::format_duration(*max)),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A consistency header or setting that names no mode, or a bound that is
/// missing, malformed or out of range; the message names the accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{reason}; accepted values: eventual, read-your-writes, bounded=<duration> (e.g. bounded=2s or bounded=250ms, at most 24h), session, strong"
)]
pub struct UnknownConsistency {
    reason: &'static str,
}

impl UnknownConsistency {
    pub(crate) const NOT_TEXT: UnknownConsistency = UnknownConsistency {
        reason: "the consistency mode is not text",
    };
    const UNKNOWN: UnknownConsistency = UnknownConsistency {
        reason: "unknown consistency mode",
    };
}

/// A bound as `bounded=` takes it: a duration with units, over zero and at
/// most [`MAX_STALENESS_BOUND`].
fn parse_bound(text: &str) -> Result<Duration, UnknownConsistency> {
    let refuse = |reason| Err(UnknownConsistency { reason });
    let text = text.trim();
    if text.is_empty() {
        return refuse("bounded needs a duration");
    }
    if text.starts_with('-') {
        return refuse("a staleness bound cannot be negative");
    }
    match humantime::parse_duration(text) {
        Ok(max) if max.is_zero() => refuse("a staleness bound must be over zero (use strong)"),
        Ok(max) if max > MAX_STALENESS_BOUND => refuse("a staleness bound over a day"),
        Ok(max) => Ok(max),
        Err(_) => refuse("the staleness bound is not a duration"),
    }
}

impl FromStr for Consistency {
    type Err = UnknownConsistency;

    /// Case-insensitive; `read_your_writes` and `ryw` are accepted too, and
    /// `bounded=2s` (also `bounded:2s`) for a bounded mode.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim().to_ascii_lowercase();
        if let Some(rest) = text.strip_prefix("bounded") {
            let bound = rest
                .trim_start()
                .strip_prefix(['=', ':'])
                .ok_or(UnknownConsistency {
                    reason: "bounded needs a duration",
                })
                .and_then(parse_bound)?;
            return Ok(Consistency::Bounded(bound));
        }
        match text.as_str() {
            "eventual" => Ok(Consistency::Eventual),
            "read-your-writes" | "read_your_writes" | "ryw" => Ok(Consistency::ReadYourWrites),
            "session" => Ok(Consistency::Session),
            "strong" | "global" => Ok(Consistency::Strong),
            _ => Err(UnknownConsistency::UNKNOWN),
        }
    }
}

/// What a read does when the local replica has not reached the token
/// within [`crate::ConsistencyLayer::max_wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitFallback {
    /// Answer with `fly-replay: region=<primary>`: on Fly.io the proxy runs
    /// the request again in the primary region, about one round trip.
    Replay,
    /// Run the request here, with [`crate::Repo::reader`] reading from the
    /// primary (the repo's `primary_url` / `primary_pool`): one round trip
    /// per query instead of the replica's lag.
    PrimaryPool,
    /// Answer `503 Service Unavailable` with `Retry-After: 1`.
    Unavailable,
}

impl WaitFallback {
    /// The name `FLY_POSTGRES_WAIT_FALLBACK` uses (`replay`,
    /// `primary-pool`, `unavailable`).
    pub fn as_str(self) -> &'static str {
        match self {
            WaitFallback::Replay => "replay",
            WaitFallback::PrimaryPool => "primary-pool",
            WaitFallback::Unavailable => "unavailable",
        }
    }
}

impl FromStr for WaitFallback {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "replay" | "fly-replay" => Ok(WaitFallback::Replay),
            "primary-pool" | "primary_pool" | "primary" => Ok(WaitFallback::PrimaryPool),
            "unavailable" | "503" => Ok(WaitFallback::Unavailable),
            _ => Err("accepted values: replay, primary-pool, unavailable".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for mode in Consistency::ALL {
            assert_eq!(mode.as_str().parse::<Consistency>(), Ok(mode));
        }
        assert_eq!(" Session ".parse(), Ok(Consistency::Session));
        let error = "linearizable".parse::<Consistency>().unwrap_err();
        assert!(error.to_string().contains("bounded=<duration>"));
        for fallback in [
            WaitFallback::Replay,
            WaitFallback::PrimaryPool,
            WaitFallback::Unavailable,
        ] {
            assert_eq!(fallback.as_str().parse(), Ok(fallback));
        }
        assert!("later".parse::<WaitFallback>().is_err());
    }

    #[test]
    fn bounds_parse_print_and_refuse_bad_input() {
        let two = Consistency::Bounded(Duration::from_secs(2));
        assert_eq!("bounded=2s".parse(), Ok(two));
        assert_eq!(" Bounded = 2s ".parse(), Ok(two));
        assert_eq!(two.to_string(), "bounded=2s");
        assert_eq!(two.to_string().parse(), Ok(two));
        assert_eq!(
            "bounded=250ms"
                .parse::<Consistency>()
                .unwrap()
                .staleness_bound(),
            Some(Duration::from_millis(250))
        );
        for bad in [
            "bounded",
            "bounded=",
            "bounded=-1s",
            "bounded=0s",
            "bounded=2",
            "bounded=25h",
            "bounded=soon",
        ] {
            let error = bad.parse::<Consistency>().unwrap_err().to_string();
            assert!(error.contains("bounded=<duration>"), "{bad}: {error}");
        }
        assert!(
            "bounded=25h"
                .parse::<Consistency>()
                .unwrap_err()
                .to_string()
                .contains("over a day")
        );
    }

    #[test]
    fn strength_orders_bounds_between_read_your_writes_and_session() {
        let tight = Consistency::Bounded(Duration::from_millis(100));
        let loose = Consistency::Bounded(Duration::from_secs(10));
        assert!(Consistency::ReadYourWrites < loose);
        assert!(loose < tight);
        assert!(tight < Consistency::Session);
        assert_eq!(tight.max(loose), tight);
    }
}
