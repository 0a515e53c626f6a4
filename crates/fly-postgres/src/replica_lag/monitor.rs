//! The background look at the local replica, twice a second: whether it
//! answers, and its lag from what the primary last told it. Two failed
//! looks in a row make it down; down, it is looked at four times a second,
//! so reads come back to it within a second or so of its return.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::Notify;

use super::evidence::{Anomaly, BoundTarget, Evidence};
use super::sample::{Sample, sample};
use super::{ReplicaLag, ReplicaState};
use crate::wal_position::WalPosition;

/// The pause between two looks at a replica that answers.
const INTERVAL: Duration = Duration::from_millis(500);
/// The pause between two tries of a replica that does not.
const DOWN_RETRY: Duration = Duration::from_millis(250);
/// How long a connect or a look may take before it counts as failed: a
/// replica behind a cut link never refuses, it just never answers.
const CHECK_LIMIT: Duration = Duration::from_secs(1);
/// Failed looks in a row that make the replica down: one slow look (a
/// busy replica, a connect refused for "too many clients" while the pool's
/// connections still work) is not an outage.
const DOWN_AFTER: u32 = 2;
/// The pause before looking again after one failed look.
const RECHECK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Unchecked,
    Primary,
    Up,
    Down { since: Instant },
}

#[derive(Debug)]
struct Shared {
    evidence: Mutex<Evidence>,
    health: Mutex<Health>,
    check_now: Notify,
    label: Arc<str>,
    /// Anomalies logged already: each once per monitor.
    logged: Mutex<Vec<Anomaly>>,
    /// A question to the primary for a fresh ceiling is in flight.
    refreshing: AtomicBool,
    /// Failed looks in a row.
    failures: AtomicU32,
    /// The timeline the replica's WAL receiver was last seen streaming
    /// (0: none seen; the column needs `pg_read_all_stats`).
    received_timeline: AtomicU32,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Watches one replica; its task stops when this is dropped.
#[derive(Debug)]
pub(crate) struct LagMonitor {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LagMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LagMonitor {
    /// Looks at the replica once (saying in one log line when it does not
    /// answer), then keeps looking in the background.
    pub(crate) async fn start(options: &PgConnectOptions, label: &str) -> LagMonitor {
        let shared = Arc::new(Shared {
            evidence: Mutex::default(),
            health: Mutex::new(Health::Unchecked),
            check_now: Notify::new(),
            label: label.into(),
            logged: Mutex::default(),
            refreshing: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            received_timeline: AtomicU32::new(0),
        });
        let options = options.clone().application_name("fly-postgres-lag");
        let mut conn = None;
        let mut first = look(&shared, &options, &mut conn).await;
        if first.is_err() {
            tokio::time::sleep(RECHECK).await;
            first = look(&shared, &options, &mut conn).await;
        }
        if let Err(reason) = first {
            tracing::warn!(
                repo = %shared.label,
                host = options.get_host(),
                %reason,
                "the local replica does not answer; the repo starts anyway and reads take the \
                 consistency layer's fallback until it does"
            );
        }
        let task = tokio::spawn(run(Arc::clone(&shared), options, conn));
        LagMonitor { shared, task }
    }

    /// The replica's state and lag now.
    pub(crate) fn lag(&self) -> ReplicaLag {
        let health = *lock(&self.shared.health);
        let state = match health {
            Health::Unchecked => ReplicaState::Unchecked,
            Health::Primary => return ReplicaLag::primary(),
            Health::Up => ReplicaState::Replica,
            Health::Down { since } => ReplicaState::Down {
                for_: since.elapsed(),
            },
        };
        let figures = lock(&self.shared.evidence).figures(Instant::now());
        ReplicaLag {
            state,
            seconds: figures.seconds.filter(|_| health == Health::Up),
            bytes: figures.bytes.filter(|_| health == Health::Up),
            primary_heard: figures.heard,
        }
    }

