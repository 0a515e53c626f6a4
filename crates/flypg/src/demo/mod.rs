//! `flypg demo`: two regions on one machine, one command.
//!
//! A real PostgreSQL primary (`syd`) and streaming replica (`lax`), a latency
//! proxy on the replication link and between the regions, and one todo app
//! process per region configured by env as on Fly.io; then a scripted
//! scenario against `lax` that prints what it does and how long it takes.

pub(crate) mod app_process;
mod bounded;
mod fly_walk;
pub(crate) mod http;
mod narration;
mod scenario;
mod session;
pub(crate) mod world;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fly_postgres_testkit::{Delay, LatencyProxy, PgBinaries};

use narration::say;
use world::{World, WorldSpec};

/// Options of `flypg demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Round-trip time between the primary region and the second region;
    /// replication links get half of a pair's RTT one way.
    #[arg(long, default_value_t = 60)]
    rtt_ms: u64,
    /// The regions, the primary's first (two or more). With three, the
    /// demo also reads in the third region with the cookie of a write made
    /// in the second, and writes from the third.
    #[arg(long, default_value = "syd,lax")]
    regions: String,
    /// App instances in the primary region (writes spread over them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    primary_instances: u8,
    /// A replica's apply lag, added to each replication link's half RTT.
    #[arg(long, default_value_t = 10)]
    apply_ms: u64,
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
    /// On the emulated Fly network instead (root; Linux network
    /// namespaces): the template app deployed as the deploy guide says, 2
    /// machines in each of the first two regions, DNS-only discovery,
    /// IPv6-only 6PN; a walk, a rolling and a bluegreen deploy with
    /// writers running, and a scale-out into the third region (`fra`
    /// unless `--regions` names one).
    #[arg(long, conflicts_with_all = ["serve", "primary_instances"])]
    fly: bool,
}

type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub(crate) async fn run(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    // Say how to get PostgreSQL before anything else happens.
    PgBinaries::locate()?;
    narration::to_stderr(args.json);
    let walk = async {
        if args.fly {
            fly_walk::run(&args).await
        } else {
            demo(&args).await
        }
    };
    tokio::select! {
        result = walk => result.map_err(|e| -> Box<dyn std::error::Error> { e.to_string().into() }),
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

/// The demo's regions: the first holds the primary.
pub(crate) fn parse_regions(list: &str) -> DemoResult<Vec<String>> {
    let regions: Vec<String> = list
        .split(',')
        .map(|r| r.trim().to_ascii_lowercase())
        .filter(|r| !r.is_empty())
        .collect();
    if regions.len() < 2 {
        return Err(format!("--regions needs at least two regions, got {list:?}").into());
    }
    for (i, region) in regions.iter().enumerate() {
        if region.len() > 16 || !region.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("--regions: {region:?} is not a region code like lax").into());
        }
        if regions[..i].contains(region) {
            return Err(format!("--regions: {region} is listed twice").into());
        }
    }
    Ok(regions)
}

/// The round trip between regions `i` and `j` (indexes into the list):
/// `rtt` × j between the primary (0) and region j, and `rtt` × (i + j) × 7/9
/// between two replica regions: syd-lax 60, syd-fra 120, lax-fra 140 ms
/// with the default 60.
pub(crate) fn rtt_between(rtt: Duration, i: usize, j: usize) -> Duration {
    let (i, j) = (i.min(j), i.max(j));
    if i == 0 {
        rtt * j as u32
    } else {
        rtt * (i + j) as u32 * 7 / 9
    }
}

async fn demo(args: &DemoArgs) -> DemoResult<()> {
    let regions = parse_regions(&args.regions)?;
    let rtt = Duration::from_millis(args.rtt_ms);
    let primary = regions[0].as_str();
    let lax_region = regions[1].as_str();
    eprintln!(
        "flypg demo: region {primary} holds the primary, {} stream replicas; round trips: {}",
        regions[1..].join(" and "),
        (0..regions.len())
            .flat_map(|i| (i + 1..regions.len()).map(move |j| (i, j)))
            .map(|(i, j)| format!(
                "{}-{} {} ms",
                regions[i],
                regions[j],
                rtt_between(rtt, i, j).as_millis()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // The third region reads from the primary when its replica keeps a
    // token waiting longer than this (step 10).
    let max_wait = Duration::from_millis(100);
    let world = World::start(WorldSpec {
        regions: &regions,
        rtt,
        apply: Duration::from_millis(args.apply_ms),
        primary_instances: usize::from(args.primary_instances),
        third_region_max_wait: max_wait,
        app_env: Vec::new(),
    })
    .await?;
    let (topology, primaries, replicas) = (&world.topology, &world.primaries, &world.replicas);
    let syd = &primaries[0];
    let lax = &replicas[0];

    let far_primary = LatencyProxy::start(
        SocketAddr::from(([127, 0, 0, 1], topology.primary().port())),
        Delay::rtt(rtt_between(rtt, 0, 1)),
    )
    .await?;
    let direct_url = format!("postgres://postgres@{}/postgres", far_primary.local_addr());
    let mut summary = scenario::run(lax, lax_region, &direct_url, args.writes).await?;
    if let Some(fra) = replicas.get(1) {
        summary.cross_region =
            Some(scenario::across_regions(lax, lax_region, fra, &regions[2], args.writes).await?);
        let steps = session::Regions {
            primary: syd,
            fresh: (lax_region, lax),
            lagging: (&regions[2], fra),
            lagging_replica: topology.replica(&regions[2])?,
            max_wait,
            primary_rtt: rtt_between(rtt, 0, 2),
        };
        summary.session = Some(session::run(steps, args.writes).await?);
        let place = bounded::Place {
            primary: syd,
            region: &regions[2],
            app: fra,
            replica: topology.replica(&regions[2])?,
        };
        summary.bounded = Some(bounded::run(place, args.writes).await?);
    }
    let http = http::Http::new();
    for instance in primaries {
        let answer = http.get(&instance.url("/stats")).await?;
        summary
            .primary_instance_writes
            .push(answer.body["served_writes"].as_u64().unwrap_or(0));
    }
    summary.print(args.rtt_ms, args.json);

    if args.serve {
        say!("\nEvery region keeps running. Each region's app:");
        for instance in primaries {
            say!("  {primary}: {}", instance.url("/"));
        }
        for (region, app) in regions[1..].iter().zip(replicas) {
            say!("  {region}: {}", app.url("/"));
        }
        say!("Try:");
        say!(
            "  curl -s {}            # which region is this?",
            lax.url("/")
        );
        say!(
            "  curl -s {}       # read in lax (local replica)",
            lax.url("/todos")
        );
        say!(
            "  curl -s -X POST -H 'content-type: application/json' -d '{{\"title\":\"from curl\"}}' {}",
            lax.url("/todos")
        );
        say!(
            "  curl -s -X POST -H 'content-type: application/json' -d '{{\"title\":\"fast\"}}' '{}'  # no wait",
            lax.url("/todos?wait=false")
        );
        say!("  curl -s {}       # the primary region", syd.url("/todos"));
        say!("Ctrl-C (or SIGTERM) stops everything.");
        crate::signal::stop_requested().await;
        eprintln!("stopping the apps and PostgreSQL");
    }
    drop(world);
    if summary.consistent() {
        Ok(())
    } else {
        Err("the consistency checks did not hold (see the summary)".into())
    }
}
