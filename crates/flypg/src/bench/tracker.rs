//! `flypg bench tracker`: how soon a waiter wakes after the replica replayed
//! its LSN, and what that costs the replica.
//!
//! An independent observer thread polls `pg_last_wal_replay_lsn()` on the
//! replica as fast as it can and notes when each position first appears; a
//! waiter's notification delay is its wake-up time minus that moment.

use std::time::{Duration, Instant};

use fly_postgres::Tracker;
use fly_postgres::advanced::commit_lsn;
use fly_postgres::sqlx::{self, Connection, PgPool, postgres::PgPoolOptions};
use fly_postgres_testkit::PgCluster;
use serde::Serialize;

use super::charts::{self, Series};
use super::region_instances::{RegionRun, run_region};
use super::replay_wakes::{Observer, measure};
use crate::percentiles::{Samples, millis, round3};

/// Options of `flypg bench tracker`.
#[derive(Debug, clap::Args)]
pub(crate) struct TrackerArgs {
    /// Number of writes, each followed by a wait on its LSN (default 2000;
    /// 200 with --load).
    #[arg(long)]
    writes: Option<usize>,
    /// Concurrent waiters on each write's LSN (default 1; 1000 with --load).
    #[arg(long)]
    waiters: Option<usize>,
    /// Run pgbench writes on the primary (4 clients) while measuring, so
    /// replay never rests and every poll competes with real load.
    #[arg(long)]
    load: bool,
    /// The tracker's poll interval in microseconds.
    #[arg(long, default_value_t = fly_postgres::DEFAULT_POLL_INTERVAL.as_micros() as u64)]
    poll_interval_us: u64,
    /// One-way delay on the replication link (through the testkit's latency
    /// proxy), so every wait really waits, as across regions.
    #[arg(long, default_value_t = 2)]
    replication_delay_ms: u64,
    /// Writes measured with the Elixir library's 50 ms polling.
    #[arg(long, default_value_t = 200)]
    baseline_writes: usize,
    /// Also compare a region of this many app instances (each a `Repo`
    /// with its own tracker, sharing one replay poller) with one instance:
    /// the replica's queries per second and the notification delay, same
    /// writes, at least one waiter per instance and write.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    instances: u16,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the notification-delay chart
    /// (notification-delay-cdf.svg, and region-notification-delay-cdf.svg
    /// with --instances) into this directory.
    #[arg(long, value_name = "DIR")]
    svg: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    writes: usize,
    waiters: usize,
    /// Whether pgbench loaded the primary during the measurement.
    load: bool,
    /// pgbench's committed transactions per second meanwhile (0 without).
    load_tps: f64,
    poll_interval_us: u64,
    notify_p50_ms: f64,
    notify_p99_ms: f64,
    notify_max_ms: f64,
    baseline_50ms_poll_p50_ms: f64,
    baseline_50ms_poll_p99_ms: f64,
    baseline_writes: usize,
    replica_queries_per_s_while_waiting: f64,
    replica_queries_per_write: f64,
    replica_queries_while_idle: u64,
    replication_delay_ms: u64,
    wait_p50_ms: f64,
    max_wait_ms: f64,
    /// A bare `select pg_last_wal_replay_lsn()` on its own connection,
    /// timed in the same run under the same load (200 samples, 1 ms apart).
    bare_poll_p50_ms: f64,
    bare_poll_p99_ms: f64,
    /// `notify_p99_ms` over `bare_poll_p99_ms`.
    notify_p99_vs_bare_poll_p99: f64,
    /// With `--instances N` (N >= 2).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    region: Option<RegionReport>,
}

/// One instance against N in one region, same writes and waiters.
#[derive(Debug, Serialize)]
struct RegionReport {
    instances: u16,
    region_waiters_per_write: usize,
    replica_queries_per_s_1_instance: f64,
    replica_queries_per_s_n_instances: f64,
    /// N instances' queries per second over one's.
    replica_queries_ratio_n_vs_1: f64,
    notify_p50_ms_1_instance: f64,
    notify_p99_ms_1_instance: f64,
    notify_p50_ms_n_instances: f64,
    notify_p99_ms_n_instances: f64,
}

