//! The demo's session and bounded-wait steps (three regions): a session
//! that reads in a fresh region then in a lagging one never sees an item
//! vanish, and a read whose region stopped replaying is answered from the
//! primary in about one round trip instead of waiting for the lag.

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::DemoResult;
use super::http::Http;
use super::narration::say;
use crate::percentiles::{Samples, millis, round3};
use fly_postgres_testkit::{AppProcess, PgServer};

/// What the session and bounded-wait steps measured.
#[derive(Debug, Serialize)]
pub(crate) struct SessionSummary {
    /// Where the session read first (fresh) and then (lagging).
    fresh_region: String,
    lagging_region: String,
    rounds: usize,
    /// Items the session saw in the fresh region that its next read, in the
    /// lagging region, did not show: with `fly-consistency: session`, and
    /// with read-your-writes alone.
    vanished_with_session: usize,
    vanished_without_session: usize,
    /// The lagging region's read in session mode, p50 (its wait included).
    session_read_p50_ms: f64,
    /// With the lagging region's replay stopped: reads carrying a write's
    /// token, answered after `max_wait_ms` from the primary.
    max_wait_ms: u64,
    bounded_reads: usize,
    bounded_read_failures: usize,
    bounded_read_p50_ms: f64,
    /// The round trip to the primary they paid instead of the lag.
    primary_rtt_ms: u64,
}

impl SessionSummary {
    pub(crate) fn consistent(&self) -> bool {
        self.vanished_with_session == 0 && self.bounded_read_failures == 0
    }

    pub(crate) fn print(&self) {
        say!(
            "  session reads, {} then {}: {} of {} items vanished with fly-consistency: session \
             (p50 {:.3} ms), {} without",
            self.fresh_region,
            self.lagging_region,
            self.vanished_with_session,
            self.rounds,
            self.session_read_p50_ms,
            self.vanished_without_session
        );
        say!(
            "  {} not replaying: reads with a write's token answered from the primary after \
             max_wait {} ms: p50 {:.3} ms (one round trip {} ms), {} failed of {}",
            self.lagging_region,
            self.max_wait_ms,
            self.bounded_read_p50_ms,
            self.primary_rtt_ms,
            self.bounded_read_failures,
            self.bounded_reads
        );
    }
}

/// The regions and instances the steps use.
pub(crate) struct Regions<'a> {
    pub(crate) primary: &'a AppProcess,
    pub(crate) fresh: (&'a str, &'a AppProcess),
    pub(crate) lagging: (&'a str, &'a AppProcess),
    /// The lagging region's replica, paused in the bounded-wait step.
    pub(crate) lagging_replica: &'a PgServer,
    pub(crate) max_wait: Duration,
    pub(crate) primary_rtt: Duration,
}

/// Steps 9 and 10.
pub(crate) async fn run(regions: Regions<'_>, rounds: usize) -> DemoResult<SessionSummary> {
    let http = Http::new();
    let (fresh_region, fresh) = regions.fresh;
    let (lagging_region, lagging) = regions.lagging;
    say!(
        "9. someone writes in the primary region; a session reads the new item in \
         {fresh_region}, then reads it in {lagging_region} ({rounds} times each mode)"
    );
    let mut vanished = [0usize; 2];
    let mut session_ms = Vec::new();
    for (m, mode) in ["read-your-writes", "session"].into_iter().enumerate() {
        let mut token: Option<String> = None;
        for i in 0..rounds {
            let created = http
                .post(
                    &regions.primary.url("/todos"),
                    json!({"title": format!("session {mode} {} #{i}", std::process::id())}),
                )
                .await?;
            if created.status != StatusCode::CREATED {
                return Err(
                    format!("a write in the primary region answered {}", created.status).into(),
                );
            }
            let path = format!("/todos/{}", created.body["id"].as_i64().unwrap_or_default());
            // Read in the fresh region until the item shows (the session
            // saw it there).
            let mut seen = false;
            for _ in 0..200 {
                let answer = read(&http, &fresh.url(&path), mode, token.as_deref()).await?;
                token = answer.lsn.or(token);
                if answer.status == StatusCode::OK {
                    seen = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            if !seen {
                return Err(format!("{fresh_region} never showed a committed item").into());
            }
            let answer = read(&http, &lagging.url(&path), mode, token.as_deref()).await?;
            token = answer.lsn.clone().or(token);
            if answer.status != StatusCode::OK {
                vanished[m] += 1;
            }
            if m == 1 {
                session_ms.push(millis(answer.elapsed));
            }
        }
        say!(
            "   {mode}: the item vanished in {lagging_region} {} of {rounds} times",
            vanished[m]
        );
    }

    say!(
        "10. {lagging_region}'s replica stops replaying; reads there carry a write's token \
         (max_wait {} ms, then the primary)",
        regions.max_wait.as_millis()
    );
    regions.lagging_replica.pause_replay().await?;
    let bounded = bounded_reads(&http, &regions, rounds).await;
    regions.lagging_replica.resume_replay().await?;
    let (bounded_ms, failures) = bounded?;
    let bounded = Samples::new(bounded_ms);
    say!(
        "   answered in p50 {:.1} ms with the replica stopped ({failures} failed of {rounds})",
        bounded.pct(50.0)
    );
    Ok(SessionSummary {
        fresh_region: fresh_region.to_owned(),
        lagging_region: lagging_region.to_owned(),
        rounds,
        vanished_with_session: vanished[1],
        vanished_without_session: vanished[0],
        session_read_p50_ms: round3(Samples::new(session_ms).pct(50.0)),
        max_wait_ms: u64::try_from(regions.max_wait.as_millis()).unwrap_or(u64::MAX),
        bounded_reads: rounds,
        bounded_read_failures: failures,
        bounded_read_p50_ms: round3(bounded.pct(50.0)),
        primary_rtt_ms: u64::try_from(regions.primary_rtt.as_millis()).unwrap_or(u64::MAX),
    })
}

/// Writes from the fresh region and reads each write in the lagging one
/// with its token: the times, and how many did not show the write.
async fn bounded_reads(
    http: &Http,
    regions: &Regions<'_>,
    rounds: usize,
) -> DemoResult<(Vec<f64>, usize)> {
    let (_, fresh) = regions.fresh;
    let (_, lagging) = regions.lagging;
    let mut times = Vec::new();
    let mut failures = 0;
    for i in 0..rounds {
        let created = http
            .post(
                &fresh.url("/todos?wait=false"),
                json!({"title": format!("bounded {} #{i}", std::process::id())}),
            )
            .await?;
        let (Some(token), StatusCode::CREATED) = (created.lsn, created.status) else {
            return Err(format!("a write answered {} without a token", created.status).into());
        };
        let path = format!("/todos/{}", created.body["id"].as_i64().unwrap_or_default());
        let answer = read(http, &lagging.url(&path), "read-your-writes", Some(&token)).await?;
        if answer.status != StatusCode::OK {
            failures += 1;
        }
        times.push(millis(answer.elapsed));
    }
    Ok((times, failures))
}

async fn read(
    http: &Http,
    url: &str,
    mode: &str,
    token: Option<&str>,
) -> DemoResult<super::http::Answer> {
    let mut headers = vec![("fly-consistency", mode)];
    if let Some(token) = token {
        headers.push(("fly-lsn", token));
    }
    http.send_with(Method::GET, url, None, &headers).await
}
