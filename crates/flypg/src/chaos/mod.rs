//! `flypg chaos`: fault drills against real processes on one machine, each
//! checked against a ledger of what every client was told.
//!
//! Each scenario starts its own world (PostgreSQL primary + streaming
//! replica, the todo app in syd and lax as processes, latency proxies),
//! runs clients that write a ledger row through lax and read it back at
//! once, injects its faults, then compares what each client was told with
//! the rows on the primary.

pub(crate) mod clients;
mod faults;
mod fly_faults;
mod fly_scenario;
pub(crate) mod ledger;
mod report;
mod world;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::demo::http::Http;
use report::ScenarioReport;
use world::World;

pub(crate) type ChaosResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A fault drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// Concurrent clients while pgbench loads the primary.
    Load,
    /// kill -9 of the syd instance (mid-stream, and right after a commit),
    /// a 2 s link cut, a 3 s replay pause.
    Crash,
    /// Two syd instances restarted one after the other with SIGTERM.
    Rolling,
    /// The lax replica stopped for a while; lax falls back to a pool on the
    /// primary, and readers ask for rows written in syd over a second
    /// before with `fly-consistency: bounded=1s`.
    ReplicaDown,
    /// The syd primary killed, its synchronous standby promoted, the
    /// leader address moved: no acknowledged write may be lost.
    Failover,
    /// The same with an asynchronous standby: acknowledged writes not yet
    /// streamed die with the old primary (counted as `lost`, not a broken
    /// promise: that is what asynchronous replication means).
    FailoverAsync,
    /// A rolling deploy that adds the ledger's mutation: one syd instance
    /// runs the old build without it, then is replaced by the new one.
    Skew,
    /// Silence, as a network partition gives it (connections open, nothing
    /// delivered), for 3 s in turn on the lax -> syd RPC link, on syd's
    /// link to its database, and on the lax replica's WAL link.
    Partition,
    /// The RPC secret rotated in three rolling deploys of every instance.
    Rotate,
    /// On the emulated Fly network (root): `fly deploy` of the template
    /// app, rolling over a machine left on the old build, then bluegreen
    /// to new machines at new addresses, found through DNS only.
    FlyDeploy,
    /// On the emulated Fly network (root): a killed machine still listed
    /// in DNS, a gone one still listed with its address silent, a new one
    /// listed before it listens, and `fly secrets set` rotating the RPC
    /// secret.
    FlyDnsChurn,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Load => "load",
            Scenario::Crash => "crash",
            Scenario::Rolling => "rolling",
            Scenario::ReplicaDown => "replica-down",
            Scenario::Failover => "failover",
            Scenario::FailoverAsync => "failover-async",
            Scenario::Skew => "skew",
            Scenario::Rotate => "rotate",
            Scenario::Partition => "partition",
            Scenario::FlyDeploy => "fly-deploy",
            Scenario::FlyDnsChurn => "fly-dns-churn",
        }
    }

    /// Whether it runs on the emulated Fly network.
    fn on_fly(self) -> bool {
        matches!(self, Scenario::FlyDeploy | Scenario::FlyDnsChurn)
    }

    fn syd_instances(self) -> usize {
        match self {
            Scenario::Rolling | Scenario::Skew | Scenario::Rotate => 2,
            _ => 1,
        }
    }

    /// Whether clients also write through the primary region's instance.
    fn writes_in_syd(self) -> bool {
        matches!(self, Scenario::Failover | Scenario::FailoverAsync)
    }

    fn standby(self) -> world::Standby {
        match self {
            Scenario::Failover => world::Standby::Synchronous,
            Scenario::FailoverAsync => world::Standby::Asynchronous,
            _ => world::Standby::None,
        }
    }

    /// The core promises, except that an asynchronous failover may lose
    /// what the standby had not received.
    fn core_promises_held(self, report: &ScenarioReport) -> bool {
        match self {
            Scenario::FailoverAsync => {
                let mut without_loss = report.clone();
                without_loss.lost = 0;
                without_loss.core_promises_held()
            }
            _ => report.core_promises_held(),
        }
    }

    /// What this scenario promises beyond the ledger's core promises.
    fn extra_promises_held(self, report: &ScenarioReport) -> bool {
        match self {
            // A deploy must cost latency, never an error.
            // ... and both instances took writes before.
            Scenario::Rolling => {
                report.error_count() == 0
                    && report.extra.get("clean_exits") == Some(&json!(2))
                    && report
                        .extra
                        .get("syd_split")
                        .and_then(|s| s.as_array())
                        .is_some_and(|s| s.len() == 2 && s.iter().all(|n| n.as_u64() > Some(0)))
            }
            // The replica came back; reads bounded to 1 s went to the
            // primary meanwhile, and none missed a row older than that.
            Scenario::ReplicaDown => {
                let count = |key: &str| report.extra.get(key).and_then(|v| v.as_u64());
                report
                    .extra
                    .get("recovery_ms")
                    .is_some_and(|v| !v.is_null())
                    && count("bounded_stale_beyond_bound") == Some(0)
                    && count("bounded_from_primary").is_some_and(|n| n > 0)
            }
            // Writes resumed without restarting any app, and no writer in
            // either region saw an error.
            Scenario::Failover => {
                report.extra.get("resumed_ms").is_some_and(|v| !v.is_null())
                    && report.write_error_count() == 0
            }
            Scenario::FailoverAsync => report.extra.get("resumed_ms").is_some_and(|v| !v.is_null()),
            // A deploy, whatever it changes, costs latency, never an error.
            Scenario::Skew | Scenario::Rotate => {
                report.error_count() == 0
                    && report.extra.get("clean_exits").and_then(|n| n.as_u64())
                        == report.extra.get("restarts").and_then(|n| n.as_u64())
            }
            // The load it is named for really ran.
            Scenario::Load => report
                .extra
                .get("pgbench_tps")
                .and_then(|tps| tps.as_f64())
                .is_some_and(|tps| tps > 0.0),
            // Each silence ended and the drill's writes still carried on.
            Scenario::Crash | Scenario::Partition => true,
            // Deploys cost latency, never an error; every machine was
            // replaced, bluegreen's at new addresses, and each replaced
            // syd machine served forwarded writes.
            Scenario::FlyDeploy => {
                report.error_count() == 0
                    && report.extra.get("restarts") == Some(&json!(8))
                    && report.extra.get("clean_exits") == Some(&json!(8))
                    && report.extra.get("new_addresses") == Some(&json!(4))
                    && report
                        .extra
                        .get("first_forwarded_write_ms")
                        .is_some_and(|v| v["replacements"].as_u64().is_some_and(|n| n >= 3))
            }
            // A machine gone but listed costs a head start, not a connect
            // timeout: the worst write then is at most 250 ms over the
            // median before.
            Scenario::FlyDnsChurn => report
                .extra
                .get("gone_but_listed")
                .and_then(|g| g["worst_over_median_ms"].as_f64())
                .is_some_and(|ms| ms <= 250.0),
        }
    }
}

