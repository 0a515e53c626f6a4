//! `flypg bench repo --no-proxy`: what the library itself costs, on
//! loopback with no simulated ocean: writes per second and CPU per write
//! (this process plus every PostgreSQL process, from /proc) for a bare sqlx
//! insert transaction, the same mutation through a `Repo` in the primary
//! region, and forwarded from the replica region with the wait, with calls
//! batched (the default) and one request per call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fly_postgres::Repo;
use fly_postgres::sqlx::{self, Acquire, PgPool};
use fly_postgres_testkit::PgCluster;
use serde::Serialize;

use super::cpu_meter::CpuMeter;
use super::loopback_node::{another_lax, syd_and_lax};
use super::mutations::{InsertItem, SCHEMA};
use super::throughput::throughput;
use crate::percentiles::{Samples, millis, round3};

/// The caller counts compared.
const CALLERS: [usize; 2] = [64, 256];

/// One caller count's figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Costs {
    callers: usize,
    bare_writes_per_s: f64,
    local_writes_per_s: f64,
    fwd_writes_per_s: f64,
    /// Forwarded writes per second over local ones (goal: at least 0.8).
    fwd_vs_local_ratio: f64,
    cpu_us_per_bare_write: f64,
    cpu_us_per_local_write: f64,
    cpu_us_per_fwd_write: f64,
    /// CPU per forwarded write over CPU per local one (goal: at most 1.4).
    fwd_vs_local_cpu_ratio: f64,
    /// Share of the forwarded writes' calls that rode in batch requests.
    fwd_batched_share: f64,
    /// The same forwarded writes with one request per call
    /// (`batch_calls(false)`), measured in the same run.
    fwd_unbatched_writes_per_s: f64,
    fwd_unbatched_vs_local_ratio: f64,
    cpu_us_per_fwd_unbatched_write: f64,
    fwd_unbatched_vs_local_cpu_ratio: f64,
    /// The PostgreSQL processes' share of each write's CPU.
    cpu_us_per_bare_write_postgres: f64,
    cpu_us_per_local_write_postgres: f64,
    cpu_us_per_fwd_write_postgres: f64,
    /// A write's latency, call to return, p50 (the callers run back to
    /// back, so writes per second = callers / latency).
    local_write_p50_ms: f64,
    fwd_write_p50_ms: f64,
    /// A forwarded write's phases (`Write::timed`), p50: the RPC, the
    /// transaction next to the primary within it, the wait for the replica.
    fwd_rpc_p50_ms: f64,
    fwd_primary_p50_ms: f64,
    fwd_wait_p50_ms: f64,
}

/// The report: the 64-caller figures at the top, every run in `runs`.
#[derive(Debug, Serialize)]
struct Report {
    mode: &'static str,
    seconds: u64,
    #[serde(flatten)]
    at_64: Costs,
    runs: Vec<Costs>,
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Runs the three kinds of writes at each caller count.
pub(crate) async fn run(seconds: u64, json: bool) -> BenchResult<()> {
    let say = |text: &str| {
        if !json {
            eprintln!("{text}");
        }
    };
    say("starting primary (syd) and replica (lax) on loopback, no delays...");
    let cluster = PgCluster::start().await?;
    let most = CALLERS.iter().copied().max().unwrap_or(1) as u32;
    let primary = fly_postgres::pool_options()
        .max_connections(most + 4)
        .connect_with(cluster.primary().connect_options())
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&primary).await?;
    let (syd, lax) = syd_and_lax(&cluster, primary.clone(), |b| b).await?;
    let lax_unbatched = another_lax(&cluster, &syd, |node| node.batch_calls(false)).await?;
    cluster.wait_for_catch_up(Duration::from_secs(30)).await?;
    let meter = CpuMeter::new(
        [cluster.primary().pid(), cluster.replica().pid()]
            .into_iter()
            .flatten(),
    );
    let length = Duration::from_secs(seconds);

