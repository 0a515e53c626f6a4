//! What a primary-region node needs to serve forwarded writes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use sqlx::PgPool;

/// Called after a forwarded write committed, before the reply is sent.
pub(crate) type AfterCommit = Arc<dyn Fn(&str) + Send + Sync>;

pub(crate) struct ServerState {
    pub(crate) pool: PgPool,
    pub(crate) served: AtomicU64,
    pub(crate) after_commit: Option<AfterCommit>,
}
