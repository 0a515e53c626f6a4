//! `flypg demo --fly`: the template app deployed on the emulated Fly
//! network exactly as the deploy guide says (see [`crate::fly_world`]),
//! then a walk: writes in lax forwarded over IPv6 and read back there,
//! `fly deploy` rolling and bluegreen with writers running (the ledger
//! printed), a scale-out into a new region, and a summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use fly_postgres_testkit::flynet::{DeployReport, Strategy};
use hyper::StatusCode;
use serde::Serialize;
use serde_json::json;

use super::http::Http;
use super::narration::say;
use super::{DemoArgs, DemoResult, Progress, parse_regions};
use crate::chaos::{clients, ledger};
use crate::fly_world::{DB_APP, FirstServed, FlyWorld, Plan, image};
use crate::percentiles::{Samples, millis, round3};

/// What the walk measured; `held()` decides the exit code.
#[derive(Debug, Serialize)]
struct FlySummary {
    app_machines: usize,
    db_nodes: usize,
    walk: Walk,
    deploys: Vec<Deploy>,
    ledger: Ledger,
    /// From a replaced primary-region machine's first passing check to
    /// the first forwarded write it served.
    first_forwarded_write_ms: serde_json::Value,
    scale_out: ScaleOut,
}

/// Writes in the second region, each read back there at once.
#[derive(Debug, Serialize)]
struct Walk {
    region: String,
    writes: usize,
    write_p50_ms: f64,
    read_p50_ms: f64,
    /// Reads right after a write that did not see it.
    stale_reads: usize,
    /// Writes the primary-region machines served for other regions.
    forwarded: u64,
}

#[derive(Debug, Serialize)]
struct Deploy {
    strategy: String,
    machines: usize,
    took_ms: f64,
    clean_exits: usize,
    new_addresses: usize,
}

/// What the writers running through the deploys were told, against the
/// primary's rows.
#[derive(Debug, Serialize)]
struct Ledger {
    writes: usize,
    ok: usize,
    failed: usize,
    lost: usize,
    duplicated: usize,
    failed_but_committed: usize,
    stale_reads: usize,
}

#[derive(Debug, Serialize)]
struct ScaleOut {
    region: String,
    healthy_after_ms: f64,
    write_ms: f64,
    read_back: bool,
}

impl FlySummary {
    fn held(&self) -> bool {
        self.walk.stale_reads == 0
            && self.walk.forwarded > 0
            && self.ledger.writes > 0
            && self.ledger.ok == self.ledger.writes
            && self.ledger.lost == 0
            && self.ledger.duplicated == 0
            && self.ledger.failed_but_committed == 0
            && self.ledger.stale_reads == 0
            && self.scale_out.read_back
    }
}

pub(crate) async fn run(args: &DemoArgs) -> DemoResult<()> {
    let mut regions = parse_regions(&args.regions)?;
    let grow_into = regions.get(2).cloned().unwrap_or_else(|| "fra".to_owned());
    regions.truncate(2);
    regions.push(grow_into.clone());
    let (primary, lax) = (regions[0].clone(), regions[1].clone());
    let step = Progress::start(&format!(
        "building the Fly world: Postgres app {DB_APP} (primary and standby in {primary}, replicas in {lax} and {grow_into}), the app from examples/todo/fly.toml on 2 machines in {primary} and 2 in {lax}"
    ));
    let mut world = FlyWorld::start(Plan {
        regions: &regions,
        app_regions: 2,
        per_region: 2,
        old_first: false,
        log: "error",
    })
    .await?;
    step.done();
    say!(
        "Every machine is a network namespace with one 6PN address (fdaa::/16, IPv6 only); DNS at fdaa::3 answers <region>.my-todo.internal; no static peers."
    );
    for machine in world.app.machines() {
        say!(
            "  {} {} [{}]",
            machine.machine().region(),
            machine.machine().id(),
            machine.machine().private_ip()
        );
    }

    let walk = walk(&world, &lax, args.writes).await?;
    say!(
        "\nWrites in {lax}, forwarded to {primary} over IPv6: p50 {:.1} ms; read back in {lax} at once: p50 {:.1} ms, {} stale of {}.",
        walk.write_p50_ms,
        walk.read_p50_ms,
        walk.stale_reads,
        walk.writes
    );

    let (deploys, ledger, first_served) = deploys_under_load(&mut world, &lax).await?;
    let scale_out = scale_out(&mut world, &grow_into).await?;
    let summary = FlySummary {
        app_machines: world.app.machines().len(),
        db_nodes: regions.len() + 1,
        walk,
        deploys,
        ledger,
        first_forwarded_write_ms: first_served,
        scale_out,
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print(&summary);
    }
    drop(world);
    if summary.held() {
        Ok(())
    } else {
        Err("the Fly walk's checks did not hold (see the summary)".into())
    }
}

