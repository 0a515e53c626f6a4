//! The local replica's lag, and what a read bounded in staleness waits for.

use std::time::{Duration, Instant};

use super::Repo;
use crate::error::Error;
use crate::replica_lag::{BoundTarget, ReplicaLag};
use crate::wal_position::WalPosition;

impl Repo {
    /// The local replica's lag behind the primary, as the repo's background
    /// look (twice a second, on a connection of its own) last found it; no
    /// query is sent. In the primary region: [`ReplicaLag::primary`].
    ///
    // Not run as a doctest: needs a running database.
    /// ```no_run
    /// # fn demo(repo: fly_postgres::Repo) {
    /// let lag = repo.replica_lag();
    /// println!("{:?} behind, {:?} bytes ({:?})", lag.seconds, lag.bytes, lag.state);
    /// # }
    /// ```
    pub fn replica_lag(&self) -> ReplicaLag {
        self.inner
            .lag
            .as_ref()
            .map_or_else(ReplicaLag::primary, |monitor| monitor.lag())
    }

    /// Whether the local replica is known not to answer: reads take a
    /// fallback at once instead of waiting to find out.
    pub(crate) fn replica_down(&self) -> bool {
        self.inner.lag.as_ref().is_some_and(|m| m.is_down())
    }

    /// A read just failed on the local database: have it looked at now.
    pub(crate) fn suspect_replica(&self) {
        if let Some(monitor) = &self.inner.lag {
            monitor.suspect();
        }
    }

    /// A forwarded write committed at `position`: the primary had it.
    pub(crate) fn primary_reached(&self, position: WalPosition) {
        self.inner.timelines.heard_of(position.timeline);
        if let Some(monitor) = &self.inner.lag {
            monitor.primary_reached(position.lsn);
        }
    }

    /// What a read at most `max` stale waits for: the lowest position the
    /// primary is known to have had no more than `max` ago, asked of the
    /// primary when none is known (an idle primary reports nothing). `None`
    /// where the local database is the primary.
    pub(crate) async fn bounded_target(&self, max: Duration) -> Result<Option<WalPosition>, Error> {
        let Some(monitor) = &self.inner.lag else {
            return Ok(None);
        };
        if monitor.is_down() {
            return Err(Error::ReplicaUnavailable {
                reason: "it does not answer".into(),
            });
        }
        if monitor.is_primary() || self.is_primary().await {
            return Ok(None);
        }
        match monitor.bound_target(max) {
            BoundTarget::Wait(ceiling) => {
                // Ask before the known reports age out of the bound, so a
                // steady flow of bounded reads never waits for the question.
                if !monitor.heard_within(max / 2) {
                    self.refresh_primary_report();
                }
                Ok(Some(WalPosition::new(ceiling.timeline, ceiling.lsn)))
            }
            BoundTarget::AskPrimary => {
                let asked = Instant::now();
                let position = self.ask_primary().await?;
                monitor.primary_answered(position, asked);
                Ok(Some(position))
            }
            BoundTarget::Unknown(anomaly) => Err(Error::ReplicaUnavailable {
                reason: format!("its lag is unknown: {}", anomaly.describe()),
            }),
        }
    }

    /// The primary's position: straight from the primary when the repo has
    /// a primary pool (one round trip), else from a primary-region
    /// instance. Both share one question among every caller.
    async fn ask_primary(&self) -> Result<WalPosition, Error> {
        match self.direct_primary_position().await {
            Some(answer) => answer,
            None => self.primary_position().await,
        }
    }

    /// Asks the primary for its position in the background, one question
    /// at a time.
    fn refresh_primary_report(&self) {
        let Some(monitor) = &self.inner.lag else {
            return;
        };
        if !monitor.begin_refresh() {
            return;
        }
        let repo = self.clone();
        tokio::spawn(async move {
            let asked = Instant::now();
            let answer = repo.ask_primary().await;
            if let Some(monitor) = &repo.inner.lag {
                match answer {
                    Ok(position) => monitor.primary_answered(position, asked),
                    Err(e) => {
                        tracing::debug!(error = %e, "the primary's position could not be asked")
                    }
                }
                monitor.end_refresh();
            }
        });
    }
}
