//! What a primary-region node needs to serve forwarded writes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use sqlx::PgPool;

use super::position_flight::PrimaryPositions;

/// Called after a forwarded write committed, before the reply is sent.
pub(crate) type AfterCommit = Arc<dyn Fn(&str) + Send + Sync>;

pub(crate) struct ServerState {
    pub(crate) pool: PgPool,
    pub(crate) served: AtomicU64,
    pub(crate) after_commit: Option<AfterCommit>,
    /// Whether this database runs with `synchronous_commit = off`, learned
    /// on the first write.
    pub(crate) async_commit: tokio::sync::OnceCell<bool>,
    /// The cluster's system identifier, learned on the first write that
    /// keeps no record (its settle id names the cluster).
    pub(crate) system_id: tokio::sync::OnceCell<u64>,
    /// This process's writes that kept no record, for a retry by id.
    pub(crate) unrecorded: super::unrecorded::Unrecorded,
    /// Whether forwarded ad-hoc statements are served.
    pub(crate) ad_hoc_statements: bool,
    /// How long exactly-once records are kept.
    pub(crate) retention: Retention,
    /// What [`crate::state`] finds while a mutation runs.
    pub(crate) app_state: Arc<crate::app_state::AppState>,
    /// The primary's position, for strong and session reads here and in
    /// other regions; its pool is made on first use, as most apps never
    /// ask.
    pub(crate) positions: std::sync::OnceLock<PrimaryPositions>,
}

/// How long an exactly-once record is kept, by who chose its request id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    /// A caller-chosen id (`Write::request_id`, an `Idempotency-Key`).
    pub(crate) chosen: Duration,
    /// An id the library generated: only the retries of one call use it.
    pub(crate) generated: Duration,
}

impl Retention {
    /// The retention of a record whose id was `generated` or chosen.
    pub(crate) fn of(&self, generated: bool) -> Duration {
        if generated {
            self.generated
        } else {
            self.chosen
        }
    }
}

impl ServerState {
    /// The primary's positions, read through a connection of their own.
    pub(crate) fn positions(&self) -> &PrimaryPositions {
        self.positions
            .get_or_init(|| PrimaryPositions::new(&self.pool))
    }

    /// The cluster's system identifier.
    pub(crate) async fn system_id(&self) -> Result<u64, crate::error::Error> {
        let id = self.system_id.get_or_try_init(|| async {
            let text: String =
                sqlx::query_scalar("select system_identifier::text from pg_control_system()")
                    .fetch_one(&self.pool)
                    .await?;
            crate::timeline_view::parse_system_id(&text)
        });
        id.await.copied()
    }

    /// With `synchronous_commit = off` a commit returns before its WAL is
    /// flushed, so the flush LSN read right after it may not cover it and
    /// a reader could wake too early. Writes then ask for a local flush.
    pub(crate) async fn needs_local_flush(&self) -> bool {
        let check = self.async_commit.get_or_try_init(|| async {
            sqlx::query_scalar::<_, String>("select current_setting('synchronous_commit')")
                .fetch_one(&self.pool)
                .await
                .map(|setting| setting == "off")
        });
        // If the check itself fails, be safe: the write will likely fail too.
        check.await.map_or(true, |off| *off)
    }
}
