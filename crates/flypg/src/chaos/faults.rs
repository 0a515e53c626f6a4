//! What each scenario does to the system while the clients run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fly_postgres_testkit::Delay;
use serde_json::json;

use super::world::World;
use super::{ChaosResult, Scenario};
use crate::demo::http::Http;
use crate::percentiles::millis;

/// What the faults did, for the report.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub(crate) faults: Vec<String>,
    /// Faults that could not be made as described: the scenario fails, as
    /// its verdict would say nothing about them.
    pub(crate) not_done: Vec<String>,
    pub(crate) extra: BTreeMap<String, serde_json::Value>,
}

impl Notes {
    pub(super) fn fault(&mut self, started: Instant, what: impl Into<String>) {
        self.faults.push(format!(
            "at {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            what.into()
        ));
    }

    pub(super) fn not_done(&mut self, started: Instant, what: impl Into<String>) {
        let line = format!(
            "at {:.1} s: NOT DONE: {}",
            started.elapsed().as_secs_f64(),
            what.into()
        );
        self.faults.push(line.clone());
        self.not_done.push(line);
    }
}

/// How a drill may be made to fail on purpose, to show that a fault that
/// did not happen fails its scenario.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Drill {
    /// Hold every request on its way to syd while the crash after a commit
    /// waits for one, so none comes.
    pub(crate) starve_commits: bool,
}

/// Runs the scenario's faults; returns when the last one is over.
pub(crate) async fn inject(
    scenario: Scenario,
    world: &mut World,
    seconds: Duration,
    replica_down: Duration,
    started: Instant,
    notes: &mut Notes,
    drill: Drill,
) -> ChaosResult<()> {
    let gap = (seconds / 10).clamp(Duration::from_millis(300), Duration::from_secs(2));
    match scenario {
        Scenario::Load => load(world, seconds, started, notes).await,
        Scenario::Crash => crash(world, gap, started, notes, drill).await,
        Scenario::Partition => partition(world, gap, started, notes).await,
        Scenario::Rolling => rolling(world, gap, started, notes).await,
        Scenario::ReplicaDown => replica_down_for(world, gap, replica_down, started, notes).await,
        Scenario::Failover | Scenario::FailoverAsync => failover(world, gap, started, notes).await,
        Scenario::Skew => skew(world, gap, started, notes).await,
        Scenario::Rotate => rotate(world, gap, started, notes).await,
        Scenario::FlyDeploy | Scenario::FlyDnsChurn => {
            Err("the Fly scenarios run on a world of their own".into())
        }
    }
}

/// pgbench's TPC-B-like load on the primary for the whole scenario.
async fn load(
    world: &mut World,
    seconds: Duration,
    started: Instant,
    notes: &mut Notes,
) -> ChaosResult<()> {
    // The scenario is a load test: without pgbench there is no load.
    let pgbench = crate::pgbench::locate()?.ok_or(
        "the load scenario needs pgbench: none next to the PostgreSQL binaries, on PATH or \
         in /usr/lib/postgresql (apt-get install postgresql)",
    )?;
    let url = world.topology.primary().url();
    crate::pgbench::init(&pgbench, &url).await?;
    let secs = seconds
        .saturating_sub(started.elapsed())
        .as_secs()
        .max(1)
        .to_string();
    notes.fault(
        started,
        format!("pgbench -c 4 -j 2 on the primary for {secs} s"),
    );
    let run = tokio::process::Command::new(&pgbench)
        .args(["-n", "-c", "4", "-j", "2", "-T", &secs, &url])
        .kill_on_drop(true)
        .output()
        .await?;
    let out = String::from_utf8_lossy(&run.stdout);
    let tps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .filter(|_| run.status.success());
    match tps {
        Some(tps) => {
            notes.extra.insert("pgbench_tps".into(), json!(tps.round()));
        }
        None => notes.not_done(
            started,
            format!(
                "pgbench failed ({}) and loaded nothing: {}",
                run.status,
                String::from_utf8_lossy(&run.stderr).trim()
            ),
        ),
    }
    Ok(())
}

