//! What an internet client controls at the app's port (the
//! `fly-consistency` header, tokens and plain LSNs, `Idempotency-Key`,
//! outputs that echo its input) costs the servers no more than the request
//! is worth: shared position questions, one timeline read at a time, keys
//! scoped to who sent them, outputs stored in linear time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use common::{CreateTodo, two_regions};
use fly_postgres::sqlx::{self, PgConnection};
use fly_postgres::{
    Consistency, ConsistencyLayer, Error, IdempotencyKey, Lsn, Repo, WaitFallback, WalPosition,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A write whose output echoes what the client sent (its title), as an
/// app's output often does.
fn todo(title: impl Into<String>) -> CreateTodo {
    CreateTodo {
        title: title.into(),
    }
}

/// A write whose output is its input, stored where a long text fits (a
/// todo's title has a unique index, which caps its length).
#[fly_postgres::mutation]
async fn note(tx: &mut PgConnection, text: String) -> Result<String, Error> {
    Ok(
        sqlx::query_scalar("insert into notes (text) values ($1) returning text")
            .bind(text)
            .fetch_one(&mut *tx)
            .await?,
    )
}

async fn count_todos(State(repo): State<Repo>) -> String {
    sqlx::query_scalar::<_, i64>("select count(*) from todos")
        .fetch_one(repo.reader())
        .await
        .map(|n| n.to_string())
        .unwrap_or_else(|e| format!("error: {e}"))
}

async fn add_todo(State(repo): State<Repo>, title: String) -> StatusCode {
    match repo.write(todo(title)).await {
        Ok(_) => StatusCode::CREATED,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn app(repo: &Repo, layer: ConsistencyLayer) -> Router {
    Router::new()
        .route("/todos", get(count_todos).post(add_todo))
        .with_state(repo.clone())
        .layer(layer)
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let _ = body.collect().await;
    (parts.status, parts.headers)
}

fn strong_read() -> Request<Body> {
    Request::get("/todos")
        .header("fly-consistency", "strong")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn two_hundred_strong_readers_share_their_position_questions() {
    let regions = two_regions().await;
    let allowed = app(
        &regions.lax,
        ConsistencyLayer::new(regions.lax.clone()).max_header_mode(Consistency::Strong),
    );
    // 200 readers asking for strong at the same moment, while writes are
    // forwarded from the same instance.
    let start = Arc::new(tokio::sync::Barrier::new(200));
    let readers: Vec<_> = (0..200)
        .map(|_| {
            let router = allowed.clone();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                send(&router, strong_read()).await.0
            })
        })
        .collect();
    for n in 0..10 {
        regions
            .lax
            .write(todo(format!("during the flood {n}")))
            .await
            .expect("forwarded writes succeed during the flood");
    }
    for reader in readers {
        assert_eq!(reader.await.unwrap(), StatusCode::OK);
    }
    let calls = regions.lax.stats().position_calls;
    let queries = regions.syd.stats().position_queries;
    assert!(
        (1..=20).contains(&calls),
        "200 strong reads made {calls} position RPCs; one in flight at a time serves all who wait"
    );
    assert!(
        queries <= calls,
        "syd ran {queries} position queries for {calls} questions"
    );

    // By default the header may ask for session at most: no question at all.
    let capped = app(&regions.lax, ConsistencyLayer::new(regions.lax.clone()));
    for _ in 0..20 {
        let (status, headers) = send(&capped, strong_read()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["fly-consistency"], "session");
    }
    assert_eq!(regions.lax.stats().position_calls, calls);
}

#[tokio::test]
async fn a_hundred_waits_for_a_newer_timeline_share_one_read_at_a_time() {
    let regions = two_regions().await;
    let lax = &regions.lax;
    let before = lax.stats().timeline_reads;
    // The replica is on timeline 1; a position on timeline 2 waits until it
    // follows, reading the timeline again while it waits.
    let newer = WalPosition::new(Some(2), "0/1".parse::<Lsn>().unwrap());
    let waits: Vec<_> = (0..100)
        .map(|_| {
            let lax = lax.clone();
            tokio::spawn(async move {
                lax.wait_for_position(newer, Duration::from_millis(400))
                    .await
            })
        })
        .collect();
    for wait in waits {
        let result = wait.await.unwrap();
        assert!(
            matches!(result, Err(Error::ReplicationTimeout { .. })),
            "{result:?}"
        );
    }
    let reads = lax.stats().timeline_reads - before;
    // 400 ms at one read per 20 ms at most, whatever the number of waiters
    // (each on its own would make about 2,000).
    assert!(
        (1..=40).contains(&reads),
        "{reads} timeline reads for 100 waiters"
    );
}

#[tokio::test]
async fn an_output_made_of_quote_tags_is_stored_and_replayed_intact() {
    let regions = two_regions().await;
    let tags: String = (0..2000)
        .map(|n| {
            if n == 0 {
                "$fp$".to_owned()
            } else {
                format!("$fp{n}$")
            }
        })
        .collect();
    sqlx::query("create table notes (id bigserial primary key, text text not null)")
        .execute(regions.syd.local())
        .await
        .unwrap();
    for (repo, id) in [
        (&regions.syd, "tags-local"),
        (&regions.lax, "tags-forwarded"),
    ] {
        let first = repo
            .write(note::args(tags.clone()))
            .request_id(id)
            .await
            .unwrap();
        assert_eq!(first, tags);
        // The same id again: answered from the exactly-once record.
        let again = repo
            .write(note::args(tags.clone()))
            .request_id(id)
            .await
            .unwrap();
        assert_eq!(again, tags);
    }
    let rows: i64 = sqlx::query_scalar("select count(*) from notes where text = $1")
        .bind(&tags)
        .fetch_one(regions.syd.local())
        .await
        .unwrap();
    assert_eq!(rows, 2, "one row per request id");
}

#[tokio::test]
async fn a_key_scoped_to_its_sender_is_one_write_per_scope() {
    let regions = two_regions().await;
    let key = IdempotencyKey::new("order-17").unwrap();
    let alice = key.clone().scoped("user:alice");
    let bob = key.scoped("user:bob");
    let write =
        |id: &IdempotencyKey, title: &str| regions.lax.write(todo(title)).request_id(id.clone());
    let first = write(&alice, "alice's").await.unwrap();
    assert_eq!(first.title, "alice's");
    // Bob's key is the same text: another write, not alice's result.
    assert_eq!(write(&bob, "bob's").await.unwrap().title, "bob's");
    // Alice repeating her request: her first answer, nothing written.
    assert_eq!(write(&alice, "alice's").await.unwrap(), first);
    // Alice reusing her key for another write: refused, 422.
    let reused = write(&alice, "something else").await.unwrap_err();
    assert!(
        matches!(reused, Error::RequestIdReused { .. }),
        "{reused:?}"
    );
    assert_eq!(
        reused.into_response().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // The id a "maybe committed" answer names, scoped again, is the same.
    assert_eq!(
        IdempotencyKey::new(alice.as_str())
            .unwrap()
            .scoped("user:alice"),
        alice
    );
    let rows: i64 = sqlx::query_scalar("select count(*) from todos")
        .fetch_one(regions.syd.local())
        .await
        .unwrap();
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn plain_lsns_are_bounded_to_a_small_lead() {
    let regions = two_regions().await;
    let lax = &regions.lax;
    let layer = || {
        ConsistencyLayer::new(lax.clone())
            .accept_plain_lsn(true)
            .max_wait(Duration::from_millis(500), WaitFallback::Unavailable)
    };
    let read = |lsn: Lsn| {
        Request::get("/todos")
            .header("fly-lsn", lsn.to_string())
            .body(Body::empty())
            .unwrap()
    };
    // Before the tracker knows a replay position, nothing to measure a
    // lead against: ignored.
    assert_eq!(lax.tracker().last_replayed(), None);
    let far = Lsn::from(u64::MAX / 2);
    assert_eq!(send(&app(lax, layer()), read(far)).await.0, StatusCode::OK);

    // A forwarded write makes the tracker poll.
    lax.write(todo("first")).await.unwrap();
    let replayed = lax.tracker().last_replayed().expect("a replay position");
    regions.cluster.pause_replay().await.unwrap();
    // Far ahead: ignored, served at once.
    let far = Lsn::from(replayed.as_u64() + (1 << 30));
    assert_eq!(send(&app(lax, layer()), read(far)).await.0, StatusCode::OK);
    // A plausible lead the paused replica has not reached: waited on.
    let near = Lsn::from(replayed.as_u64() + (16 << 10));
    assert_eq!(
        send(&app(lax, layer()), read(near)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    regions.cluster.resume_replay().await.unwrap();
}

#[tokio::test]
async fn the_token_cookie_is_secure_behind_https() {
    let regions = two_regions().await;
    let router = app(&regions.lax, ConsistencyLayer::new(regions.lax.clone()));
    for (n, (proto, secure)) in [(Some("https"), true), (Some("http"), false), (None, false)]
        .into_iter()
        .enumerate()
    {
        let mut request = Request::post("/todos");
        if let Some(proto) = proto {
            request = request.header("x-forwarded-proto", proto);
        }
        let (status, headers) = send(
            &router,
            request.body(Body::from(format!("a todo {n}"))).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let cookie = headers["set-cookie"].to_str().unwrap();
        assert!(cookie.starts_with("fly_lsn="), "{cookie}");
        assert_eq!(cookie.contains("; Secure"), secure, "{proto:?}: {cookie}");
    }
}
