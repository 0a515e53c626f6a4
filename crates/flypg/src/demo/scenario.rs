//! The scripted walk through the two regions, and its summary.

use super::narration::say;
use std::time::Instant;

use fly_postgres::sqlx::{self, Connection};
use hyper::StatusCode;
use serde::Serialize;
use serde_json::json;

use super::DemoResult;
use super::http::Http;
use crate::percentiles::{Samples, millis, round3};
use fly_postgres_testkit::AppProcess;

/// What the scenario measured; `consistent()` decides the exit code.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    writes: usize,
    local_read_p50_ms: f64,
    forwarded_write_p50_ms: f64,
    mutation3_p50_ms: f64,
    direct3_p50_ms: f64,
    stale_reads_with_wait: usize,
    stale_reads_without_wait: usize,
    unique_violation_status: u16,
    unique_violation_message: String,
    /// Forwarded writes each primary-region instance served.
    pub(crate) primary_instance_writes: Vec<u64>,
    /// With a third region: the cookie carried across regions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cross_region: Option<CrossRegion>,
    /// With a third region: session reads across regions, bounded waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) session: Option<super::session::SessionSummary>,
    /// With a third region: bounded-staleness reads as its replica replays,
    /// stops replaying and goes down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bounded: Option<super::bounded::BoundedSummary>,
}

/// A write in one replica region read in another.
#[derive(Debug, Serialize)]
pub(crate) struct CrossRegion {
    /// Where the writes were made and where they were read.
    written_in: String,
    read_in: String,
    writes: usize,
    /// Reads in the other region with the write's LSN (the `fly-lsn`
    /// header, as the cookie carries it) that did not see the write.
    stale_reads_with_lsn: usize,
    /// Reads there right after, without it, that did not see the write.
    stale_reads_without_lsn: usize,
    /// What the read with the LSN cost over one without (the wait for the
    /// third region's replica), p50.
    read_with_lsn_p50_ms: f64,
    /// Writes made from the third region and read back there at once.
    third_region_write_p50_ms: f64,
    third_region_stale_reads: usize,
}

impl CrossRegion {
    fn consistent(&self) -> bool {
        self.stale_reads_with_lsn == 0 && self.third_region_stale_reads == 0
    }
}

impl Summary {
    pub(crate) fn consistent(&self) -> bool {
        self.stale_reads_with_wait == 0
            && self.unique_violation_status == 409
            && self
                .cross_region
                .as_ref()
                .is_none_or(CrossRegion::consistent)
            && self
                .session
                .as_ref()
                .is_none_or(super::session::SessionSummary::consistent)
            && self
                .bounded
                .as_ref()
                .is_none_or(super::bounded::BoundedSummary::consistent)
    }

    pub(crate) fn print(&self, rtt_ms: u64, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
            return;
        }
        say!();
        say!(
            "Summary (lax -> syd round trip {rtt_ms} ms, {} writes per step)",
            self.writes
        );
        say!("  {:<58} {:>12}", "", "p50");
        say!(
            "  {:<58} {:>9.3} ms",
            "local read in lax (HTTP GET, replica)",
            self.local_read_p50_ms
        );
        say!(
            "  {:<58} {:>9.3} ms",
            "write from lax (forwarded, waits for lax replica)",
            self.forwarded_write_p50_ms
        );
        say!(
            "  {:<58} {:>9.3} ms",
            "3-statement operation as one mutation",
            self.mutation3_p50_ms
        );
        say!(
            "  {:<58} {:>9.3} ms",
            "same 3 statements sent directly to the far primary",
            self.direct3_p50_ms
        );
        say!(
            "  stale reads right after a write: {} of {} with the wait, {} of {} without",
            self.stale_reads_with_wait,
            self.writes,
            self.stale_reads_without_wait,
            self.writes
        );
        say!(
            "  unique violation raised on the primary, seen in the replica region as HTTP {}",
            self.unique_violation_status
        );
        if self.primary_instance_writes.len() > 1 {
            say!(
                "  forwarded writes served per primary-region instance: {:?}",
                self.primary_instance_writes
            );
        }
        if let Some(c) = &self.cross_region {
            say!(
                "  written in {}, read in {} with the write's token: {} stale of {} (p50 {:.3} ms, \
                 the wait included); without it: {} stale",
                c.written_in,
                c.read_in,
                c.stale_reads_with_lsn,
                c.writes,
                c.read_with_lsn_p50_ms,
                c.stale_reads_without_lsn
            );
            say!(
                "  writes from {}: p50 {:.3} ms, {} stale reads after them",
                c.read_in,
                c.third_region_write_p50_ms,
                c.third_region_stale_reads
            );
        }
        if let Some(session) = &self.session {
            session.print();
        }
        if let Some(bounded) = &self.bounded {
            bounded.print();
        }
        say!(
            "  consistency checks: {}",
            if self.consistent() { "HELD" } else { "FAILED" }
        );
    }
}