async fn crash(
    world: &mut World,
    gap: Duration,
    started: Instant,
    notes: &mut Notes,
    drill: Drill,
) -> ChaosResult<()> {
    let rtt = world.rtt;
    tokio::time::sleep(gap).await;
    notes.fault(
        started,
        "kill -9 the syd instance mid-stream, restart after 1 s",
    );
    tokio::task::block_in_place(|| world.syd[0].kill9());
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| world.syd[0].restart())?;

    tokio::time::sleep(gap).await;
    // Hold syd's replies until a write has committed, then crash it: the
    // caller is left with a committed write and no answer.
    let mut before = world.ledger_rows().await?;
    world.links[0].set_delay(Delay {
        to_upstream: if drill.starve_commits {
            Duration::from_secs(3600)
        } else {
            rtt / 2
        },
        to_client: Duration::from_secs(3600),
    });
    if drill.starve_commits {
        // Requests already past the link commit; count from after them.
        tokio::time::sleep(Duration::from_secs(1)).await;
        before = world.ledger_rows().await?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut committed = false;
    while !committed && Instant::now() < deadline {
        committed = world.ledger_rows().await? > before;
        if !committed {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    if committed {
        notes.fault(
            started,
            "kill -9 the syd instance right after a commit, before its reply; restart after 1 s",
        );
    } else {
        notes.not_done(
            started,
            "no write committed within 5 s, so syd could not be killed right after a commit \
             (killed all the same; restart after 1 s)",
        );
    }
    tokio::task::block_in_place(|| world.syd[0].kill9());
    world.links[0].sever();
    world.links[0].set_delay(Delay::rtt(rtt));
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| world.syd[0].restart())?;

    tokio::time::sleep(gap).await;
    notes.fault(started, "cut the lax -> syd link for 2 s");
    world.links[0].cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    world.links[0].restore();

    tokio::time::sleep(gap).await;
    notes.fault(started, "pause replay on the lax replica for 3 s");
    world.replica()?.pause_replay().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    world.replica()?.resume_replay().await?;
    tokio::time::sleep(gap).await;
    Ok(())
}

async fn rolling(
    world: &mut World,
    gap: Duration,
    started: Instant,
    notes: &mut Notes,
) -> ChaosResult<()> {
    tokio::time::sleep(gap).await;
    // How lax spread its writes over the syd instances before any restart
    // (a restart resets an instance's counter).
    let split = served_split(world).await?;
    notes.fault(
        started,
        format!("writes served per syd instance so far: {split:?}"),
    );
    notes.extra.insert("syd_split".into(), json!(split));
    for i in 0..world.syd.len() {
        tokio::time::sleep(gap).await;
        redeploy(
            world,
            Instance::Syd(i),
            Duration::from_millis(300),
            |_| {},
            started,
            notes,
            "rolling restart",
        )
        .await?;
    }
    tokio::time::sleep(gap).await;
    Ok(())
}

/// Which instance of the drill's world.
#[derive(Debug, Clone, Copy)]
enum Instance {
    Syd(usize),
    Lax,
}

/// A deploy of one instance: SIGTERM, `down_for` without it, the new
/// configuration, restart on the same addresses; counted in `restarts` and
/// `clean_exits`.
async fn redeploy(
    world: &mut World,
    which: Instance,
    down_for: Duration,
    configure: impl FnOnce(&mut fly_postgres_testkit::AppProcess),
    started: Instant,
    notes: &mut Notes,
    what: &str,
) -> ChaosResult<()> {
    let process = match which {
        Instance::Syd(i) => &mut world.syd[i],
        Instance::Lax => &mut world.lax,
    };
    let stopping = Instant::now();
    let status = tokio::task::block_in_place(|| process.terminate(Duration::from_secs(15)));
    let stopped_ms = millis(stopping.elapsed());
    let clean = status.is_some_and(|s| s.success());
    tokio::time::sleep(down_for).await;
    configure(process);
    tokio::task::block_in_place(|| process.restart())?;
    notes.fault(
        started,
        format!(
            "{what}: {which:?} {} in {stopped_ms:.0} ms, restarted",
            match status {
                Some(s) if s.success() => "exited cleanly".to_owned(),
                Some(s) => format!("exited with {s}"),
                None => "killed after 15 s".to_owned(),
            },
        ),
    );
    for (key, add) in [("restarts", 1), ("clean_exits", u64::from(clean))] {
        let n = notes.extra.get(key).and_then(|n| n.as_u64()).unwrap_or(0);
        notes.extra.insert(key.into(), json!(n + add));
    }
    Ok(())
}

/// Writes served by each syd instance since it started.
async fn served_split(world: &World) -> ChaosResult<Vec<u64>> {
    let http = Http::new();
    let mut split = Vec::new();
    for instance in &world.syd {
        let answer = http.get(&instance.url("/stats")).await?;
        split.push(answer.body["served_writes"].as_u64().unwrap_or(0));
    }
    Ok(split)
}

/// A rolling deploy that adds the ledger's mutation: syd instance 1 runs
/// the old build (it answers "unknown procedure" and runs nothing), so
/// every write goes to instance 2; then instance 1 is replaced by the new
/// build and takes writes again.
async fn skew(
    world: &mut World,
    gap: Duration,
    started: Instant,
    notes: &mut Notes,
) -> ChaosResult<()> {
    tokio::time::sleep(gap * 2).await;
    let before = served_split(world).await?;
    notes.fault(
        started,
        format!("writes served per syd instance (old build v1, new build v2): {before:?}"),
    );
    notes
        .extra
        .insert("split_during_skew".into(), json!(before));
    redeploy(
        world,
        Instance::Syd(0),
        Duration::ZERO,
        |p| {
            p.remove_env("FLYPG_DRILL_OLD_BUILD");
            p.set_env("FLY_RPC_VERSION", "v2");
        },
        started,
        notes,
        "the old build replaced by the new",
    )
    .await?;
    // Callers try an instance whose connections just failed (it restarted)
    // last for 5 s: wait that out to see it take writes again.
    tokio::time::sleep(gap * 2 + Duration::from_secs(5)).await;
    let after = served_split(world).await?;
    notes.fault(
        started,
        format!("writes served per syd instance since: {after:?}"),
    );
    notes.extra.insert("split_after".into(), json!(after));
    Ok(())
}

/// The secret rotated with writes throughout, in three rolling deploys of
/// every instance: the new secret added as previous; the new secret signs
/// and the old one verifies; the old one removed.
async fn rotate(
    world: &mut World,
    gap: Duration,
    started: Instant,
    notes: &mut Notes,
) -> ChaosResult<()> {
    let old = world.secret.clone();
    let new = format!("chaos-{:032x}", rand::random::<u128>());
    let instances: Vec<Instance> = (0..world.syd.len())
        .map(Instance::Syd)
        .chain([Instance::Lax])
        .collect();
    let deploys: [(&str, String, Option<String>); 3] = [
        (
            "deploy 1, new secret as previous",
            old.clone(),
            Some(new.clone()),
        ),
        ("deploy 2, new secret signs", new.clone(), Some(old.clone())),
        ("deploy 3, old secret removed", new.clone(), None),
    ];
    for (what, current, previous) in deploys {
        for &instance in &instances {
            tokio::time::sleep(gap / 2).await;
            let (current, previous) = (current.clone(), previous.clone());
            redeploy(
                world,
                instance,
                Duration::ZERO,
                move |p| {
                    p.set_env("FLY_RPC_SECRET", current);
                    match previous {
                        Some(previous) => p.set_env("FLY_RPC_SECRET_PREVIOUS", previous),
                        None => p.remove_env("FLY_RPC_SECRET_PREVIOUS"),
                    }
                },
                started,
                notes,
                what,
            )
            .await?;
        }
    }
    world.secret = new;
    tokio::time::sleep(gap).await;
    Ok(())
}

/// Silence on each link in turn: what only timeouts can end, where a cut
/// or a crash is announced by a reset. Each lasts less than the write and
/// replication deadlines, so it must cost latency, never a broken promise.
async fn partition(
    world: &mut World,
    gap: Duration,
    started: Instant,
    notes: &mut Notes,
) -> ChaosResult<()> {
    const SILENCE: Duration = Duration::from_secs(3);
    let links: [(&str, &fly_postgres_testkit::LatencyProxy); 3] = [
        ("the lax -> syd RPC link", &world.links[0]),
        (
            "syd's link to its database (the leader address)",
            world.topology.leader_link(),
        ),
        ("the lax replica's WAL link", world.topology.link("lax")?),
    ];
    for (name, link) in links {
        tokio::time::sleep(gap).await;
        notes.fault(
            started,
            format!("silence on {name} for {} s", SILENCE.as_secs()),
        );
        link.black_hole();
        tokio::time::sleep(SILENCE).await;
        link.restore();
    }
    tokio::time::sleep(gap).await;
    Ok(())
}

async fn replica_down_for(
    world: &mut World,
    gap: Duration,
    down: Duration,
    started: Instant,
    notes: &mut Notes,
) -> ChaosResult<()> {
    tokio::time::sleep(gap).await;
    notes.fault(
        started,
        format!("stop the lax replica for {:.0} s", down.as_secs_f64()),
    );
    world.replica()?.stop().await?;
    tokio::time::sleep(down).await;
    world.replica()?.start().await?;
    let back = Instant::now();
    // Recovered: a write through lax is replayed there and read back, with
    // the same app process that saw the replica go.
    let http = Http::new();
    let base = world.lax.url("");
    note_when(
        notes,
        started,
        back,
        "recovery_ms",
        "lax did not recover within 30 s of the replica's return",
        Duration::from_millis(50),
        |probe| {
            let (http, base) = (&http, &base);
            async move {
                let token = format!("recovery-probe-{probe}");
                let write = http
                    .post(&format!("{base}/ledger"), json!({ "token": token }))
                    .await;
                if let Ok(answer) = write
                    && answer.status.as_u16() == 201
                    && answer.replicated
                {
                    let read = http.get(&format!("{base}/ledger/{token}")).await;
                    return read.is_ok_and(|r| r.body["rows"].as_i64().unwrap_or(0) > 0);
                }
                false
            }
        },
    )
    .await;
    tokio::time::sleep(gap).await;
    Ok(())
}

/// kill -9 the syd primary, promote the syd standby, move the leader
/// address; nothing is restarted. Notes how long promotion took and when a
/// write through lax first succeeded again.
async fn failover(
    world: &mut World,
    gap: Duration,
    started: Instant,
    notes: &mut Notes,
) -> ChaosResult<()> {
    tokio::time::sleep(gap).await;
    notes.fault(started, "kill -9 the syd primary");
    world.topology.primary().kill().await?;
    let killed = Instant::now();
    world.topology.promote("syd-standby").await?;
    notes.fault(
        started,
        format!(
            "promoted the syd standby in {:.0} ms; the leader address and lax's replication link follow",
            millis(killed.elapsed())
        ),
    );
    notes.extra.insert(
        "promoted_ms".into(),
        json!(millis(killed.elapsed()).round()),
    );
    let http = Http::new();
    let base = world.lax.url("");
    note_when(
        notes,
        started,
        killed,
        "resumed_ms",
        "writes did not resume within 30 s of the kill",
        Duration::from_millis(20),
        |probe| {
            let (http, base) = (&http, &base);
            async move {
                let write = http
                    .post(
                        &format!("{base}/ledger"),
                        json!({ "token": format!("failover-probe-{probe}") }),
                    )
                    .await;
                write.is_ok_and(|answer| answer.status.as_u16() == 201)
            }
        },
    )
    .await;
    tokio::time::sleep(gap).await;
    Ok(())
}

/// Runs `attempt(1)`, `attempt(2)`, ... `pause` apart until one succeeds or
/// 30 s have passed since `since`; notes under `key` how long after `since`
/// the first success came (null, and the fault `gave_up`, if none did).
async fn note_when<F, Fut>(
    notes: &mut Notes,
    started: Instant,
    since: Instant,
    key: &str,
    gave_up: &str,
    pause: Duration,
    mut attempt: F,
) where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut probe = 0;
    let after = loop {
        if since.elapsed() > Duration::from_secs(30) {
            break None;
        }
        probe += 1;
        if attempt(probe).await {
            break Some(since.elapsed());
        }
        tokio::time::sleep(pause).await;
    };
    match after {
        Some(after) => {
            notes.extra.insert(key.into(), json!(millis(after).round()));
        }
        None => {
            notes.extra.insert(key.into(), json!(null));
            notes.fault(started, gave_up);
        }
    }
}
