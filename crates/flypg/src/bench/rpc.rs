//! `flypg bench rpc`: round trips of a no-op procedure between two nodes on
//! loopback, throughput with many callers, and the cost over a 60 ms RTT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fly_postgres_testkit::{Delay, LatencyProxy};
use fly_rpc::{Node, Regions, StaticPeers};
use serde::Serialize;

use super::throughput::throughput;
use crate::percentiles::{Samples, millis, round3};
use crate::probe::Noop;

/// Options of `flypg bench rpc`.
#[derive(Debug, clap::Args)]
pub(crate) struct RpcArgs {
    /// Sequential calls measured one by one.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Concurrent callers for the throughput run.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Length of the throughput run in seconds.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Round-trip time added by the latency proxy for the cross-region run.
    #[arg(long, default_value_t = 60)]
    rtt_ms: u64,
    /// Sequential calls through the latency proxy (each paired with a bare
    /// TCP ping-pong through an identical proxy).
    #[arg(long, default_value_t = 100)]
    rtt_calls: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    noop_p50_ms: f64,
    noop_p99_ms: f64,
    calls_per_s_64: f64,
    concurrency: usize,
    rtt_ms: u64,
    rtt60_p50_ms: f64,
    rtt60_p99_ms: f64,
    rtt60_overhead_p50_ms: f64,
    proxy_only_p50_ms: f64,
    /// The RPC's own cost: its p50 over a bare TCP ping-pong through the
    /// same proxy (the physical floor of a call).
    rtt60_overhead_vs_proxy_ms: f64,
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

pub(crate) async fn run(args: RpcArgs) -> BenchResult<()> {
    if args.calls == 0 || args.concurrency == 0 || args.rtt_calls == 0 {
        return Err("--calls, --concurrency and --rtt-calls must be at least 1".into());
    }
    let secret = hex_secret();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let rtt = Duration::from_millis(args.rtt_ms);
    // Bound before the node starts: it accepts requests signed for this
    // address.
    let proxy = LatencyProxy::bind(Delay::rtt(rtt)).await?;
    let syd = Node::builder()
        .regions(Regions::new("syd", "syd"))
        .listen(loopback)
        .secret(&secret)
        .advertise(proxy.local_addr())
        .procedure::<Noop>(Arc::new("syd".to_owned()))
        .start()
        .await?;
    proxy.connect_to(syd.local_addr().expect("rpc listener"));
    let lax = Node::builder()
        .regions(Regions::new("lax", "syd"))
        .listen(loopback)
        .secret(&secret)
        .discovery(StaticPeers::new().with("syd", syd.local_addr().expect("rpc listener")))
        .start()
        .await?;

    for _ in 0..100 {
        lax.call_primary(Noop).await?;
    }
    if !args.json {
        eprintln!(
            "{} sequential no-op calls lax -> syd on loopback...",
            args.calls
        );
    }
    let sequential = time_calls(&lax, args.calls).await?;

    if !args.json {
        eprintln!(
            "{} concurrent callers for {} s...",
            args.concurrency, args.seconds
        );
    }
    let throughput = throughput(args.concurrency, Duration::from_secs(args.seconds), {
        let lax = lax.clone();
        move || {
            let lax = lax.clone();
            async move {
                lax.call_primary(Noop).await?;
                Ok(())
            }
        }
    })
    .await?;

    if !args.json {
        eprintln!(
            "{} calls through a latency proxy with RTT {} ms...",
            args.rtt_calls, args.rtt_ms
        );
    }
    let far = Node::builder()
        .regions(Regions::new("lax", "syd"))
        .listen(loopback)
        .secret(&secret)
        .discovery(StaticPeers::new().with("syd", proxy.local_addr()))
        .start()
        .await?;
    // The first call also opens the connection (TCP + HTTP/2 preface).
    for _ in 0..3 {
        far.call_primary(Noop).await?;
    }
    let (remote, proxy_only) = rpc_and_ping_in_turn(&far, rtt, args.rtt_calls).await?;

    let report = Report {
        noop_p50_ms: round3(sequential.pct(50.0)),
        noop_p99_ms: round3(sequential.pct(99.0)),
        calls_per_s_64: throughput.round(),
        concurrency: args.concurrency,
        rtt_ms: args.rtt_ms,
        rtt60_p50_ms: round3(remote.pct(50.0)),
        rtt60_p99_ms: round3(remote.pct(99.0)),
        rtt60_overhead_p50_ms: round3(remote.pct(50.0) - args.rtt_ms as f64),
        proxy_only_p50_ms: round3(proxy_only.pct(50.0)),
        rtt60_overhead_vs_proxy_ms: round3(remote.pct(50.0) - proxy_only.pct(50.0)),
    };
    far.shutdown().await?;
    lax.shutdown().await?;
    syd.shutdown().await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("flypg bench rpc");
        println!("{:<52} {:>10}", "metric", "value");
        for (name, value) in [
            (
                "no-op call lax -> syd, loopback, p50 (ms)",
                report.noop_p50_ms,
            ),
            (
                "no-op call lax -> syd, loopback, p99 (ms)",
                report.noop_p99_ms,
            ),
            (
                "calls per second, concurrent callers",
                report.calls_per_s_64,
            ),
            ("no-op call over the proxy, p50 (ms)", report.rtt60_p50_ms),
            ("no-op call over the proxy, p99 (ms)", report.rtt60_p99_ms),
            (
                "  of which above one RTT, p50 (ms)",
                report.rtt60_overhead_p50_ms,
            ),
            (
                "bare TCP ping-pong over the same proxy, p50 (ms)",
                report.proxy_only_p50_ms,
            ),
            (
                "  RPC overhead over that floor, p50 (ms)",
                report.rtt60_overhead_vs_proxy_ms,
            ),
        ] {
            println!("{name:<52} {value:>10}");
        }
        println!(
            "(concurrency {}, RTT {} ms)",
            report.concurrency, report.rtt_ms
        );
    }
    Ok(())
}

async fn time_calls(node: &Node, calls: usize) -> BenchResult<Samples> {
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        node.call_primary(Noop).await?;
        samples.push(millis(started.elapsed()));
    }
    Ok(Samples::new(samples))
}

/// `calls` RPCs through the proxy, each followed by a 1-byte TCP ping-pong
/// through a proxy with the same delay: what the proxy itself costs, to
/// tell it apart from the RPC's own overhead. Taken in turn, so both see
/// the same machine (a burst of load elsewhere would otherwise land on one
/// series only).
async fn rpc_and_ping_in_turn(
    node: &Node,
    rtt: Duration,
    calls: usize,
) -> BenchResult<(Samples, Samples)> {
    let mut ping_pong = super::ping_pong::PingPong::start(rtt).await?;
    let (mut rpcs, mut pings) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
    for _ in 0..calls {
        let started = Instant::now();
        node.call_primary(Noop).await?;
        rpcs.push(millis(started.elapsed()));
        pings.push(millis(ping_pong.round_trip().await?));
    }
    Ok((Samples::new(rpcs), Samples::new(pings)))
}

fn hex_secret() -> String {
    // Any 16+ bytes do for a benchmark on loopback.
    format!("bench-secret-{:x}", std::process::id()).repeat(2)
}