    /// The timeline the replica was last seen receiving from its primary,
    /// if any look could read it.
    pub(crate) fn received_timeline(&self) -> Option<u32> {
        Some(self.shared.received_timeline.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// Whether the replica is known not to answer.
    pub(crate) fn is_down(&self) -> bool {
        matches!(*lock(&self.shared.health), Health::Down { .. })
    }

    /// Whether the local database turned out to be a primary.
    pub(crate) fn is_primary(&self) -> bool {
        *lock(&self.shared.health) == Health::Primary
    }

    /// A read just failed on the replica: look again now rather than at
    /// the next tick.
    pub(crate) fn suspect(&self) {
        self.shared.check_now.notify_one();
    }

    /// What a read `max` stale at most must wait for now.
    pub(crate) fn bound_target(&self, max: Duration) -> BoundTarget {
        lock(&self.shared.evidence).bound_target(Instant::now(), max)
    }

    /// Whether a report of the primary no older than `age` is known.
    pub(crate) fn heard_within(&self, age: Duration) -> bool {
        lock(&self.shared.evidence).newest_ceiling_within(Instant::now(), age)
    }

    /// The primary's position, asked at `asked` and answered now.
    pub(crate) fn primary_answered(&self, position: WalPosition, asked: Instant) {
        let outcome = lock(&self.shared.evidence).primary_report(
            position.lsn,
            position.timeline,
            asked,
            Instant::now(),
        );
        if let Err(anomaly) = outcome {
            self.shared.log_once(anomaly);
        }
    }

    /// A forwarded write committed at `lsn` on the primary, known now.
    pub(crate) fn primary_reached(&self, lsn: crate::lsn::Lsn) {
        lock(&self.shared.evidence).floor(lsn, Instant::now());
    }

    /// Claims the one background refresh of the primary's position; false
    /// when one is in flight already.
    pub(crate) fn begin_refresh(&self) -> bool {
        !self.shared.refreshing.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn end_refresh(&self) {
        self.shared.refreshing.store(false, Ordering::Release);
    }
}

impl Shared {
    fn log_once(&self, anomaly: Anomaly) {
        let mut logged = lock(&self.logged);
        if !logged.contains(&anomaly) {
            logged.push(anomaly);
            tracing::warn!(
                repo = %self.label,
                "{}; its lag counts as unknown (bounded reads take the fallback) until the \
                 reports agree again",
                anomaly.describe()
            );
        }
    }

    fn observe(&self, sample: Sample, sent: Instant) {
        self.failures.store(0, Ordering::Relaxed);
        if let Some(timeline) = sample.received_timeline {
            self.received_timeline.store(timeline, Ordering::Relaxed);
        }
        let back = {
            let mut health = lock(&self.health);
            let before = *health;
            *health = if sample.in_recovery {
                Health::Up
            } else {
                Health::Primary
            };
            match before {
                Health::Down { since } => Some(since.elapsed()),
                _ => None,
            }
        };
        let mut evidence = lock(&self.evidence);
        if let Some(down_for) = back {
            tracing::info!(repo = %self.label, down_for = ?down_for, "the local replica answers again");
            evidence.forget_replay();
        }
        if !sample.in_recovery {
            *evidence = Evidence::default();
            drop(evidence);
            self.publish(Some(Duration::ZERO), Some(0), true);
            return;
        }
        let anomaly = sample.apply_to(&mut evidence, sent);
        let figures = evidence.figures(Instant::now());
        drop(evidence);
        if let Some(anomaly) = anomaly {
            self.log_once(anomaly);
        }
        self.publish(figures.seconds, figures.bytes, true);
    }

    /// A look failed: the replica is down once enough failed in a row.
    fn failed(&self, reason: &str) {
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= DOWN_AFTER {
            self.down(reason);
        }
    }

    fn down(&self, reason: &str) {
        let mut health = lock(&self.health);
        if !matches!(*health, Health::Down { .. }) {
            if *health != Health::Unchecked {
                tracing::warn!(
                    repo = %self.label,
                    %reason,
                    "the local replica stopped answering; reads take the consistency layer's \
                     fallback until it is back"
                );
            }
            *health = Health::Down {
                since: Instant::now(),
            };
        }
        drop(health);
        self.publish(None, None, false);
    }

    /// Unknown figures are NaN: a dashboard shows a gap, and the `up`
    /// gauge says why.
    fn publish(&self, seconds: Option<Duration>, bytes: Option<u64>, up: bool) {
        let label = Arc::clone(&self.label);
        metrics::gauge!("fly_postgres_replica_lag_seconds", "repo" => Arc::clone(&label))
            .set(seconds.map_or(f64::NAN, |s| s.as_secs_f64()));
        metrics::gauge!("fly_postgres_replica_lag_bytes", "repo" => Arc::clone(&label))
            .set(bytes.map_or(f64::NAN, |b| b as f64));
        metrics::gauge!("fly_postgres_replica_up", "repo" => label).set(if up { 1.0 } else { 0.0 });
    }
}

/// One look: connects when needed; any failure drops the connection.
async fn look(
    shared: &Shared,
    options: &PgConnectOptions,
    conn: &mut Option<PgConnection>,
) -> Result<(), String> {
    let sent = Instant::now();
    let outcome = tokio::time::timeout(CHECK_LIMIT, async {
        let c = match conn {
            Some(c) => c,
            None => conn.insert(PgConnection::connect_with(options).await?),
        };
        sample(c).await
    })
    .await;
    let failure = match outcome {
        Ok(Ok(sample)) => {
            shared.observe(sample, sent);
            return Ok(());
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {CHECK_LIMIT:?}"),
    };
    // A connection that failed a look may be half-used: not reused.
    *conn = None;
    shared.failed(&failure);
    Err(failure)
}

async fn run(shared: Arc<Shared>, options: PgConnectOptions, mut conn: Option<PgConnection>) {
    loop {
        let pause = if matches!(*lock(&shared.health), Health::Down { .. }) {
            DOWN_RETRY
        } else if shared.failures.load(Ordering::Relaxed) > 0 {
            RECHECK
        } else {
            INTERVAL
        };
        let _ = tokio::time::timeout(pause, shared.check_now.notified()).await;
        let _ = look(&shared, &options, &mut conn).await;
    }
}