/// Options of `flypg chaos`.
#[derive(Debug, clap::Args)]
pub(crate) struct ChaosArgs {
    /// How long each scenario's clients run (at least as long as its faults
    /// take).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Concurrent clients writing through lax (twice as many in `load`).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Round trip between the regions; the replication link gets half of it
    /// one way.
    #[arg(long, default_value_t = 20)]
    rtt_ms: u64,
    /// How long `replica-down` keeps the lax replica stopped.
    #[arg(long, default_value_t = 10)]
    replica_down_seconds: u64,
    /// Which scenarios to run (default: all but `fly-deploy` and
    /// `fly-dns-churn`, which need root for the emulated Fly network).
    #[arg(long, value_delimiter = ',', value_enum)]
    scenarios: Vec<Scenario>,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// For the drills' own test: hold every request on its way to syd
    /// while `crash` waits for a commit, so that fault cannot happen and
    /// the scenario must fail.
    #[arg(long, hide = true)]
    drill_starve_commits: bool,
}

pub(crate) async fn run(args: ChaosArgs) -> Result<(), Box<dyn std::error::Error>> {
    fly_postgres_testkit::PgBinaries::locate()?;
    let scenarios = if args.scenarios.is_empty() {
        vec![
            Scenario::Load,
            Scenario::Crash,
            Scenario::Rolling,
            Scenario::ReplicaDown,
            Scenario::Failover,
            Scenario::FailoverAsync,
            Scenario::Skew,
            Scenario::Rotate,
            Scenario::Partition,
        ]
    } else {
        args.scenarios.clone()
    };
    let mut reports = Vec::new();
    for scenario in scenarios {
        eprint!("  chaos: {} ... ", scenario.name());
        let started = Instant::now();
        let report = tokio::select! {
            report = run_scenario(scenario, &args) => report.map_err(|e| -> Box<dyn std::error::Error> {
                format!("scenario {} could not run: {e}", scenario.name()).into()
            })?,
            _ = crate::signal::stop_requested() => return Err("interrupted: the apps and PostgreSQL are stopped".into()),
        };
        eprintln!(
            "{} writes, promises {} ({:.1} s)",
            report.writes,
            if report.promises_held {
                "held"
            } else {
                "BROKEN"
            },
            started.elapsed().as_secs_f64()
        );
        reports.push(report);
    }
    let held = reports.iter().all(|r| r.promises_held);
    if args.json {
        let scenarios: serde_json::Map<String, serde_json::Value> = reports
            .iter()
            .map(|r| {
                (
                    r.scenario.clone(),
                    serde_json::to_value(r).unwrap_or_default(),
                )
            })
            .collect();
        let out = json!({
            "seconds": args.seconds,
            "clients": args.clients,
            // The Fly world adds no latency between regions.
            "rtt_ms": if reports.iter().all(|r| r.scenario.starts_with("fly-")) {
                None
            } else {
                Some(args.rtt_ms)
            },
            "scenarios": scenarios,
            "promises_held": held,
        });
        println!("{out}");
    } else {
        report::print_table(&reports);
        println!(
            "promises: {}",
            if held { "HELD" } else { "BROKEN (see above)" }
        );
    }
    if held {
        Ok(())
    } else {
        Err("a promise broke (see the report)".into())
    }
}

