//! `flypg rpc-node` processes for the multi-process RPC tests.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::Arc;

use fly_rpc::{CallContext, Node, Procedure, Regions, StaticPeers};
use serde::{Deserialize, Serialize};

pub const SECRET: &str = "failover test secret 0123456789";

/// Wire-compatible with `flypg`'s own no-op procedure.
#[derive(Serialize, Deserialize)]
pub struct Noop;

#[derive(Debug, Serialize, Deserialize)]
pub struct NoopReply {
    pub node: String,
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

/// How to start a node process.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub listen: String,
    /// `ulimit -n` for the process, if set.
    pub fd_limit: Option<u64>,
    /// Keep its stderr (its log) for the test to read.
    pub capture_log: bool,
    pub env: Vec<(String, String)>,
}

impl NodeSpec {
    pub fn new(name: &str) -> Self {
        NodeSpec {
            name: name.to_owned(),
            listen: "127.0.0.1:0".to_owned(),
            fd_limit: None,
            capture_log: false,
            env: Vec::new(),
        }
    }
}

/// A `flypg rpc-node` process in syd, killed when dropped.
pub struct NodeProcess {
    child: Child,
    pub addr: SocketAddr,
    log: Option<ChildStderr>,
}

impl NodeProcess {
    pub fn spawn(name: &str) -> Self {
        NodeProcess::start(&NodeSpec::new(name))
    }

    pub fn start(spec: &NodeSpec) -> Self {
        let exe = env!("CARGO_BIN_EXE_flypg");
        let mut command = match spec.fd_limit {
            // No unsafe pre_exec: the shell sets the limit, then becomes the node.
            Some(limit) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!(
                        "ulimit -n {limit} && exec \"$0\" rpc-node --name \"$1\""
                    ))
                    .arg(exe)
                    .arg(&spec.name);
                c
            }
            None => {
                let mut c = Command::new(exe);
                c.args(["rpc-node", "--name", &spec.name]);
                c
            }
        };
        command
            .env("FLY_REGION", "syd")
            .env("PRIMARY_REGION", "syd")
            .env("FLY_RPC_LISTEN", &spec.listen)
            .env("FLY_RPC_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .env_remove("FLY_APP_NAME")
            .env_remove("FLY_RPC_PEERS")
            .stdout(Stdio::piped())
            .stderr(if spec.capture_log {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        for (k, v) in &spec.env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let log = child.stderr.take();
        // Owned by the kill-on-drop guard before anything can panic.
        let mut node = NodeProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process, in MiB.
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024.0
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Kills it and returns everything it logged.
    pub fn kill_and_read_log(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut text = String::new();
        if let Some(mut log) = self.log.take() {
            let _ = log.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A caller in lax that reaches syd at `peers`.
pub async fn caller(peers: &[SocketAddr]) -> Node {
    let mut discovery = StaticPeers::new();
    for p in peers {
        discovery = discovery.with("syd", *p);
    }
    Node::builder()
        .regions(Regions::new("lax", "syd"))
        .listen("127.0.0.1:0".parse().unwrap())
        .secret(SECRET)
        .discovery(discovery)
        .start()
        .await
        .unwrap()
}