    let mut runs = Vec::new();
    for callers in CALLERS {
        say(&format!(
            "{callers} callers: bare sqlx insert transactions on the primary..."
        ));
        let bare = measure(&meter, callers, length, {
            let primary = primary.clone();
            move || bare_insert(primary.clone())
        })
        .await?;
        say(&format!(
            "{callers} callers: the same mutation through a Repo in syd..."
        ));
        let local_phases = Phases::default();
        let local = measure(&meter, callers, length, {
            let (syd, phases) = (syd.clone(), local_phases.clone());
            move || insert_through(syd.clone(), "l", Some(phases.clone()))
        })
        .await?;
        say(&format!(
            "{callers} callers: forwarded from lax, with the wait..."
        ));
        let fwd_phases = Phases::default();
        let counted = lax.node().call_counts();
        let fwd = measure(&meter, callers, length, {
            let (lax, phases) = (lax.clone(), fwd_phases.clone());
            move || insert_through(lax.clone(), "f", Some(phases.clone()))
        })
        .await?;
        let batched_share = {
            let counts = lax.node().call_counts();
            let batched = counts.batched_calls - counted.batched_calls;
            let alone = (counts.requests - counted.requests) - (counts.batches - counted.batches);
            batched as f64 / ((batched + alone) as f64).max(1.0)
        };
        say(&format!(
            "{callers} callers: forwarded from lax, one request per call..."
        ));
        let unbatched = measure(&meter, callers, length, {
            let lax = lax_unbatched.clone();
            move || insert_through(lax.clone(), "u", None)
        })
        .await?;
        let (local_phases, fwd_phases) = (local_phases.take(), fwd_phases.take());
        runs.push(Costs {
            callers,
            bare_writes_per_s: bare.per_s.round(),
            local_writes_per_s: local.per_s.round(),
            fwd_writes_per_s: fwd.per_s.round(),
            fwd_vs_local_ratio: ratio(fwd.per_s, local.per_s),
            cpu_us_per_bare_write: bare.cpu_us.round(),
            cpu_us_per_local_write: local.cpu_us.round(),
            cpu_us_per_fwd_write: fwd.cpu_us.round(),
            fwd_vs_local_cpu_ratio: ratio(fwd.cpu_us, local.cpu_us),
            fwd_batched_share: (batched_share * 1000.0).round() / 1000.0,
            fwd_unbatched_writes_per_s: unbatched.per_s.round(),
            fwd_unbatched_vs_local_ratio: ratio(unbatched.per_s, local.per_s),
            cpu_us_per_fwd_unbatched_write: unbatched.cpu_us.round(),
            fwd_unbatched_vs_local_cpu_ratio: ratio(unbatched.cpu_us, local.cpu_us),
            cpu_us_per_bare_write_postgres: bare.cpu_us_postgres.round(),
            cpu_us_per_local_write_postgres: local.cpu_us_postgres.round(),
            cpu_us_per_fwd_write_postgres: fwd.cpu_us_postgres.round(),
            local_write_p50_ms: round3(local_phases.total.pct(50.0)),
            fwd_write_p50_ms: round3(fwd_phases.total.pct(50.0)),
            fwd_rpc_p50_ms: round3(fwd_phases.rpc.pct(50.0)),
            fwd_primary_p50_ms: round3(fwd_phases.primary.pct(50.0)),
            fwd_wait_p50_ms: round3(fwd_phases.wait.pct(50.0)),
        });
    }
    lax.node().shutdown().await?;
    lax_unbatched.node().shutdown().await?;
    syd.node().shutdown().await?;
    lax.local().close().await;
    primary.close().await;

