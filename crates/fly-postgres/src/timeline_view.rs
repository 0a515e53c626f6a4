//! What the local database says about its timeline: which one it is on, the
//! switch points of the timelines before it, and the cluster's system
//! identifier. Consistency tokens are checked against it, so a write lost
//! in an asynchronous failover is reported as lost instead of waited for.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::{PgPool, Row};

use crate::error::Error;
use crate::lsn::Lsn;
use crate::wal_position::WalPosition;

/// How long a view is trusted: a timeline changes only at a failover.
const TTL: Duration = Duration::from_secs(1);
/// The soonest a view is asked again for a token from a newer timeline.
const MIN_REFRESH: Duration = Duration::from_millis(20);

const VIEW_SQL: &str = "select pg_is_in_recovery(), \
     (select system_identifier from pg_control_system())::text, \
     case when pg_is_in_recovery() \
          then coalesce((select received_tli from pg_stat_wal_receiver), \
                        (select timeline_id from pg_control_checkpoint())) \
          else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int \
     end";

/// The local database's timeline as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct View {
    /// The cluster's system identifier (shared by a primary and its
    /// streaming replicas).
    pub(crate) system_id: u64,
    /// The timeline it is on (replaying or writing).
    pub(crate) timeline: Option<u32>,
    /// `(timeline, switch point)` of every earlier timeline, from the
    /// current timeline's history file; `None` when it could not be read
    /// (the role may not read server files).
    pub(crate) history: Option<Vec<(u32, Lsn)>>,
    /// Whether it was replaying (a standby) when read.
    pub(crate) in_recovery: bool,
}

/// What a position means to the local database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// On this timeline's history: wait for its LSN.
    Wait,
    /// Past the switch point of an earlier timeline: the write is not on
    /// this timeline and never will be.
    Lost { switched_at: Lsn, timeline: u32 },
    /// From a timeline this database has not reached yet: wait for it to
    /// follow.
    NewerTimeline,
}

impl View {
    pub(crate) fn judge(&self, position: WalPosition) -> Verdict {
        let (Some(wanted), Some(current)) = (position.timeline, self.timeline) else {
            return Verdict::Wait;
        };
        if wanted == current {
            return Verdict::Wait;
        }
        if wanted > current {
            return Verdict::NewerTimeline;
        }
        let Some(history) = &self.history else {
            unchecked_once();
            return Verdict::Wait;
        };
        match history.iter().find(|(timeline, _)| *timeline == wanted) {
            Some(&(_, switched_at)) if position.lsn <= switched_at => Verdict::Wait,
            Some(&(_, switched_at)) => Verdict::Lost {
                switched_at,
                timeline: current,
            },
            // Not an ancestor of this timeline: a branch that was
            // abandoned, nothing of it past its fork is here. Its fork
            // point is the switch point of the last ancestor before it.
            None => {
                let switched_at = history
                    .iter()
                    .filter(|(timeline, _)| *timeline < wanted)
                    .map(|&(_, at)| at)
                    .max()
                    .unwrap_or(Lsn::ZERO);
                if position.lsn <= switched_at {
                    Verdict::Wait
                } else {
                    Verdict::Lost {
                        switched_at,
                        timeline: current,
                    }
                }
            }
        }
    }
}

fn unchecked_once() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    metrics::counter!("fly_postgres_token_timeline_unchecked_total").increment(1);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "a consistency token names an earlier timeline, but this database's timeline \
             history could not be read, so a write lost in a failover cannot be told from one \
             that survived; grant the app's role pg_read_server_files (or EXECUTE on \
             pg_read_file(text)) to check it"
        );
    }
}

/// A cached [`View`] of one database.
#[derive(Debug, Default)]
pub(crate) struct TimelineCache {
    state: Mutex<Option<(Instant, View)>>,
    /// One read at a time: requests waiting for a newer timeline (any
    /// client can send a token that names one) share the read that starts
    /// after they asked, instead of each reading every 20 ms.
    reading: tokio::sync::Mutex<()>,
    /// Reads made so far.
    reads: std::sync::atomic::AtomicU64,
    /// The newest timeline the primary was heard on, from its answers, and
    /// when that rose: a view read before the rise and on an older timeline
    /// is read again, once, so a session token made just after a failover
    /// does not name the old timeline with a position past its switch
    /// point. Once only: a replica that cannot follow (it diverged) is not
    /// asked again and again.
    heard: Mutex<Option<(u32, Instant)>>,
}

impl TimelineCache {
    /// The view, read again when older than a second, when `newer_than`
    /// names a timeline past the cached one, or when the primary was heard
    /// on a newer timeline since the view was read.
    pub(crate) async fn view(&self, pool: &PgPool, newer_than: Option<u32>) -> Result<View, Error> {
        let heard = *self.heard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((read, view)) = self.cached() {
            let behind = |t: u32| view.timeline.is_none_or(|c| c < t);
            let stale = read.elapsed() > TTL;
            let asked = newer_than.is_some_and(behind) && read.elapsed() > MIN_REFRESH;
            let heard_since = heard.is_some_and(|(t, rose)| behind(t) && read < rose);
            if !stale && !asked && !heard_since {
                return Ok(view);
            }
        }
        self.refresh(pool).await
    }

