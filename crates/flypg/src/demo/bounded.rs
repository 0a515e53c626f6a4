//! The demo's bounded-staleness step (three regions): reads in the lagging
//! region that may be at most a second stale, while its replica replays,
//! after it stopped replaying, and while it is down and after it returns.

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::DemoResult;
use super::http::{Answer, Http};
use super::narration::say;
use crate::percentiles::{Samples, millis, round3};
use fly_postgres_testkit::{AppProcess, PgServer};

/// The bound the step's reads ask for (`fly-consistency: bounded=1s`, the
/// tightest a header gets by default).
const BOUND: Duration = Duration::from_secs(1);
/// How long the step waits for the app to notice the replica went down or
/// came back.
const NOTICE_LIMIT: Duration = Duration::from_secs(10);

/// What the bounded-staleness step measured.
#[derive(Debug, Serialize)]
pub(crate) struct BoundedSummary {
    region: String,
    bound_ms: u64,
    /// Replaying: reads answered by the local replica, of `reads`.
    reads: usize,
    replaying_local: usize,
    replaying_p50_ms: f64,
    /// Replay stopped: reads answered from the primary after max_wait.
    paused_from_primary: usize,
    paused_p50_ms: f64,
    /// Replica down (once the app noticed): reads answered from the primary
    /// with no wait for the replica.
    down_from_primary: usize,
    down_p50_ms: f64,
    /// How long the app took to notice the replica was down, and to read
    /// from it again after it started.
    noticed_down_ms: Option<f64>,
    back_local_ms: Option<f64>,
    /// Reads that missed an item committed more than the bound before them.
    stale_beyond_bound: usize,
}

impl BoundedSummary {
    pub(crate) fn consistent(&self) -> bool {
        self.stale_beyond_bound == 0
            && self.paused_from_primary == self.reads
            && self.back_local_ms.is_some()
    }

    pub(crate) fn print(&self) {
        say!(
            "  bounded={} ms reads in {}: replaying {} of {} local (p50 {:.1} ms); replay \
             stopped {} from the primary (p50 {:.1} ms); replica down {} from the primary \
             (p50 {:.1} ms), local again {}; {} missed an item older than the bound",
            self.bound_ms,
            self.region,
            self.replaying_local,
            self.reads,
            self.replaying_p50_ms,
            self.paused_from_primary,
            self.paused_p50_ms,
            self.down_from_primary,
            self.down_p50_ms,
            self.back_local_ms.map_or_else(
                || "never".to_owned(),
                |ms| format!("{ms:.0} ms after its start")
            ),
            self.stale_beyond_bound
        );
    }
}

/// Where the step writes and reads.
pub(crate) struct Place<'a> {
    pub(crate) primary: &'a AppProcess,
    pub(crate) region: &'a str,
    pub(crate) app: &'a AppProcess,
    pub(crate) replica: &'a PgServer,
}

/// How a batch of reads went.
#[derive(Default)]
struct Batch {
    local: usize,
    from_primary: usize,
    stale: usize,
    times: Vec<f64>,
}

/// Step 11.
pub(crate) async fn run(place: Place<'_>, reads: usize) -> DemoResult<BoundedSummary> {
    let http = Http::new();
    let region = place.region;
    say!(
        "11. reads in {region} that may be at most {} ms stale (fly-consistency: bounded=1s): \
         while its replica replays, after it stops replaying, and while it is down",
        BOUND.as_millis()
    );
    let replaying = batch(&http, &place, reads).await?;
    say!(
        "   replaying: {} of {reads} answered by {region}'s replica",
        replaying.local
    );

    place.replica.pause_replay().await?;
    let paused = batch(&http, &place, reads).await;
    place.replica.resume_replay().await?;
    let paused = paused?;
    say!(
        "   replay stopped: {} of {reads} answered from the primary after max_wait",
        paused.from_primary
    );

    place.replica.stop().await?;
    let went = Instant::now();
    let noticed = until(&http, &place, |answer| {
        answer.status == StatusCode::OK && answer.from_primary
    })
    .await?;
    let noticed_down_ms = noticed.then(|| round3(millis(went.elapsed())));
    let down = batch(&http, &place, reads).await;
    place.replica.start().await?;
    let down = down?;
    let started = Instant::now();
    let back = until(&http, &place, |answer| {
        answer.status == StatusCode::OK && !answer.from_primary
    })
    .await?;
    let back_local_ms = back.then(|| round3(millis(started.elapsed())));
    say!(
        "   replica down: {} of {reads} answered from the primary at once; local again {}",
        down.from_primary,
        back_local_ms.map_or_else(
            || "never".to_owned(),
            |ms| format!("{ms:.0} ms after its start")
        )
    );
    Ok(BoundedSummary {
        region: region.to_owned(),
        bound_ms: u64::try_from(BOUND.as_millis()).unwrap_or(u64::MAX),
        reads,
        replaying_local: replaying.local,
        replaying_p50_ms: round3(Samples::new(replaying.times).pct(50.0)),
        paused_from_primary: paused.from_primary,
        paused_p50_ms: round3(Samples::new(paused.times).pct(50.0)),
        down_from_primary: down.from_primary,
        down_p50_ms: round3(Samples::new(down.times).pct(50.0)),
        noticed_down_ms,
        back_local_ms,
        stale_beyond_bound: replaying.stale + paused.stale + down.stale,
    })
}

/// Writes an item in the primary region, lets it grow older than the
/// bound, then reads it in the region: each read must show it.
async fn batch(http: &Http, place: &Place<'_>, reads: usize) -> DemoResult<Batch> {
    let mut batch = Batch::default();
    let created = http
        .post(
            &place.primary.url("/todos"),
            json!({"title": format!("bounded {} {:?}", std::process::id(), Instant::now())}),
        )
        .await?;
    if created.status != StatusCode::CREATED {
        return Err(format!("a write in the primary region answered {}", created.status).into());
    }
    let path = format!("/todos/{}", created.body["id"].as_i64().unwrap_or_default());
    tokio::time::sleep(BOUND + Duration::from_millis(100)).await;
    for _ in 0..reads {
        let answer = read(http, &place.app.url(&path)).await?;
        match answer.status {
            StatusCode::OK if answer.from_primary => batch.from_primary += 1,
            StatusCode::OK => batch.local += 1,
            StatusCode::NOT_FOUND => batch.stale += 1,
            other => return Err(format!("a bounded read answered {other}").into()),
        }
        batch.times.push(millis(answer.elapsed));
    }
    Ok(batch)
}

/// Reads the list until an answer satisfies `done`, at most
/// [`NOTICE_LIMIT`]; whether one did.
async fn until(http: &Http, place: &Place<'_>, done: impl Fn(&Answer) -> bool) -> DemoResult<bool> {
    let started = Instant::now();
    while started.elapsed() < NOTICE_LIMIT {
        // A read that began before the app noticed may fail: not an answer.
        if let Ok(answer) = read(http, &place.app.url("/todos")).await
            && done(&answer)
        {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}

async fn read(http: &Http, url: &str) -> DemoResult<Answer> {
    http.send_with(Method::GET, url, None, &[("fly-consistency", "bounded=1s")])
        .await
}