/// `writes` todos created through the region's edge, each read back at
/// once there.
async fn walk(world: &FlyWorld, region: &str, writes: usize) -> DemoResult<Walk> {
    let (base, edge) = world.edge(region)?;
    let syd_stats: Vec<String> = world
        .app
        .machines()
        .iter()
        .filter(|m| m.machine().region() == world.topology.primary_region())
        .map(|m| format!("http://{}/stats", m.http_addr(world.app.config())))
        .collect();
    let region = region.to_owned();
    let walked = edge.spawn(async move {
        let http = Http::new();
        let (mut write_ms, mut read_ms, mut stale) = (Vec::new(), Vec::new(), 0);
        for n in 0..writes.max(1) {
            let title = format!("written in {region} #{n}");
            let answer = http
                .post(&format!("{base}/todos"), json!({ "title": title }))
                .await?;
            if answer.status != StatusCode::CREATED {
                return Err(format!(
                    "a write in {region} answered {}: {}",
                    answer.status, answer.body
                )
                .into());
            }
            write_ms.push(millis(answer.elapsed));
            let id = answer.body["id"]
                .as_i64()
                .ok_or("the write's answer has no id")?;
            let read = http.get(&format!("{base}/todos/{id}")).await?;
            read_ms.push(millis(read.elapsed));
            if read.status != StatusCode::OK || read.body["title"] != title {
                stale += 1;
            }
        }
        let mut forwarded = 0;
        for url in syd_stats {
            forwarded += http.get(&url).await?.body["served_writes"]
                .as_u64()
                .unwrap_or(0);
        }
        DemoResult::Ok(Walk {
            region,
            writes: write_ms.len(),
            write_p50_ms: round3(Samples::new(write_ms).pct(50.0)),
            read_p50_ms: round3(Samples::new(read_ms).pct(50.0)),
            stale_reads: stale,
            forwarded,
        })
    })?;
    walked.await?
}

/// A rolling deploy, then a bluegreen one, of all four machines while
/// ledger writers run through the region's edge.
async fn deploys_under_load(
    world: &mut FlyWorld,
    region: &str,
) -> DemoResult<(Vec<Deploy>, Ledger, serde_json::Value)> {
    let stop = Arc::new(AtomicBool::new(false));
    let (base, edge) = world.edge(region)?;
    let mut writers = Vec::new();
    for c in 0..4 {
        let (base, stop) = (base.clone(), Arc::clone(&stop));
        writers.push(edge.spawn(async move {
            clients::run(Http::new(), base, format!("fly-demo-{c}"), stop).await
        })?);
    }
    let watch = FirstServed::watch(world, world.topology.primary_region())?;
    let mut deploys = Vec::new();
    for (strategy, tag) in [(Strategy::Rolling, "v2"), (Strategy::Bluegreen, "v3")] {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let step = Progress::start(&format!(
            "fly deploy --strategy {} (image {tag}), 4 writers running in {region}",
            strategy_name(strategy)
        ));
        let report = world
            .app
            .deploy_with(&world.net, image(tag, "error", false)?, strategy)
            .await?;
        step.done();
        deploys.push(deploy_line(&report));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut ops = Vec::new();
    for writer in writers {
        ops.extend(writer.await?);
    }
    let first = watch.finish().await?;
    let rows = ledger::rows_by_token(world.topology.primary()).await?;
    let report = ledger::reconcile("fly-demo", &ops, &rows);
    let samples = Samples::new(first.clone());
    let first_served = json!({
        "replacements": first.len(),
        "median": round3(samples.pct(50.0)),
        "max": round3(samples.pct(100.0)),
    });
    Ok((
        deploys,
        Ledger {
            writes: report.writes,
            ok: report.ok,
            failed: report.writes - report.ok,
            lost: report.lost,
            duplicated: report.duplicated,
            failed_but_committed: report.failed_but_committed,
            stale_reads: report.stale_reads,
        },
        first_served,
    ))
}

fn strategy_name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Rolling => "rolling",
        Strategy::Bluegreen => "bluegreen",
    }
}

