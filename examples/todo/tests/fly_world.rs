//! The template app deployed on the emulated Fly private network
//! (testkit's `FlyNet`) as the deploy guide deploys it: fly.toml's `[env]`,
//! the env every Fly machine has, the two secrets (`FLY_RPC_SECRET`, and
//! `DATABASE_URL` as `fly postgres attach` writes it: the `.flycast` form in
//! syd, the older `.internal` form in lax), each instance a process inside
//! its machine's network namespace, with discovery through the network's
//! DNS only and IPv6 only between machines. A write in lax is forwarded to
//! syd and read back in lax from lax's own replica. A machine whose env
//! lacks what Fly sets fails to start, naming the variable, and so does one
//! whose database host resolves to nothing, naming the host.

use std::net::SocketAddr;
use std::time::Duration;

use fly_postgres_testkit::flynet::DbMachine;
use fly_postgres_testkit::{AppProcess, FlyMachine, FlyNet, PgCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "a shared secret of 16+ bytes for the fly world";

/// fly.toml's `[env]`, as Fly sets it in every machine.
fn fly_toml_env() -> Vec<(String, String)> {
    let toml = include_str!("../fly.toml");
    let mut in_env = false;
    let mut env = Vec::new();
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_env = line == "[env]";
            continue;
        }
        if let (true, Some((key, value))) = (in_env, line.split_once(" = ")) {
            env.push((key.to_owned(), value.trim_matches('"').to_owned()));
        }
    }
    assert!(env.iter().any(|(k, _)| k == "PRIMARY_REGION"), "{env:?}");
    env
}

fn http_port() -> u16 {
    fly_toml_env()
        .into_iter()
        .find_map(|(k, v)| (k == "PORT").then(|| v.parse().unwrap()))
        .expect("fly.toml sets PORT")
}

/// What the app gets on `machine`: the machine's env (less `without`),
/// fly.toml's `[env]`, and the two secrets.
fn fly_env(
    machine: &FlyMachine,
    without: Option<&str>,
    database_url: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = machine
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .filter(|(k, _)| Some(k.as_str()) != without)
        .collect();
    env.extend(fly_toml_env());
    env.push(("FLY_RPC_SECRET".into(), SECRET.into()));
    env.push(("DATABASE_URL".into(), database_url.into()));
    env
}

/// The app started inside `machine` with `env` only; it must exit within
/// `limit`, failing: what it said on stderr.
async fn failed_start(machine: &FlyMachine, env: Vec<(String, String)>, limit: Duration) -> String {
    let output = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            machine.namespace(),
            env!("CARGO_BIN_EXE_todo"),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(limit, output)
        .await
        .expect("the start fails at once, not after serving")
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The app started inside `machine` with only what Fly gives it.
async fn deploy(machine: &FlyMachine, database_url: &str) -> AppProcess {
    let env = fly_env(machine, None, database_url);
    let namespace = machine.namespace().to_owned();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        AppProcess::spawn(
            "ip",
            &["netns", "exec", &namespace, env!("CARGO_BIN_EXE_todo")],
            &env,
        )
    })
    .await
    .unwrap()
    .unwrap()
}

