//! `flypg bench sessions`: many browser-like sessions over the demo's
//! three regions. Each keeps its own cookie jar (the `fly_lsn` cookie the
//! consistency layer sets) and hops: it writes in one region, then reads
//! what it wrote in the next one in session mode, then writes there, and
//! so on. The same number of hops runs first with few sessions, then with
//! many (after a first small run that warms the servers up): the servers'
//! memory must not grow with the number of sessions
//! (the token is the whole of a session's state, and the client holds it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::app_usage::AppUsage;
use super::load_world::{self, LoadApp};
use crate::demo::http::{Answer, Http};
use crate::demo::parse_regions;
use crate::percentiles::{Samples, millis, round3};

type SessionsResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Options of `flypg bench sessions`.
#[derive(Debug, clap::Args)]
pub(crate) struct SessionsArgs {
    /// Sessions in the large run.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(2..=1_000_000))]
    sessions: u64,
    /// Sessions in the small run that comes first (the same number of
    /// hops in all, so each of its sessions hops more).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    base_sessions: u64,
    /// Hops per session in the large run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    hops: u64,
    /// Sessions in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,
    /// The regions, the primary's first (at least three).
    #[arg(long, default_value = "syd,lax,fra")]
    regions: String,
    /// Round trip between the primary region and the second region.
    #[arg(long, default_value_t = 60)]
    rtt_ms: u64,
    /// Largest growth of an app's resident memory from the small run to
    /// the large one, in percent.
    #[arg(long, default_value_t = 5.0)]
    max_rss_growth_pct: f64,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// One run: its sessions and what they saw.
#[derive(Debug, Serialize)]
struct RunSummary {
    sessions: u64,
    hops_per_session: u64,
    hops: u64,
    /// A session's read, in session mode with its cookie, that did not
    /// show what the session wrote a moment before in another region.
    backwards_reads: u64,
    failed: u64,
    failures: std::collections::BTreeMap<String, u64>,
    write_p50_ms: f64,
    write_p99_ms: f64,
    read_p50_ms: f64,
    read_p99_ms: f64,
    /// Each app after the run.
    apps_after: Vec<AppUsage>,
}

#[derive(Debug, Serialize)]
struct SessionsReport {
    regions: Vec<String>,
    concurrency: u64,
    apps_before: Vec<AppUsage>,
    /// A run like the small one first, so the servers are warm.
    warm_up: RunSummary,
    small: RunSummary,
    large: RunSummary,
    /// The largest growth of one app's resident memory from after the small
    /// run to after the large one, percent.
    rss_growth_pct: f64,
    max_rss_growth_pct: f64,
}

pub(crate) async fn run(args: SessionsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let report = load_world::interruptible(sessions(&args)).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print();
    }
    let mut broken = Vec::new();
    for run in [&report.warm_up, &report.small, &report.large] {
        if run.backwards_reads > 0 || run.failed > 0 {
            broken.push(format!(
                "{} sessions: {} backwards reads, {} failed requests",
                run.sessions, run.backwards_reads, run.failed
            ));
        }
    }
    for app in report.large.apps_after.iter().filter(|a| !a.running) {
        broken.push(format!("the {} app exited", app.region));
    }
    if report.rss_growth_pct > args.max_rss_growth_pct {
        broken.push(format!(
            "resident memory grew {:.1} % from {} to {} sessions (at most {} %)",
            report.rss_growth_pct,
            report.small.sessions,
            report.large.sessions,
            args.max_rss_growth_pct
        ));
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(format!("the sessions broke their bounds: {}", broken.join("; ")).into())
    }
}

