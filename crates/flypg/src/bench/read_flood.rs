//! `flypg bench flood`: a public-port flood of reads, with and without
//! `fly-consistency: strong`, against the forwarded writes of the same
//! instance. Strong reads cost the primary region a question each unless
//! the library shares them; this measures what the flood costs the writes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use fly_postgres::sqlx::{self, postgres::PgPoolOptions};
use fly_postgres::{Consistency, ConsistencyLayer, Repo};
use fly_postgres_testkit::{Delay, LatencyProxy, PgCluster};
use fly_rpc::StaticPeers;
use hyper::Method;
use serde::Serialize;

use super::loopback_node::node;
use super::mutations::{InsertItem, SCHEMA};
use crate::demo::http::Http;
use crate::percentiles::{Samples, millis, round3};

/// Options of `flypg bench flood`.
#[derive(Debug, clap::Args)]
pub(crate) struct FloodArgs {
    /// Round-trip time between lax and syd (the RPC link; the WAL link is
    /// delayed half of it).
    #[arg(long, default_value_t = 20)]
    rtt_ms: u64,
    /// Concurrent readers flooding lax's HTTP port.
    #[arg(long, default_value_t = 200)]
    readers: usize,
    /// Seconds of each phase; the phases alternate, twice each.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    rtt_ms: u64,
    readers: usize,
    seconds_per_phase: u64,
    /// Forwarded writes during the flood without the header.
    plain_writes: usize,
    plain_write_p50_ms: f64,
    plain_write_p99_ms: f64,
    plain_reads_per_s: f64,
    /// The same, every read asking for `strong`.
    strong_writes: usize,
    strong_write_p50_ms: f64,
    strong_write_p99_ms: f64,
    strong_reads_per_s: f64,
    /// strong p99 over plain p99, same run.
    strong_vs_plain_write_p99: f64,
    /// Position questions lax sent to syd per second while strong reads
    /// flooded it, and position queries syd ran.
    position_calls_per_s: f64,
    position_queries_per_s: f64,
    /// Reads that did not answer 200.
    failed_reads: u64,
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

async fn count(State(repo): State<Repo>) -> String {
    sqlx::query_scalar::<_, i64>("select count(*) from items")
        .fetch_one(repo.reader())
        .await
        .map_or_else(|e| format!("error: {e}"), |n| n.to_string())
}

pub(crate) async fn run(args: FloodArgs) -> BenchResult<()> {
    if args.readers == 0 || args.seconds == 0 {
        return Err("--readers and --seconds must be at least 1".into());
    }
    let say = |text: &str| {
        if !args.json {
            eprintln!("{text}");
        }
    };
    let rtt = Duration::from_millis(args.rtt_ms);
    say("starting primary (syd) and replica (lax), the RPC link and the WAL across the ocean...");
    let cluster = PgCluster::builder()
        .replication_delay(rtt / 2)
        .start()
        .await?;
    let primary = PgPoolOptions::new()
        .max_connections(10)
        .connect_with(cluster.primary().connect_options())
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&primary).await?;
    let rpc_link = LatencyProxy::bind(Delay::rtt(rtt)).await?;
    let syd = Repo::builder()
        .pool(primary)
        .node(node("syd", StaticPeers::new()).advertise(rpc_link.local_addr()))
        .mutation::<InsertItem>()
        .start()
        .await?;
    syd.migrate().await?;
    rpc_link.connect_to(syd.node().local_addr().ok_or("no RPC listener")?);
    let lax = Repo::builder()
        .pool(
            PgPoolOptions::new()
                .max_connections(16)
                .connect_with(cluster.replica().connect_options())
                .await?,
        )
        .node(node(
            "lax",
            StaticPeers::new().with("syd", rpc_link.local_addr()),
        ))
        .mutation::<InsertItem>()
        .start()
        .await?;
    cluster.wait_for_catch_up(Duration::from_secs(30)).await?;
    // lax's public port: the app's reads behind the consistency layer,
    // where the app lets clients ask for strong reads.
    let app = Router::new()
        .route("/items", get(count))
        .with_state(lax.clone())
        .layer(ConsistencyLayer::new(lax.clone()).max_header_mode(Consistency::Strong));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}/items", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fly_rpc::serve_app(listener, app, async {
        let _ = stopped.await;
    }));
    lax.write(InsertItem {
        payload: "warm".into(),
    })
    .await?;

    let mut plain = Phase::default();
    let mut strong = Phase::default();
    let length = Duration::from_secs(args.seconds);
    for round in 1..=2 {
        for (with_header, phase) in [(false, &mut plain), (true, &mut strong)] {
            say(&format!(
                "round {round}: {} readers{} for {} s, forwarded writes meanwhile...",
                args.readers,
                if with_header {
                    " asking for strong"
                } else {
                    ""
                },
                args.seconds
            ));
            let (calls, queries) = (lax.stats().position_calls, syd.stats().position_queries);
            flood(&lax, &url, args.readers, with_header, length, phase).await?;
            phase.position_calls += lax.stats().position_calls - calls;
            phase.position_queries += syd.stats().position_queries - queries;
        }
    }
    let _ = stop.send(());
    let _ = server.await;

    let seconds = 2.0 * args.seconds as f64;
    let (plain_writes, strong_writes) = (Samples::new(plain.writes), Samples::new(strong.writes));
    let report = Report {
        rtt_ms: args.rtt_ms,
        readers: args.readers,
        seconds_per_phase: args.seconds,
        plain_writes: plain_writes.len(),
        plain_write_p50_ms: round3(plain_writes.pct(50.0)),
        plain_write_p99_ms: round3(plain_writes.pct(99.0)),
        plain_reads_per_s: (plain.reads as f64 / seconds).round(),
        strong_writes: strong_writes.len(),
        strong_write_p50_ms: round3(strong_writes.pct(50.0)),
        strong_write_p99_ms: round3(strong_writes.pct(99.0)),
        strong_reads_per_s: (strong.reads as f64 / seconds).round(),
        strong_vs_plain_write_p99: round3(strong_writes.pct(99.0) / plain_writes.pct(99.0)),
        position_calls_per_s: round3(strong.position_calls as f64 / seconds),
        position_queries_per_s: round3(strong.position_queries as f64 / seconds),
        failed_reads: plain.failed + strong.failed,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "forwarded writes during a flood of {} readers (RTT {} ms):\n  \
             without the header: p50 {} ms, p99 {} ms ({} reads/s)\n  \
             with strong:        p50 {} ms, p99 {} ms ({} reads/s)\n  \
             p99 strong/plain {}; position questions {}/s, queries on syd {}/s; failed reads {}",
            report.readers,
            report.rtt_ms,
            report.plain_write_p50_ms,
            report.plain_write_p99_ms,
            report.plain_reads_per_s,
            report.strong_write_p50_ms,
            report.strong_write_p99_ms,
            report.strong_reads_per_s,
            report.strong_vs_plain_write_p99,
            report.position_calls_per_s,
            report.position_queries_per_s,
            report.failed_reads,
        );
    }
    Ok(())
}