fn deploy_line(report: &DeployReport) -> Deploy {
    Deploy {
        strategy: strategy_name(report.strategy).to_owned(),
        machines: report.machines.len(),
        took_ms: round3(millis(report.took)),
        clean_exits: report.clean_exits(),
        new_addresses: report.new_addresses(),
    }
}

/// `fly scale count 1 --region <region>`: a machine in a region the app
/// had none in, then a write there, read back there.
async fn scale_out(world: &mut FlyWorld, region: &str) -> DemoResult<ScaleOut> {
    let step = Progress::start(&format!("fly scale count 1 --region {region}"));
    let started = Instant::now();
    world.app.launch(&world.net, region, Vec::new()).await?;
    let healthy_after_ms = round3(millis(started.elapsed()));
    step.done();
    let (base, edge) = world.edge(region)?;
    let wrote = edge.spawn(async move {
        let http = Http::new();
        let answer = http
            .post(
                &format!("{base}/todos"),
                json!({ "title": "written in the new region" }),
            )
            .await?;
        let id = answer.body["id"]
            .as_i64()
            .ok_or("the write's answer has no id")?;
        let read = http.get(&format!("{base}/todos/{id}")).await?;
        DemoResult::Ok((millis(answer.elapsed), read.status == StatusCode::OK))
    })?;
    let (write_ms, read_back) = wrote.await??;
    Ok(ScaleOut {
        region: region.to_owned(),
        healthy_after_ms,
        write_ms: round3(write_ms),
        read_back,
    })
}

fn print(summary: &FlySummary) {
    say!(
        "\nSummary (Fly world: {} app machines, {} Postgres nodes, discovery by DNS only, IPv6 only)",
        summary.app_machines,
        summary.db_nodes
    );
    let walk = &summary.walk;
    say!(
        "  walk in {}: {} writes, p50 write {:.1} ms, p50 read {:.1} ms, stale reads {}, forwarded {}",
        walk.region,
        walk.writes,
        walk.write_p50_ms,
        walk.read_p50_ms,
        walk.stale_reads,
        walk.forwarded
    );
    for d in &summary.deploys {
        say!(
            "  fly deploy ({}): {} machines in {:.1} s, {} exited cleanly, {} at new addresses",
            d.strategy,
            d.machines,
            d.took_ms / 1000.0,
            d.clean_exits,
            d.new_addresses
        );
    }
    let l = &summary.ledger;
    say!(
        "  writers through both deploys: {} writes, {} ok, {} failed, {} lost, {} duplicated, {} stale reads",
        l.writes,
        l.ok,
        l.failed,
        l.lost,
        l.duplicated,
        l.stale_reads
    );
    say!(
        "  a replaced {} machine served its first forwarded write after (ms): {}",
        "primary-region",
        summary.first_forwarded_write_ms
    );
    let s = &summary.scale_out;
    say!(
        "  scale-out into {}: healthy after {:.0} ms, a write there {:.1} ms, read back: {}",
        s.region,
        s.healthy_after_ms,
        s.write_ms,
        s.read_back
    );
    say!(
        "  checks: {}",
        if summary.held() { "HELD" } else { "BROKEN" }
    );
}
