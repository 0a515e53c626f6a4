//! Waiting until the local database has replayed a WAL position.

mod poller;
mod sibling_link;
mod waiters;

pub(crate) use sibling_link::{Need, SiblingLink};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool};
use tokio::sync::{Notify, oneshot};

use crate::error::Error;
use crate::lsn::Lsn;
use waiters::{WaitKey, Waiter, Waiters};

/// How long a "not in recovery" answer is trusted before it is checked again:
/// an old primary can come back as a standby after a failover.
const ROLE_TTL: Duration = Duration::from_secs(1);

/// The default pause between two polls while anyone waits.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_micros(1000);

#[derive(Debug, Clone)]
struct Config {
    poll_interval: Duration,
    connect_timeout: Duration,
    query_timeout: Duration,
    label: String,
}

#[derive(Debug, Default)]
struct State {
    waiters: Waiters,
    /// Callers of [`Tracker::fresh_position`], each with the first poll
    /// number whose answer it may take (one that started after it asked).
    fresh: Vec<(u64, oneshot::Sender<Option<Lsn>>)>,
    /// Polls started so far.
    polls_started: u64,
    replayed: Option<Lsn>,
    /// Set while the database is known not to be in recovery.
    primary_until: Option<Instant>,
    /// Which server the poller's connection reaches (its start time and
    /// port), so a sibling instance can tell whether it watches the same one.
    server: Option<Arc<str>>,
    /// The position a sibling is being asked for right now (`None`: no ask
    /// in flight, or one for a fresh position): a new wait below it needs
    /// a new ask.
    asked: Option<Lsn>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the poller thread.
    wake: Notify,
    /// Wakes the task that asks a sibling instance instead (see
    /// [`SiblingLink`]).
    feed_wake: Notify,
    /// While set, a sibling instance polls for this tracker and the poller
    /// thread sends no query.
    delegated: AtomicBool,
    shutdown: AtomicBool,
    /// Tells this tracker apart from its siblings' (random per tracker).
    id: u64,
    polls: AtomicU64,
    sibling_answers: AtomicU64,
    waits: AtomicU64,
    timeouts: AtomicU64,
}

impl State {
    /// Whether anyone needs a poll.
    fn busy(&self) -> bool {
        !self.waiters.is_empty() || !self.fresh.is_empty()
    }

    /// Drops every pending wait and fresh-position request unanswered:
    /// each caller sees the tracker stop.
    fn abandon_all(&mut self) {
        self.waiters.abandon_all();
        self.fresh.clear();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Records a poll's answer and wakes the waits it covers. Returns how
    /// far (in WAL bytes) the furthest remaining wait is ahead of replay:
    /// the replication lag as the waiters feel it.
    fn publish(&self, poll: u64, in_recovery: bool, replayed: Option<Lsn>) -> u64 {
        let mut state = self.lock();
        let answer = if in_recovery { replayed } else { None };
        let (answered, waiting) = std::mem::take(&mut state.fresh)
            .into_iter()
            .partition::<Vec<_>, _>(|(from, _)| *from <= poll);
        state.fresh = waiting;
        for (_, tx) in answered {
            let _ = tx.send(answer);
        }
        if !in_recovery {
            state.primary_until = Some(Instant::now() + ROLE_TTL);
            let released = state.waiters.release_all();
            drop(state);
            released.wake();
            return 0;
        }
        state.primary_until = None;
        let Some(lsn) = replayed else { return 0 };
        if state.replayed.is_none_or(|seen| seen < lsn) {
            state.replayed = Some(lsn);
        }
        let released = state.waiters.release_up_to(lsn);
        let lag = state
            .waiters
            .max_target()
            .map_or(0, |target| target.as_u64().saturating_sub(lsn.as_u64()));
        drop(state);
        released.wake();
        lag
    }

    /// After a connection change: the role, the replay position and the
    /// identity belong to the old server.
    fn forget_position(&self) {
        let mut state = self.lock();
        state.primary_until = None;
        state.replayed = None;
        state.server = None;
    }

    /// Wakes whoever answers waits now: the poller thread, or the task
    /// asking a sibling.
    fn wake_answerers(&self) {
        self.wake.notify_one();
        self.feed_wake.notify_one();
    }
}

/// How a wait ended, before the tracker's counters and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitEnd {
    /// Covered by what was known already: it never blocked.
    Cached,
    Reached,
    TimedOut,
    Stopped,
}

