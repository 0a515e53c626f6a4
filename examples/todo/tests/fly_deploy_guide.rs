//! The deploy guide's steps, run on the emulated Fly network (testkit's
//! `FlyNet`, `FlyApp`, `EdgeProxy`) as far as they can run without Fly:
//! the Postgres app of step 2, the secrets of steps 3 and 4, the deploy of
//! step 5 with its checks (health checks passing, the `todo listening`
//! line with the machine's private RPC address, `/healthz`), the scale-out
//! of step 6, `todo status` of step 7, and the write from a replica region
//! of step 8 with every check the guide lists.

use std::net::SocketAddr;
use std::time::Duration;

use fly_postgres_testkit::flynet::{EdgeProxy, FlyApp, Image};
use fly_postgres_testkit::{FlyMachine, FlyNet, PgTopology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 exchange through Fly's proxy of a region, from a machine
/// there: the status, the head and the body.
async fn http(
    from: &FlyMachine,
    edge: SocketAddr,
    request_line: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String, String) {
    let mut request = format!("{request_line} HTTP/1.1\r\nhost: my-todo.fly.dev\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    let answer = from
        .spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(edge).await.unwrap();
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
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn the_deploy_guide_steps_that_can_run_here_hold_on_the_fly_world() {
    let Some(net) =
        FlyNet::start_or_skip("the_deploy_guide_steps_that_can_run_here_hold_on_the_fly_world")
    else {
        return;
    };
    // Step 2: `fly postgres create` with a replica in each other region.
    let topology = PgTopology::builder("syd")
        .synchronous_standby()
        .replica("lax")
        .replica("fra")
        .start()
        .await
        .unwrap();
    let _db = net.postgres_app("my-todo-db", &topology).await.unwrap();

    // Step 1, 3 and 4: the app, `fly postgres attach`'s secret (the
    // Flycast form), the RPC secret.
    let image = Image::new("deployment-01", env!("CARGO_BIN_EXE_todo"));
    let mut app = FlyApp::new(fly_postgres_todo::FLY_TOML, image).unwrap();
    app.stage_secret(
        "DATABASE_URL",
        "postgres://postgres@my-todo-db.flycast:5432/postgres",
    );
    app.stage_secret("FLY_RPC_SECRET", format!("{:064x}", 0x5eed_u128 << 64 | 7));
    assert_eq!(app.config().primary_region, "syd");

    // Step 5: the first deploy, machines in primary_region, each passing
    // its health check before it counts.
    for _ in 0..2 {
        app.launch(&net, "syd", Vec::new()).await.unwrap();
    }
    let mut edges = Vec::new();
    for region in ["syd", "lax", "fra"] {
        let machine = net.machine("fly-proxy", region).unwrap();
        let proxy = EdgeProxy::start(&machine, 443, app.routes(), region)
            .await
            .unwrap();
        edges.push((machine, proxy));
    }
    let edge = |region: &str| {
        let (machine, proxy) = &edges[["syd", "lax", "fra"]
            .iter()
            .position(|r| *r == region)
            .unwrap()];
        (machine, proxy.addr())
    };
    for machine in app.machines() {
        let log = std::fs::read_to_string(machine.log()).unwrap();
        let line = format!(
            "todo listening http=[::]:8080 rpc=[{}]:7878 region=syd",
            machine.machine().private_ip()
        );
        assert!(log.contains(&line), "{line:?} not in {log}");
    }
    let (from, to) = edge("syd");
    let (status, _, body) = http(from, to, "GET /healthz", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["region"], "syd");

    // Step 6: two machines in each of lax and fra.
    for region in ["lax", "fra"] {
        for _ in 0..2 {
            app.launch(&net, region, Vec::new()).await.unwrap();
        }
    }
    for machine in &app.machines()[2..] {
        let log = std::fs::read_to_string(machine.log()).unwrap();
        let region = machine.machine().region();
        assert!(log.contains(&format!("region={region}")), "{log}");
    }

    // Step 7: `todo status` on a lax machine sees all six, reachable, of
    // one version.
    let lax = app
        .machines()
        .iter()
        .position(|m| m.machine().region() == "lax")
        .unwrap();
    let output = app.ssh_console(lax, &["status"]).await.unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("this instance: region lax (primary region syd)"),
        "{said}"
    );
    assert!(!said.contains("UNREACHABLE"), "{said}");
    let instances = said
        .lines()
        .filter(|l| l.contains("version registry.fly.io/my-todo:deployment-01"))
        .count();
    assert_eq!(instances, 6, "{said}");
    for region in ["syd", "lax", "fra"] {
        assert_eq!(
            said.lines()
                .filter(|l| l.trim_start().starts_with(region))
                .count(),
            2,
            "{region}: {said}"
        );
    }

    // Step 8: a write through the proxy to lax.
    let (from, to) = edge("lax");
    let (status, head, body) = http(
        from,
        to,
        "POST /todos",
        &["fly-prefer-region: lax", "content-type: application/json"],
        r#"{"title":"milk"}"#,
    )
    .await;
    assert_eq!(status, 201, "{head}\n{body}");
    assert!(head.contains("fly-replicated: true"), "{head}");
    assert!(head.contains("server-timing:"), "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .filter(|c| c.starts_with("fly_lsn="))
        .unwrap_or_else(|| panic!("no fly_lsn cookie: {head}"))
        .to_owned();
    // The token makes fra wait for its replica before answering.
    let (from, to) = edge("fra");
    let (status, _, body) = http(
        from,
        to,
        "GET /todos",
        &["fly-prefer-region: fra", &format!("cookie: {cookie}")],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("milk"), "{body}");
    let (from, to) = edge("lax");
    let (status, _, body) = http(from, to, "GET /", &["accept: application/json"], "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""region":"lax""#), "{body}");
    assert!(body.contains(r#""is_primary":false"#), "{body}");
    drop(app);
}