async fn run_scenario(scenario: Scenario, args: &ChaosArgs) -> ChaosResult<ScenarioReport> {
    if scenario.on_fly() {
        let mut report = fly_scenario::run(scenario, args).await?;
        report.promises_held =
            scenario.core_promises_held(&report) && scenario.extra_promises_held(&report);
        return Ok(report);
    }
    let rtt = Duration::from_millis(args.rtt_ms);
    let seconds = Duration::from_secs(args.seconds.max(1));
    let mut world = World::start(
        rtt,
        scenario.syd_instances(),
        scenario.standby(),
        scenario == Scenario::Skew,
        if scenario == Scenario::ReplicaDown {
            world::LaxFallback::PrimaryPool
        } else {
            world::LaxFallback::None
        },
    )
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let http = Http::new();
    let count = if scenario == Scenario::Load {
        args.clients * 2
    } else {
        args.clients
    }
    .max(1);
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..count {
        clients.spawn(clients::run(
            http.clone(),
            world.lax.url(""),
            format!("{}-{c}", scenario.name()),
            Arc::clone(&stop),
        ));
    }
    let syd_prefix = format!("{}-syd-", scenario.name());
    if scenario.writes_in_syd() {
        for c in 0..(count / 2).max(2) {
            clients.spawn(clients::run(
                http.clone(),
                world.syd[0].url(""),
                format!("{syd_prefix}{c}"),
                Arc::clone(&stop),
            ));
        }
    }
    let mut bounded = tokio::task::JoinSet::new();
    if scenario == Scenario::ReplicaDown {
        for c in 0..3 {
            bounded.spawn(clients::bounded_reader(
                http.clone(),
                world.syd[0].url(""),
                world.lax.url(""),
                format!("{}-bounded-{c}", scenario.name()),
                Arc::clone(&stop),
            ));
            // Spread over the bound, so reads land all through the fault.
            tokio::time::sleep(clients::BOUND / 3).await;
        }
    }
    let started = Instant::now();
    let mut notes = faults::Notes::default();
    let injected = faults::inject(
        scenario,
        &mut world,
        seconds,
        Duration::from_secs(args.replica_down_seconds),
        started,
        &mut notes,
        faults::Drill {
            starve_commits: args.drill_starve_commits,
        },
    )
    .await;
    if let Err(e) = injected {
        stop.store(true, Ordering::Relaxed);
        return Err(e);
    }
    tokio::time::sleep(seconds.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    let mut ops = Vec::new();
    while let Some(done) = clients.join_next().await {
        ops.extend(done?);
    }
    let mut reads = clients::BoundedReads::default();
    while let Some(done) = bounded.join_next().await {
        reads.add(done?);
    }
    let rows = ledger::rows_by_token(world.topology.primary()).await?;
    let mut report = ledger::reconcile(scenario.name(), &ops, &rows);
    report.faults = notes.faults;
    report.faults_not_done = notes.not_done;
    report.extra = notes.extra;
    if scenario == Scenario::ReplicaDown {
        for (key, value) in [
            ("bounded_reads", reads.reads),
            ("bounded_from_primary", reads.from_primary),
            ("bounded_stale_beyond_bound", reads.stale),
            ("bounded_failed", reads.failed),
        ] {
            report.extra.insert(key.into(), json!(value));
        }
    }
    if scenario.writes_in_syd() {
        // What a caller in the primary region waited, at worst, across the
        // failover.
        let worst = ops
            .iter()
            .filter(|op| op.token.starts_with(&syd_prefix))
            .map(|op| op.write_ms)
            .fold(0.0, f64::max);
        report
            .extra
            .insert("syd_max_write_ms".into(), json!(worst.round()));
    }
    report.promises_held =
        scenario.core_promises_held(&report) && scenario.extra_promises_held(&report);
    drop(world);
    Ok(report)
}
