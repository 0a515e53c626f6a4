//! One look at the replica: its replay position and what its WAL receiver
//! last heard from the primary, in one short statement.

use std::time::{Duration, Instant};

use sqlx::{PgConnection, Row};

use super::evidence::{Anomaly, Evidence};
use crate::error::Error;
use crate::lsn::Lsn;

/// Ages are measured on the replica's clock; the primary's send time is
/// capped by the replica's receipt time, so a primary whose clock runs
/// ahead never makes a report look fresher than its arrival.
/// The receiver's columns are NULL for a role without `pg_read_all_stats`:
/// then only the primary's answers count. A receiver that has just started
/// stamps its times all with "now" and keeps the end of WAL it heard
/// before it stopped (the last message's send and receipt times are then
/// equal): that is no report of the primary until a message arrives.
const SAMPLE_SQL: &str = "select pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, \
    r.latest_end_lsn::text, \
    extract(epoch from clock_timestamp() - least(r.last_msg_send_time, r.last_msg_receipt_time))::float8, \
    extract(epoch from clock_timestamp() - r.latest_end_time)::float8, \
    r.received_tli \
    from (values (1)) as one(x) left join pg_stat_wal_receiver r on r.status = 'streaming' \
    and r.last_msg_send_time is distinct from r.last_msg_receipt_time";

/// What the WAL receiver last heard from the primary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ReceiverReport {
    /// The primary's end of WAL in its latest message.
    pub(crate) primary_end: Lsn,
    /// How long ago that message was sent.
    pub(crate) message_age: Duration,
    /// How long ago the primary's end of WAL last moved.
    pub(crate) end_age: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    pub(crate) in_recovery: bool,
    pub(crate) replayed: Option<Lsn>,
    pub(crate) receiver: Option<ReceiverReport>,
    /// The timeline the WAL receiver streams (the primary's).
    pub(crate) received_timeline: Option<u32>,
}

pub(crate) async fn sample(conn: &mut PgConnection) -> Result<Sample, Error> {
    let row = sqlx::query(SAMPLE_SQL).fetch_one(conn).await?;
    let replayed: Option<String> = row.try_get(1)?;
    let end: Option<String> = row.try_get(2)?;
    let message_age: Option<f64> = row.try_get(3)?;
    let end_age: Option<f64> = row.try_get(4)?;
    let age = |seconds: f64| Duration::try_from_secs_f64(seconds.max(0.0)).ok();
    let receiver = match (end, message_age, end_age) {
        (Some(end), Some(message), Some(moved)) => {
            let primary_end: Lsn = end.parse()?;
            // 0/0: a receiver that has heard nothing yet.
            match (primary_end > Lsn::ZERO, age(message), age(moved)) {
                (true, Some(message_age), Some(end_age)) => Some(ReceiverReport {
                    primary_end,
                    message_age,
                    end_age,
                }),
                _ => None,
            }
        }
        _ => None,
    };
    Ok(Sample {
        in_recovery: row.try_get(0)?,
        replayed: replayed.map(|text| text.parse()).transpose()?,
        receiver,
        received_timeline: row
            .try_get::<Option<i32>, _>(5)?
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0),
    })
}

impl Sample {
    /// Adds what this sample (its query sent at `sent`) says to
    /// `evidence`; the first contradiction it found, if any.
    pub(crate) fn apply_to(&self, evidence: &mut Evidence, sent: Instant) -> Option<Anomaly> {
        let mut anomaly = None;
        // A time before the clock's origin: too old to place, so dropped
        // rather than taken as new.
        if let Some(report) = self.receiver
            && let (Some(ceiling_at), Some(floor_at)) = (
                sent.checked_sub(report.message_age),
                sent.checked_sub(report.end_age),
            )
        {
            anomaly = evidence
                .primary_report(
                    report.primary_end,
                    None,
                    ceiling_at,
                    floor_at.min(ceiling_at),
                )
                .err();
        }
        if let Some(replayed) = self.replayed {
            let primary_end = self.receiver.map(|r| r.primary_end);
            anomaly = anomaly.or(evidence
                .replayed(replayed, primary_end, Instant::now())
                .err());
        }
        if anomaly.is_none() {
            evidence.settled();
        }
        anomaly
    }
}