/// One HTTP/1.1 exchange with `target`, made from inside `machine`:
/// the status and the body.
async fn http(
    machine: &FlyMachine,
    target: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: todo\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = machine
        .spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(target).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.unwrap();
            String::from_utf8_lossy(&answer).into_owned()
        })
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .expect("an answer within 30 s")
        .unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn the_app_serves_on_the_fly_network_as_the_deploy_guide_deploys_it() {
    let Some(net) =
        FlyNet::start_or_skip("the_app_serves_on_the_fly_network_as_the_deploy_guide_deploys_it")
    else {
        return;
    };
    let cluster = PgCluster::start().await.unwrap();
    let primary = SocketAddr::from(([127, 0, 0, 1], cluster.primary().port()));
    let replica = SocketAddr::from(([127, 0, 0, 1], cluster.replica().port()));
    // The database app: a node in each region, 5432 to the leader.
    let _db: [DbMachine; 2] = [
        net.db_machine("todo-db", "syd", primary, primary)
            .await
            .unwrap(),
        net.db_machine("todo-db", "lax", replica, primary)
            .await
            .unwrap(),
    ];
    let syd = net.machine("todo", "syd").unwrap();
    let lax = net.machine("todo", "lax").unwrap();
    // syd first: the primary region's instance runs the migrations.
    let syd_app = deploy(&syd, "postgres://postgres@todo-db.flycast:5432/postgres").await;
    let lax_app = deploy(&lax, "postgres://postgres@todo-db.internal:5432/postgres").await;
    // The RPC port listens on the machine's 6PN address only.
    for (app, machine) in [(&syd_app, &syd), (&lax_app, &lax)] {
        assert_eq!(app.rpc().ip(), std::net::IpAddr::V6(machine.private_ip()));
    }
    let port = http_port();
    let syd_http = SocketAddr::from((syd.private_ip(), port));
    let lax_http = SocketAddr::from((lax.private_ip(), port));

    // A write in lax: forwarded to syd over the 6PN (lax's database is a
    // read-only replica), answered once lax's replica has it.
    let (status, body) = http(&lax, lax_http, "POST", "/todos", r#"{"title":"from lax"}"#).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = http(&lax, lax_http, "GET", "/todos", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("from lax"), "{body}");

    // lax reads its own region's replica (what the rewrite of both URL
    // forms chose): with its replay paused, a write made in syd is not
    // seen in lax, and is once replay resumes.
    cluster.replica().pause_replay().await.unwrap();
    let (status, body) = http(&syd, syd_http, "POST", "/todos", r#"{"title":"from syd"}"#).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = http(&lax, lax_http, "GET", "/todos", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("from lax"), "{body}");
    assert!(!body.contains("from syd"), "lax read the primary: {body}");
    cluster.replica().resume_replay().await.unwrap();
    cluster
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();
    let (_, body) = http(&lax, lax_http, "GET", "/todos", "").await;
    assert!(body.contains("from syd"), "{body}");
}

#[tokio::test]
async fn a_machine_missing_what_fly_sets_fails_to_start_naming_it() {
    let Some(net) =
        FlyNet::start_or_skip("a_machine_missing_what_fly_sets_fails_to_start_naming_it")
    else {
        return;
    };
    let machine = net.machine("todo", "lax").unwrap();
    for (drop_var, bad_value, named) in [
        ("FLY_PRIVATE_IP", None, "FLY_PRIVATE_IP is not set"),
        (
            "FLY_PRIVATE_IP",
            Some("fdaa::zz"),
            "FLY_PRIVATE_IP \"fdaa::zz\"",
        ),
        ("FLY_REGION", None, "FLY_REGION is not set"),
    ] {
        let mut env = fly_env(
            &machine,
            Some(drop_var),
            "postgres://postgres@todo-db.flycast:5432/postgres",
        );
        if let Some(value) = bad_value {
            env.push((drop_var.to_owned(), value.to_owned()));
        }
        let said = failed_start(&machine, env, Duration::from_secs(30)).await;
        assert!(said.contains(named), "{drop_var}: {said}");
    }
}

#[tokio::test]
async fn a_database_host_that_resolves_to_nothing_fails_the_start_naming_it() {
    let Some(net) =
        FlyNet::start_or_skip("a_database_host_that_resolves_to_nothing_fails_the_start_naming_it")
    else {
        return;
    };
    let machine = net.machine("todo", "lax").unwrap();
    // No database app of that name: nothing answers for it in any region.
    let env = fly_env(
        &machine,
        None,
        "postgres://postgres@no-such-db.flycast:5432/postgres",
    );
    let started = std::time::Instant::now();
    let said = failed_start(&machine, env, Duration::from_secs(15)).await;
    assert!(
        said.contains("top1.nearest.of.no-such-db.internal"),
        "the error names the host tried after the rewrite: {said}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
