//! What the Fly drills do to the app while the clients run: `fly deploy`
//! (rolling over a machine left on the old build, then bluegreen to new
//! machines at new addresses), and DNS churn (a crashed machine still
//! listed, a gone machine still listed with its address silent, a new
//! machine listed before it listens, a secret rotated with `fly secrets
//! set`).

use std::time::{Duration, Instant};

use fly_postgres_testkit::flynet::{DeployReport, Strategy};
use serde_json::json;

use super::ChaosResult;
use super::faults::Notes;
use crate::demo::http::Http;
use crate::fly_world::{FirstServed, FlyWorld, image};
use crate::percentiles::{Samples, millis, round3};

/// A rolling deploy of the new build over every machine (the first syd
/// machine ran the old one, without the ledger's mutation), then a
/// bluegreen deploy to new machines.
pub(crate) async fn deploys(
    world: &mut FlyWorld,
    gap: Duration,
    started: Instant,
    notes: &mut Notes,
) -> ChaosResult<()> {
    let watch = FirstServed::watch(world, "syd")?;
    for (strategy, tag) in [(Strategy::Rolling, "v2"), (Strategy::Bluegreen, "v3")] {
        tokio::time::sleep(gap).await;
        let report = world
            .app
            .deploy_with(&world.net, image(tag, "error", false)?, strategy)
            .await?;
        note_deploy(notes, started, &format!("fly deploy {tag}"), &report);
    }
    tokio::time::sleep(gap).await;
    let first_served = watch.finish().await?;
    let rounded: Vec<String> = first_served.iter().map(|ms| format!("{ms:.0}")).collect();
    notes.fault(
        started,
        format!(
            "replaced syd machines served their first forwarded write after [{}] ms",
            rounded.join(", ")
        ),
    );
    let samples = Samples::new(first_served.clone());
    notes.extra.insert(
        "first_forwarded_write_ms".into(),
        json!({ "replacements": first_served.len(), "median": round3(samples.pct(50.0)), "max": round3(samples.pct(100.0)) }),
    );
    Ok(())
}

/// Churn as Fly's DNS shows it to callers: records that lag what the
/// machines do.
pub(crate) async fn dns_churn(
    world: &mut FlyWorld,
    gap: Duration,
    started: Instant,
    notes: &mut Notes,
) -> ChaosResult<()> {
    let syd = || -> ChaosResult<usize> {
        Ok(world
            .app
            .machines()
            .iter()
            .position(|m| m.machine().region() == "syd")
            .ok_or("no syd machine")?)
    };
    let first = syd()?;
    tokio::time::sleep(gap).await;
    world.app.crash(first).await?;
    notes.fault(
        started,
        "syd machine 1 killed, still listed in DNS: it refuses",
    );
    tokio::time::sleep(gap).await;
    let healthy = world.app.restart(first).await?;
    notes.fault(
        started,
        format!(
            "syd machine 1 restarted at its address, healthy after {} ms",
            millis(healthy).round()
        ),
    );

    tokio::time::sleep(gap).await;
    let (base, edge) = world.edge("lax")?;
    let before = samples(probe(edge, &base, gap)?.await?)?;
    let during = probe(edge, &base, gap * 2)?;
    world.app.vanish(first).await?;
    notes.fault(
        started,
        "syd machine 1 gone, its address silent, still listed in DNS",
    );
    let during = samples(during.await?)?;
    let (median, worst) = (before.pct(50.0), during.pct(100.0));
    notes.extra.insert(
        "gone_but_listed".into(),
        json!({
            "median_ms_before": round3(median),
            "worst_ms": round3(worst),
            "worst_over_median_ms": round3(worst - median),
            "writes": during.len(),
        }),
    );
    let destroyed = world.app.destroy(first).await?;
    notes.fault(
        started,
        format!("syd machine 1 destroyed ({destroyed:?}): its records go"),
    );
    let launched = Instant::now();
    world.app.launch(&world.net, "syd", Vec::new()).await?;
    notes.fault(
        started,
        format!(
            "a new syd machine, listed before it listens, healthy after {} ms",
            millis(launched.elapsed()).round()
        ),
    );

    let old = world.secret.clone();
    let new = format!("fly-{:032x}", rand::random::<u128>());
    tokio::time::sleep(gap).await;
    let report = world
        .app
        .set_secrets(&world.net, &[("FLY_RPC_SECRET_PREVIOUS", &new)])
        .await?;
    note_deploy(
        notes,
        started,
        "fly secrets set (new secret as previous)",
        &report,
    );
    let report = world
        .app
        .set_secrets(
            &world.net,
            &[("FLY_RPC_SECRET", &new), ("FLY_RPC_SECRET_PREVIOUS", &old)],
        )
        .await?;
    note_deploy(
        notes,
        started,
        "fly secrets set (new secret signs)",
        &report,
    );
    let report = world
        .app
        .unset_secrets(&world.net, &["FLY_RPC_SECRET_PREVIOUS"])
        .await?;
    note_deploy(
        notes,
        started,
        "fly secrets unset (old secret gone)",
        &report,
    );
    world.secret = new;
    tokio::time::sleep(gap).await;
    Ok(())
}

/// One line per deploy, and the counts a deploy's promise is checked on.
fn note_deploy(notes: &mut Notes, started: Instant, what: &str, report: &DeployReport) {
    let (clean, moved) = (report.clean_exits(), report.new_addresses());
    let slowest = report
        .machines
        .iter()
        .map(|m| millis(m.healthy_after))
        .fold(0.0, f64::max);
    notes.fault(
        started,
        format!(
            "{what} ({:?}): {} machines in {:.1} s, {clean} exited cleanly, {moved} at new addresses, slowest check {slowest:.0} ms",
            report.strategy,
            report.machines.len(),
            report.took.as_secs_f64()
        ),
    );
    for (key, add) in [
        ("restarts", report.machines.len()),
        ("clean_exits", clean),
        ("new_addresses", moved),
    ] {
        let n = notes.extra.get(key).and_then(|n| n.as_u64()).unwrap_or(0);
        notes.extra.insert(key.into(), json!(n + add as u64));
    }
}

/// Sequential ledger writes through `base` for `how_long`, from the edge
/// machine: their times, in ms.
fn probe(
    edge: &fly_postgres_testkit::FlyMachine,
    base: &str,
    how_long: Duration,
) -> ChaosResult<tokio::task::JoinHandle<Vec<f64>>> {
    let url = format!("{base}/ledger");
    Ok(edge.spawn(async move {
        let http = Http::new();
        let mut times = Vec::new();
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            let token = format!("probe-{:032x}", rand::random::<u128>());
            let started = Instant::now();
            let answer = http
                .send_with(
                    hyper::Method::POST,
                    &url,
                    Some(json!({ "token": token })),
                    &[("idempotency-key", token.as_str())],
                )
                .await;
            if answer.is_ok_and(|a| a.status == hyper::StatusCode::CREATED) {
                times.push(millis(started.elapsed()));
            }
        }
        times
    })?)
}

fn samples(times: Vec<f64>) -> ChaosResult<Samples> {
    if times.is_empty() {
        return Err("no probe write succeeded".into());
    }
    Ok(Samples::new(times))
}