impl Shared {
    /// Waits until replay covers `lsn`, at most `timeout`.
    async fn wait(&self, lsn: Lsn, timeout: Duration, waiter: Waiter) -> WaitEnd {
        let (key, rx) = {
            let mut state = self.lock();
            let is_primary = state
                .primary_until
                .is_some_and(|until| until > Instant::now());
            if is_primary || state.replayed.is_some_and(|seen| seen >= lsn) {
                return WaitEnd::Cached;
            }
            let was_idle = !state.busy();
            let registered = state.waiters.insert(lsn, waiter);
            if was_idle {
                self.wake_answerers();
            } else if state.asked.is_some_and(|asked| lsn < asked) {
                self.feed_wake.notify_one();
            }
            registered
        };
        let mut registration = Registration {
            shared: self,
            key,
            released: false,
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => {
                // The answerer took it out of the set already.
                registration.released = true;
                WaitEnd::Reached
            }
            Ok(Err(_)) => WaitEnd::Stopped,
            Err(_) => WaitEnd::TimedOut,
        }
    }

    /// The answer of a poll that starts after this call: `None` on
    /// timeout, `Some(Err(()))` when the tracker stopped.
    async fn fresh(&self, timeout: Duration) -> Option<Result<Option<Lsn>, ()>> {
        let rx = {
            let mut state = self.lock();
            let (tx, rx) = oneshot::channel();
            let from = state.polls_started + 1;
            state.fresh.push((from, tx));
            self.wake_answerers();
            rx
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(answer) => Some(answer.map_err(drop)),
            Err(_) => None,
        }
    }
}

/// Signals the poller thread to stop when the last [`Tracker`] clone goes.
#[derive(Debug)]
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.shutdown.store(true, Ordering::Release);
        self.0.wake_answerers();
    }
}

/// Counters of one tracker, for tests, benchmarks and `flypg status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrackerStats {
    /// Replay-position queries sent to the database so far.
    pub polls: u64,
    /// Replay positions learnt from a sibling instance's tracker of the
    /// same database instead of a query of this one's.
    pub sibling_answers: u64,
    /// Waits that had to block (not answered from cache).
    pub waits: u64,
    /// Waits that ended in [`Error::ReplicationTimeout`].
    pub timeouts: u64,
    /// Waits pending right now.
    pub waiting: usize,
    /// The highest replay position seen.
    pub replayed: Option<Lsn>,
}

/// Waits until the local database has replayed a WAL position, so a caller
/// reads its own writes.
///
/// One tracker serves one local database. While nobody waits it sends no
/// query at all; while anyone waits, one background poller asks
/// `pg_last_wal_replay_lsn()` every [`TrackerBuilder::poll_interval`] on its
/// own connection and wakes every waiter the answer covers, so the load on the
/// database does not grow with the number of waiters. On a database that is
/// not in recovery (the primary, a dev database) waits return at once.
/// A [`Repo`](crate::Repo)'s tracker in a replica region may instead learn
/// positions from a sibling instance watching the same server, so the load
/// does not grow with the number of instances either (see
/// [`RepoBuilder::share_replay_polls`](crate::RepoBuilder::share_replay_polls)).
///
/// Cloning is cheap and shares the poller; it stops when the last clone drops.
///
// Not run as a doctest: needs a replica.
/// ```no_run
/// use std::time::Duration;
/// use fly_postgres::{Lsn, Tracker};
///
/// # async fn demo(pool: sqlx::PgPool, lsn: Lsn) -> Result<(), fly_postgres::Error> {
/// let tracker = Tracker::new(&pool)?;
/// tracker.wait_for(lsn, Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Tracker {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
    label: Arc<str>,
}

impl Tracker {
    /// A tracker for the database `pool` connects to, with default settings.
    /// It opens one connection of its own (outside the pool) when first needed.
    pub fn new(pool: &PgPool) -> Result<Self, Error> {
        Self::builder((*pool.connect_options()).clone()).start()
    }

    /// Settings for a tracker of the database at `options`.
    pub fn builder(options: PgConnectOptions) -> TrackerBuilder {
        TrackerBuilder {
            options,
            config: Config {
                poll_interval: DEFAULT_POLL_INTERVAL,
                connect_timeout: Duration::from_secs(5),
                query_timeout: Duration::from_secs(2),
                label: "default".into(),
            },
        }
    }

