//! The positions the consistency modes wait for: a token's (timeline-aware),
//! the primary's current one (strong reads), and what this instance has
//! seen (session tokens).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fly_rpc::{CallContext, CallOptions, Procedure};
use serde::{Deserialize, Serialize};

use super::Repo;
use super::server_state::ServerState;
use crate::consistency::mode::Consistency;
use crate::error::Error;
use crate::lsn::Lsn;
use crate::timeline_view::Verdict;
use crate::wal_position::WalPosition;

/// The pause between two looks at the timeline while waiting for the local
/// database to follow a newer one.
const FOLLOW_PAUSE: Duration = Duration::from_millis(20);
/// Waits that blocked longer than this look at the timeline again.
const REJUDGE_AFTER: Duration = Duration::from_millis(1);

/// Asks a primary-region instance for the primary's current position.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CurrentPosition;

/// The primary's position, as [`CurrentPosition`] answers it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PositionReply {
    lsn: Lsn,
    timeline: Option<u32>,
}

impl Procedure for CurrentPosition {
    const NAME: &'static str = "fly_postgres.current_position";
    const RETRY_SAFE: bool = true;
    type Output = PositionReply;
    type Error = String;
    type State = ServerState;

    async fn run(
        self,
        state: Arc<ServerState>,
        _ctx: CallContext,
    ) -> Result<PositionReply, String> {
        let position = state
            .positions()
            .current()
            .await
            .map_err(|_| "the primary's position could not be read".to_owned())?;
        Ok(PositionReply {
            lsn: position.lsn,
            timeline: position.timeline,
        })
    }
}

/// [`Error::WriteLost`], counted.
fn lost(position: WalPosition, switched_at: Lsn, timeline: u32) -> Error {
    metrics::counter!("fly_postgres_writes_lost_total").increment(1);
    Error::WriteLost {
        position,
        switched_at,
        timeline,
    }
}