    /// A view read at `since` or later.
    pub(crate) async fn view_since(&self, pool: &PgPool, since: Instant) -> Result<View, Error> {
        if let Some((read, view)) = self.cached()
            && read >= since
        {
            return Ok(view);
        }
        self.refresh(pool).await
    }

    /// Reads the view and caches it, stamped with when the query was sent:
    /// what it says holds from then on, not only from its answer.
    async fn refresh(&self, pool: &PgPool) -> Result<View, Error> {
        let arrived = Instant::now();
        let _one_at_a_time = self.reading.lock().await;
        if let Some((read, view)) = self.cached()
            && read >= arrived
        {
            return Ok(view);
        }
        let asked = Instant::now();
        self.reads.fetch_add(1, Ordering::Relaxed);
        let view = read_view(pool).await?;
        *self.lock() = Some((asked, view.clone()));
        Ok(view)
    }

    /// The primary answered on `timeline` (a forwarded write's commit, a
    /// position question).
    pub(crate) fn heard_of(&self, timeline: Option<u32>) {
        let Some(timeline) = timeline else {
            return;
        };
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        if heard.is_none_or(|(t, _)| t < timeline) {
            *heard = Some((timeline, Instant::now()));
        }
    }

    /// Reads of the view so far.
    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The system identifier, if a view was read already.
    pub(crate) fn system_id(&self) -> Option<u64> {
        self.lock().as_ref().map(|(_, view)| view.system_id)
    }

    fn cached(&self) -> Option<(Instant, View)> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, View)>> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The view as the database says it now, uncached.
pub(crate) async fn read_view(pool: &PgPool) -> Result<View, Error> {
    let row = sqlx::query(VIEW_SQL).fetch_one(pool).await?;
    let in_recovery: bool = row.try_get(0)?;
    let system_id = parse_system_id(&row.try_get::<String, _>(1)?)?;
    let timeline = row
        .try_get::<Option<i32>, _>(2)?
        .and_then(|t| u32::try_from(t).ok())
        .filter(|t| *t > 0);
    let history = match timeline {
        Some(1) | None => Some(Vec::new()),
        Some(t) => read_history(pool, t).await,
    };
    Ok(View {
        system_id,
        timeline,
        history,
        in_recovery,
    })
}

/// `pg_control_system().system_identifier` as text (it is a `bigint`
/// PostgreSQL prints unsigned).
pub(crate) fn parse_system_id(text: &str) -> Result<u64, Error> {
    text.parse::<u64>().map_err(|e| Error::Decode {
        message: format!("system identifier {text:?}: {e}"),
    })
}

/// The switch points in timeline `timeline`'s history file, or `None` when
/// the file cannot be read.
async fn read_history(pool: &PgPool, timeline: u32) -> Option<Vec<(u32, Lsn)>> {
    let path = format!("pg_wal/{timeline:08X}.history");
    let text: Result<String, _> = sqlx::query_scalar("select pg_read_file($1)")
        .bind(&path)
        .fetch_one(pool)
        .await;
    match text {
        Ok(text) => Some(parse_history(&text)),
        Err(e) => {
            tracing::debug!(error = %e, %path, "timeline history not readable");
            None
        }
    }
}

/// `parent-timeline <tab> switch-point <tab> reason` lines; comments and
/// blank lines skipped, as PostgreSQL's own reader does.
fn parse_history(text: &str) -> Vec<(u32, Lsn)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let timeline = fields.next()?.parse().ok()?;
            let switched_at = fields.next()?.parse().ok()?;
            Some((timeline, switched_at))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(timeline: u32, history: Option<Vec<(u32, Lsn)>>) -> View {
        View {
            system_id: 7,
            timeline: Some(timeline),
            history,
            in_recovery: false,
        }
    }

    #[test]
    fn history_files_parse() {
        let text = "1\t0/3000060\tno recovery target specified\n\n# c\n2\t0/5000000\tx\n";
        assert_eq!(
            parse_history(text),
            vec![(1, Lsn::new(0x3000060)), (2, Lsn::new(0x5000000))]
        );
    }

    #[test]
    fn positions_past_a_switch_point_are_lost() {
        let v = view(3, Some(vec![(1, Lsn::new(100)), (2, Lsn::new(200))]));
        let at = |t, l| WalPosition::new(Some(t), Lsn::new(l));
        assert_eq!(v.judge(at(3, 500)), Verdict::Wait);
        assert_eq!(v.judge(at(1, 100)), Verdict::Wait);
        assert_eq!(
            v.judge(at(1, 101)),
            Verdict::Lost {
                switched_at: Lsn::new(100),
                timeline: 3
            }
        );
        assert_eq!(v.judge(at(2, 150)), Verdict::Wait);
        assert!(matches!(v.judge(at(2, 201)), Verdict::Lost { .. }));
        assert_eq!(v.judge(at(4, 1)), Verdict::NewerTimeline);
        assert_eq!(
            v.judge(WalPosition::new(None, Lsn::new(900))),
            Verdict::Wait
        );
        // Without the history nothing can be told: the old behaviour.
        assert_eq!(view(3, None).judge(at(1, 101)), Verdict::Wait);
    }
}
