//! Real node processes: kill -9 one primary-region node while calls run.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fly_rpc::{CallContext, Error, Node, Procedure, Regions, StaticPeers};
use serde::{Deserialize, Serialize};

const SECRET: &str = "failover test secret 0123456789";

/// Wire-compatible with `flypg`'s own no-op procedure.
#[derive(Serialize, Deserialize)]
struct Noop;

#[derive(Debug, Serialize, Deserialize)]
struct NoopReply {
    node: String,
}

impl Procedure for Noop {
    const NAME: &'static str = "flypg.noop";
    const RETRY_SAFE: bool = true;
    type Output = NoopReply;
    type Error = String;
    type State = ();
    async fn run(self, _: Arc<()>, _: CallContext) -> Result<NoopReply, String> {
        Err("only called in this test".into())
    }
}

/// A `flypg rpc-node` process, killed when dropped.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
}

impl NodeProcess {
    fn spawn(name: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flypg"))
            .args(["rpc-node", "--name", name])
            .env("FLY_REGION", "syd")
            .env("PRIMARY_REGION", "syd")
            .env("FLY_RPC_LISTEN", "127.0.0.1:0")
            .env("FLY_RPC_SECRET", SECRET)
            .env_remove("FLY_APP_NAME")
            .env_remove("FLY_RPC_PEERS")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Owned by the kill-on-drop guard before anything can panic.
        let mut node = NodeProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        node.addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        node
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