impl RegionReport {
    fn new(instances: u16, waiters: usize, one: &RegionRun, many: &RegionRun) -> Self {
        RegionReport {
            instances,
            region_waiters_per_write: waiters,
            replica_queries_per_s_1_instance: one.queries_per_s.round(),
            replica_queries_per_s_n_instances: many.queries_per_s.round(),
            replica_queries_ratio_n_vs_1: round3(many.queries_per_s / one.queries_per_s.max(1.0)),
            notify_p50_ms_1_instance: round3(one.measured.notify.pct(50.0)),
            notify_p99_ms_1_instance: round3(one.measured.notify.pct(99.0)),
            notify_p50_ms_n_instances: round3(many.measured.notify.pct(50.0)),
            notify_p99_ms_n_instances: round3(many.measured.notify.pct(99.0)),
        }
    }
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// `samples` bare replay-position queries on a connection of their own,
/// 1 ms apart, as the tracker's poller sends them.
async fn bare_polls(cluster: &PgCluster, samples: usize) -> BenchResult<Samples> {
    let mut conn = sqlx::PgConnection::connect_with(&cluster.replica().connect_options()).await?;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let _: Option<String> = sqlx::query_scalar("select pg_last_wal_replay_lsn()::text")
            .fetch_one(&mut conn)
            .await?;
        times.push(millis(started.elapsed()));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    conn.close().await?;
    Ok(Samples::new(times))
}

pub(crate) async fn run(args: TrackerArgs) -> BenchResult<()> {
    let writes = args.writes.unwrap_or(if args.load { 200 } else { 2000 });
    let waiters = args.waiters.unwrap_or(if args.load { 1000 } else { 1 });
    if writes == 0 || waiters == 0 {
        return Err("--writes and --waiters must be at least 1".into());
    }
    let progress = !args.json;
    if progress {
        eprintln!("starting a PostgreSQL primary and streaming replica...");
    }
    let mut builder = PgCluster::builder();
    if args.replication_delay_ms > 0 {
        builder = builder.replication_delay(Duration::from_millis(args.replication_delay_ms));
    }
    let cluster = builder.start().await?;
    let primary = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(cluster.primary().connect_options())
        .await?;
    sqlx::query("create table bench (id bigserial primary key, v text)")
        .execute(&primary)
        .await?;
    cluster.wait_for_catch_up(Duration::from_secs(10)).await?;
    let replica = cluster.replica().connect_options();
    let load = match args.load {
        true => {
            let pgbench = crate::pgbench::locate()?.ok_or(
                "--load needs pgbench: next to the PostgreSQL binaries, on PATH, or in \
                     /usr/lib/postgresql/*/bin",
            )?;
            let url = cluster.primary().url();
            crate::pgbench::init(&pgbench, &url).await?;
            if progress {
                eprintln!("pgbench -c 4 on the primary from now on...");
            }
            Some(crate::pgbench::spawn(&pgbench, &url, 4)?)
        }
        false => None,
    };
    let commits_before = commits(&primary).await?;
    let load_started = Instant::now();
    let observer = Observer::start(replica.clone())?;

    if progress {
        eprintln!(
            "measuring {} writes x {} waiter(s), poll interval {} us...",
            writes, waiters, args.poll_interval_us
        );
    }
    let tracker = Tracker::builder(replica.clone())
        .poll_interval(Duration::from_micros(args.poll_interval_us))
        .start()?;
    let main = measure(
        &primary,
        std::slice::from_ref(&tracker),
        &observer,
        writes,
        waiters,
    )
    .await?;
    let polls_for_writes = tracker.stats().polls;
    let region = match args.instances {
        0 | 1 => None,
        n => {
            let region_waiters = waiters.max(usize::from(n));
            if progress {
                eprintln!(
                    "measuring 1 and then {n} instances in one region, {writes} writes x {region_waiters} waiters..."
                );
            }
            let one = run_region(&cluster, &primary, &observer, 1, writes, region_waiters).await?;
            let many = run_region(
                &cluster,
                &primary,
                &observer,
                usize::from(n),
                writes,
                region_waiters,
            )
            .await?;
            if let Some(dir) = &args.svg {
                std::fs::create_dir_all(dir)?;
                let many_label = format!("{n} instances sharing one poller");
                charts::cdf_svg(
                    &dir.join("region-notification-delay-cdf.svg"),
                    &format!(
                        "Replay to waiter woken, one region: {writes} writes x {region_waiters} waiters"
                    ),
                    "notification delay (ms)",
                    &[
                        Series {
                            label: "1 instance",
                            samples: &one.measured.notify,
                        },
                        Series {
                            label: &many_label,
                            samples: &many.measured.notify,
                        },
                    ],
                )?;
            }
            Some(RegionReport::new(n, region_waiters, &one, &many))
        }
    };
    // The same-run cost of the bare step the tracker repeats, under the same
    // load: what its notification delay cannot go below.
    let bare_poll = bare_polls(&cluster, 200).await?;
    let idle_before = tracker.stats().polls;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let replica_queries_while_idle = tracker.stats().polls - idle_before;
    if progress {
        eprintln!(
            "measuring replica load with {} waiter(s) blocked for 1 s...",
            waiters
        );
    }
    let polls_per_s = sustained_poll_rate(&cluster, &primary, &tracker, waiters).await?;

    if progress {
        eprintln!(
            "measuring the Elixir strategy (50 ms polling), {} writes...",
            args.baseline_writes
        );
    }
    let baseline_tracker = Tracker::builder(replica)
        .poll_interval(Duration::from_millis(50))
        .start()?;
    let baseline = measure(
        &primary,
        std::slice::from_ref(&baseline_tracker),
        &observer,
        args.baseline_writes.max(1),
        1,
    )
    .await?;
    observer.stop();
    let load_tps = match load {
        Some(mut pgbench) => {
            let tps = (commits(&primary).await? - commits_before) as f64
                / load_started.elapsed().as_secs_f64();
            let _ = pgbench.kill().await;
            tps
        }
        None => 0.0,
    };

    if let Some(dir) = &args.svg {
        std::fs::create_dir_all(dir)?;
        charts::cdf_svg(
            &dir.join("notification-delay-cdf.svg"),
            &format!(
                "Replay to waiter woken: {writes} writes x {waiters} waiter(s){}",
                if args.load { ", pgbench load" } else { "" }
            ),
            "notification delay (ms)",
            &[
                Series {
                    label: "Tracker (1 ms polling while anyone waits)",
                    samples: &main.notify,
                },
                Series {
                    label: "Elixir-style 50 ms polling",
                    samples: &baseline.notify,
                },
            ],
        )?;
    }
    let report = Report {
        writes,
        waiters,
        load: args.load,
        load_tps: load_tps.round(),
        poll_interval_us: args.poll_interval_us,
        notify_p50_ms: round3(main.notify.pct(50.0)),
        notify_p99_ms: round3(main.notify.pct(99.0)),
        notify_max_ms: round3(main.notify.max()),
        baseline_50ms_poll_p50_ms: round3(baseline.notify.pct(50.0)),
        baseline_50ms_poll_p99_ms: round3(baseline.notify.pct(99.0)),
        baseline_writes: args.baseline_writes.max(1),
        replica_queries_per_s_while_waiting: polls_per_s.round(),
        replica_queries_per_write: round3(polls_for_writes as f64 / writes as f64),
        replica_queries_while_idle,
        replication_delay_ms: args.replication_delay_ms,
        wait_p50_ms: round3(main.waits.pct(50.0)),
        max_wait_ms: round3(main.waits.max()),
        bare_poll_p50_ms: round3(bare_poll.pct(50.0)),
        bare_poll_p99_ms: round3(bare_poll.pct(99.0)),
        notify_p99_vs_bare_poll_p99: round3(main.notify.pct(99.0) / bare_poll.pct(99.0).max(1e-3)),
        region,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report, main.notify.len());
    }
    Ok(())
}

