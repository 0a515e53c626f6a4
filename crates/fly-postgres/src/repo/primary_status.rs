//! Whether the local database is the primary, cached briefly.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::PgPool;

const FRESH_FOR: Duration = Duration::from_secs(1);
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Answers "is my database out of recovery?" for fly-rpc's primary check.
/// A positive answer is cached for a second; a failure is never cached.
pub(crate) struct PrimaryStatus {
    pool: PgPool,
    cached: Mutex<Option<(bool, Instant)>>,
}

impl PrimaryStatus {
    pub(crate) fn new(pool: PgPool) -> Self {
        PrimaryStatus {
            pool,
            cached: Mutex::new(None),
        }
    }

    pub(crate) async fn is_primary(&self) -> bool {
        if let Some((answer, at)) = *self.lock()
            && at.elapsed() < FRESH_FOR
        {
            return answer;
        }
        let query =
            sqlx::query_scalar::<_, bool>("select not pg_is_in_recovery()").fetch_one(&self.pool);
        match tokio::time::timeout(CHECK_TIMEOUT, query).await {
            Ok(Ok(answer)) => {
                *self.lock() = Some((answer, Instant::now()));
                answer
            }
            _ => {
                *self.lock() = None;
                false
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(bool, Instant)>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }
}