async fn sessions(args: &SessionsArgs) -> SessionsResult<SessionsReport> {
    let regions = parse_regions(&args.regions)?;
    if regions.len() < 3 {
        return Err("--regions: sessions hop across at least three regions".into());
    }
    let (world, apps) = load_world::start(&regions, Duration::from_millis(args.rtt_ms)).await?;
    let usage = || load_world::usage(&apps);
    let apps_before = usage();
    let total_hops = args.sessions * args.hops;
    let base_hops = total_hops.div_ceil(args.base_sessions);
    eprintln!(
        "{} sessions x {base_hops} hops (twice: the first warms up), then {} sessions x {} hops, {} at a time",
        args.base_sessions, args.sessions, args.hops, args.concurrency
    );
    // A first run of the small kind warms the servers up (pools,
    // allocator arenas), so what the two measured runs differ by is the
    // number of sessions.
    let warm_up = hop_all(0, &apps, args.base_sessions, base_hops, args.concurrency).await;
    let warm_up = summarise(args.base_sessions, base_hops, warm_up, usage());
    let small = hop_all(1, &apps, args.base_sessions, base_hops, args.concurrency).await;
    let small = summarise(args.base_sessions, base_hops, small, usage());
    eprintln!(
        "  {} sessions: {} backwards reads, {} failed",
        small.sessions, small.backwards_reads, small.failed
    );
    let large = hop_all(2, &apps, args.sessions, args.hops, args.concurrency).await;
    let large = summarise(args.sessions, args.hops, large, usage());
    drop(world);
    let rss_growth_pct = small
        .apps_after
        .iter()
        .zip(&large.apps_after)
        .filter(|(before, _)| before.rss_mib > 0.0)
        .map(|(before, after)| (after.rss_mib - before.rss_mib) / before.rss_mib * 100.0)
        .fold(0.0_f64, f64::max);
    Ok(SessionsReport {
        regions,
        concurrency: args.concurrency,
        apps_before,
        warm_up,
        small,
        large,
        rss_growth_pct: (rss_growth_pct * 10.0).round() / 10.0,
        max_rss_growth_pct: args.max_rss_growth_pct,
    })
}

/// What the sessions of one run measured.
#[derive(Default)]
struct Measured {
    writes_ms: Vec<f64>,
    reads_ms: Vec<f64>,
    backwards: u64,
    failed: u64,
    /// Failed requests by what they answered.
    failures: std::collections::BTreeMap<String, u64>,
}

impl Measured {
    fn fail(
        &mut self,
        what: &str,
        answer: Result<Answer, Box<dyn std::error::Error + Send + Sync>>,
    ) {
        self.failed += 1;
        let kind = match answer {
            Ok(a) => format!(
                "{what}: {} {}",
                a.status.as_u16(),
                a.body["error"].as_str().unwrap_or("")
            ),
            Err(e) => format!("{what}: {e}"),
        };
        *self.failures.entry(kind).or_insert(0) += 1;
    }
}

/// Runs `sessions` sessions of `hops` hops each, `concurrency` at a time
/// (`run` tells its writes from another run's).
async fn hop_all(
    run: u8,
    apps: &[LoadApp],
    sessions: u64,
    hops: u64,
    concurrency: u64,
) -> Measured {
    let next = Arc::new(AtomicUsize::new(0));
    let measured = Arc::new(Mutex::new(Measured::default()));
    let bases: Arc<Vec<String>> = Arc::new(apps.iter().map(|app| app.base.clone()).collect());
    let http = Http::new();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(sessions) {
        let (next, measured, bases, http) =
            (next.clone(), measured.clone(), bases.clone(), http.clone());
        workers.spawn(async move {
            loop {
                let session = next.fetch_add(1, Ordering::Relaxed) as u64;
                if session >= sessions {
                    return;
                }
                let mine = one_session(&http, &bases, run, session, hops).await;
                let mut all = measured.lock().unwrap_or_else(|p| p.into_inner());
                all.writes_ms.extend(mine.writes_ms);
                all.reads_ms.extend(mine.reads_ms);
                all.backwards += mine.backwards;
                all.failed += mine.failed;
                for (kind, n) in mine.failures {
                    *all.failures.entry(kind).or_insert(0) += n;
                }
            }
        });
    }
    let mut panicked = 0;
    while let Some(ended) = workers.join_next().await {
        if ended.is_err() {
            panicked += 1;
        }
    }
    let mut measured = Arc::try_unwrap(measured)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_default();
    if panicked > 0 {
        measured.failed += panicked;
        measured
            .failures
            .insert("a client task panicked".into(), panicked);
    }
    measured
}