    let mut runs = runs.into_iter();
    let at_64 = runs.next().ok_or("no run")?;
    let report = Report {
        mode: "no_proxy",
        seconds,
        runs: std::iter::once(at_64.clone()).chain(runs).collect(),
        at_64,
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// One run's rate and CPU per write.
/// The phase timings of every write of a run (warm-up included).
#[derive(Clone, Default)]
struct Phases(Arc<Mutex<PhaseSamples>>);

#[derive(Default)]
struct PhaseSamples {
    total: Vec<f64>,
    rpc: Vec<f64>,
    primary: Vec<f64>,
    wait: Vec<f64>,
}

/// [`PhaseSamples`] sorted, for percentiles.
struct PhaseFigures {
    total: Samples,
    rpc: Samples,
    primary: Samples,
    wait: Samples,
}

impl Phases {
    fn record(&self, timings: &fly_postgres::WriteTimings) {
        let mut samples = self.0.lock().unwrap_or_else(|p| p.into_inner());
        samples.total.push(millis(timings.total));
        samples.rpc.extend(timings.rpc.map(millis));
        samples.primary.extend(timings.primary.map(millis));
        samples.wait.extend(timings.replication_wait.map(millis));
    }

    fn take(&self) -> PhaseFigures {
        let samples = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        PhaseFigures {
            total: Samples::new(samples.total),
            rpc: Samples::new(samples.rpc),
            primary: Samples::new(samples.primary),
            wait: Samples::new(samples.wait),
        }
    }
}

struct Measured {
    per_s: f64,
    cpu_us: f64,
    cpu_us_postgres: f64,
}

async fn measure<F, Fut>(
    meter: &CpuMeter,
    callers: usize,
    length: Duration,
    call: F,
) -> BenchResult<Measured>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), super::throughput::CallError>> + Send,
{
    // Connections opened and caches warmed outside the measurement.
    throughput(callers, Duration::from_millis(500), call.clone()).await?;
    let before = meter.sample();
    let started = std::time::Instant::now();
    let per_s = throughput(callers, length, call).await?;
    let elapsed = started.elapsed();
    let (own, postgres) = meter.sample().since(&before);
    let writes = (per_s * elapsed.as_secs_f64()).max(1.0);
    Ok(Measured {
        per_s,
        cpu_us: (own + postgres).as_secs_f64() * 1e6 / writes,
        cpu_us_postgres: postgres.as_secs_f64() * 1e6 / writes,
    })
}

/// One [`InsertItem`] through `repo`, its phases recorded into `phases`
/// when given.
async fn insert_through(
    repo: Repo,
    payload: &'static str,
    phases: Option<Phases>,
) -> Result<(), super::throughput::CallError> {
    let write = repo.write(InsertItem {
        payload: payload.into(),
    });
    match phases {
        Some(phases) => phases.record(&write.timed().await?.1),
        None => {
            write.await?;
        }
    }
    Ok(())
}

async fn bare_insert(pool: PgPool) -> Result<(), super::throughput::CallError> {
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return Err(fly_postgres::explain_pool_error(&pool, e).await.into()),
    };
    let mut tx = conn.begin().await?;
    sqlx::query("insert into items (payload) values ($1) returning id")
        .bind("b")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

fn print_table(r: &Report) {
    println!(
        "flypg bench repo --no-proxy: loopback, {} s per run, CPU = this process + every PostgreSQL process",
        r.seconds
    );
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>7} {:>12} {:>12} {:>12} {:>7}",
        "callers",
        "bare/s",
        "local/s",
        "fwd/s",
        "fwd/loc",
        "cpu µs bare",
        "cpu µs local",
        "cpu µs fwd",
        "cpu x"
    );
    for c in &r.runs {
        println!(
            "{:>8} {:>10} {:>10} {:>10} {:>7} {:>12} {:>12} {:>12} {:>7}",
            c.callers,
            c.bare_writes_per_s,
            c.local_writes_per_s,
            c.fwd_writes_per_s,
            c.fwd_vs_local_ratio,
            c.cpu_us_per_bare_write,
            c.cpu_us_per_local_write,
            c.cpu_us_per_fwd_write,
            c.fwd_vs_local_cpu_ratio
        );
    }
    for c in &r.runs {
        println!(
            "{} callers: write p50 local {} ms, forwarded {} ms = RPC {} (primary {}) + replica wait {}",
            c.callers,
            c.local_write_p50_ms,
            c.fwd_write_p50_ms,
            c.fwd_rpc_p50_ms,
            c.fwd_primary_p50_ms,
            c.fwd_wait_p50_ms
        );
    }
    for c in &r.runs {
        println!(
            "{} callers: {:.0} % of forwarded calls batched; one request per call instead: {} writes/s, fwd/local {}, CPU {} us, cpu x {}",
            c.callers,
            c.fwd_batched_share * 100.0,
            c.fwd_unbatched_writes_per_s,
            c.fwd_unbatched_vs_local_ratio,
            c.cpu_us_per_fwd_unbatched_write,
            c.fwd_unbatched_vs_local_cpu_ratio
        );
    }
    println!("goals: fwd/local rate >= 0.8, CPU per forwarded write <= 1.4x a local one");
}
