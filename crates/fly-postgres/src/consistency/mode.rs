//! The consistency a read asks for.

use std::fmt;
use std::str::FromStr;

/// What a read sees, per [`crate::ConsistencyLayer`] and per request
/// (header [`super::CONSISTENCY_HEADER`], or [`crate::Repo::catch_up`]).
///
/// | mode | a read sees | cost |
/// | --- | --- | --- |
/// | `Eventual` | whatever the local replica has | none |
/// | `ReadYourWrites` (default) | the session's own writes | a wait for the written LSN |
/// | `Session` | also never an older state than the session saw before, on any instance or region | the token rises with reads too |
/// | `Strong` | everything committed anywhere before the read began | one RPC for the primary's position, then a wait |
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Consistency {
    /// No wait: the local replica as it is.
    Eventual,
    /// Wait for the session's own writes (the token's position).
    #[default]
    ReadYourWrites,
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
    /// Every mode, in the order of their strength.
    pub const ALL: [Consistency; 4] = [
        Consistency::Eventual,
        Consistency::ReadYourWrites,
        Consistency::Session,
        Consistency::Strong,
    ];

    /// The name the header uses (`eventual`, `read-your-writes`, `session`,
    /// `strong`).
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Eventual => "eventual",
            Consistency::ReadYourWrites => "read-your-writes",
            Consistency::Session => "session",
            Consistency::Strong => "strong",
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A consistency name that is not one of [`Consistency::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown consistency mode; accepted values: eventual, read-your-writes, session, strong")]
pub struct UnknownConsistency;

impl FromStr for Consistency {
    type Err = UnknownConsistency;

    /// Case-insensitive; `read_your_writes` and `ryw` are accepted too.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "eventual" => Ok(Consistency::Eventual),
            "read-your-writes" | "read_your_writes" | "ryw" => Ok(Consistency::ReadYourWrites),
            "session" => Ok(Consistency::Session),
            "strong" | "global" => Ok(Consistency::Strong),
            _ => Err(UnknownConsistency),
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
        assert!(
            error
                .to_string()
                .contains("read-your-writes, session, strong")
        );
        for fallback in [
            WaitFallback::Replay,
            WaitFallback::PrimaryPool,
            WaitFallback::Unavailable,
        ] {
            assert_eq!(fallback.as_str().parse(), Ok(fallback));
        }
        assert!("later".parse::<WaitFallback>().is_err());
    }
}
