//! The one background task that asks the replica how far it has replayed.
//!
//! It runs on its own thread with its own single-threaded runtime, for two
//! reasons: tokio's timer ticks in whole milliseconds, and the goal is a
//! sub-millisecond wake-up; and the app's runtime may be busy, which must not
//! delay replication waits.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};

use super::{Config, Shared};
use crate::lsn::Lsn;

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// A short statement, as DESIGN.md asks: a long one would hold a snapshot on
/// the standby and could delay the very replay it waits for.
const POLL_SQL: &str = "select pg_is_in_recovery(), pg_last_wal_replay_lsn()::text";

pub(super) fn spawn(
    shared: Arc<Shared>,
    options: PgConnectOptions,
    config: Config,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("fly-postgres-tracker".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "replay tracker could not build its runtime");
                    shared.lock().abandon_all();
                    return;
                }
            };
            runtime.block_on(run(&shared, &options, &config));
        })
        .map(drop)
}

async fn run(shared: &Shared, options: &PgConnectOptions, config: &Config) {
    let mut conn: Option<PgConnection> = None;
    let mut backoff = MIN_BACKOFF;
    loop {
        if !wait_for_waiters(shared, conn.is_some()).await {
            shared.lock().abandon_all();
            if let Some(c) = conn.take() {
                let _ = c.close().await;
            }
            return;
        }
        let Some(c) = conn.as_mut() else {
            match connect(shared, options, config).await {
                Ok(c) => conn = Some(c),
                Err(pause) => {
                    if pause {
                        sleep_or_wake(shared, backoff).await;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };
        let started = Instant::now();
        if let Err(error) = poll_once(shared, c, config).await {
            tracing::warn!(tracker = %config.label, %error, "replay tracker poll failed; reconnecting");
            conn = None;
            shared.forget_position();
            sleep_or_wake(shared, backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        backoff = MIN_BACKOFF;
        // Pace from the start of the poll, so the period includes the query.
        if shared.lock().busy() {
            let next = started.checked_add(config.poll_interval).unwrap_or(started);
            let now = Instant::now();
            if next > now {
                // A blocking sleep is precise to tens of microseconds; this
                // thread serves nothing else, so blocking it costs nothing.
                std::thread::sleep(next - now);
            }
        }
    }
}

/// Idle: no query at all until someone waits. False when the tracker is
/// shutting down.
async fn wait_for_waiters(shared: &Shared, connected: bool) -> bool {
    loop {
        if shared.shutdown.load(Ordering::Acquire) {
            return false;
        }
        let notified = shared.wake.notified();
        // A sibling answers while delegated; the connection is still
        // opened, since its identity is what lets a sibling answer.
        let delegated = shared.delegated.load(Ordering::Acquire) && connected;
        if shared.lock().busy() && !delegated {
            return true;
        }
        notified.await;
    }
}

/// A fresh connection, with the server's identity noted; `Err(pause)`
/// says whether to pause before the next try (a refusal) or not (the
/// connect timeout already took its time).
async fn connect(
    shared: &Shared,
    options: &PgConnectOptions,
    config: &Config,
) -> Result<PgConnection, bool> {
    match tokio::time::timeout(config.connect_timeout, PgConnection::connect_with(options)).await {
        Ok(Ok(mut c)) => {
            // A new connection may reach another server (DNS moved,
            // replica rebuilt): forget what the old one said.
            shared.forget_position();
            match tokio::time::timeout(config.query_timeout, server_identity(&mut c)).await {
                Ok(Ok(identity)) => shared.lock().server = Some(identity.into()),
                Ok(Err(e)) => {
                    tracing::debug!(tracker = %config.label, error = %e, "server identity unknown; polls are not shared")
                }
                Err(_) => {
                    tracing::debug!(tracker = %config.label, "server identity query timed out; polls are not shared")
                }
            }
            Ok(c)
        }
        Ok(Err(e)) => {
            tracing::warn!(tracker = %config.label, error = %e, "replay tracker cannot reach the local database");
            Err(true)
        }
        Err(_) => {
            tracing::warn!(tracker = %config.label, "replay tracker connect timed out");
            Err(false)
        }
    }
}

/// One poll, bounded by the query timeout, published to the waiters.
async fn poll_once(
    shared: &Shared,
    conn: &mut PgConnection,
    config: &Config,
) -> Result<(), String> {
    let poll_number = {
        let mut state = shared.lock();
        state.polls_started += 1;
        state.polls_started
    };
    let polled = tokio::time::timeout(config.query_timeout, poll(conn)).await;
    shared.polls.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("fly_postgres_tracker_polls_total", "tracker" => config.label.clone())
        .increment(1);
    match polled {
        Ok(Ok((in_recovery, replayed))) => {
            let lag = shared.publish(poll_number, in_recovery, replayed);
            metrics::gauge!("fly_postgres_replication_lag_bytes", "tracker" => config.label.clone())
                .set(lag as f64);
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

async fn poll(conn: &mut PgConnection) -> Result<(bool, Option<Lsn>), crate::Error> {
    let row = sqlx::query(POLL_SQL).fetch_one(conn).await?;
    let in_recovery: bool = row.try_get(0)?;
    let replayed: Option<String> = row.try_get(1)?;
    let replayed = replayed.map(|text| text.parse::<Lsn>()).transpose()?;
    Ok((in_recovery, replayed))
}

/// Names the server a connection reaches, the same through any proxy or
/// address: its start time (to the microsecond) and its port. Two
/// instances whose trackers name the same server may share one's polls.
async fn server_identity(conn: &mut PgConnection) -> Result<String, crate::Error> {
    let row = sqlx::query("select pg_postmaster_start_time()::text, current_setting('port')")
        .fetch_one(conn)
        .await?;
    let started: String = row.try_get(0)?;
    let port: String = row.try_get(1)?;
    Ok(format!("{started} port {port}"))
}

async fn sleep_or_wake(shared: &Shared, duration: Duration) {
    let _ = tokio::time::timeout(duration, async {
        while !shared.shutdown.load(Ordering::Acquire) {
            shared.wake.notified().await;
        }
    })
    .await;
}
