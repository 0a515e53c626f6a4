//! The drills on the emulated Fly network: the template app deployed as
//! the guide says (see [`crate::fly_world`]), clients writing ledger rows
//! through Fly's proxy in each region and reading them back, while the
//! app is deployed, rotated and churned as Fly does it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::faults::Notes;
use super::report::ScenarioReport;
use super::{ChaosArgs, ChaosResult, Scenario, clients, fly_faults, ledger};
use crate::demo::http::Http;
use crate::fly_world::{FlyWorld, Plan};

/// Runs `scenario` (one of the Fly ones) on a world of its own.
pub(crate) async fn run(scenario: Scenario, args: &ChaosArgs) -> ChaosResult<ScenarioReport> {
    let regions = ["syd".to_owned(), "lax".to_owned()];
    let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into());
    let mut world = FlyWorld::start(Plan {
        regions: &regions,
        app_regions: 2,
        per_region: 2,
        old_first: scenario == Scenario::FlyDeploy,
        log: &log,
    })
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let count = args.clients.max(1);
    // Most writes from lax (forwarded), some in syd (local), except while
    // a syd machine runs the old build, whose HTTP API has no ledger yet.
    for c in 0..count {
        let region = if c % 4 == 3 && scenario != Scenario::FlyDeploy {
            "syd"
        } else {
            "lax"
        };
        let (base, edge) = world.edge(region)?;
        let (prefix, stop) = (
            format!("{}-{region}-{c}", scenario.name()),
            Arc::clone(&stop),
        );
        clients
            .push(edge.spawn(async move { clients::run(Http::new(), base, prefix, stop).await })?);
    }
    let started = Instant::now();
    let mut notes = Notes::default();
    let seconds = Duration::from_secs(args.seconds.max(1));
    let gap = (seconds / 10).clamp(Duration::from_millis(300), Duration::from_secs(2));
    let injected = match scenario {
        Scenario::FlyDeploy => fly_faults::deploys(&mut world, gap, started, &mut notes).await,
        _ => fly_faults::dns_churn(&mut world, gap, started, &mut notes).await,
    };
    if injected.is_ok() {
        tokio::time::sleep(seconds.saturating_sub(started.elapsed())).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut ops = Vec::new();
    for client in clients {
        ops.extend(client.await?);
    }
    injected?;
    let rows = ledger::rows_by_token(world.topology.primary()).await?;
    let mut report = ledger::reconcile(scenario.name(), &ops, &rows);
    report.faults = notes.faults;
    report.faults_not_done = notes.not_done;
    report.extra = notes.extra;
    drop(world);
    Ok(report)
}
