//! `flypg bench repo --soak SECONDS`: forwarded writes for a long while
//! with the exactly-once retention compressed to seconds, to show that the
//! record table stays bounded, that sweeps do not stall writers, and that
//! memory does not grow.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fly_postgres::sqlx;
use fly_postgres_testkit::PgCluster;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::loopback_node::syd_and_lax;
use super::mutations::{InsertItem, SCHEMA};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Concurrent writers through lax.
const CALLERS: usize = 16;
/// How long records are kept, and how often the table is swept.
const RETENTION: Duration = Duration::from_secs(2);
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize)]
struct SoakReport {
    soak_seconds: u64,
    callers: usize,
    writes: u64,
    write_errors: u64,
    retention_s: f64,
    sweep_every_s: f64,
    /// Rows in `fly_postgres_requests`, sampled every second.
    record_rows: Vec<i64>,
    record_rows_max: i64,
    swept_records: u64,
    largest_sweep_batch: u64,
    longest_sweep_statement_ms: f64,
    write_p99_ms_outside_sweeps: f64,
    write_p99_ms_during_sweeps: f64,
    /// During over outside: how much a sweep slows a writer at p99.
    sweep_p99_ratio: f64,
    rss_start_mib: f64,
    rss_end_mib: f64,
    /// Resident memory, sampled every second with the rows.
    rss_mib: Vec<f64>,
}

/// This process's resident memory (it is the app here: both repos, their
/// pools and nodes run in it).
fn rss_mib() -> f64 {
    procfs::process::Process::myself()
        .and_then(|p| p.status())
        .ok()
        .and_then(|s| s.vmrss)
        .map_or(0.0, |kib| kib as f64 / 1024.0)
}

pub(crate) async fn run(seconds: u64, json: bool) -> BenchResult<()> {
    let say = |text: &str| {
        if !json {
            eprintln!("{text}");
        }
    };
    say("starting primary (syd) and replica (lax) on loopback...");
    let cluster = PgCluster::start().await?;
    let primary = fly_postgres::pool_options()
        .max_connections(CALLERS as u32 + 4)
        .connect_with(cluster.primary().connect_options())
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&primary).await?;
    let rpc_timeout = RETENTION / 2;
    let (syd, lax) = syd_and_lax(&cluster, primary.clone(), |b| {
        b.rpc_timeout(rpc_timeout)
            .request_retention(RETENTION)
            .generated_id_retention(RETENTION)
            // The bench sweeps itself, to know when a sweep runs.
            .sweep_interval(Duration::from_secs(24 * 3600))
    })
    .await?;
    cluster.wait_for_catch_up(Duration::from_secs(30)).await?;
    let rss_start = rss_mib();
    say(&format!(
        "{CALLERS} writers through lax for {seconds} s, records kept {RETENTION:?}, swept every {SWEEP_EVERY:?}..."
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let sweeping = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..CALLERS {
        let (lax, stop, sweeping, errors) = (
            lax.clone(),
            Arc::clone(&stop),
            Arc::clone(&sweeping),
            Arc::clone(&errors),
        );
        writers.spawn(async move {
            let mut outside = Histogram::<u64>::new(3).expect("3 significant figures");
            let mut during = outside.clone();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let swept_at_start = sweeping.load(Ordering::Relaxed);
                let started = Instant::now();
                let result = lax
                    .write(InsertItem {
                        payload: format!("soak {w}-{n}"),
                    })
                    .await;
                n += 1;
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                if result.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                if swept_at_start || sweeping.load(Ordering::Relaxed) {
                    let _ = during.record(us);
                } else {
                    let _ = outside.record(us);
                }
            }
            (n, outside, during)
        });
    }
    let started = Instant::now();
    let mut record_rows = Vec::new();
    let mut rss_samples = Vec::new();
    let mut next_sample = started + Duration::from_secs(1);
    let mut next_sweep = started + SWEEP_EVERY;
    while started.elapsed() < Duration::from_secs(seconds) {
        let now = Instant::now();
        if now >= next_sweep {
            sweeping.store(true, Ordering::Relaxed);
            let swept = syd.sweep().await;
            sweeping.store(false, Ordering::Relaxed);
            swept?;
            next_sweep += SWEEP_EVERY;
        }
        if Instant::now() >= next_sample {
            let rows: i64 = sqlx::query_scalar("select count(*) from fly_postgres_requests")
                .fetch_one(&primary)
                .await?;
            record_rows.push(rows);
            rss_samples.push((rss_mib() * 10.0).round() / 10.0);
            next_sample += Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut outside = Histogram::<u64>::new(3)?;
    let mut during = Histogram::<u64>::new(3)?;
    let mut writes = 0;
    while let Some(done) = writers.join_next().await {
        let (n, o, d) = done?;
        writes += n;
        outside.add(o)?;
        during.add(d)?;
    }
    let stats = syd.stats();
    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1e3;
    let (p99_outside, p99_during) = (p99(&outside), p99(&during));
    let report = SoakReport {
        soak_seconds: seconds,
        callers: CALLERS,
        writes,
        write_errors: errors.load(Ordering::Relaxed),
        retention_s: RETENTION.as_secs_f64(),
        sweep_every_s: SWEEP_EVERY.as_secs_f64(),
        record_rows_max: record_rows.iter().copied().max().unwrap_or(0),
        record_rows,
        swept_records: stats.swept_records,
        largest_sweep_batch: stats.largest_sweep_batch,
        longest_sweep_statement_ms: stats.longest_sweep_statement.as_secs_f64() * 1e3,
        write_p99_ms_outside_sweeps: p99_outside,
        write_p99_ms_during_sweeps: p99_during,
        sweep_p99_ratio: if p99_outside > 0.0 {
            p99_during / p99_outside
        } else {
            0.0
        },
        rss_start_mib: rss_start,
        rss_end_mib: rss_mib(),
        rss_mib: rss_samples,
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