impl Repo {
    /// Waits until the local database shows `position`, at most `timeout`,
    /// minding the timeline: a position on an earlier timeline past the
    /// point where the current one took over is [`Error::WriteLost`] (an
    /// asynchronous failover dropped it), never a release; one on a newer
    /// timeline waits until the local database follows it.
    pub async fn wait_for_position(
        &self,
        position: WalPosition,
        timeout: Duration,
    ) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            let view = self
                .inner
                .timelines
                .view(&self.inner.pool, position.timeline)
                .await?;
            match view.judge(position) {
                Verdict::Wait => {
                    let left = timeout.saturating_sub(started.elapsed());
                    let waiting = Instant::now();
                    self.inner.tracker.wait_for(position.lsn, left).await?;
                    // A failover during the wait may have moved the replica
                    // to a timeline on which this LSN is someone else's WAL:
                    // look again (one query, only after a wait that
                    // blocked, when the cached view predates it).
                    if position.timeline.is_some() && waiting.elapsed() > REJUDGE_AFTER {
                        let view = self
                            .inner
                            .timelines
                            .view_since(&self.inner.pool, waiting)
                            .await?;
                        if let Verdict::Lost {
                            switched_at,
                            timeline,
                        } = view.judge(position)
                        {
                            return Err(lost(position, switched_at, timeline));
                        }
                    }
                    return Ok(());
                }
                Verdict::Lost {
                    switched_at,
                    timeline,
                } => return Err(lost(position, switched_at, timeline)),
                Verdict::NewerTimeline if started.elapsed() + FOLLOW_PAUSE < timeout => {
                    tokio::time::sleep(FOLLOW_PAUSE).await;
                }
                Verdict::NewerTimeline => {
                    return Err(Error::ReplicationTimeout {
                        committed_lsn: position.lsn,
                        replayed: self.inner.tracker.last_replayed(),
                        waited: started.elapsed(),
                        output: None,
                    });
                }
            }
        }
    }

    /// The primary's current position: asked from the local database in
    /// the primary region, with one RPC to a primary-region instance
    /// elsewhere. What a [`Consistency::Strong`] read waits for.
    ///
    /// However many requests ask at once, one question is in flight at a
    /// time (on a connection of its own, not one the writes use), and its
    /// answer serves every request that began before it was asked.
    pub async fn primary_position(&self) -> Result<WalPosition, Error> {
        if self.is_primary().await {
            return self.inner.server.positions().current().await;
        }
        self.inner
            .remote_positions
            .get(|| async {
                let options = CallOptions::new()
                    .timeout(self.inner.config.rpc_timeout)
                    .require_primary();
                let reply = self
                    .inner
                    .node
                    .call(&self.primary_region(), CurrentPosition, options)
                    .await
                    .map_err(super::rpc_failure::from_rpc)?;
                self.inner.timelines.heard_of(reply.timeline);
                Ok(WalPosition::new(reply.timeline, reply.lsn))
            })
            .await
    }

    /// A position at or past everything a read on the local database has
    /// seen so far, for a session token: on a replica the answer of the
    /// tracker's next poll (shared by every request asking at once, no
    /// query of its own), on the primary its current flush position (one
    /// short query).
    pub(crate) async fn seen_position(&self) -> Option<WalPosition> {
        if !self.is_primary().await {
            let fresh = self
                .inner
                .tracker
                .fresh_position(self.inner.config.replication_timeout)
                .await;
            match fresh {
                Ok(Some(lsn)) => {
                    let viewed = self
                        .inner
                        .timelines
                        .view(&self.inner.pool, None)
                        .await
                        .ok()
                        .and_then(|view| view.timeline);
                    // The timeline the replica was last seen receiving (a
                    // look twice a second) is a floor: a replica never
                    // goes back a timeline, and one that receives a newer
                    // timeline holds all it replayed of the older one on
                    // the newer one's history too.
                    let received = self.inner.lag.as_ref().and_then(|l| l.received_timeline());
                    return Some(WalPosition::new(viewed.max(received), lsn));
                }
                // Not in recovery after all (a database of its own).
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "no replay position for the session token");
                    return None;
                }
            }
        }
        self.inner.server.positions().current().await.ok()
    }

    /// A position at or past everything a read on the primary pool has seen
    /// so far (its current flush position; one short query on a connection
    /// of its own), for a session token whose reads went to the primary;
    /// `None` without a primary pool.
    pub(crate) async fn primary_seen_position(&self) -> Option<WalPosition> {
        self.direct_primary_position().await?.ok()
    }

    /// The primary's current position asked through the primary pool (one
    /// question shared by every caller), which also tells the timeline
    /// cache the primary's timeline; `None` without a primary pool.
    pub(crate) async fn direct_primary_position(&self) -> Option<Result<WalPosition, Error>> {
        let direct = self.inner.direct.as_ref()?;
        let answer = direct.positions().current().await;
        if let Ok(position) = &answer {
            self.inner.timelines.heard_of(position.timeline);
        }
        Some(answer)
    }

    /// The local database cluster's system identifier (read once a second
    /// at most).
    pub(crate) async fn system_id(&self) -> Result<u64, Error> {
        if let Some(id) = self.inner.timelines.system_id() {
            return Ok(id);
        }
        Ok(self
            .inner
            .timelines
            .view(&self.inner.pool, None)
            .await?
            .system_id)
    }

    /// The keys consistency tokens are signed with (current first).
    pub(crate) fn token_keys(&self) -> &[[u8; 32]] {
        &self.inner.token_keys
    }

    /// Brings this request's view up to `mode` before a read, inside or
    /// outside a [`crate::ConsistencyLayer`]: [`Consistency::Strong`] asks
    /// the primary for its position and waits for it (at most the repo's
    /// replication timeout); [`Consistency::Session`] notes what this
    /// instance has shown, so the layer's token rises to it;
    /// [`Consistency::Bounded`] waits until the local replica is within its
    /// bound of the primary ([`Error::ReplicaUnavailable`] when the replica
    /// does not answer or its lag is unknown); the others have nothing to
    /// add to what the layer did.
    ///
    // Not run as a doctest: needs a running database.
    /// ```no_run
    /// # async fn demo(repo: fly_postgres::Repo) -> Result<(), fly_postgres::Error> {
    /// use fly_postgres::Consistency;
    /// repo.catch_up(Consistency::Strong).await?;
    /// let rows: Vec<(i64,)> = sqlx::query_as("select id from todos").fetch_all(repo.reader()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn catch_up(&self, mode: Consistency) -> Result<(), Error> {
        match mode {
            Consistency::Eventual | Consistency::ReadYourWrites => Ok(()),
            Consistency::Session => {
                if let Some(seen) = self.seen_position().await {
                    crate::request_record::record_seen(seen);
                }
                Ok(())
            }
            Consistency::Bounded(max) => {
                if let Some(target) = self.bounded_target(max).await? {
                    self.wait_for_position(target, self.inner.config.replication_timeout)
                        .await?;
                }
                Ok(())
            }
            Consistency::Strong => {
                let target = self.strong_target(None).await?;
                self.wait_for_position(target, self.inner.config.replication_timeout)
                    .await?;
                crate::request_record::record_seen(target);
                Ok(())
            }
        }
    }

    /// What a strong read waits for: everything committed on the primary
    /// now, and `known` (what the request carries). The one definition of
    /// strong, for [`Repo::catch_up`] and the consistency layer alike.
    pub(crate) async fn strong_target(
        &self,
        known: Option<WalPosition>,
    ) -> Result<WalPosition, Error> {
        let primary = self.primary_position().await?;
        Ok(WalPosition::latest(known, primary))
    }

    /// The pool a handler reads from: the local database, or the primary
    /// (when the repo has a `primary_url` / `primary_pool`) in a request a
    /// [`crate::ConsistencyLayer`] with [`crate::WaitFallback::PrimaryPool`]
    /// moved there, and while the local replica is known not to answer.
    pub fn reader(&self) -> &sqlx::PgPool {
        if let Some(direct) = &self.inner.direct
            && (crate::request_record::reading_from_primary() || self.replica_down())
        {
            return &direct.pool;
        }
        &self.inner.pool
    }

    /// Whether this repo can read from the primary directly (a
    /// `primary_url` or `primary_pool` was given).
    pub(crate) fn has_primary_pool(&self) -> bool {
        self.inner.direct.is_some()
    }

    /// How long a read waits by default (the repo's replication timeout).
    pub(crate) fn replication_timeout(&self) -> Duration {
        self.inner.config.replication_timeout
    }
}
