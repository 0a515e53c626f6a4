//! Comparing what each client was told with what the primary holds.

use std::collections::{BTreeMap, HashMap};

use fly_postgres::sqlx;
use fly_postgres_testkit::PgServer;

use super::ChaosResult;
use super::clients::{Op, Read, Told};
use super::report::ScenarioReport;
use crate::percentiles::{Samples, round3};

/// A write answer may take the RPC budget plus the replication wait (5 s
/// each by default) and a read the pool's acquire timeout (5 s): anything a
/// second beyond is a stall the timeouts failed to bound.
pub(crate) const WRITE_STALL_LIMIT_MS: f64 = 11_000.0;
pub(crate) const READ_STALL_LIMIT_MS: f64 = 6_000.0;

/// Rows per token in the primary's ledger.
pub(crate) async fn rows_by_token(primary: &PgServer) -> ChaosResult<HashMap<String, i64>> {
    let mut conn = primary.connect().await?;
    let rows: Vec<(String, i64)> =
        sqlx::query_as("select token, count(*) from ledger group by token")
            .fetch_all(&mut conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The scenario's figures from the clients' records and the primary's rows.
pub(crate) fn reconcile(scenario: &str, ops: &[Op], rows: &HashMap<String, i64>) -> ScenarioReport {
    let mut report = ScenarioReport::new(scenario);
    let mut errors = BTreeMap::new();
    let mut write_ms = Vec::with_capacity(ops.len());
    let mut write_stall: f64 = 0.0;
    let mut read_stall: f64 = 0.0;
    for op in ops {
        let present = rows.get(&op.token).copied().unwrap_or(0);
        report.writes += 1;
        write_ms.push(op.write_ms);
        write_stall = write_stall.max(op.write_ms);
        read_stall = read_stall.max(op.read_ms);
        if present > 1 {
            report.duplicated += 1;
        }
        match &op.told {
            Told::Ok { replicated } => {
                report.ok += 1;
                if !replicated {
                    report.ok_not_yet_replicated += 1;
                }
                if present == 0 {
                    report.lost += 1;
                }
                match &op.read {
                    // A write that is gone (lost with an asynchronous
                    // primary) reads as missing: that is its loss, counted
                    // above, not a stale read.
                    Some(Read::Stale) if *replicated && present > 0 => report.stale_reads += 1,
                    Some(Read::Failed(code)) => {
                        *errors.entry(format!("read:{code}")).or_insert(0) += 1;
                    }
                    _ => {}
                }
            }
            Told::Maybe(code) => {
                report.maybe_committed += 1;
                if present > 0 {
                    report.maybe_committed_in_fact += 1;
                }
                *errors.entry(format!("write:{code}")).or_insert(0) += 1;
            }
            Told::Failed(code) => {
                if present > 0 {
                    report.failed_but_committed += 1;
                }
                *errors.entry(format!("write:{code}")).or_insert(0) += 1;
            }
        }
    }
    let samples = Samples::new(write_ms);
    report.p50_ms = round3(samples.pct(50.0));
    report.p99_ms = round3(samples.pct(99.0));
    report.max_stall_ms = round3(write_stall.max(read_stall));
    report.stalls_within_timeouts =
        write_stall <= WRITE_STALL_LIMIT_MS && read_stall <= READ_STALL_LIMIT_MS;
    report.errors = errors;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(token: &str, told: Told, read: Option<Read>) -> Op {
        Op {
            token: token.into(),
            told,
            write_ms: 10.0,
            read,
            read_ms: 1.0,
        }
    }
    #[test]
    fn a_lost_write_that_reads_as_missing_is_lost_not_stale() {
        let ops = [
            op("gone", Told::Ok { replicated: true }, Some(Read::Stale)),
            op("here", Told::Ok { replicated: true }, Some(Read::Stale)),
        ];
        let rows = HashMap::from([("here".to_owned(), 1)]);
        let r = reconcile("t", &ops, &rows);
        assert_eq!((r.lost, r.stale_reads), (1, 1));
    }

    #[test]
    fn every_broken_promise_is_counted() {
        let ok = || Told::Ok { replicated: true };
        let ops = [
            op("fine", ok(), Some(Read::Seen)),
            op("lost", ok(), Some(Read::Seen)),
            op("twice", ok(), Some(Read::Seen)),
            op("stale", ok(), Some(Read::Stale)),
            op("late", Told::Ok { replicated: false }, Some(Read::Stale)),
            op("liar", Told::Failed("primary_unreachable".into()), None),
            op("honest", Told::Failed("primary_unreachable".into()), None),
            op("maybe-yes", Told::Maybe("maybe_committed".into()), None),
            op("maybe-no", Told::Maybe("maybe_committed".into()), None),
        ];
        let rows: HashMap<String, i64> = [
            ("fine", 1),
            ("twice", 2),
            ("stale", 1),
            ("late", 1),
            ("liar", 1),
            ("maybe-yes", 1),
        ]
        .into_iter()
        .map(|(t, n)| (t.to_owned(), n))
        .collect();
        let r = reconcile("t", &ops, &rows);
        assert_eq!(r.writes, 9);
        assert_eq!(r.ok, 5);
        assert_eq!(r.lost, 1);
        assert_eq!(r.duplicated, 1);
        assert_eq!(
            r.stale_reads, 1,
            "a write the app marked unreplicated may read stale"
        );
        assert_eq!(r.failed_but_committed, 1);
        assert_eq!(r.maybe_committed, 2);
        assert_eq!(r.maybe_committed_in_fact, 1);
        assert_eq!(r.errors["write:primary_unreachable"], 2);
        assert!(!r.core_promises_held());
    }
}
