//! Deleting old exactly-once records.

use std::time::Duration;

use sqlx::PgPool;

use crate::error::Error;

/// Deletes records older than `retention`; returns how many.
pub(crate) async fn sweep(pool: &PgPool, retention: Duration) -> Result<u64, Error> {
    let done = sqlx::query(
        "delete from fly_postgres_requests where created_at < now() - make_interval(secs => $1)",
    )
    .bind(retention.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Sweeps every `interval` for as long as the task lives (the repo aborts it
/// when dropped). Failures are logged and retried next time: a replica-region
/// or recovering database simply refuses the delete.
pub(crate) async fn run(pool: PgPool, retention: Duration, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match sweep(&pool, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "swept old exactly-once records"),
            Err(e) => tracing::warn!(error = %e, "could not sweep old exactly-once records"),
        }
    }
}
