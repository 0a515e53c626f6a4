//! The todo API's answers, over a real primary and replica, in both regions.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fly_postgres::Repo;
use fly_postgres_testkit::PgCluster;
use fly_postgres_todo::router;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

mod common;
use common::*;

async fn app() -> App {
    app_on(PgCluster::start().await.unwrap()).await
}

async fn call(repo: &Repo, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
    send(repo, method, uri, None, body).await
}

async fn call_with_key(repo: &Repo, uri: &str, key: &str, body: &str) -> (StatusCode, Value) {
    send(repo, "POST", uri, Some(key), Some(body)).await
}

async fn send(
    repo: &Repo,
    method: &str,
    uri: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let response = router(repo.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn an_idempotency_key_makes_a_repeated_write_return_the_first_result() {
    let app = app().await;
    for repo in [&app.lax, &app.syd] {
        let region = repo.regions().my_region().to_owned();
        let key = format!("key-{region}");
        let body = format!(r#"{{"title":"once from {region}"}}"#);
        let (status, first) = call_with_key(repo, "/todos", &key, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        // The client did not hear back and sends it again: same answer, one row.
        let (status, again) = call_with_key(repo, "/todos", &key, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{again}");
        assert_eq!(again, first);
        // The same key for another write is refused, nothing written.
        let (status, other) =
            call_with_key(repo, "/todos", &key, r#"{"title":"something else"}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{other}");
        assert_eq!(other["error"], "idempotency_key_reused");
        let (status, other) =
            call_with_key(repo, "/ledger", &key, r#"{"token":"another mutation"}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{other}");
    }
    let (_, list) = call(&app.lax, "GET", "/todos", None).await;
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["once from lax", "once from syd"]);
    // A key the library cannot use is a 400 before anything is sent.
    let (status, body) = call_with_key(&app.lax, "/todos", "has spaces", r#"{"title":"x"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{body}"
    );
}

#[tokio::test]
async fn crud_from_the_replica_region_reads_its_own_writes() {
    let app = app().await;
    let (status, body) = call(&app.lax, "GET", "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"region": "lax", "primary_region": "syd", "is_primary": false})
    );

    let (status, todo) = call(&app.lax, "POST", "/todos", Some(r#"{"title":"milk"}"#)).await;
    assert_eq!(status, StatusCode::CREATED, "{todo}");
    let id = todo["id"].as_i64().unwrap();
    let (status, list) = call(&app.lax, "GET", "/todos", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([{"id": id, "title": "milk", "done": false}]));

    let (status, todo) = call(
        &app.lax,
        "PATCH",
        &format!("/todos/{id}"),
        Some(r#"{"done":true}"#),
    )
    .await;
    assert_eq!(
        (status, todo["done"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (status, todo) = call(&app.lax, "GET", &format!("/todos/{id}"), None).await;
    assert_eq!(
        (status, todo["done"].as_bool()),
        (StatusCode::OK, Some(true))
    );

    let (status, batch) = call(
        &app.lax,
        "POST",
        "/todos/batch",
        Some(r#"{"titles":["a","b","c"]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(batch.as_array().unwrap().len(), 3);

    let (status, _) = call(&app.lax, "DELETE", &format!("/todos/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&app.lax, "GET", &format!("/todos/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.syd.stats().served_writes, 4);
}

#[tokio::test]
async fn bad_requests_get_json_errors_with_proper_statuses() {
    let app = app().await;
    for (method, uri, body, expected) in [
        ("POST", "/todos", Some("{not json"), StatusCode::BAD_REQUEST),
        (
            "POST",
            "/todos",
            Some(r#"{"name":"x"}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/todos",
            Some(r#"{"title":"   "}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/todos/batch",
            Some(r#"{"titles":[]}"#),
            StatusCode::BAD_REQUEST,
        ),
        ("GET", "/todos/abc", None, StatusCode::BAD_REQUEST),
        ("GET", "/todos/999", None, StatusCode::NOT_FOUND),
        (
            "PATCH",
            "/todos/999",
            Some(r#"{"done":true}"#),
            StatusCode::NOT_FOUND,
        ),
        ("PATCH", "/todos/1", Some("{}"), StatusCode::BAD_REQUEST),
        ("DELETE", "/todos/999", None, StatusCode::NOT_FOUND),
    ] {
        let (status, body) = call(&app.lax, method, uri, body).await;
        assert_eq!(status, expected, "{method} {uri}: {body}");
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{method} {uri}: {body}"
        );
    }
}

#[tokio::test]
async fn a_unique_violation_in_syd_is_a_409_in_lax() {
    let app = app().await;
    call(&app.lax, "POST", "/todos", Some(r#"{"title":"once"}"#)).await;
    let (status, body) = call(&app.lax, "POST", "/todos", Some(r#"{"title":"once"}"#)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "conflict");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("todos_title_key"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unreachable_primary_region_is_a_clear_503() {
    let app = app().await;
    let nobody = "127.0.0.1:1".parse().unwrap();
    let stranded = lax_repo(&app.cluster, nobody, |b| {
        b.rpc_timeout(Duration::from_millis(300))
    })
    .await;
    let (status, body) = call(&stranded, "POST", "/todos", Some(r#"{"title":"x"}"#)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "primary_unreachable");
    assert_eq!(body["committed"], false, "nothing was sent: {body}");
    // Reads still work locally.
    let (status, _) = call(&stranded, "GET", "/todos", None).await;
    assert_eq!(status, StatusCode::OK);
    drop(app.lax);
}

#[tokio::test]
async fn a_write_not_yet_replayed_is_accepted_and_marked() {
    let app = app().await;
    app.cluster.pause_replay().await.unwrap();
    let request = Request::builder()
        .method("POST")
        .uri("/todos?wait=false")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"title":"quick"}"#))
        .unwrap();
    let response = router(app.lax.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["fly-replicated"], "false");
    assert!(
        response.headers().contains_key("fly-lsn"),
        "the LSN cookie lets the next read wait"
    );
    let (_, list) = call(&app.lax, "GET", "/todos", None).await;
    assert_eq!(
        list,
        json!([]),
        "paused replica: the no-wait write is not visible yet"
    );
    app.cluster.resume_replay().await.unwrap();
}
