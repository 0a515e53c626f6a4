//! The todo app's Prometheus endpoint, scraped after a forwarded write.

use std::time::Duration;

use fly_postgres_testkit::{AppProcess, PgCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "metrics test secret 0123456789";

fn app(cluster: &PgCluster, region: &str, extra: &[(&str, String)]) -> AppProcess {
    let url = if region == "syd" {
        cluster.primary().url()
    } else {
        cluster.replica().url()
    };
    let mut env = vec![
        ("FLY_REGION", region.to_owned()),
        ("PRIMARY_REGION", "syd".to_owned()),
        ("FLY_RPC_SECRET", SECRET.to_owned()),
        ("FLY_RPC_LISTEN", "127.0.0.1:0".to_owned()),
        ("HTTP_LISTEN", "127.0.0.1:0".to_owned()),
        ("FLY_POSTGRES_REWRITE_URL", "false".to_owned()),
        ("DATABASE_URL", url),
        ("RUST_LOG", "error".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    AppProcess::spawn(env!("CARGO_BIN_EXE_flypg"), &["todo-app"], &env).unwrap()
}

/// One HTTP/1.1 exchange; the response's status and body.
async fn http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_port_shows_the_write_and_the_rpc_after_a_forwarded_write() {
    let cluster = PgCluster::start().await.unwrap();
    let syd = tokio::task::block_in_place(|| app(&cluster, "syd", &[]));
    cluster
        .wait_for_catch_up(Duration::from_secs(30))
        .await
        .unwrap();
    let lax = tokio::task::block_in_place(|| {
        app(
            &cluster,
            "lax",
            &[
                ("FLY_RPC_PEERS", format!("syd={}", syd.rpc())),
                ("METRICS_LISTEN", "127.0.0.1:0".to_owned()),
            ],
        )
    });
    let metrics = lax.addr("metrics").expect("the app printed metrics=ADDR");
    assert!(syd.addr("metrics").is_none(), "off unless asked for");

    let body = r#"{"title":"measured"}"#;
    let (status, answer) = http(
        lax.http(),
        &format!(
            "POST /todos HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert_eq!(status, 201, "{answer}");

    let (status, scraped) = http(
        metrics,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    for name in [
        "fly_postgres_write_seconds",
        "fly_rpc_call_duration_seconds",
        "fly_postgres_replication_wait_seconds",
    ] {
        assert!(scraped.contains(name), "no {name} in:\n{scraped}");
    }
    assert!(
        scraped.contains(r#"path="forwarded""#) && scraped.contains(r#"outcome="ok""#),
        "{scraped}"
    );
    drop(lax);
    drop(syd);
}
