//! Bounded-staleness reads and the replica's lag on a real primary and
//! streaming replica: replay paused and running, an idle primary, and a
//! replica that stops (also before the repo starts) and comes back.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use common::*;
use fly_postgres::sqlx::{self, PgPool};
use fly_postgres::{Consistency, ConsistencyLayer, ReplicaLag, ReplicaState, Repo, WaitFallback};
use fly_postgres_testkit::PgCluster;
use http_body_util::BodyExt;
use tower::ServiceExt;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Which server the request's reader reached, and how many todos it sees.
async fn served_by(State(repo): State<Repo>) -> String {
    let row: Result<(bool, i64), _> =
        sqlx::query_as("select pg_is_in_recovery(), (select count(*) from todos)")
            .fetch_one(repo.reader())
            .await;
    match row {
        Ok((true, n)) => format!("replica {n}"),
        Ok((false, n)) => format!("primary {n}"),
        Err(e) => format!("error: {e}"),
    }
}

fn app(repo: &Repo, mode: Consistency, max_wait: Duration) -> Router {
    Router::new()
        .route("/", get(served_by))
        .with_state(repo.clone())
        .layer(
            ConsistencyLayer::new(repo.clone())
                .mode(mode)
                .max_wait(max_wait, WaitFallback::PrimaryPool),
        )
}

/// The body of a GET of `/`, and how long it took.
async fn read(router: &Router) -> (String, Duration) {
    let started = Instant::now();
    let response = router
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (String::from_utf8(body.to_vec()).unwrap(), started.elapsed())
}

async fn insert(primary: &PgPool, title: &str) {
    sqlx::query("insert into todos (title) values ($1)")
        .bind(title)
        .execute(primary)
        .await
        .unwrap();
}

/// syd and lax, lax with a pool on the primary for its fallback.
async fn regions() -> (TwoRegions, PgPool) {
    let cluster = PgCluster::start().await.unwrap();
    let primary = pool(cluster.primary().connect_options()).await;
    let for_lax = primary.clone();
    let regions = two_regions_in(cluster, |b| b, move |b| b.primary_pool(for_lax)).await;
    (regions, primary)
}

/// Polls `done` every 50 ms for at most `limit`; how long it took.
async fn within<F, Fut>(limit: Duration, mut done: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if done().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(MS(50)).await;
    }
    None
}

#[tokio::test]
async fn a_bounded_read_falls_back_while_replay_is_paused_and_is_local_while_it_runs() {
    let (regions, primary) = regions().await;
    let max_wait = MS(300);
    let router = app(&regions.lax, Consistency::Bounded(MS(100)), max_wait);
    insert(&primary, "first").await;
    regions.cluster.wait_for_catch_up(MS(10_000)).await.unwrap();

    let (body, _) = read(&router).await;
    assert_eq!(body, "replica 1", "replay running: served by the replica");

    regions.cluster.pause_replay().await.unwrap();
    insert(&primary, "latest").await;
    // Older than the bound: a read must see it.
    tokio::time::sleep(MS(200)).await;
    let (body, took) = read(&router).await;
    assert_eq!(body, "primary 2", "the latest row, from the primary");
    assert!(took >= max_wait, "fell back only after max_wait: {took:?}");
    let lagging = regions.lax.replica_lag();
    assert!(
        lagging.bytes.is_some_and(|b| b > 0) || lagging.seconds.is_none(),
        "{lagging:?}"
    );

    regions.cluster.resume_replay().await.unwrap();
    let back = within(Duration::from_secs(3), || async {
        read(&router).await.0 == "replica 2"
    })
    .await;
    assert!(
        back.is_some(),
        "replay resumed: served by the replica again"
    );
    // A bound the replica meets costs no wait on the replica's lag.
    assert_eq!(
        regions
            .lax
            .catch_up(Consistency::Bounded(MS(100)))
            .await
            .ok(),
        Some(())
    );
}

