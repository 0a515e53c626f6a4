//! README's quick start is this crate, word for word, and it runs as the
//! README promises: with only `DATABASE_URL` set (no region, no secret, no
//! peers), it serves writes and reads over HTTP and stops on SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fly_postgres_testkit::PgCluster;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The README's marker; the fenced block after it is the quick start.
const MARKER: &str = "<!-- the quick start: examples/quickstart/src/main.rs -->";

#[test]
fn readme_quick_start_is_this_crate() {
    let readme = include_str!("../../../README.md");
    let at = readme.find(MARKER).expect("README marks its quick start") + MARKER.len();
    let start = at
        + readme[at..]
            .find("```rust")
            .expect("a rust block follows the marker");
    let start = start + readme[start..].find('\n').unwrap() + 1;
    let end = start + readme[start..].find("\n```").expect("the block ends") + 1;
    assert_eq!(
        &readme[start..end],
        include_str!("../src/main.rs"),
        "README's quick start and examples/quickstart/src/main.rs must stay identical"
    );
}

/// Kills the quick start if the test fails before stopping it.
struct App(Child);

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 exchange; returns the status, the headers' text and the body.
async fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

async fn post(addr: SocketAddr, path: &str, body: &str, key: Option<&str>) -> (u16, String, Value) {
    let key = key.map_or_else(String::new, |k| format!("idempotency-key: {k}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\ncontent-type: application/json\r\n\
         {key}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, head, body) = http(addr, &request).await;
    (status, head, serde_json::from_str(&body).unwrap())
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let request = format!("GET {path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n");
    let (status, _, body) = http(addr, &request).await;
    (status, serde_json::from_str(&body).unwrap())
}

/// Starts the quick start with exactly `env` (its stderr kept for the
/// test to read) and returns it with the address its first line names.
fn start(env: &[(&str, String)]) -> (App, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quickstart"));
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut app = App(command.spawn().unwrap());
    let mut line = String::new();
    BufReader::new(app.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .parse()
        .unwrap();
    (app, SocketAddr::from(([127, 0, 0, 1], addr.port())))
}

/// README's laptop recipe: a second instance as region lax, insecure mode,
/// the first as its static peer; lax's write travels to syd by RPC.
#[tokio::test]
async fn a_second_instance_in_lax_forwards_its_writes_to_syd() {
    let cluster = PgCluster::start().await.unwrap();
    let rpc = fly_postgres_testkit::free_loopback_addrs(2).unwrap();
    let common = |region: &str, rpc_port: u16| {
        vec![
            ("DATABASE_URL", cluster.primary().url()),
            ("PRIMARY_REGION", "syd".to_owned()),
            ("FLY_RPC_INSECURE", "true".to_owned()),
            ("MY_REGION", region.to_owned()),
            ("FLY_RPC_PORT", rpc_port.to_string()),
            ("PORT", "0".to_owned()),
        ]
    };
    let (syd, syd_http) = start(&common("syd", rpc[0].port()));
    let mut lax_env = common("lax", rpc[1].port());
    lax_env.push(("FLY_RPC_PEERS", format!("syd=127.0.0.1:{}", rpc[0].port())));
    let (_lax, lax_http) = start(&lax_env);

    let (status, _, todo) = post(lax_http, "/todos", r#"{"title":"from lax"}"#, None).await;
    assert_eq!(status, 201, "{todo}");
    let (_, list) = get(syd_http, "/todos").await;
    assert_eq!(list, serde_json::json!([todo]));

    // Proof that it went through syd: without syd, lax cannot write, and
    // says that nothing was written.
    drop(syd);
    // Let lax's client see its connection close first: a request already
    // on a dying connection would rightly be "maybe committed".
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, refused) = post(lax_http, "/todos", r#"{"title":"no syd"}"#, None).await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["committed"], false, "{refused}");
}

#[tokio::test]
async fn runs_with_only_database_url_and_writes_and_reads_over_http() {
    let cluster = PgCluster::start().await.unwrap();
    // Nothing of the environment but the database and the port: no FLY_*
    // variable, no PRIMARY_REGION, no secret.
    let (mut app, addr) = start(&[
        ("DATABASE_URL", cluster.primary().url()),
        ("PORT", "0".to_owned()),
    ]);

    // The health check the deploy guide's fly.toml points at.
    let (status, _, body) = http(
        addr,
        "GET /healthz HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    let (status, head, todo) = post(addr, "/todos", r#"{"title":"milk"}"#, None).await;
    assert_eq!(status, 201, "{todo}");
    assert_eq!(todo["title"], "milk");
    assert!(head.contains("fly-replicated: true"), "{head}");
    let (status, list) = get(addr, "/todos").await;
    assert_eq!(status, 200);
    assert_eq!(list, serde_json::json!([todo]));

    // The same key twice: one write, the first answer.
    let (status, _, first) = post(addr, "/todos", r#"{"title":"eggs"}"#, Some("k-1")).await;
    assert_eq!(status, 201, "{first}");
    let (status, _, again) = post(addr, "/todos", r#"{"title":"eggs"}"#, Some("k-1")).await;
    assert_eq!((status, &again), (201, &first));
    // A duplicate title without a key: the library's 409.
    let (status, _, conflict) = post(addr, "/todos", r#"{"title":"milk"}"#, None).await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"], "conflict");
    assert_eq!(conflict["committed"], false);
    // A bad key: 400 with the rule, nothing written.
    let (status, _, bad) = post(addr, "/todos", r#"{"title":"tea"}"#, Some("a b")).await;
    assert_eq!(status, 400, "{bad}");
    let (_, list) = get(addr, "/todos").await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    // SIGTERM: it stops, and says why it ran without a node.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(app.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = app.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    let mut stderr = String::new();
    app.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(
        stderr.matches("no RPC listener").count(),
        1,
        "one log line says it runs without a node: {stderr}"
    );
}
