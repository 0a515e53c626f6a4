//! `flypg bench repo`: forwarded writes from `lax` against a primary in
//! `syd`, with a latency proxy between the regions and on the replication
//! link, compared with sending the statements straight to the far primary.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fly_postgres::sqlx::{self, Acquire, PgPool, postgres::PgPoolOptions};
use fly_postgres::{Repo, WriteMode};
use fly_postgres_testkit::{Delay, LatencyProxy, PgCluster};
use fly_rpc::StaticPeers;
use serde::Serialize;

use super::charts::{self, Series};
use super::loopback_node::node;
use super::mutations::{InsertItem, SCHEMA, TRANSFER_SQL, Transfer};
use super::throughput::throughput;
use crate::percentiles::{Samples, millis, round3};

/// Options of `flypg bench repo`.
#[derive(Debug, clap::Args)]
pub(crate) struct RepoArgs {
    /// Round-trip time between the regions.
    #[arg(long, default_value_t = 60)]
    rtt_ms: u64,
    /// One-way delay of the replication link (WAL flows from syd to lax);
    /// default: half the RTT, as the WAL crosses the same ocean as the RPC.
    #[arg(long)]
    replication_delay_ms: Option<u64>,
    /// Sequential writes per latency measurement.
    #[arg(long, default_value_t = 40)]
    writes: usize,
    /// Concurrent callers for the throughput runs.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Length of each throughput run in seconds.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Measure the library's own cost instead: loopback, no delays, writes
    /// per second and CPU per write at 64 and 256 callers for a bare insert,
    /// a Repo write in the primary region and a forwarded write.
    #[arg(long)]
    no_proxy: bool,
    /// Also write the latency chart (write-latency-cdf.svg) into this
    /// directory.
    #[arg(long, value_name = "DIR")]
    svg: Option<std::path::PathBuf>,
    /// Soak instead: forwarded writes for this many seconds with the
    /// exactly-once retention compressed to 2 s and a sweep every second;
    /// reports the record table's size over time, the largest sweep
    /// statement, write p99 during sweeps against outside, and memory.
    #[arg(long, value_name = "SECONDS")]
    soak: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Report {
    rtt_ms: u64,
    replication_delay_ms: u64,
    write1_p50_ms: f64,
    write1_p99_ms: f64,
    /// One way to the primary plus the replication link's one-way delay:
    /// what no forwarded write with read-your-writes can beat.
    write1_floor_ms: f64,
    /// p50 minus the floor: what the library (and the harness) add.
    write1_overhead_ms: f64,
    /// What this machine charged in the same run for the bare steps: a TCP
    /// round trip through an identical proxy, the statement in a bare
    /// transaction on the primary, one replay poll, plus the replication
    /// delay (p50s, sampled between the writes).
    write1_machine_floor_ms: f64,
    /// p50 minus that: the library's own cost on this machine (goal
    /// <= 0.5 ms).
    write1_overhead_vs_machine_ms: f64,
    machine_pingpong_p50_ms: f64,
    machine_transaction_p50_ms: f64,
    machine_poll_p50_ms: f64,
    /// The phases of the one-statement write (p50 of each).
    write1_rpc_p50_ms: f64,
    write1_primary_p50_ms: f64,
    write1_wait_p50_ms: f64,
    write3_p50_ms: f64,
    write3_p99_ms: f64,
    write3_floor_ms: f64,
    write3_overhead_ms: f64,
    direct3_p50_ms: f64,
    direct3_p99_ms: f64,
    /// `WriteMode::Direct` from lax (the mutation's statements cross the
    /// ocean, then COMMIT with the record), with the wait.
    direct_mode_write1_p50_ms: f64,
    direct_mode_write3_p50_ms: f64,
    local_read_p50_ms: f64,
    local_read_p99_ms: f64,
    /// How late the simulated links delivered delayed bytes (the harness's
    /// own error, included in the overheads above).
    rpc_link_late_p50_us: u64,
    rpc_link_late_p99_us: u64,
    replication_link_late_p50_us: u64,
    replication_link_late_p99_us: u64,
    stale_reads: usize,
    stale_reads_no_wait: usize,
    /// Throughput with `concurrency` callers (the name keeps the default's
    /// 64 for scripts that read it).
    fwd_writes_per_s_64: f64,
    direct_writes_per_s_64: f64,
    concurrency: usize,
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

pub(crate) async fn run(args: RepoArgs) -> BenchResult<()> {
    if args.writes == 0 || args.concurrency == 0 {
        return Err("--writes and --concurrency must be at least 1".into());
    }
    if args.no_proxy {
        return super::library_cost::run(args.seconds, args.json).await;
    }
    if let Some(seconds) = args.soak {
        if seconds < 3 {
            return Err("--soak needs at least 3 seconds".into());
        }
        return super::sweep_soak::run(seconds, args.json).await;
    }
    let say = |text: &str| {
        if !args.json {
            eprintln!("{text}");
        }
    };
    let rtt = Duration::from_millis(args.rtt_ms);
    let lag = Duration::from_millis(args.replication_delay_ms.unwrap_or(args.rtt_ms / 2));
    // Out to the primary (half the RTT), then the WAL back to lax.
    let floor_ms = (args.rtt_ms as f64) / 2.0 + lag.as_secs_f64() * 1e3;
    say(&format!(
        "starting primary (syd) and replica (lax), replication link delayed {lag:?} one way..."
    ));
    let cluster = PgCluster::builder().replication_delay(lag).start().await?;
    // A direct caller holds its connection for a whole RTT, so that pool
    // needs one per caller; a forwarded write holds syd's only for its
    // transaction (~1 ms of the RTT), and lax's pool only serves reads.
    let pool_size = args.concurrency as u32 + 4;
    let syd_pool_size = args.concurrency.min(128) as u32 + 4;
    let primary_pool = pool(cluster.primary().connect_options(), syd_pool_size).await?;
    sqlx::raw_sql(SCHEMA).execute(&primary_pool).await?;
    let rpc_link = LatencyProxy::bind(Delay::rtt(rtt)).await?;
    let syd = Repo::builder()
        .pool(primary_pool)
        .node(node("syd", StaticPeers::new()).advertise(rpc_link.local_addr()))
        .mutation::<InsertItem>()
        .mutation::<Transfer>()
        .start()
        .await?;
    syd.migrate().await?;
    rpc_link.connect_to(syd.node().local_addr().expect("rpc listener"));
    let lax = Repo::builder()
        .pool(pool(cluster.replica().connect_options(), 8).await?)
        .node(node(
            "lax",
            StaticPeers::new().with("syd", rpc_link.local_addr()),
        ))
        .mutation::<InsertItem>()
        .mutation::<Transfer>()
        .start()
        .await?;
    // The naive alternative: lax talks to the far primary directly.
    let far_primary = LatencyProxy::start(
        SocketAddr::from(([127, 0, 0, 1], cluster.primary().port())),
        Delay::rtt(rtt),
    )
    .await?;
    // No ping before each checkout: the naive path pays only its statements.
    let direct = PgPoolOptions::new()
        .max_connections(pool_size)
        .test_before_acquire(false)
        .connect_with(
            cluster
                .primary()
                .connect_options()
                .port(far_primary.local_addr().port()),
        )
        .await?;
    cluster.wait_for_catch_up(Duration::from_secs(30)).await?;
    // Open connections before measuring.
    lax.write(InsertItem {
        payload: "warm".into(),
    })
    .await?;
    sqlx::query("select 1").execute(&direct).await?;

    say(&format!(
        "{} one-statement writes from lax, each read back at once...",
        args.writes
    ));
    let mut machine =
        super::machine_floor::MachineFloor::start(rtt, syd.local().clone(), lax.local().clone())
            .await?;
    let mut write1 = Vec::new();
    let (mut rpc, mut primary, mut wait) = (Vec::new(), Vec::new(), Vec::new());
    let mut stale_reads = 0;
    for i in 0..args.writes {
        let started = Instant::now();
        let (id, timings) = lax
            .write(InsertItem {
                payload: format!("w{i}"),
            })
            .timed()
            .await?;
        write1.push(millis(started.elapsed()));
        rpc.extend(timings.rpc.map(millis));
        primary.extend(timings.primary.map(millis));
        wait.extend(timings.replication_wait.map(millis));
        if !visible(lax.local(), id).await? {
            stale_reads += 1;
        }
        machine.sample().await?;
    }
    let machine_floor = machine.floor(lag);
    drop(machine);
    let mut stale_reads_no_wait = 0;
    let mut no_wait = Vec::new();
    for i in 0..args.writes {
        let started = Instant::now();
        let id = lax
            .write(InsertItem {
                payload: format!("n{i}"),
            })
            .no_wait()
            .await?;
        no_wait.push(millis(started.elapsed()));
        if !visible(lax.local(), id).await? {
            stale_reads_no_wait += 1;
        }
    }

    say(&format!(
        "{} three-statement mutations from lax...",
        args.writes
    ));
    let mut write3 = Vec::new();
    for _ in 0..args.writes {
        let started = Instant::now();
        lax.write(Transfer { amount: 1 }).await?;
        write3.push(millis(started.elapsed()));
    }

    // The links' precision while latency was measured (the throughput
    // runs below load them far more).
    let rpc_late = rpc_link.lateness();
    let wal_late = cluster.replication_proxy().map(|p| p.lateness());
    say(&format!(
        "{} times the same three statements sent directly to the far primary...",
        args.writes
    ));
    let mut direct3 = Vec::new();
    for _ in 0..args.writes {
        let started = Instant::now();
        let mut conn = direct.acquire().await?;
        let mut tx = conn.begin().await?;
        for sql in TRANSFER_SQL {
            sqlx::query(sql).bind(1_i64).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        direct3.push(millis(started.elapsed()));
    }

    say(&format!(
        "{} writes of 1 and 3 statements in direct mode (lax runs them on syd over PostgreSQL)...",
        args.writes
    ));
    let lax_direct = Repo::builder()
        .pool(pool(cluster.replica().connect_options(), 8).await?)
        .primary_pool(direct.clone())
        .write_mode(WriteMode::Direct)
        .node(node("lax", StaticPeers::new()))
        .mutation::<InsertItem>()
        .mutation::<Transfer>()
        .start()
        .await?;
    let (mut direct_mode1, mut direct_mode3) = (Vec::new(), Vec::new());
    for i in 0..args.writes {
        let started = Instant::now();
        lax_direct
            .write(InsertItem {
                payload: format!("d{i}"),
            })
            .await?;
        direct_mode1.push(millis(started.elapsed()));
        let started = Instant::now();
        lax_direct.write(Transfer { amount: 1 }).await?;
        direct_mode3.push(millis(started.elapsed()));
    }
    lax_direct.node().shutdown().await?;

    say("local reads in lax...");
    let mut reads = Vec::new();
    for _ in 0..(args.writes * 5) {
        let started = Instant::now();
        let _: Option<String> = sqlx::query_scalar("select payload from items where id = 1")
            .fetch_optional(lax.local())
            .await?;
        reads.push(millis(started.elapsed()));
    }

    let length = Duration::from_secs(args.seconds);
    say(&format!(
        "{} concurrent callers, forwarded writes, {} s...",
        args.concurrency, args.seconds
    ));
    let fwd = throughput(args.concurrency, length, {
        let lax = lax.clone();
        move || {
            let lax = lax.clone();
            async move {
                lax.write(InsertItem {
                    payload: "t".into(),
                })
                .await?;
                Ok(())
            }
        }
    })
    .await?;
    say(&format!(
        "{} concurrent callers, direct writes to the far primary, {} s...",
        args.concurrency, args.seconds
    ));
    let direct_rate = throughput(args.concurrency, length, {
        let direct = direct.clone();
        move || {
            let direct = direct.clone();
            async move {
                sqlx::query("insert into items (payload) values ('d')")
                    .execute(&direct)
                    .await?;
                Ok(())
            }
        }
    })
    .await?;

    let us = |d: Duration| d.as_micros() as u64;
    let (write1, write3, direct3, reads) = (
        Samples::new(write1),
        Samples::new(write3),
        Samples::new(direct3),
        Samples::new(reads),
    );
    if let Some(dir) = &args.svg {
        std::fs::create_dir_all(dir)?;
        let no_wait = Samples::new(no_wait);
        charts::cdf_svg(
            &dir.join("write-latency-cdf.svg"),
            &format!(
                "Writes from lax, primary in syd: RTT {} ms, WAL link {} ms one way",
                args.rtt_ms,
                lag.as_millis()
            ),
            "latency (ms)",
            &[
                Series {
                    label: "forwarded, 1 statement, with the wait",
                    samples: &write1,
                },
                Series {
                    label: "forwarded, 1 statement, no_wait",
                    samples: &no_wait,
                },
                Series {
                    label: "forwarded, 3 statements, with the wait",
                    samples: &write3,
                },
                Series {
                    label: "3 statements sent directly to syd",
                    samples: &direct3,
                },
            ],
        )?;
    }
    let report = Report {
        rtt_ms: args.rtt_ms,
        replication_delay_ms: lag.as_millis() as u64,
        write1_p50_ms: round3(write1.pct(50.0)),
        write1_p99_ms: round3(write1.pct(99.0)),
        write1_floor_ms: round3(floor_ms),
        write1_overhead_ms: round3(write1.pct(50.0) - floor_ms),
        write1_machine_floor_ms: round3(machine_floor.total_ms),
        write1_overhead_vs_machine_ms: round3(write1.pct(50.0) - machine_floor.total_ms),
        machine_pingpong_p50_ms: round3(machine_floor.pingpong_ms),
        machine_transaction_p50_ms: round3(machine_floor.transaction_ms),
        machine_poll_p50_ms: round3(machine_floor.poll_ms),
        write1_rpc_p50_ms: round3(Samples::new(rpc).pct(50.0)),
        write1_primary_p50_ms: round3(Samples::new(primary).pct(50.0)),
        write1_wait_p50_ms: round3(Samples::new(wait).pct(50.0)),
        write3_p50_ms: round3(write3.pct(50.0)),
        write3_p99_ms: round3(write3.pct(99.0)),
        write3_floor_ms: round3(floor_ms),
        write3_overhead_ms: round3(write3.pct(50.0) - floor_ms),
        direct3_p50_ms: round3(direct3.pct(50.0)),
        direct3_p99_ms: round3(direct3.pct(99.0)),
        direct_mode_write1_p50_ms: round3(Samples::new(direct_mode1).pct(50.0)),
        direct_mode_write3_p50_ms: round3(Samples::new(direct_mode3).pct(50.0)),
        local_read_p50_ms: round3(reads.pct(50.0)),
        local_read_p99_ms: round3(reads.pct(99.0)),
        rpc_link_late_p50_us: us(rpc_late.p50),
        rpc_link_late_p99_us: us(rpc_late.p99),
        replication_link_late_p50_us: wal_late.map_or(0, |l| us(l.p50)),
        replication_link_late_p99_us: wal_late.map_or(0, |l| us(l.p99)),
        stale_reads,
        stale_reads_no_wait,
        fwd_writes_per_s_64: fwd.round(),
        direct_writes_per_s_64: direct_rate.round(),
        concurrency: args.concurrency,
    };
    lax.node().shutdown().await?;
    syd.node().shutdown().await?;
    direct.close().await;
    lax.local().close().await;
    syd.local().close().await;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "flypg bench repo: RTT {} ms between lax and syd, replication link {} ms one way",
        r.rtt_ms, r.replication_delay_ms
    );
    println!("{:<56} {:>10} {:>10}", "measure", "p50 ms", "p99 ms");
    for (name, p50, p99) in [
        (
            "(a) write, 1 statement, from lax (incl. replica wait)",
            r.write1_p50_ms,
            r.write1_p99_ms,
        ),
        (
            "(b) write, 3-statement mutation, from lax",
            r.write3_p50_ms,
            r.write3_p99_ms,
        ),
        (
            "(c) same 3 statements sent directly to the primary",
            r.direct3_p50_ms,
            r.direct3_p99_ms,
        ),
        (
            "(d) local read in lax",
            r.local_read_p50_ms,
            r.local_read_p99_ms,
        ),
    ] {
        println!("{name:<56} {p50:>10} {p99:>10}");
    }
    println!(
        "physical floor of a write (one way to syd + replication link): {} ms; \
         over it at p50: {} ms (1 statement), {} ms (3 statements)",
        r.write1_floor_ms, r.write1_overhead_ms, r.write3_overhead_ms
    );
    println!(
        "this machine's floor in the same run (the longer of a round trip through an identical \
         proxy, {} ms, and half of it plus the replication delay; + a bare transaction {} ms + \
         one replay poll {} ms): {} ms; the write's p50 over it: {} ms",
        r.machine_pingpong_p50_ms,
        r.machine_transaction_p50_ms,
        r.machine_poll_p50_ms,
        r.write1_machine_floor_ms,
        r.write1_overhead_vs_machine_ms
    );
    println!(
        "direct mode (WriteMode::Direct, lax runs the statements on syd over PostgreSQL), p50: \
         {} ms (1 statement), {} ms (3 statements)",
        r.direct_mode_write1_p50_ms, r.direct_mode_write3_p50_ms
    );
    println!(
        "phases of (a) at p50: RPC {} ms (of which {} ms in the transaction on the primary), \
         wait for the replica {} ms",
        r.write1_rpc_p50_ms, r.write1_primary_p50_ms, r.write1_wait_p50_ms
    );
    println!(
        "harness precision: delayed bytes delivered late by p50 {} µs / p99 {} µs (RPC link), \
         p50 {} µs / p99 {} µs (replication link)",
        r.rpc_link_late_p50_us,
        r.rpc_link_late_p99_us,
        r.replication_link_late_p50_us,
        r.replication_link_late_p99_us
    );
    println!(
        "stale reads right after a write: {} with the wait, {} with no_wait",
        r.stale_reads, r.stale_reads_no_wait
    );
    println!(
        "throughput with {} callers: forwarded writes {} /s, direct writes to the far primary {} /s",
        r.concurrency, r.fwd_writes_per_s_64, r.direct_writes_per_s_64
    );
}

async fn visible(pool: &PgPool, id: i64) -> BenchResult<bool> {
    let n: i64 = sqlx::query_scalar("select count(*) from items where id = $1")
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok(n == 1)
}

async fn pool(options: sqlx::postgres::PgConnectOptions, size: u32) -> BenchResult<PgPool> {
    Ok(fly_postgres::pool_options()
        .max_connections(size)
        .connect_with(options)
        .await?)
}