/// Transactions committed in the primary's databases so far.
async fn commits(primary: &PgPool) -> BenchResult<i64> {
    Ok(
        sqlx::query_scalar("select sum(xact_commit)::bigint from pg_stat_database")
            .fetch_one(primary)
            .await?,
    )
}

/// Polls per second while `waiters` waits stay blocked on a paused replica:
/// the load one tracker puts on the replica, whatever the number of waiters.
async fn sustained_poll_rate(
    cluster: &PgCluster,
    primary: &PgPool,
    tracker: &Tracker,
    waiters: usize,
) -> BenchResult<f64> {
    cluster.pause_replay().await?;
    let mut conn = primary.acquire().await?;
    sqlx::query("insert into bench (v) values ('blocked')")
        .execute(&mut *conn)
        .await?;
    let lsn = commit_lsn(&mut conn).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..waiters {
        let tracker = tracker.clone();
        tasks.spawn(async move { tracker.wait_for(lsn, Duration::from_secs(30)).await });
    }
    // Let every waiter register before counting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = tracker.stats().polls;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rate = (tracker.stats().polls - before) as f64 / started.elapsed().as_secs_f64();
    cluster.resume_replay().await?;
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(rate)
}

fn print_table(r: &Report, samples: usize) {
    println!(
        "flypg bench tracker: {} writes x {} waiter(s), {samples} samples",
        r.writes, r.waiters
    );
    println!("{:<48} {:>10}", "metric", "value");
    let rows: [(&str, String); 15] = [
        ("notification delay p50 (ms)", r.notify_p50_ms.to_string()),
        ("notification delay p99 (ms)", r.notify_p99_ms.to_string()),
        ("notification delay max (ms)", r.notify_max_ms.to_string()),
        (
            "Elixir-style 50 ms polling, delay p50 (ms)",
            r.baseline_50ms_poll_p50_ms.to_string(),
        ),
        (
            "Elixir-style 50 ms polling, delay p99 (ms)",
            r.baseline_50ms_poll_p99_ms.to_string(),
        ),
        (
            "replica queries per second while waiting",
            r.replica_queries_per_s_while_waiting.to_string(),
        ),
        (
            "replica queries per write (sequential)",
            r.replica_queries_per_write.to_string(),
        ),
        (
            "replica queries in 1 s idle",
            r.replica_queries_while_idle.to_string(),
        ),
        (
            "replication link delay (ms)",
            r.replication_delay_ms.to_string(),
        ),
        (
            "wait (write committed -> woken) p50 (ms)",
            r.wait_p50_ms.to_string(),
        ),
        ("longest wait (ms)", r.max_wait_ms.to_string()),
        (
            "bare replay poll, same run and load, p50 / p99 (ms)",
            format!("{} / {}", r.bare_poll_p50_ms, r.bare_poll_p99_ms),
        ),
        (
            "notification p99 / bare poll p99",
            r.notify_p99_vs_bare_poll_p99.to_string(),
        ),
        ("poll interval (us)", r.poll_interval_us.to_string()),
        (
            "pgbench load on the primary meanwhile (tps)",
            if r.load {
                r.load_tps.to_string()
            } else {
                "none".to_owned()
            },
        ),
    ];
    for (name, value) in rows {
        println!("{name:<48} {value:>10}");
    }
    if let Some(region) = &r.region {
        println!(
            "one region, 1 instance vs {} ({} waiters per write):",
            region.instances, region.region_waiters_per_write
        );
        let rows: [(&str, String); 3] = [
            (
                "replica queries/s, 1 vs N instances",
                format!(
                    "{} / {}",
                    region.replica_queries_per_s_1_instance,
                    region.replica_queries_per_s_n_instances
                ),
            ),
            (
                "replica queries, N over 1",
                region.replica_queries_ratio_n_vs_1.to_string(),
            ),
            (
                "notification p50 / p99 (ms), N instances",
                format!(
                    "{} / {}",
                    region.notify_p50_ms_n_instances, region.notify_p99_ms_n_instances
                ),
            ),
        ];
        for (name, value) in rows {
            println!("{name:<48} {value:>10}");
        }
    }
}
