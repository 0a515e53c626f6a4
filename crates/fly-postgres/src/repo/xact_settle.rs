//! Settling a write that kept no request record: did the transaction whose
//! COMMIT answer was lost commit? PostgreSQL answers it (`pg_xact_status`)
//! on a fresh connection, on the same primary or on a promoted standby.
//!
//! After a failover the new primary goes on from the transaction ids its
//! standby saw, so it may give an id the old primary used for a transaction
//! whose WAL never reached the standby to a transaction of its own. The
//! answer is trusted only where that cannot be: on the write's own
//! timeline, or on a later one when the write's WAL up to COMMIT lies
//! before the switch point (the standby replayed the write's records, so
//! its id was taken). A write whose WAL went past the switch point has no
//! commit on the new timeline: not committed. Without the history, only
//! "committed" is in doubt: an aborted or unknown id means the write did
//! not commit on this timeline, whoever holds the id now.

use std::time::Duration;

use sqlx::PgPool;

use super::xact_probe::XactRef;
use crate::error::Error;
use crate::timeline_view::{Verdict, read_view};

/// What became of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settled {
    /// It committed.
    Committed,
    /// It did not, and never will.
    NotCommitted,
    /// Not yet known (still in progress, the database in recovery): ask
    /// again later.
    Pending(String),
    /// This database cannot tell, ever (another cluster, an unreadable
    /// timeline history, an id too old to look up).
    Undecidable(String),
}

/// How often an in-progress transaction whose backend was ended is asked
/// about again, and how long in all.
const RECHECK: Duration = Duration::from_millis(10);
const RECHECKS: u32 = 50;

/// Asks the database behind `pool` what became of `xact`. `Err` when it
/// could not be asked at all.
///
/// `own_backend`: the pid of the write's own backend, given only by the
/// node that ran the write. A transaction still in progress there lost its
/// client (a cut or silent link), and the server would keep it open until
/// TCP gives up; ending that backend settles it at once, unless it is
/// waiting for a synchronous standby, whose answer is awaited instead: an
/// ended wait would leave a commit the standby may not have.
pub(crate) async fn settle(
    pool: &PgPool,
    xact: &XactRef,
    own_backend: Option<i32>,
) -> Result<Settled, Error> {
    let view = read_view(pool).await?;
    if view.in_recovery {
        return Ok(Settled::Pending(
            "the database is in recovery (a failover under way?)".into(),
        ));
    }
    if view.system_id != xact.system_id {
        return Ok(Settled::Undecidable(format!(
            "the database is another cluster (system identifier {}, the write's was {})",
            view.system_id, xact.system_id
        )));
    }
    let Some(timeline) = xact.before_commit.timeline else {
        return Ok(Settled::Undecidable(
            "the write's timeline is unknown".into(),
        ));
    };
    let same_timeline = view.timeline == Some(timeline);
    // Whether a "committed" can only be the write's own transaction.
    let mut trusted = same_timeline;
    if !same_timeline && view.history.is_some() {
        match view.judge(xact.before_commit) {
            // The commit record would come after the switch point.
            Verdict::Lost { .. } => return Ok(Settled::NotCommitted),
            Verdict::NewerTimeline => {
                return Ok(Settled::Pending(format!(
                    "the write ran on timeline {timeline}, which this database has not reached"
                )));
            }
            Verdict::Wait => trusted = true,
        }
    }
    let mut ended = false;
    for _ in 0..RECHECKS {
        match status(pool, xact.xid).await? {
            Status::Committed if trusted => return Ok(Settled::Committed),
            Status::Committed => {
                return Ok(Settled::Undecidable(format!(
                    "transaction {} committed, but the primary changed timeline since and its \
                     timeline history is not readable (the role needs pg_read_server_files), so \
                     it may be another transaction that reused the id",
                    xact.xid
                )));
            }
            // Either the write's own transaction, or one that reused its id
            // because the write's WAL never reached this timeline: either
            // way the write did not commit here.
            Status::Aborted | Status::NeverStarted => return Ok(Settled::NotCommitted),
            Status::Forgotten => {
                return Ok(Settled::Undecidable(format!(
                    "transaction {} is too old for the database to remember",
                    xact.xid
                )));
            }
            Status::InProgress => {}
        }
        let Some(pid) = own_backend.filter(|_| same_timeline) else {
            break;
        };
        if !ended {
            ended = end_backend(pool, pid, xact.xid).await?;
            if !ended {
                // Waiting for a synchronous standby, or not ours.
                break;
            }
        }
        tokio::time::sleep(RECHECK).await;
    }
    Ok(Settled::Pending(format!(
        "transaction {} is still in progress",
        xact.xid
    )))
}

enum Status {
    Committed,
    Aborted,
    InProgress,
    /// Past the database's next transaction id: no such transaction ran.
    NeverStarted,
    /// Older than the commit log the database keeps.
    Forgotten,
}

async fn status(pool: &PgPool, xid: u64) -> Result<Status, Error> {
    let asked: Result<Option<String>, sqlx::Error> =
        sqlx::query_scalar("select pg_xact_status($1::text::xid8)")
            .bind(xid.to_string())
            .fetch_one(pool)
            .await;
    match asked {
        Ok(Some(status)) => match status.as_str() {
            "committed" => Ok(Status::Committed),
            "aborted" => Ok(Status::Aborted),
            "in progress" => Ok(Status::InProgress),
            other => Err(Error::Decode {
                message: format!("pg_xact_status answered {other:?}"),
            }),
        },
        Ok(None) => Ok(Status::Forgotten),
        Err(e) if in_the_future(&e) => Ok(Status::NeverStarted),
        Err(e) => Err(e.into()),
    }
}

/// `transaction ID ... is in the future` (22023).
fn in_the_future(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|db| {
        db.code().as_deref() == Some("22023") && db.message().contains("in the future")
    })
}

/// Ends backend `pid` if it still runs transaction `xid` and is not
/// waiting for a synchronous standby; whether it was ended.
async fn end_backend(pool: &PgPool, pid: i32, xid: u64) -> Result<bool, Error> {
    // pg_stat_activity shows the 32-bit id.
    let short = (xid & u64::from(u32::MAX)).to_string();
    let ended: Option<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where pid = $1 and backend_xid::text = $2 \
           and wait_event is distinct from 'SyncRep'",
    )
    .bind(pid)
    .bind(short)
    .fetch_optional(pool)
    .await?;
    if ended == Some(true) {
        tracing::warn!(
            pid,
            xid,
            "ended the backend of a write whose client connection was lost, to settle its COMMIT"
        );
    }
    Ok(ended == Some(true))
}