pub(crate) async fn run(
    lax: &AppProcess,
    region: &str,
    direct_url: &str,
    writes: usize,
) -> DemoResult<Summary> {
    let http = Http::new();
    let run_id = format!("{:x}", std::process::id());
    say!();
    let who = http.get(&lax.url("/")).await?;
    say!("1. GET / on {region}: {}", who.body);

    say!("2. create a todo in {region}, then read it back in {region} at once ({writes} times)");
    let mut write_ms = Vec::new();
    let mut stale_with_wait = 0;
    for i in 0..writes {
        let created = http
            .post(
                &lax.url("/todos"),
                json!({"title": format!("demo {run_id} #{i}")}),
            )
            .await?;
        if created.status != StatusCode::CREATED {
            return Err(format!(
                "creating a todo answered {}: {}",
                created.status, created.body
            )
            .into());
        }
        write_ms.push(millis(created.elapsed));
        let id = created.body["id"].as_i64().unwrap_or_default();
        let read = http.get(&lax.url(&format!("/todos/{id}"))).await?;
        let visible = read.status == StatusCode::OK;
        if !visible {
            stale_with_wait += 1;
        }
        if i < 3 {
            say!(
                "   POST /todos {:>8.1} ms -> id {id}; GET /todos/{id} {:>6.2} ms -> {}",
                millis(created.elapsed),
                millis(read.elapsed),
                if visible {
                    "visible"
                } else {
                    "NOT VISIBLE (stale)"
                }
            );
        }
    }
    say!("   stale reads: {stale_with_wait} of {writes}");

    say!("3. the same with ?wait=false (no replication wait)");
    let mut stale_without_wait = 0;
    for i in 0..writes {
        let created = http
            .post(
                &lax.url("/todos?wait=false"),
                json!({"title": format!("nowait {run_id} #{i}")}),
            )
            .await?;
        let id = created.body["id"].as_i64().unwrap_or_default();
        let read = http.get(&lax.url(&format!("/todos/{id}"))).await?;
        let visible = read.status == StatusCode::OK;
        if !visible {
            stale_without_wait += 1;
        }
        if i < 3 {
            say!(
                "   POST /todos?wait=false {:>8.1} ms -> id {id}; GET at once -> {}",
                millis(created.elapsed),
                if visible {
                    "visible"
                } else {
                    "not visible yet (stale)"
                }
            );
        }
    }
    say!("   stale reads: {stale_without_wait} of {writes}");

    say!("4. a unique violation raised on the primary, reported in {region}");
    let title = format!("unique {run_id}");
    http.post(&lax.url("/todos"), json!({"title": title}))
        .await?;
    let duplicate = http
        .post(&lax.url("/todos"), json!({"title": title}))
        .await?;
    let message = duplicate.body["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    say!(
        "   second POST with the same title -> HTTP {}: {message}",
        duplicate.status
    );

    say!(
        "5. a 3-statement operation: one mutation from {region} vs statements sent to the far primary"
    );
    let mut mutation3 = Vec::new();
    for i in 0..writes {
        let titles: Vec<String> = (0..3).map(|k| format!("batch {run_id} {i}.{k}")).collect();
        let answer = http
            .post(&lax.url("/todos/batch"), json!({"titles": titles}))
            .await?;
        if answer.status != StatusCode::CREATED {
            return Err(format!("the batch answered {}: {}", answer.status, answer.body).into());
        }
        mutation3.push(millis(answer.elapsed));
    }
    let mut conn = sqlx::PgConnection::connect(direct_url).await?;
    let mut direct3 = Vec::new();
    for i in 0..writes {
        let started = Instant::now();
        let mut tx = conn.begin().await?;
        for k in 0..3 {
            sqlx::query("insert into todos (title) values ($1)")
                .bind(format!("direct {run_id} {i}.{k}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        direct3.push(millis(started.elapsed()));
    }
    conn.close().await?;
    let (mutation3, direct3) = (Samples::new(mutation3), Samples::new(direct3));
    say!(
        "   one mutation: p50 {:.1} ms; BEGIN + 3 statements + COMMIT over the ocean: p50 {:.1} ms",
        mutation3.pct(50.0),
        direct3.pct(50.0)
    );

    say!("6. reads in {region} stay local");
    let mut reads = Vec::new();
    for _ in 0..(writes * 3).max(10) {
        reads.push(millis(http.get(&lax.url("/todos")).await?.elapsed));
    }
    let reads = Samples::new(reads);
    say!("   GET /todos p50 {:.2} ms", reads.pct(50.0));

    Ok(Summary {
        writes,
        local_read_p50_ms: round3(reads.pct(50.0)),
        forwarded_write_p50_ms: round3(Samples::new(write_ms).pct(50.0)),
        mutation3_p50_ms: round3(mutation3.pct(50.0)),
        direct3_p50_ms: round3(direct3.pct(50.0)),
        stale_reads_with_wait: stale_with_wait,
        stale_reads_without_wait: stale_without_wait,
        unique_violation_status: duplicate.status.as_u16(),
        unique_violation_message: message,
        primary_instance_writes: Vec::new(),
        cross_region: None,
        session: None,
        bounded: None,
    })
}

/// Writes in `from`'s region, then reads in `to`'s: with the write's LSN
/// (the `fly-lsn` header, what the cookie carries) the read waits for that
/// region's replica and sees the write; without it, right after, it may not.
/// Then writes from `to`'s region, read back there.
pub(crate) async fn across_regions(
    from: &AppProcess,
    from_region: &str,
    to: &AppProcess,
    to_region: &str,
    writes: usize,
) -> DemoResult<CrossRegion> {
    let http = Http::new();
    let run_id = format!("{:x}", std::process::id());
    say!(
        "7. write in {from_region}, then read in {to_region} with the write's token and without ({writes} times)"
    );
    let (mut stale_with, mut stale_without, mut with_ms) = (0, 0, Vec::new());
    for i in 0..writes {
        let created = http
            .post(
                &from.url("/todos"),
                json!({"title": format!("cross {run_id} #{i}")}),
            )
            .await?;
        if created.status != StatusCode::CREATED {
            return Err(format!(
                "creating a todo answered {}: {}",
                created.status, created.body
            )
            .into());
        }
        let id = created.body["id"].as_i64().unwrap_or_default();
        let lsn = created
            .lsn
            .clone()
            .ok_or("the write answered without fly-lsn")?;
        let path = format!("/todos/{id}");
        // Without the LSN first: the far region's replica may lag.
        let plain = http.get(&to.url(&path)).await?;
        if plain.status != StatusCode::OK {
            stale_without += 1;
        }
        let with = http
            .send_with(
                hyper::Method::GET,
                &to.url(&path),
                None,
                &[("fly-lsn", &lsn)],
            )
            .await?;
        if with.status != StatusCode::OK {
            stale_with += 1;
        }
        with_ms.push(millis(with.elapsed));
        if i < 3 {
            say!(
                "   POST in {from_region} -> id {id}; GET in {to_region}: without its token {}, with it {} ({:.1} ms)",
                if plain.status == StatusCode::OK {
                    "visible"
                } else {
                    "not visible yet (stale)"
                },
                if with.status == StatusCode::OK {
                    "visible"
                } else {
                    "NOT VISIBLE"
                },
                millis(with.elapsed)
            );
        }
    }
    say!("   stale with the token: {stale_with} of {writes}; without: {stale_without} of {writes}");

    say!("8. write from {to_region}, read back there at once ({writes} times)");
    let (mut third_ms, mut third_stale) = (Vec::new(), 0);
    for i in 0..writes {
        let created = http
            .post(
                &to.url("/todos"),
                json!({"title": format!("third {run_id} #{i}")}),
            )
            .await?;
        if created.status != StatusCode::CREATED {
            return Err(format!(
                "creating a todo in {to_region} answered {}: {}",
                created.status, created.body
            )
            .into());
        }
        third_ms.push(millis(created.elapsed));
        let id = created.body["id"].as_i64().unwrap_or_default();
        if http.get(&to.url(&format!("/todos/{id}"))).await?.status != StatusCode::OK {
            third_stale += 1;
        }
    }
    let third = Samples::new(third_ms);
    say!(
        "   POST /todos in {to_region}: p50 {:.1} ms, stale reads {third_stale} of {writes}",
        third.pct(50.0)
    );
    Ok(CrossRegion {
        written_in: from_region.to_owned(),
        read_in: to_region.to_owned(),
        writes,
        stale_reads_with_lsn: stale_with,
        stale_reads_without_lsn: stale_without,
        read_with_lsn_p50_ms: round3(Samples::new(with_ms).pct(50.0)),
        third_region_write_p50_ms: round3(third.pct(50.0)),
        third_region_stale_reads: third_stale,
    })
}