#[tokio::test]
async fn lag_is_measured_from_the_primary_and_an_idle_primary_is_not_lag() {
    let (regions, primary) = regions().await;
    insert(&primary, "before the quiet").await;
    regions.cluster.wait_for_catch_up(MS(10_000)).await.unwrap();
    // Nothing written for a while: the last replayed transaction ages, yet
    // nothing is missing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let naive: f64 = sqlx::query_scalar(
        "select extract(epoch from now() - pg_last_xact_replay_timestamp())::float8",
    )
    .fetch_one(regions.lax.local())
    .await
    .unwrap();
    assert!(
        naive >= 2.5,
        "the naive measure grows on an idle primary: {naive}"
    );
    let lag = regions.lax.replica_lag();
    assert_eq!(lag.state, ReplicaState::Replica);
    assert!(lag.seconds.is_some_and(|s| s < MS(200)), "{lag:?}");
    assert!(lag.bytes.is_some_and(|b| b < 1024), "{lag:?}");
    let router = app(&regions.lax, Consistency::Bounded(MS(100)), MS(300));
    assert_eq!(read(&router).await.0, "replica 1");
    // One look from outside a repo (what `flypg status` shows) agrees.
    let mut conn = regions.cluster.replica().connect().await.unwrap();
    let once = ReplicaLag::measure(&mut conn).await.unwrap();
    assert_eq!(once.state, ReplicaState::Replica);
    assert_eq!(once.bytes, Some(0), "{once:?}");
    let mut conn = regions.cluster.primary().connect().await.unwrap();
    assert_eq!(
        ReplicaLag::measure(&mut conn).await.unwrap(),
        ReplicaLag::primary()
    );

    // Replay held: the lag grows in seconds and bytes, and shrinks to none
    // once replay runs again.
    regions.cluster.pause_replay().await.unwrap();
    insert(&primary, "held back").await;
    let grew = within(Duration::from_secs(3), || async {
        let lag = regions.lax.replica_lag();
        lag.bytes.is_some_and(|b| b > 0) && lag.seconds.is_some_and(|s| s >= MS(500))
    })
    .await;
    assert!(grew.is_some(), "{:?}", regions.lax.replica_lag());
    regions.cluster.resume_replay().await.unwrap();
    let caught_up = within(Duration::from_secs(3), || async {
        regions.lax.replica_lag().bytes == Some(0)
    })
    .await;
    assert!(caught_up.is_some(), "{:?}", regions.lax.replica_lag());
    assert_eq!(regions.syd.replica_lag().state, ReplicaState::Primary);
}

#[tokio::test]
async fn a_stopped_replica_sends_reads_to_the_fallback_at_once_until_it_returns() {
    let (regions, primary) = regions().await;
    insert(&primary, "one").await;
    regions.cluster.wait_for_catch_up(MS(10_000)).await.unwrap();
    let max_wait = Duration::from_secs(2);
    let router = app(&regions.lax, Consistency::ReadYourWrites, max_wait);
    let bounded = app(
        &regions.lax,
        Consistency::Bounded(Duration::from_secs(5)),
        max_wait,
    );
    assert_eq!(read(&router).await.0, "replica 1");

    regions.cluster.replica().stop().await.unwrap();
    // A read that began before the repo found out may fail on the replica.
    let (first, _) = read(&router).await;
    assert!(
        first == "primary 1" || first.starts_with("error"),
        "{first}"
    );
    let down = within(Duration::from_secs(3), || async {
        matches!(regions.lax.replica_lag().state, ReplicaState::Down { .. })
    })
    .await;
    assert!(down.is_some(), "{:?}", regions.lax.replica_lag());
    for router in [&router, &bounded, &router] {
        let (body, took) = read(router).await;
        assert_eq!(body, "primary 1");
        assert!(
            took < max_wait / 2,
            "no wait while the replica is known down: {took:?}"
        );
    }
    assert_eq!(regions.lax.replica_lag().seconds, None);
    // A layer without a fallback lets requests run: one that does not
    // read (a health check) still answers.
    let health = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(ConsistencyLayer::new(regions.lax.clone()));
    let (body, took) = read(&health).await;
    assert_eq!(body, "ok");
    assert!(took < max_wait / 2, "{took:?}");
    // Outside any layer too, the reader is the primary while the replica is down.
    let in_recovery = |repo: Repo| async move {
        sqlx::query_scalar::<_, bool>("select pg_is_in_recovery()")
            .fetch_one(repo.reader())
            .await
            .unwrap()
    };
    assert!(!in_recovery(regions.lax.clone()).await);

    // A repo started while its replica is down starts, and serves through
    // the fallback.
    let lazy =
        fly_postgres::pool_options().connect_lazy_with(regions.cluster.replica().connect_options());
    let started = Instant::now();
    let late = lax_for(&regions.syd, lazy, |b| b.primary_pool(primary.clone())).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        late.replica_lag().state,
        ReplicaState::Down { .. }
    ));
    let (body, took) = read(&app(&late, Consistency::ReadYourWrites, max_wait)).await;
    assert_eq!(body, "primary 1");
    assert!(took < max_wait / 2, "{took:?}");

    regions.cluster.replica().start().await.unwrap();
    let returned = Instant::now();
    let local = within(Duration::from_secs(10), || async {
        read(&router).await.0 == "replica 1"
    })
    .await;
    assert!(
        local.is_some(),
        "served locally again after the replica's return"
    );
    // Back within a second or two of answering again.
    assert!(
        returned.elapsed() < Duration::from_secs(6),
        "{:?}",
        returned.elapsed()
    );
    assert_eq!(regions.lax.replica_lag().state, ReplicaState::Replica);
    assert!(in_recovery(regions.lax.clone()).await);
}
