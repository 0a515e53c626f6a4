//! Replica lag as a number: how far the local replica is behind the
//! primary, measured from what the primary itself reported (to the
//! replica's WAL receiver, and in answers to this instance's questions),
//! not from `now() - pg_last_xact_replay_timestamp()`, which grows on an
//! idle primary although nothing is missing.
//!
//! [`Repo::replica_lag`](crate::Repo::replica_lag) reads it; the gauges
//! `fly_postgres_replica_lag_seconds`, `fly_postgres_replica_lag_bytes` and
//! `fly_postgres_replica_up` (label `repo`) export it; a
//! [`Consistency::Bounded`](crate::Consistency::Bounded) read acts on it.
//!
//! ```
//! use fly_postgres::{ReplicaLag, ReplicaState};
//!
//! fn alert(lag: &ReplicaLag) -> Option<String> {
//!     match lag.state {
//!         ReplicaState::Down { for_ } => Some(format!("replica down for {for_:?}")),
//!         _ => lag
//!             .seconds
//!             .filter(|s| s.as_secs() >= 5)
//!             .map(|s| format!("replica {s:?} behind")),
//!     }
//! }
//! assert_eq!(alert(&ReplicaLag::primary()), None);
//! ```

mod evidence;
mod monitor;
mod sample;

pub(crate) use evidence::BoundTarget;
pub(crate) use monitor::LagMonitor;

use std::time::{Duration, Instant};

use sqlx::PgConnection;

use crate::error::Error;

/// What the local database is, as the last look found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaState {
    /// Not looked at yet.
    Unchecked,
    /// The local database is the primary (primary region, or a database of
    /// its own): nothing to lag behind.
    Primary,
    /// A replica that answers.
    Replica,
    /// A replica that failed two looks in a row (refused, or silent for a
    /// second), for this long. Reads take the consistency layer's fallback
    /// at once.
    Down {
        /// Since the first look that failed.
        for_: Duration,
    },
}

/// The local replica's lag behind the primary; from
/// [`Repo::replica_lag`](crate::Repo::replica_lag).
///
/// `seconds` is how long ago the primary first had WAL that the replica
/// has not replayed yet, and `bytes` how much WAL that is; both are zero
/// when the replica holds everything the primary is known to have had, so
/// an idle primary reads as no lag. Both are `None` while the replica is
/// down or its reports contradict the primary's (a replay position ahead
/// of the primary's, a position that went backwards): never read as
/// fresh. `primary_heard` is how long ago the primary was last heard from,
/// which an idle primary lets grow: a bounded read older than that asks
/// the primary (one question, shared) instead of trusting the silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaLag {
    /// What the local database is.
    pub state: ReplicaState,
    /// Replay lag in time; `None` when unknown.
    pub seconds: Option<Duration>,
    /// Replay lag in WAL bytes; `None` when unknown.
    pub bytes: Option<u64>,
    /// How long ago the primary last reported its end of WAL.
    pub primary_heard: Option<Duration>,
}

impl ReplicaLag {
    /// The lag of the database `conn` reaches, from one look, for tools
    /// (`flypg status`); a [`Repo`](crate::Repo) keeps
    /// [`Repo::replica_lag`](crate::Repo::replica_lag) up to date instead.
    /// One look sees only what the WAL receiver heard last: the figures of
    /// a replica whose receiver columns are hidden (no
    /// `pg_read_all_stats`) are `None`.
    pub async fn measure(conn: &mut PgConnection) -> Result<ReplicaLag, Error> {
        let sent = Instant::now();
        let sample = sample::sample(conn).await?;
        if !sample.in_recovery {
            return Ok(ReplicaLag::primary());
        }
        let mut evidence = evidence::Evidence::default();
        sample.apply_to(&mut evidence, sent);
        let figures = evidence.figures(Instant::now());
        Ok(ReplicaLag {
            state: ReplicaState::Replica,
            seconds: figures.seconds,
            bytes: figures.bytes,
            primary_heard: figures.heard,
        })
    }

    /// The lag of a database that is the primary: none.
    pub fn primary() -> ReplicaLag {
        ReplicaLag {
            state: ReplicaState::Primary,
            seconds: Some(Duration::ZERO),
            bytes: Some(0),
            primary_heard: Some(Duration::ZERO),
        }
    }
}
