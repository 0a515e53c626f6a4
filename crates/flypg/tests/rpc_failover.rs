//! Real node processes: kill -9 one primary-region node while calls run.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{NodeProcess, Noop, SECRET};
use fly_rpc::{Error, Node, Regions, StaticPeers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_over_when_a_primary_region_node_is_killed() {
    let mut a = NodeProcess::spawn("syd-a");
    let mut b = NodeProcess::spawn("syd-b");
    let caller = Node::builder()
        .regions(Regions::new("lax", "syd"))
        .listen("127.0.0.1:0".parse().unwrap())
        .secret(SECRET)
        .discovery(StaticPeers::new().with("syd", a.addr).with("syd", b.addr))
        .start()
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (caller, stop, killed_at) = (caller.clone(), Arc::clone(&stop), Arc::clone(&killed_at));
        tasks.spawn(async move {
            let (mut ok, mut after_kill_by_a, mut errors) = (0usize, 0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match caller.call_primary(Noop).await {
                    Ok(reply) => {
                        ok += 1;
                        let killed = *killed_at.lock().unwrap();
                        if killed.is_some_and(|k| sent > k + Duration::from_millis(50))
                            && reply.node == "syd-a"
                        {
                            after_kill_by_a += 1;
                        }
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (ok, after_kill_by_a, errors)
        });
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.kill9();
    *killed_at.lock().unwrap() = Some(Instant::now());
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::Relaxed);

    let (mut ok, mut ghost, mut errors) = (0, 0, Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (o, g, e) = r.unwrap();
        ok += o;
        ghost += g;
        errors.extend(e);
    }
    assert!(
        errors.is_empty(),
        "calls failed during failover: {errors:?}"
    );
    assert_eq!(ghost, 0, "a killed node answered");
    assert!(ok > 10, "only {ok} calls in a second");

    // Both gone: a typed error, quickly.
    b.kill9();
    let started = Instant::now();
    let err = caller.call_primary(Noop).await.unwrap_err();
    assert!(
        matches!(err, Error::NoNodeInRegion { tried: 2, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[test]
fn status_lists_the_peers_it_discovers() {
    let a = NodeProcess::spawn("syd-a");
    let out = Command::new(env!("CARGO_BIN_EXE_flypg"))
        .args(["status", "--json"])
        .env("FLY_REGION", "lax")
        .env("PRIMARY_REGION", "syd")
        .env("FLY_RPC_SECRET", SECRET)
        .env("FLY_RPC_PEERS", format!("syd={};lax=127.0.0.1:1", a.addr))
        .env("DATABASE_URL", "postgres://app@127.0.0.1:1/app")
        .env_remove("FLY_APP_NAME")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["region"], "lax");
    assert_eq!(status["is_primary"], false);
    let peers = status["peers"].as_array().unwrap();
    let syd = peers.iter().find(|p| p["region"] == "syd").unwrap();
    assert_eq!(syd["info"]["procedures"], serde_json::json!(["flypg.noop"]));
    let lax = peers.iter().find(|p| p["region"] == "lax").unwrap();
    assert!(
        lax["error"].is_string(),
        "unreachable peer should report an error: {lax}"
    );
    // The local database is reported too; this one does not answer.
    assert_eq!(status["database"]["answers"], false, "{status}");
    assert!(status["database"]["error"].is_string(), "{status}");

    // Without a secret, status refuses like a node would.
    let out = Command::new(env!("CARGO_BIN_EXE_flypg"))
        .arg("status")
        .env_remove("FLY_RPC_SECRET")
        .env_remove("FLY_RPC_INSECURE")
        .env_remove("FLY_APP_NAME")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FLY_RPC_SECRET"));
}
