//! `flypg bench soak`: writers and readers in every region of the demo's
//! world for a long while (an hour by default), the library's sweeps at
//! their production settings, and every app process's resident memory and
//! open descriptors, the record table's rows and the primary's backends
//! sampled as it runs. Prints a summary (or JSON), draws an SVG chart,
//! and exits non-zero when a bound is broken.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::json;

use super::load_world::{self, LoadApp};
use super::soak_report::{Minute, Sample, SoakReport};
use crate::demo::http::Http;
use crate::demo::world::World;
use crate::demo::{parse_regions, rtt_between};

type SoakResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Options of `flypg bench soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// How long the load runs.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..=24 * 60))]
    minutes: u64,
    /// Minutes of warm-up: the bounds compare the rest of the run with its
    /// end (default: a sixth of the run, at least one minute).
    #[arg(long)]
    warmup_minutes: Option<u64>,
    /// The regions, the primary's first.
    #[arg(long, default_value = "syd,lax,fra")]
    regions: String,
    /// Round trip between the primary region and the second region (the
    /// demo's geometry: the third is twice as far).
    #[arg(long, default_value_t = 60)]
    rtt_ms: u64,
    /// Writes per second in each region.
    #[arg(long, default_value_t = 40)]
    writes_per_s: u32,
    /// Reads per second in each region, each of a write made in another
    /// region, with that write's token.
    #[arg(long, default_value_t = 80)]
    reads_per_s: u32,
    /// Seconds between samples of memory, descriptors and rows.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    sample_s: u64,
    /// Largest growth of an app's resident memory from the end of the
    /// warm-up to the end of the run, in percent.
    #[arg(long, default_value_t = 5.0)]
    max_rss_growth_pct: f64,
    /// Largest ratio of the last minute's write p99 to the first's.
    #[arg(long, default_value_t = 1.2)]
    max_p99_ratio: f64,
    /// Write the chart (soak.svg) into this folder.
    #[arg(long, value_name = "DIR")]
    svg: Option<PathBuf>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Idle clients per region, and the gaps between their requests (s).
const IDLE_CLIENTS: usize = 4;
const IDLE_GAP_S: std::ops::Range<f64> = 60.0..125.0;

/// Writes a region made lately, for readers elsewhere: (todo id, token).
#[derive(Default)]
struct Recent {
    by_region: Vec<Mutex<VecDeque<(i64, String)>>>,
}

const RECENT_KEPT: usize = 256;

impl Recent {
    fn push(&self, region: usize, id: i64, token: String) {
        let mut recent = lock(&self.by_region[region]);
        if recent.len() == RECENT_KEPT {
            recent.pop_front();
        }
        recent.push_back((id, token));
    }

    /// The newest write of the next region after `region` that has one.
    fn newest_elsewhere(&self, region: usize) -> Option<(i64, String)> {
        let n = self.by_region.len();
        (1..n)
            .map(|step| (region + step) % n)
            .find_map(|other| lock(&self.by_region[other]).back().cloned())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the clients measured, one entry per minute of the run.
struct Tally {
    started: Instant,
    minutes: Mutex<Vec<Minute>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn minute(&self) -> usize {
        (self.started.elapsed().as_secs() / 60) as usize
    }

    fn with_minute(&self, f: impl FnOnce(&mut Minute)) {
        let index = self.minute();
        let mut minutes = lock(&self.minutes);
        while minutes.len() <= index {
            let next = minutes.len();
            minutes.push(Minute::new(next));
        }
        f(&mut minutes[index]);
    }

    fn error(&self, kind: String) {
        *lock(&self.errors).entry(kind).or_insert(0) += 1;
        self.with_minute(|m| m.errors += 1);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

pub(crate) async fn run(args: SoakArgs) -> Result<(), Box<dyn std::error::Error>> {
    let report = load_world::interruptible(soak(&args)).await?;
    if let Some(dir) = &args.svg {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("soak.svg");
        super::soak_chart::svg(&path, &report)?;
        eprintln!("wrote {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print();
    }
    let broken = report.broken_bounds();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(format!("the soak broke its bounds: {}", broken.join("; ")).into())
    }
}

async fn soak(args: &SoakArgs) -> SoakResult<SoakReport> {
    let regions = parse_regions(&args.regions)?;
    let rtt = Duration::from_millis(args.rtt_ms);
    let warmup_minutes = args
        .warmup_minutes
        .unwrap_or((args.minutes / 6).max(1))
        .min(args.minutes.saturating_sub(1));
    eprintln!(
        "flypg bench soak: {} minutes ({warmup_minutes} of warm-up) in {}, {} writes/s and {} reads/s per region",
        args.minutes,
        regions.join(", "),
        args.writes_per_s,
        args.reads_per_s
    );
    let (world, apps) = load_world::start(&regions, rtt).await?;
    let mut primary = None;

    let stop = Arc::new(AtomicBool::new(false));
    let recent = Arc::new(Recent {
        by_region: (0..apps.len()).map(|_| Mutex::default()).collect(),
    });
    let tally = Arc::new(Tally {
        started: Instant::now(),
        minutes: Mutex::default(),
        errors: Mutex::default(),
    });
    let http = Http::new();
    let mut clients = tokio::task::JoinSet::new();
    // Enough callers that a forwarded write's round trips never hold the
    // rate back: each paces itself to its share.
    const WRITERS: u32 = 16;
    const READERS: u32 = 8;
    for (r, LoadApp { region, base, .. }) in apps.iter().enumerate() {
        for w in 0..WRITERS {
            let period =
                Duration::from_secs_f64(f64::from(WRITERS) / f64::from(args.writes_per_s.max(1)));
            let (http, stop, recent, tally) =
                (http.clone(), stop.clone(), recent.clone(), tally.clone());
            let url = format!("{base}/todos");
            let title = format!("soak {region} {w}");
            clients.spawn(async move {
                let mut tick = paced(period);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    n += 1;
                    let answer = http
                        .send(
                            Method::POST,
                            &url,
                            Some(json!({ "title": format!("{title} #{n}") })),
                        )
                        .await;
                    match answer {
                        Ok(a) if a.status == StatusCode::CREATED => {
                            tally.with_minute(|m| m.write(micros(a.elapsed)));
                            if let (Some(id), Some(token)) = (a.body["id"].as_i64(), a.lsn) {
                                recent.push(r, id, token);
                            }
                        }
                        Ok(a) => tally.error(format!("write:{}", a.status.as_u16())),
                        Err(e) => tally.error(format!("write:{}", error_kind(&*e))),
                    }
                }
            });
        }
        for _ in 0..READERS {
            let period =
                Duration::from_secs_f64(f64::from(READERS) / f64::from(args.reads_per_s.max(1)));
            let (http, stop, recent, tally) =
                (http.clone(), stop.clone(), recent.clone(), tally.clone());
            let base = base.clone();
            clients.spawn(async move {
                let mut tick = paced(period);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let Some((id, token)) = recent.newest_elsewhere(r) else {
                        continue;
                    };
                    let headers = [
                        ("fly-lsn", token.as_str()),
                        ("fly-consistency", "read-your-writes"),
                    ];
                    let answer = http
                        .send_with(Method::GET, &format!("{base}/todos/{id}"), None, &headers)
                        .await;
                    match answer {
                        Ok(a) if a.status == StatusCode::OK => {
                            tally.with_minute(|m| m.read(micros(a.elapsed)));
                        }
                        Ok(a) if a.status == StatusCode::NOT_FOUND => {
                            tally.with_minute(|m| m.stale_reads += 1);
                        }
                        Ok(a) => tally.error(format!("read:{}", a.status.as_u16())),
                        Err(e) => tally.error(format!("read:{}", error_kind(&*e))),
                    }
                }
            });
        }
    }

    // Clients that idle between requests, each with its own connection
    // pool (hyper's, idle connections dropped after 90 s as most HTTP
    // clients do): gaps around that and around the server's 120 s idle
    // timeout find a connection closed under a request being sent.
    for LoadApp { region, base, .. } in &apps {
        for _ in 0..IDLE_CLIENTS {
            let (stop, tally) = (stop.clone(), tally.clone());
            let url = format!("{base}/healthz");
            let region = region.clone();
            clients.spawn(async move {
                let http = Http::new();
                while !stop.load(Ordering::Relaxed) {
                    match http.get(&url).await {
                        Ok(a) if a.status == StatusCode::OK => {
                            tally.with_minute(|m| m.idle_requests += 1)
                        }
                        Ok(a) => tally.error(format!("idle {region}:{}", a.status.as_u16())),
                        Err(e) => tally.error(format!("idle {region}:{}", error_kind(&*e))),
                    }
                    let gap = IDLE_GAP_S.start
                        + rand::random::<f64>() * (IDLE_GAP_S.end - IDLE_GAP_S.start);
                    let until = Instant::now() + Duration::from_secs_f64(gap);
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            });
        }
    }

    let run_for = Duration::from_secs(args.minutes * 60);
    let mut samples = Vec::new();
    let mut next = Instant::now();
    loop {
        let at = tally.started.elapsed();
        samples.push(sample(at, &apps, &world, &mut primary).await);
        if let Some(last) = samples.last() {
            eprintln!("  {last}");
        }
        if at >= run_for {
            break;
        }
        next += Duration::from_secs(args.sample_s);
        let wake = next.min(tally.started + run_for);
        tokio::time::sleep_until(wake.into()).await;
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(ended) = clients.join_next().await {
        if let Err(e) = ended {
            tally.error(format!("client task: {e}"));
        }
    }
    let minutes = std::mem::take(&mut *lock(&tally.minutes));
    let errors = std::mem::take(&mut *lock(&tally.errors));
    drop(world);
    Ok(SoakReport::new(
        args.minutes,
        warmup_minutes,
        regions.clone(),
        rtt_between(rtt, 0, 1).as_millis() as u64,
        (args.writes_per_s, args.reads_per_s),
        (args.max_rss_growth_pct, args.max_p99_ratio),
        minutes,
        errors,
        samples,
    ))
}

/// An interval that skips ticks it missed rather than bursting to catch up.
fn paced(period: Duration) -> tokio::time::Interval {
    let start = tokio::time::Instant::now() + period.mul_f64(rand::random::<f64>());
    let mut tick = tokio::time::interval_at(start, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick
}

/// A client error's kind, short enough to count by.
fn error_kind(e: &(dyn std::error::Error + Send + Sync)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text.chars().take(120).collect()
}

/// One sample; the primary's figures are `None` when it does not answer
/// within 10 s (the next sample connects again).
async fn sample(
    at: Duration,
    apps: &[LoadApp],
    world: &World,
    primary: &mut Option<fly_postgres::sqlx::PgConnection>,
) -> Sample {
    let apps = load_world::usage(apps);
    let counted = tokio::time::timeout(Duration::from_secs(10), async {
        use fly_postgres::sqlx;
        let conn = match primary {
            Some(conn) => conn,
            None => primary.insert(world.topology.primary().connect().await?),
        };
        sqlx::query_as::<_, (i64, i64)>(
            "select (select count(*) from fly_postgres_requests), \
                    (select count(*) from pg_stat_activity where backend_type = 'client backend')",
        )
        .fetch_one(conn)
        .await
        .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
    })
    .await;
    let (record_rows, backends) = match counted {
        Ok(Ok((rows, backends))) => (Some(rows), Some(backends)),
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer within 10 s".to_owned(),
            };
            eprintln!(
                "  sample at {} s: the primary's counts failed: {why}",
                at.as_secs()
            );
            *primary = None;
            (None, None)
        }
    };
    Sample {
        at_s: at.as_secs(),
        apps,
        record_rows,
        backends,
    }
}