/// What one kind of flood measured, over its rounds.
#[derive(Default)]
struct Phase {
    writes: Vec<f64>,
    reads: u64,
    failed: u64,
    position_calls: u64,
    position_queries: u64,
}

/// `readers` HTTP clients reading back to back for `length` while one
/// writer forwards writes from lax, one after the other.
async fn flood(
    lax: &Repo,
    url: &str,
    readers: usize,
    strong: bool,
    length: Duration,
    phase: &mut Phase,
) -> BenchResult<()> {
    let done = Arc::new(AtomicBool::new(false));
    let (reads, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let http = Http::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..readers {
        let (http, url) = (http.clone(), url.to_owned());
        let (done, reads, failed) = (Arc::clone(&done), Arc::clone(&reads), Arc::clone(&failed));
        tasks.spawn(async move {
            let headers: &[(&str, &str)] = if strong {
                &[("fly-consistency", "strong")]
            } else {
                &[]
            };
            while !done.load(Ordering::Relaxed) {
                match http.send_with(Method::GET, &url, None, headers).await {
                    Ok(answer) if answer.status.is_success() => {
                        reads.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    let until = Instant::now() + length;
    while Instant::now() < until {
        let started = Instant::now();
        lax.write(InsertItem {
            payload: "during the flood".into(),
        })
        .await?;
        phase.writes.push(millis(started.elapsed()));
    }
    done.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    phase.reads += reads.load(Ordering::Relaxed);
    phase.failed += failed.load(Ordering::Relaxed);
    Ok(())
}
