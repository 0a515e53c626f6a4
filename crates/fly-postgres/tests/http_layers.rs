//! The consistency and fly-replay layers in front of an axum app.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use common::*;
use fly_postgres::{ConsistencyLayer, FlyReplayLayer, ReplayInPrimary, Repo, sqlx};
use fly_rpc::Regions;
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn list(State(repo): State<Repo>) -> String {
    let titles: Vec<String> = sqlx::query_scalar("select title from todos order by id")
        .fetch_all(repo.local())
        .await
        .unwrap_or_default();
    titles.join(",")
}

async fn create(State(repo): State<Repo>, title: String) -> impl IntoResponse {
    // No wait here: the cookie carries the consistency to the next request.
    match repo.write(CreateTodo { title }).no_wait().await {
        Ok(_) => StatusCode::CREATED,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn app(repo: Repo) -> Router {
    Router::new()
        .route("/todos", get(list).post(create))
        .with_state(repo.clone())
        .layer(ConsistencyLayer::new(repo))
}

async fn send(
    router: &Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (parts.status, parts.headers, text)
}

#[tokio::test]
async fn an_lsn_cookie_makes_the_next_request_in_another_region_see_the_write() {
    let app_regions =
        two_regions_with(|b| b, |b| b.replication_timeout(Duration::from_millis(300))).await;
    let syd = app(app_regions.syd.clone());
    let lax = app(app_regions.lax.clone());
    app_regions.cluster.pause_replay().await.unwrap();

    let (status, headers, _) = send(
        &syd,
        Request::post("/todos")
            .body(Body::from("written in syd"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let lsn = headers["fly-lsn"].to_str().unwrap().to_owned();
    let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with(&format!("fly_lsn={lsn};")), "{cookie}");
    // A signed token now, not a plain LSN a client could forge.
    assert!(lsn.parse::<fly_postgres::Lsn>().is_err());
    assert!(lsn.len() < 100, "{lsn}");

    // Without the LSN, lax answers from its (paused) replica: stale.
    let (_, _, body) = send(&lax, Request::get("/todos").body(Body::empty()).unwrap()).await;
    assert_eq!(body, "");
    // With it, lax waits; while replay is paused that is a clear 503.
    let with_cookie = || {
        Request::get("/todos")
            .header("cookie", format!("theme=dark; fly_lsn={lsn}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, headers, body) = send(&lax, with_cookie()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], "1");
    // Once replay resumes, the same request sees the write.
    app_regions.cluster.resume_replay().await.unwrap();
    app_regions
        .cluster
        .wait_for_catch_up(Duration::from_secs(30))
        .await
        .unwrap();
    let (status, _, body) = send(&lax, with_cookie()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "written in syd"));
    // A read-only request sets no LSN.
    let (_, headers, _) = send(&lax, with_cookie()).await;
    assert!(headers.get("fly-lsn").is_none());

    // Tokens that do not verify are ignored: no wait, no error, not echoed.
    for bad in ["not-an-lsn", "0/1", &lsn[..lsn.len() - 2]] {
        let (status, headers, body) = send(
            &lax,
            Request::get("/todos")
                .header("fly-lsn", bad)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(headers.get("fly-lsn").is_none());
        assert!(!body.contains(bad));
    }
}

#[tokio::test]
async fn writes_from_lax_also_return_their_lsn() {
    let app_regions = two_regions().await;
    let lax = app(app_regions.lax.clone());
    let (status, headers, _) =
        send(&lax, Request::post("/todos").body(Body::from("x")).unwrap()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(headers.contains_key("fly-lsn"));
    // The write's phases, for the browser's developer tools (this route
    // does not wait for the replica: the cookie carries that).
    let timing = headers["server-timing"].to_str().unwrap();
    for phase in ["fly-write;", "fly-rpc;", "fly-primary;"] {
        assert!(timing.contains(phase), "{phase} missing in {timing}");
    }
    assert!(!timing.contains("fly-replication-wait"), "{timing}");
    // A later request with the write's LSN reports its own wait.
    let lsn = headers["fly-lsn"].to_str().unwrap().to_owned();
    let (_, headers, _) = send(
        &lax,
        Request::get("/todos")
            .header("fly-lsn", lsn)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let timing = headers["server-timing"].to_str().unwrap();
    assert!(timing.starts_with("fly-lsn-wait;"), "{timing}");
    assert!(!timing.contains("fly-write"), "{timing}");
}

#[tokio::test]
async fn fly_replay_sends_writes_and_marked_responses_to_the_primary_region() {
    let marked = || async {
        let mut response = "replica refused".into_response();
        response.extensions_mut().insert(ReplayInPrimary);
        response
    };
    let router = |regions: Regions| {
        Router::new()
            .route("/", get(|| async { "read" }).post(|| async { "write" }))
            .route("/marked", get(marked))
            .layer(FlyReplayLayer::new(regions))
    };
    let lax = router(Regions::new("lax", "syd"));
    let (status, headers, _) = send(&lax, Request::post("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(headers["fly-replay"], "region=syd");
    let (status, _, body) = send(&lax, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "read"));
    let (_, headers, _) = send(&lax, Request::get("/marked").body(Body::empty()).unwrap()).await;
    assert_eq!(headers["fly-replay"], "region=syd");

    let syd = router(Regions::new("syd", "syd"));
    let (status, headers, body) = send(&syd, Request::post("/").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "write"));
    assert!(headers.get("fly-replay").is_none());
}
