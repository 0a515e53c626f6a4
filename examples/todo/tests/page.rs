//! The page a browser gets: content negotiation on `/`, forms with
//! POST-redirect-GET, read-your-writes through the cookie, the stale case
//! with "skip the wait", and bad input answered on the page.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use fly_postgres::Repo;
use fly_postgres_testkit::PgCluster;
use fly_postgres_todo::router;
use http_body_util::BodyExt;
use tower::ServiceExt;

mod common;
use common::*;

async fn app() -> App {
    let cluster = PgCluster::builder()
        .replication_delay(Duration::from_millis(30))
        .start()
        .await
        .unwrap();
    app_on(cluster).await
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    html: String,
}

/// The cookies a response sets, as a `Cookie` header value.
fn cookies(headers: &HeaderMap) -> String {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

async fn send(repo: &Repo, request: Request<Body>) -> Page {
    let response = router(repo.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Page {
        status,
        headers,
        html: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get_page(repo: &Repo, cookie: &str) -> Page {
    let mut request = Request::get("/").header(header::ACCEPT, "text/html,application/xhtml+xml");
    if !cookie.is_empty() {
        request = request.header(header::COOKIE, cookie);
    }
    send(repo, request.body(Body::empty()).unwrap()).await
}

async fn post_form(repo: &Repo, uri: &str, form: &str, cookie: &str) -> Page {
    let mut request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "text/html");
    if !cookie.is_empty() {
        request = request.header(header::COOKIE, cookie);
    }
    send(repo, request.body(Body::from(form.to_owned())).unwrap()).await
}

#[tokio::test]
async fn a_browser_gets_the_page_and_api_clients_keep_json() {
    let app = app().await;
    let page = get_page(&app.lax, "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.html.contains(r#"<strong id="region">lax</strong>"#),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains(r#"<strong id="primary-region">syd</strong>"#)
    );
    assert!(page.html.contains(r#"id="instance""#));
    assert!(page.html.contains("Nothing to do."));
    assert!(page.html.contains(r#"action="/ui/todos""#));

    let json = send(
        &app.lax,
        Request::get("/")
            .header(header::ACCEPT, "application/json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let facts: serde_json::Value = serde_json::from_str(&json.html).unwrap();
    assert_eq!(
        facts,
        serde_json::json!({"region": "lax", "primary_region": "syd", "is_primary": false})
    );
    // The instance and its counters have their own route.
    let stats = send(
        &app.lax,
        Request::get("/stats").body(Body::empty()).unwrap(),
    )
    .await;
    let stats: serde_json::Value = serde_json::from_str(&stats.html).unwrap();
    assert_eq!(stats["region"], "lax");
    assert!(stats["instance"].as_str().unwrap().starts_with("pid-"));
    assert_eq!(stats["forwarded_writes"], 0);
}

#[tokio::test]
async fn adding_through_the_form_redirects_to_a_list_that_has_it() {
    let app = app().await;
    let posted = post_form(&app.lax, "/ui/todos", "title=buy+milk", "").await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER);
    assert_eq!(posted.headers[header::LOCATION], "/");
    let timing = posted.headers["server-timing"].to_str().unwrap();
    for phase in [
        "fly-write;",
        "fly-rpc;",
        "fly-primary;",
        "fly-replication-wait;",
    ] {
        assert!(timing.contains(phase), "{timing}");
    }
    let cookie = cookies(&posted.headers);
    assert!(cookie.contains("fly_lsn="), "{cookie}");
    assert!(cookie.contains("todo_last_write="), "{cookie}");

    let page = get_page(&app.lax, &cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.html.contains("buy milk"),
        "read your write: {}",
        page.html
    );
    assert!(page.html.contains("Your last write"));
    assert!(page.html.contains("wait for this region"));

    // Done, then delete, through their forms.
    let id = page
        .html
        .split("data-id=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let done = post_form(
        &app.lax,
        &format!("/ui/todos/{id}/toggle"),
        "done=true",
        &cookie,
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let page = get_page(&app.lax, &cookies(&done.headers)).await;
    assert!(page.html.contains(r#"class="done""#), "{}", page.html);
    let gone = post_form(&app.lax, &format!("/ui/todos/{id}/delete"), "", &cookie).await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    let page = get_page(&app.lax, &cookies(&gone.headers)).await;
    assert!(!page.html.contains("buy milk"));
    // Deleting it again: a readable 404 on the page.
    let again = post_form(&app.lax, &format!("/ui/todos/{id}/delete"), "", "").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert!(again.html.contains("That todo is gone"), "{}", again.html);
}

#[tokio::test]
async fn skipping_the_wait_shows_a_stale_list_at_least_once() {
    let app = app().await;
    let mut stale = 0;
    for i in 0..5 {
        let title = format!("quick+{i}");
        let posted = post_form(
            &app.lax,
            "/ui/todos",
            &format!("title={title}&skip_wait=on"),
            "",
        )
        .await;
        assert_eq!(posted.status, StatusCode::SEE_OTHER);
        let cookie = cookies(&posted.headers);
        assert!(
            !cookie.contains("fly_lsn="),
            "no LSN for a skipped wait: {cookie}"
        );
        let page = get_page(&app.lax, &cookie).await;
        assert!(page.html.contains("wait skipped"), "{}", page.html);
        if !page.html.contains(&format!("quick {i}")) {
            stale += 1;
        }
    }
    assert!(
        stale > 0,
        "with 30 ms of WAL delay a read right after is stale"
    );
}

#[tokio::test]
async fn bad_input_gets_a_readable_message_and_the_right_status() {
    let app = app().await;
    let empty = post_form(&app.lax, "/ui/todos", "title=+++", "").await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert!(
        empty.html.contains("title must not be empty"),
        "{}",
        empty.html
    );
    assert!(empty.html.contains(r#"role="alert""#));

    let long = "x".repeat(10_000);
    let too_long = post_form(&app.lax, "/ui/todos", &format!("title={long}"), "").await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert!(too_long.html.contains("over 500 characters"));
    assert!(!too_long.html.contains(&long[..600]), "not echoed back");

    let forged = post_form(&app.lax, "/ui/todos", "title=a&admin=1", "").await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert!(
        forged.html.contains("did not make sense"),
        "{}",
        forged.html
    );
    // Too big for a form, or not a form at all: said so, with the status.
    let huge = post_form(&app.lax, "/ui/todos", &"t".repeat(3 << 20), "").await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(huge.html.contains("too big"), "{}", huge.html);
    let json = send(
        &app.lax,
        Request::post("/ui/todos")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "text/html")
            .body(Body::from(r#"{"title":"a"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(json.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(json.html.contains("not a form"), "{}", json.html);
    let checkbox = post_form(&app.lax, "/ui/todos", "title=a&skip_wait=yes", "").await;
    assert_eq!(checkbox.status, StatusCode::BAD_REQUEST);
    let toggle = post_form(&app.lax, "/ui/todos/1/toggle", "done=maybe", "").await;
    assert_eq!(toggle.status, StatusCode::BAD_REQUEST);
    let id = post_form(&app.lax, "/ui/todos/abc/delete", "", "").await;
    assert_eq!(id.status, StatusCode::BAD_REQUEST);

    // HTML in a title is shown as text.
    let script = post_form(
        &app.lax,
        "/ui/todos",
        "title=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "",
    )
    .await;
    assert_eq!(script.status, StatusCode::SEE_OTHER);
    let page = get_page(&app.lax, &cookies(&script.headers)).await;
    assert!(page.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.html.contains("<script>alert"));

    // A duplicate title: the 409 in words, on the page.
    let dup = post_form(
        &app.lax,
        "/ui/todos",
        "title=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "",
    )
    .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert!(
        dup.html.contains("There is already a todo called"),
        "{}",
        dup.html
    );
    assert!(!dup.html.contains("SQLSTATE"));

    // Cookies from elsewhere or from a forger: the page still answers.
    for cookie in [
        "fly_lsn=0/1",
        "fly_lsn=garbage",
        "todo_last_write=<b>1</b>",
        "todo_last_write=1/2",
    ] {
        let page = get_page(&app.lax, cookie).await;
        assert_eq!(page.status, StatusCode::OK, "{cookie}");
        assert!(!page.html.contains("<b>1</b>"));
    }
    drop(app.cluster);
}

#[tokio::test]
async fn a_write_committed_but_not_replayed_in_time_is_not_shown_as_failed() {
    let app = app().await;
    // A lax instance that waits only 300 ms for its replica, which stops.
    let impatient = lax_repo(
        &app.cluster,
        app.syd.node().local_addr().expect("rpc listener"),
        |b| b.replication_timeout(Duration::from_millis(300)),
    )
    .await;
    app.cluster.pause_replay().await.unwrap();

    let added = post_form(&impatient, "/ui/todos", "title=late+milk", "").await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.html);
    let jar = cookies(&added.headers);
    assert!(jar.contains("/late"), "the cookie says it is late: {jar}");
    let page = get_page(&impatient, &jar).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.html.contains("committed on the primary") && page.html.contains("do not send it"),
        "{}",
        page.html
    );
    assert!(!page.html.contains(">late milk<"), "not replayed here yet");

    app.cluster.resume_replay().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = get_page(&impatient, &jar).await;
        if page.html.contains(">late milk<") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", page.html);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
