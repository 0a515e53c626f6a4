//! Deleting expired exactly-once records: in small batches, so no single
//! statement writes a burst of WAL that every replica-region writer then
//! waits for, each committed without waiting for its flush, so writers'
//! commits do not queue behind a sweep's, and by one sweeper at a time per
//! database. `flypg bench repo --soak` measures what a sweep costs the
//! writers (`sweep_p99_ratio`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::error::Error;

/// Rows one DELETE removes at most: small enough that a batch costs a
/// writer waiting behind it little.
pub(crate) const BATCH: i64 = 100;
/// The pause between two batches: other writers' WAL goes first.
const BATCH_PAUSE: Duration = Duration::from_millis(5);
/// The advisory lock that lets one instance sweep at a time ("flypg_sw").
const LOCK_KEY: i64 = 0x666c_7970_675f_7377;

/// What the sweeps of one repo did, for [`crate::RepoStats`].
#[derive(Debug, Default)]
pub(crate) struct SweepCounters {
    pub(crate) deleted: AtomicU64,
    pub(crate) largest_batch: AtomicU64,
    pub(crate) longest_statement_us: AtomicU64,
    /// Sweeps skipped because another instance held the lock.
    pub(crate) skipped: AtomicU64,
}

/// Deletes the expired records, batch by batch, unless another instance is
/// sweeping the same database (then returns `Ok(None)`). A record expires
/// at its `keep_until`; rows from before that column existed after
/// `legacy_retention`.
pub(crate) async fn sweep(
    pool: &PgPool,
    legacy_retention: Duration,
    counters: &SweepCounters,
) -> Result<Option<u64>, Error> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        counters.skipped.fetch_add(1, Ordering::Relaxed);
        return Ok(None);
    }
    let result = sweep_locked(&mut conn, legacy_retention, counters).await;
    // A connection that died took its lock with it.
    let _ = sqlx::query("select pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await;
    result.map(Some)
}

async fn sweep_locked(
    conn: &mut sqlx::PgConnection,
    legacy_retention: Duration,
    counters: &SweepCounters,
) -> Result<u64, Error> {
    let expired = format!(
        "delete from fly_postgres_requests where id in (
            select id from fly_postgres_requests where keep_until < now() limit {BATCH})"
    );
    let legacy = format!(
        "delete from fly_postgres_requests where id in (
            select id from fly_postgres_requests
            where keep_until is null
              and created_at < now() - make_interval(secs => {}) limit {BATCH})",
        legacy_retention.as_secs()
    );
    let mut total = 0;
    for delete in [expired, legacy] {
        // Each batch its own transaction, which does not wait for its WAL
        // to be flushed (or for a synchronous standby): a sweep lost in a
        // crash is done again by the next one, and writers' commits do not
        // queue behind the sweep's.
        let batch = format!("begin; set local synchronous_commit to off; {delete}; commit");
        loop {
            let started = Instant::now();
            let deleted = sqlx::raw_sql(sqlx::AssertSqlSafe(batch.clone()))
                .execute(&mut *conn)
                .await?
                .rows_affected();
            let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            counters.deleted.fetch_add(deleted, Ordering::Relaxed);
            counters.largest_batch.fetch_max(deleted, Ordering::Relaxed);
            counters
                .longest_statement_us
                .fetch_max(took, Ordering::Relaxed);
            metrics::counter!("fly_postgres_swept_records_total").increment(deleted);
            metrics::histogram!("fly_postgres_sweep_statement_seconds").record(took as f64 / 1e6);
            total += deleted;
            if deleted < BATCH as u64 {
                break;
            }
            tokio::time::sleep(BATCH_PAUSE).await;
        }
    }
    Ok(total)
}

/// Sweeps every `interval` for as long as the task lives (the repo aborts it
/// when dropped). Failures are logged and retried next time: a replica-region
/// or recovering database simply refuses the delete.
pub(crate) async fn run(
    pool: PgPool,
    legacy_retention: Duration,
    interval: Duration,
    counters: std::sync::Arc<SweepCounters>,
) {
    loop {
        tokio::time::sleep(interval).await;
        match sweep(&pool, legacy_retention, &counters).await {
            Ok(None | Some(0)) => {}
            Ok(Some(n)) => tracing::debug!(deleted = n, "swept old exactly-once records"),
            Err(e) => tracing::warn!(error = %e, "could not sweep old exactly-once records"),
        }
    }
}

/// Starts [`run`] in the background.
pub(crate) fn spawn(
    pool: &PgPool,
    legacy_retention: Duration,
    interval: Duration,
    counters: &std::sync::Arc<SweepCounters>,
) -> tokio::task::JoinHandle<()> {
    let task = run(
        pool.clone(),
        legacy_retention,
        interval,
        std::sync::Arc::clone(counters),
    );
    tokio::spawn(task)
}
