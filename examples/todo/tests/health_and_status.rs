//! What the deploy guide relies on: fly.toml's health check path answers
//! without touching the database, and `todo status` (run in a machine with
//! the app's env) lists the peers with their procedures.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fly_postgres_testkit::PgCluster;
use fly_postgres_todo::router;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::process::Command;
use tower::ServiceExt;

mod common;
use common::*;

/// The `path` of fly.toml's HTTP check.
fn fly_toml_check_path() -> &'static str {
    include_str!("../fly.toml")
        .lines()
        .find_map(|l| l.trim().strip_prefix("path = "))
        .expect("fly.toml has a check path")
        .trim_matches('"')
}

#[tokio::test]
async fn the_health_check_path_answers_even_while_the_replica_lags() {
    let app = app_on(PgCluster::start().await.unwrap()).await;
    let path = fly_toml_check_path();
    assert_eq!(path, "/healthz");
    // A replica that replays nothing, and a client carrying the token of a
    // write it has not replayed: a read route waits for it, the check not.
    app.cluster.replica().pause_replay().await.unwrap();
    let request = Request::post("/todos")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"title":"not replayed"}"#))
        .unwrap();
    let response = router(app.syd.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let token = response
        .headers()
        .get("set-cookie")
        .expect("a write hands out its token")
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let read = Request::get("/todos")
        .header("cookie", &token)
        .body(Body::empty())
        .unwrap();
    assert!(
        tokio::time::timeout(
            Duration::from_millis(300),
            router(app.lax.clone()).oneshot(read)
        )
        .await
        .is_err(),
        "a read with the token waits for the paused replica"
    );
    for repo in [&app.lax, &app.syd] {
        let request = Request::get(path)
            .header("cookie", &token)
            .body(Body::empty())
            .unwrap();
        let response = tokio::time::timeout(
            Duration::from_secs(2),
            router(repo.clone()).oneshot(request),
        )
        .await
        .expect("the health check does not wait for the replica")
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["region"], repo.regions().my_region());
    }
    app.cluster.replica().resume_replay().await.unwrap();
}

#[tokio::test]
async fn todo_status_lists_the_peers_and_their_procedures() {
    let app = app_on(PgCluster::start().await.unwrap()).await;
    let syd = app.syd.node().local_addr().expect("rpc listener");
    // Awaited, not blocking: syd's node serves on this test's runtime.
    let out = Command::new(env!("CARGO_BIN_EXE_todo"))
        .args(["status", "--json"])
        .env_clear()
        .env("MY_REGION", "lax")
        .env("PRIMARY_REGION", "syd")
        .env("FLY_RPC_SECRET", SECRET)
        .env("FLY_RPC_PEERS", format!("syd={syd}"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["region"], "lax");
    assert_eq!(report["primary_region"], "syd");
    assert_eq!(report["is_primary"], false);
    let peers = report["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{report}");
    assert_eq!(peers[0]["region"], "syd");
    assert_eq!(peers[0]["addr"], syd.to_string());
    let procedures = peers[0]["info"]["procedures"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        procedures.iter().any(|p| p == "todo.create"),
        "{procedures:?}"
    );

    // Anything else is a usage error, not a server start.
    let out = Command::new(env!("CARGO_BIN_EXE_todo"))
        .arg("stauts")
        .env_clear()
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("todo status"));
}
