//! How soon waits wake after the replica replayed their LSN: an observer
//! thread notes when each replay position first appears, and a waiter's
//! notification delay is its wake-up time minus that moment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fly_postgres::advanced::commit_lsn;
use fly_postgres::sqlx::{self, Connection, PgPool};
use fly_postgres::{Lsn, Tracker};

use crate::percentiles::{Samples, millis};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The notification delays and the whole waits of a run.
pub(super) struct Measured {
    pub(super) notify: Samples,
    pub(super) waits: Samples,
}

/// `writes` sequential writes, each awaited by `waiters` waiters spread
/// over `trackers` in turn.
pub(super) async fn measure(
    primary: &PgPool,
    trackers: &[Tracker],
    observer: &Observer,
    writes: usize,
    waiters: usize,
) -> BenchResult<Measured> {
    let mut conn = primary.acquire().await?;
    let mut wakes: Vec<(Lsn, Instant)> = Vec::with_capacity(writes * waiters);
    let mut waits = Vec::with_capacity(writes);
    for _ in 0..writes {
        sqlx::query("insert into bench (v) values ('x')")
            .execute(&mut *conn)
            .await?;
        let lsn = commit_lsn(&mut conn).await?;
        let started = Instant::now();
        if waiters == 1 && trackers.len() == 1 {
            trackers[0].wait_for(lsn, Duration::from_secs(30)).await?;
            wakes.push((lsn, Instant::now()));
        } else {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..waiters {
                let tracker = trackers[i % trackers.len()].clone();
                tasks.spawn(async move {
                    tracker
                        .wait_for(lsn, Duration::from_secs(30))
                        .await
                        .map(|()| Instant::now())
                });
            }
            while let Some(woke) = tasks.join_next().await {
                wakes.push((lsn, woke??));
            }
        }
        waits.push(millis(started.elapsed()));
    }
    // Let the observer see the last positions.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = observer.seen();
    let notify = wakes
        .iter()
        .filter_map(|&(lsn, woke)| {
            let i = seen.partition_point(|&(l, _)| l < lsn);
            let (_, observed) = seen.get(i)?;
            // The tracker may see the position before the observer does;
            // count that as no delay rather than a negative one.
            Some(millis(woke.saturating_duration_since(*observed)))
        })
        .collect();
    Ok(Measured {
        notify: Samples::new(notify),
        waits: Samples::new(waits),
    })
}

/// Polls the replica's replay position back to back on its own thread and
/// records when each new position was first seen.
pub(super) struct Observer {
    seen: Arc<Mutex<Vec<(Lsn, Instant)>>>,
    stop: Arc<AtomicBool>,
}

impl Observer {
    pub(super) fn start(options: sqlx::postgres::PgConnectOptions) -> BenchResult<Self> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (thread_seen, thread_stop) = (Arc::clone(&seen), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("bench-observer".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut conn = match sqlx::PgConnection::connect_with(&options).await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let mut last = Lsn::ZERO;
                    while !thread_stop.load(Ordering::Relaxed) {
                        let Ok(Some(text)) = sqlx::query_scalar::<_, Option<String>>(
                            "select pg_last_wal_replay_lsn()::text",
                        )
                        .fetch_one(&mut conn)
                        .await
                        else {
                            continue;
                        };
                        let now = Instant::now();
                        if let Ok(lsn) = text.parse::<Lsn>()
                            && lsn > last
                        {
                            last = lsn;
                            if let Ok(mut seen) = thread_seen.lock() {
                                seen.push((lsn, now));
                            }
                        }
                    }
                });
            })?;
        ready_rx.recv()??;
        Ok(Observer { seen, stop })
    }

    fn seen(&self) -> Vec<(Lsn, Instant)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop();
    }
}