    /// Waits until the local database has replayed `lsn`, at most `timeout`.
    ///
    /// Returns at once when the last seen replay position already covers
    /// `lsn` or the database is not in recovery. Dropping the future cancels
    /// the wait and leaves nothing behind.
    pub async fn wait_for(&self, lsn: Lsn, timeout: Duration) -> Result<(), Error> {
        let started = Instant::now();
        let outcome = self.shared.wait(lsn, timeout, Waiter::Own).await;
        if outcome == WaitEnd::Cached {
            return Ok(());
        }
        self.shared.waits.fetch_add(1, Ordering::Relaxed);
        let waited = started.elapsed();
        metrics::histogram!("fly_postgres_replication_wait_seconds", "tracker" => std::sync::Arc::clone(&self.label))
            .record(waited.as_secs_f64());
        match outcome {
            WaitEnd::Cached | WaitEnd::Reached => Ok(()),
            WaitEnd::Stopped => Err(Error::TrackerStopped),
            WaitEnd::TimedOut => {
                self.shared.timeouts.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("fly_postgres_replication_timeouts_total", "tracker" => std::sync::Arc::clone(&self.label))
                    .increment(1);
                Err(Error::ReplicationTimeout {
                    committed_lsn: lsn,
                    replayed: self.shared.lock().replayed,
                    waited,
                    output: None,
                })
            }
        }
    }

    /// The replay position now: the answer of a poll that starts after this
    /// call (so it covers everything a read on this database saw before
    /// the call), shared by every caller waiting for the same poll. `None`
    /// when the database is not in recovery; [`Error::ReplicaUnavailable`]
    /// when no poll answered within `timeout`.
    pub async fn fresh_position(&self, timeout: Duration) -> Result<Option<Lsn>, Error> {
        match self.shared.fresh(timeout).await {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(())) => Err(Error::TrackerStopped),
            None => Err(Error::ReplicaUnavailable {
                reason: format!(
                    "it did not report its replay position within {timeout:?} (the tracker's \
                     poll got no answer; last replayed position seen: {})",
                    self.last_replayed()
                        .map_or_else(|| "none".to_owned(), |lsn| lsn.to_string())
                ),
            }),
        }
    }

    /// The highest replay position seen so far (no query is sent).
    pub fn last_replayed(&self) -> Option<Lsn> {
        self.shared.lock().replayed
    }

    /// The tracker's counters.
    pub fn stats(&self) -> TrackerStats {
        let state = self.shared.lock();
        TrackerStats {
            polls: self.shared.polls.load(Ordering::Relaxed),
            sibling_answers: self.shared.sibling_answers.load(Ordering::Relaxed),
            waits: self.shared.waits.load(Ordering::Relaxed),
            timeouts: self.shared.timeouts.load(Ordering::Relaxed),
            waiting: state.waiters.len(),
            replayed: state.replayed,
        }
    }
}

/// Removes a wait from the set however the wait ends (woken, timed out or
/// cancelled by dropping the future).
struct Registration<'a> {
    shared: &'a Shared,
    key: WaitKey,
    /// Woken by the poller, which removed it: no need to take the lock a
    /// thousand other woken waiters may be after too.
    released: bool,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if !self.released {
            self.shared.lock().waiters.remove(&self.key);
        }
    }
}

/// Settings for a [`Tracker`]; from [`Tracker::builder`].
#[derive(Debug, Clone)]
pub struct TrackerBuilder {
    options: PgConnectOptions,
    config: Config,
}

impl TrackerBuilder {
    /// The pause between two polls while anyone waits (default 1 ms, at
    /// most 10 s). A waiter wakes on average half of this after its LSN was
    /// replayed.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval.min(Duration::from_secs(10));
        self
    }

    /// How long to wait for the tracker's connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long one poll may take before the connection is replaced
    /// (default 2 s).
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.config.query_timeout = timeout;
        self
    }

    /// The `tracker` label on this tracker's metrics (default `default`);
    /// give each repo of an app its own.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.config.label = label.into();
        self
    }

    /// Starts the poller thread (idle until the first wait).
    pub fn start(self) -> Result<Tracker, Error> {
        let shared = Arc::new(Shared {
            id: rand::random(),
            ..Shared::default()
        });
        let options = self.options.application_name("fly-postgres-tracker");
        let label: Arc<str> = self.config.label.clone().into();
        poller::spawn(Arc::clone(&shared), options, self.config).map_err(Error::TrackerStart)?;
        Ok(Tracker {
            _owner: Arc::new(Owner(Arc::clone(&shared))),
            shared,
            label,
        })
    }
}