/// One session: its cookie jar is the `fly_lsn` cookie, sent with every
/// request and replaced by what each response sets.
async fn one_session(http: &Http, bases: &[String], run: u8, session: u64, hops: u64) -> Measured {
    let mut measured = Measured::default();
    let mut jar: Option<String> = None;
    let n = bases.len() as u64;
    for hop in 0..hops {
        let here = &bases[((session + hop) % n) as usize];
        let there = &bases[((session + hop + 1) % n) as usize];
        let written = send(
            http,
            Method::POST,
            &format!("{here}/todos"),
            // Titles are unique in the todo app: each run's sessions have their own.
            Some(json!({ "title": format!("run {run}: session {session} hop {hop}") })),
            &mut jar,
        )
        .await;
        let id = match written {
            Ok(a) if a.status == StatusCode::CREATED && a.body["id"].is_i64() => {
                measured.writes_ms.push(millis(a.elapsed));
                a.body["id"].as_i64().unwrap_or_default()
            }
            other => {
                measured.fail("write", other);
                continue;
            }
        };
        match send(
            http,
            Method::GET,
            &format!("{there}/todos/{id}"),
            None,
            &mut jar,
        )
        .await
        {
            Ok(a) if a.status == StatusCode::OK => measured.reads_ms.push(millis(a.elapsed)),
            Ok(a) if a.status == StatusCode::NOT_FOUND => measured.backwards += 1,
            other => measured.fail("read", other),
        }
    }
    measured
}

async fn send(
    http: &Http,
    method: Method,
    url: &str,
    body: Option<serde_json::Value>,
    jar: &mut Option<String>,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let cookie = jar
        .as_ref()
        .map(|token| format!("{}={token}", fly_postgres::LSN_COOKIE));
    let mut headers = vec![(fly_postgres::CONSISTENCY_HEADER, "session")];
    if let Some(cookie) = &cookie {
        headers.push(("cookie", cookie.as_str()));
    }
    let answer = http.send_with(method, url, body, &headers).await?;
    if let Some(token) = &answer.lsn {
        *jar = Some(token.clone());
    }
    Ok(answer)
}

fn summarise(sessions: u64, hops: u64, m: Measured, apps_after: Vec<AppUsage>) -> RunSummary {
    let writes = Samples::new(m.writes_ms);
    let reads = Samples::new(m.reads_ms);
    RunSummary {
        sessions,
        hops_per_session: hops,
        hops: sessions * hops,
        backwards_reads: m.backwards,
        failed: m.failed,
        failures: m.failures,
        write_p50_ms: round3(writes.pct(50.0)),
        write_p99_ms: round3(writes.pct(99.0)),
        read_p50_ms: round3(reads.pct(50.0)),
        read_p99_ms: round3(reads.pct(99.0)),
        apps_after,
    }
}

impl SessionsReport {
    fn print(&self) {
        println!(
            "sessions hopping across {} ({} at a time; write in one region, read it in the next in session mode):",
            self.regions.join(", "),
            self.concurrency
        );
        println!(
            "  sessions   hops  backwards  failed  write p50/p99 ms  read p50/p99 ms  app memory after (MiB)"
        );
        for run in [&self.warm_up, &self.small, &self.large] {
            println!(
                "  {:>8} {:>6} {:>10} {:>7} {:>8.1} / {:<7.1} {:>7.2} / {:<7.2} {}",
                run.sessions,
                run.hops,
                run.backwards_reads,
                run.failed,
                run.write_p50_ms,
                run.write_p99_ms,
                run.read_p50_ms,
                run.read_p99_ms,
                run.apps_after
                    .iter()
                    .map(|a| format!("{} {:.1}", a.region, a.rss_mib))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for run in [&self.warm_up, &self.small, &self.large] {
            for (kind, n) in &run.failures {
                println!("  {} sessions, failed: {kind}: {n}", run.sessions);
            }
        }
        println!(
            "  resident memory growth from {} to {} sessions: {:.1} % at most (bound {} %)",
            self.small.sessions, self.large.sessions, self.rss_growth_pct, self.max_rss_growth_pct
        );
    }
}
