//! `flypg demo`: two regions on one machine, one command.
//!
//! A real PostgreSQL primary (`syd`) and streaming replica (`lax`), a latency
//! proxy on the replication link and between the regions, and one todo app
//! process per region configured by env as on Fly.io; then a scripted
//! scenario against `lax` that prints what it does and how long it takes.

pub(crate) mod app_process;
pub(crate) mod http;
mod scenario;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fly_postgres_testkit::{Delay, LatencyProxy, PgBinaries, PgCluster};

use app_process::spawn_todo_app;

/// Options of `flypg demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Round-trip time between the regions; the replication link gets the
    /// same delay one way.
    #[arg(long, default_value_t = 60)]
    rtt_ms: u64,
    /// Writes per measured step.
    #[arg(long, default_value_t = 10)]
    writes: usize,
    /// Keep both regions running after the scenario, print URLs and curl
    /// commands, stop on Ctrl-C.
    #[arg(long)]
    serve: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub(crate) async fn run(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    // Say how to get PostgreSQL before anything else happens.
    PgBinaries::locate()?;
    tokio::select! {
        result = demo(&args) => result.map_err(|e| -> Box<dyn std::error::Error> { e.to_string().into() }),
        _ = crate::signal::stop_requested() => {
            eprintln!("\ninterrupted: stopping the apps and PostgreSQL");
            Err("interrupted".into())
        }
    }
}

/// Prints a step and how long it took.
pub(crate) struct Progress {
    started: Instant,
}

impl Progress {
    pub(crate) fn start(what: &str) -> Self {
        eprint!("  {what} ... ");
        Progress {
            started: Instant::now(),
        }
    }

    pub(crate) fn done(self) {
        eprintln!("done ({:.1} s)", self.started.elapsed().as_secs_f64());
    }
}

async fn demo(args: &DemoArgs) -> DemoResult<()> {
    let rtt = Duration::from_millis(args.rtt_ms);
    eprintln!(
        "flypg demo: region syd holds the primary, region lax a streaming replica; \
         {} ms round trips between them",
        args.rtt_ms
    );
    let step = Progress::start("starting PostgreSQL primary (syd) and streaming replica (lax)");
    let cluster = PgCluster::builder().replication_delay(rtt).start().await?;
    step.done();

    let secret = format!("demo-{:032x}", rand::random::<u128>());
    let common = |region: &str| app_process::todo_env(region, &secret);

    let step = Progress::start("starting the todo app in syd (migrates the schema)");
    // lax reaches syd through this link; syd accepts calls signed for it.
    let rpc_link = LatencyProxy::bind(Delay::rtt(rtt)).await?;
    let mut env = common("syd");
    env.push(("DATABASE_URL", cluster.primary().url()));
    env.push(("FLY_RPC_ADVERTISE", rpc_link.local_addr().to_string()));
    let syd = spawn_todo_app(env).await?;
    step.done();

    let step = Progress::start("starting the todo app in lax (reads its replica, writes via syd)");
    rpc_link.connect_to(syd.rpc());
    cluster.wait_for_catch_up(Duration::from_secs(30)).await?;
    let mut env = common("lax");
    env.push(("DATABASE_URL", cluster.replica().url()));
    env.push(("FLY_RPC_PEERS", format!("syd={}", rpc_link.local_addr())));
    let lax = spawn_todo_app(env).await?;
    step.done();

    let far_primary = LatencyProxy::start(
        SocketAddr::from(([127, 0, 0, 1], cluster.primary().port())),
        Delay::rtt(rtt),
    )
    .await?;
    let direct_url = format!("postgres://postgres@{}/postgres", far_primary.local_addr());
    let summary = scenario::run(&lax, &direct_url, args.writes).await?;
    summary.print(args.rtt_ms, args.json);

    if args.serve {
        println!("\nBoth regions keep running. Try:");
        println!(
            "  curl -s {}            # which region is this?",
            lax.url("/")
        );
        println!(
            "  curl -s {}       # read in lax (local replica)",
            lax.url("/todos")
        );
        println!(
            "  curl -s -X POST -H 'content-type: application/json' -d '{{\"title\":\"from curl\"}}' {}",
            lax.url("/todos")
        );
        println!(
            "  curl -s -X POST -H 'content-type: application/json' -d '{{\"title\":\"fast\"}}' '{}'  # no wait",
            lax.url("/todos?wait=false")
        );
        println!("  curl -s {}       # the primary region", syd.url("/todos"));
        println!("Ctrl-C (or SIGTERM) stops everything.");
        crate::signal::stop_requested().await;
        eprintln!("stopping the apps and PostgreSQL");
    }
    drop(lax);
    drop(syd);
    drop(cluster);
    if summary.consistent() {
        Ok(())
    } else {
        Err("the consistency checks did not hold (see the summary)".into())
    }
}
