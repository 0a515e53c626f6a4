//! The consistency modes across three regions whose replicas lag by
//! different amounts (lax a little, fra a lot), signed tokens, bounded
//! waits, and a write lost in an asynchronous failover.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use common::*;
use fly_postgres::sqlx::{self, PgPool};
use fly_postgres::{
    Consistency, ConsistencyLayer, Error, Repo, RepoBuilder, WaitFallback, WalPosition,
};
use fly_postgres_testkit::{PgTopology, PgTopologyBuilder};
use fly_rpc::{Node, Regions, StaticPeers};
use http_body_util::BodyExt;
use tower::ServiceExt;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// How many todos the region's reader sees.
async fn count(State(repo): State<Repo>) -> String {
    sqlx::query_scalar::<_, i64>("select count(*) from todos")
        .fetch_one(repo.reader())
        .await
        .map(|n| n.to_string())
        .unwrap_or_else(|e| format!("error: {e}"))
}

async fn create(State(repo): State<Repo>, title: String) -> StatusCode {
    // No wait here: the token carries the consistency to the next request.
    match repo.write(CreateTodo { title }).no_wait().await {
        Ok(_) => StatusCode::CREATED,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn app(repo: &Repo, layer: impl FnOnce(ConsistencyLayer) -> ConsistencyLayer) -> Router {
    Router::new()
        .route("/todos", get(count).post(create))
        .with_state(repo.clone())
        .layer(layer(ConsistencyLayer::new(repo.clone())))
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (parts.status, parts.headers, text)
}

/// A GET of `/todos` with the token and extra headers.
fn get_todos(token: Option<&str>, extra: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::get("/todos");
    if let Some(token) = token {
        request = request.header("fly-lsn", token);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.body(Body::empty()).unwrap()
}

/// A repo in replica region `region` that sends its writes to `syd`.
async fn replica_repo(
    region: &str,
    syd: &Repo,
    pool: PgPool,
    extra: impl FnOnce(RepoBuilder) -> RepoBuilder,
) -> Repo {
    let node = Node::builder()
        .regions(Regions::new(region, "syd"))
        .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .secret(SECRET)
        .discovery(StaticPeers::new().with("syd", syd.node().local_addr().unwrap()));
    extra(registered(Repo::builder()))
        .pool(pool)
        .node(node)
        .start()
        .await
        .unwrap()
}

struct ThreeRegions {
    topology: PgTopology,
    syd: Repo,
    lax: Repo,
    fra: Repo,
}

/// syd holds the primary; lax's replica replays at once, fra's about
/// `fra_lag` behind.
async fn three_regions(
    fra_lag: Duration,
    fra_extra: impl FnOnce(RepoBuilder) -> RepoBuilder,
) -> ThreeRegions {
    let topology = PgTopology::builder("syd")
        .replica("lax")
        .replica("fra")
        .rtt("syd", "fra", fra_lag * 2)
        .start()
        .await
        .unwrap();
    let (syd, lax) = syd_and_lax(
        pool(topology.primary().connect_options()).await,
        pool(topology.replica("lax").unwrap().connect_options()).await,
        |b| b,
        |b| b.replication_timeout(Duration::from_secs(3)),
    )
    .await;
    let fra = replica_repo(
        "fra",
        &syd,
        pool(topology.replica("fra").unwrap().connect_options()).await,
        |b| fra_extra(b.replication_timeout(Duration::from_secs(3))),
    )
    .await;
    topology
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();
    ThreeRegions {
        topology,
        syd,
        lax,
        fra,
    }
}

/// A client alternating reads in lax (fresh) and fra (lagging) while syd
/// writes: how often the count it reads went down.
async fn times_the_count_went_down(regions: &ThreeRegions, mode: Consistency) -> usize {
    let lax = app(&regions.lax, |l| l.mode(mode));
    let fra = app(&regions.fra, |l| l.mode(mode));
    let mut token: Option<String> = None;
    let mut last = 0i64;
    let mut went_down = 0;
    for i in 0..6 {
        regions
            .syd
            .write(CreateTodo {
                title: format!("{mode}-{i}"),
            })
            .await
            .unwrap();
        // lax shows it within a few milliseconds.
        tokio::time::sleep(MS(30)).await;
        for router in [&lax, &fra] {
            let (status, headers, body) = send(router, get_todos(token.as_deref(), &[])).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if let Some(raised) = headers.get("fly-lsn") {
                token = Some(raised.to_str().unwrap().to_owned());
            }
            let seen: i64 = body.parse().unwrap();
            if seen < last {
                went_down += 1;
            }
            last = last.max(seen);
        }
    }
    went_down
}

#[tokio::test]
async fn session_reads_never_go_back_across_regions() {
    let regions = three_regions(MS(300), |b| b).await;
    // Read-your-writes alone: the session wrote nothing, so fra answers
    // from its lagging replica and items the client saw in lax vanish.
    let without = times_the_count_went_down(&regions, Consistency::ReadYourWrites).await;
    assert!(
        without > 0,
        "fra's lag should have shown in read-your-writes mode"
    );
    // Session mode: every response raises the token to what was seen.
    let with = times_the_count_went_down(&regions, Consistency::Session).await;
    assert_eq!(with, 0, "a session read went back in time");
}

#[tokio::test]
async fn strong_reads_see_a_write_made_elsewhere_a_moment_before() {
    let regions = three_regions(MS(300), |b| b).await;
    // Strong reads cost the primary region a round trip each: a client may
    // ask for them only where the app allows it.
    let fra = app(&regions.fra, |l| l.max_header_mode(Consistency::Strong));
    let fra_default = app(&regions.fra, |l| l);
    let (_, _, before) = send(&fra, get_todos(None, &[])).await;
    // Written in lax (forwarded to syd), then read in fra with no token.
    regions
        .lax
        .write(CreateTodo {
            title: "from lax".into(),
        })
        .await
        .unwrap();
    let (status, _, eventual) = send(&fra, get_todos(None, &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        eventual, before,
        "fra's lag should hide the write without strong"
    );
    // By default the header gets the ceiling, session, and says so.
    let (status, headers, capped) = send(
        &fra_default,
        get_todos(None, &[("fly-consistency", "strong")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{capped}");
    assert_eq!(headers["fly-consistency"], "session");
    let started = Instant::now();
    let (status, _, strong) = send(&fra, get_todos(None, &[("fly-consistency", "strong")])).await;
    assert_eq!(status, StatusCode::OK, "{strong}");
    assert_eq!(
        strong.parse::<i64>().unwrap(),
        before.parse::<i64>().unwrap() + 1,
        "a strong read must see the write"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // Also through the repo, outside any layer.
    regions
        .syd
        .write(CreateTodo {
            title: "from syd".into(),
        })
        .await
        .unwrap();
    regions.fra.catch_up(Consistency::Strong).await.unwrap();
    assert_eq!(
        count_todos(regions.fra.local()).await,
        before.parse::<i64>().unwrap() + 2
    );
    // An unknown mode is the client's error, naming the accepted ones.
    for bad in [
        "linear",
        "bounded",
        "bounded=",
        "bounded=-2s",
        "bounded=2 days",
    ] {
        let (status, _, body) = send(&fra, get_todos(None, &[("fly-consistency", bad)])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            body.contains("eventual, read-your-writes, bounded=<duration>")
                && body.contains("session, strong"),
            "{bad}: {body}"
        );
    }
}

#[tokio::test]
async fn forged_tokens_cost_no_wait() {
    let regions = three_regions(MS(0), |b| b).await;
    let lax = app(&regions.lax, |l| l);
    let syd = app(&regions.syd, |l| l);
    let (status, headers, _) = send(
        &syd,
        Request::post("/todos").body(Body::from("real")).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let real = headers["fly-lsn"].to_str().unwrap().to_owned();
    regions
        .topology
        .replica("lax")
        .unwrap()
        .pause_replay()
        .await
        .unwrap();
    // Something to wait for that the paused replica will not reach.
    regions
        .syd
        .write(CreateTodo {
            title: "unseen".into(),
        })
        .no_wait()
        .await
        .unwrap();
    let mut flipped = real.clone().into_bytes();
    let last = flipped.len() - 5;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let replayed = regions.lax.tracker().last_replayed().unwrap_or_default();
    let ahead = fly_postgres::Lsn::new(replayed.as_u64() + (16 << 20)).to_string();
    let oversized = "A".repeat(2048);
    let forged = [
        flipped.as_str(),
        ahead.as_str(),
        "AgEAAAAAAAAAAQAAAAEAAAAAAAAAAQ",
        "not a token",
        oversized.as_str(),
        &real[..real.len() / 2],
    ];
    for token in forged {
        let started = Instant::now();
        let (status, headers, body) = send(&lax, get_todos(Some(token), &[])).await;
        let took = started.elapsed();
        assert_eq!(status, StatusCode::OK, "{body}");
        // Waited on, it would hold the request for the replication
        // timeout (3 s here, replay paused); ignored, it costs no wait.
        assert!(took < MS(1500), "a forged token cost {took:?}");
        assert!(headers.get("fly-lsn").is_none());
        assert!(!body.contains(token));
    }
    // The real token still makes it wait (and time out, replay paused).
    let lax_short = app(&regions.lax, |l| {
        l.max_wait(MS(150), WaitFallback::Unavailable)
    });
    let (_, headers, _) = send(
        &syd,
        Request::post("/todos").body(Body::from("real 2")).unwrap(),
    )
    .await;
    let real = headers["fly-lsn"].to_str().unwrap().to_owned();
    let (status, _, _) = send(&lax_short, get_todos(Some(&real), &[])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    regions
        .topology
        .replica("lax")
        .unwrap()
        .resume_replay()
        .await
        .unwrap();
}

#[tokio::test]
async fn max_wait_falls_back_as_configured() {
    let regions = three_regions(MS(1500), |b| b).await;
    let syd = app(&regions.syd, |l| l);
    let (status, headers, _) = send(
        &syd,
        Request::post("/todos").body(Body::from("lagging")).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let token = headers["fly-lsn"].to_str().unwrap().to_owned();

    // 503 with Retry-After, after max_wait, not after the lag.
    let unavailable = app(&regions.fra, |l| {
        l.max_wait(MS(100), WaitFallback::Unavailable)
    });
    let started = Instant::now();
    let (status, headers, _) = send(&unavailable, get_todos(Some(&token), &[])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(started.elapsed() < MS(1000), "{:?}", started.elapsed());

    // fly-replay to the primary region.
    let replay = app(&regions.fra, |l| l.max_wait(MS(100), WaitFallback::Replay));
    let (_, headers, _) = send(&replay, get_todos(Some(&token), &[])).await;
    assert_eq!(headers["fly-replay"], "region=syd");

    // A primary pool: the same request answered here, from the primary,
    // and it sees the write.
    let fra_with_primary = replica_repo(
        "fra",
        &regions.syd,
        pool(regions.topology.replica("fra").unwrap().connect_options()).await,
        |b| b.primary_pool(regions.syd.local().clone()),
    )
    .await;
    let primary_pool = app(&fra_with_primary, |l| {
        l.max_wait(MS(100), WaitFallback::PrimaryPool)
    });
    let on_replica = count_todos(fra_with_primary.local()).await;
    let started = Instant::now();
    let (status, _, body) = send(&primary_pool, get_todos(Some(&token), &[])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.parse::<i64>().unwrap(), on_replica + 1);
    assert!(started.elapsed() < MS(1000), "{:?}", started.elapsed());
}

/// syd (reached by the leader address, as on Fly) with a standby the
/// `standby` call adds, and lax on its replica, caught up.
async fn failover_pair(
    standby: fn(PgTopologyBuilder) -> PgTopologyBuilder,
) -> (PgTopology, Repo, Repo) {
    let topology = standby(PgTopology::builder("syd"))
        .replica("lax")
        .start()
        .await
        .unwrap();
    let leader = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(topology.leader_options());
    let (syd, lax) = syd_and_lax(
        leader,
        pool(topology.replica("lax").unwrap().connect_options()).await,
        |b| b,
        |b| b.replication_timeout(Duration::from_secs(3)),
    )
    .await;
    topology
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();
    (topology, syd, lax)
}

#[tokio::test]
async fn a_token_for_a_write_lost_in_an_async_failover_answers_gone() {
    let (topology, syd, lax) = failover_pair(PgTopologyBuilder::standby).await;
    let syd_app = app(&syd, |l| l);
    let lax_app = app(&lax, |l| l);
    // A write both standbys get: its token survives the failover.
    let (_, headers, _) = send(
        &syd_app,
        Request::post("/todos").body(Body::from("kept")).unwrap(),
    )
    .await;
    let kept = headers["fly-lsn"].to_str().unwrap().to_owned();
    topology
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();
    // Then neither standby hears from the primary, which acknowledges a
    // write asynchronously, and dies.
    topology.link("syd-standby").unwrap().cut();
    topology.link("lax").unwrap().cut();
    let (status, headers, _) = send(
        &syd_app,
        Request::post("/todos").body(Body::from("lost")).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let lost = headers["fly-lsn"].to_str().unwrap().to_owned();
    // Where the lost write is: the old primary's flush position (at or
    // past its commit), on its timeline, read before it dies.
    let old_primary = topology.member("syd-primary").unwrap().server();
    let lost_at = {
        let mut conn = old_primary.connect().await.unwrap();
        let lsn = fly_postgres::advanced::commit_lsn(&mut conn).await.unwrap();
        let walfile: String =
            sqlx::query_scalar("select pg_walfile_name(pg_current_wal_flush_lsn())")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        let timeline = u32::from_str_radix(&walfile[..8], 16).unwrap();
        WalPosition::new(Some(timeline), lsn)
    };
    old_primary.kill().await.unwrap();
    topology.link("syd-standby").unwrap().restore();
    topology.link("lax").unwrap().restore();
    topology.promote("syd-standby").await.unwrap();
    // lax follows the new timeline, whose WAL soon passes the lost write's
    // LSN: the token must not be released by that.
    let mut conn = topology.primary().connect().await.unwrap();
    for i in 0..20 {
        sqlx::query("insert into todos (title) values ($1)")
            .bind(format!("after failover {i}"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    topology
        .wait_for_catch_up(Duration::from_secs(30))
        .await
        .unwrap();
    let (status, _, body) = send(&lax_app, get_todos(Some(&lost), &[])).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(body.contains("lost"), "{body}");
    // The same position waited for directly: exactly `Error::WriteLost`,
    // past the point where the promoted standby's timeline took over, and
    // answered 410 by `ErrorResponse` too.
    let err = lax
        .wait_for_position(lost_at, Duration::from_secs(3))
        .await
        .unwrap_err();
    match &err {
        Error::WriteLost {
            position,
            switched_at,
            timeline,
        } => {
            assert_eq!(*position, lost_at);
            assert!(*switched_at < lost_at.lsn, "{err}");
            assert_eq!(Some(*timeline), lost_at.timeline.map(|t| t + 1), "{err}");
        }
        other => panic!("expected WriteLost, got {other:?}"),
    }
    let response = err.into_response();
    assert_eq!(response.status(), StatusCode::GONE);
    let body: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"], "write_lost", "{body}");
    assert_eq!(body["committed"], false, "{body}");
    let (status, _, body) = send(&lax_app, get_todos(Some(&kept), &[])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_session_token_after_a_failover_and_a_write_names_the_new_timeline() {
    session_token_after_a_failover(true).await;
}

#[tokio::test]
async fn a_session_token_after_a_failover_without_a_write_names_the_new_timeline() {
    session_token_after_a_failover(false).await;
}

/// A session token stamped in lax within a second of lax last reading its
/// timeline, after lax's replica followed a new primary: after a write
/// through lax (the new primary's answer names its timeline), or after
/// lax's twice-a-second look at its replica saw it stream the new one.
async fn session_token_after_a_failover(write_first: bool) {
    // A synchronous standby: nothing acknowledged is lost, so a token
    // stamped after the failover must be accepted everywhere.
    let (topology, syd, lax) = failover_pair(PgTopologyBuilder::synchronous_standby).await;
    let session = [("fly-consistency", "session")];
    let syd_app = app(&syd, |l| l);
    let lax_app = app(&lax, |l| l);
    topology.primary().kill().await.unwrap();
    topology.promote("syd-standby").await.unwrap();
    // A session read in lax before its replica follows: lax now holds a
    // view of its timeline that says 1.
    let (status, _, body) = send(&lax_app, get_todos(None, &session)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let viewed = Instant::now();
    // As soon as lax's replica streams the new timeline, a write through
    // lax (answered by the new primary) and a session read there.
    let lax_server = topology.replica("lax").unwrap();
    let mut watch = lax_server.connect().await.unwrap();
    loop {
        let received: Option<i32> =
            sqlx::query_scalar("select received_tli from pg_stat_wal_receiver")
                .fetch_optional(&mut watch)
                .await
                .unwrap()
                .flatten();
        if received == Some(2) {
            break;
        }
        assert!(
            viewed.elapsed() < Duration::from_secs(20),
            "lax never followed"
        );
        tokio::time::sleep(MS(5)).await;
    }
    if write_first {
        let (status, headers, body) = send(
            &lax_app,
            Request::post("/todos")
                .header("fly-consistency", "session")
                .body(Body::from("after the failover"))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(headers.contains_key("fly-lsn"));
        // lax replays the write (asked of the replica directly: the
        // write's token would make lax look at its timeline again).
        topology
            .wait_for_catch_up(Duration::from_secs(10))
            .await
            .unwrap();
    } else {
        // The new primary writes (its promotion did already); lax's look
        // at its replica, twice a second, sees the new timeline.
        let mut new_primary = topology.primary().connect().await.unwrap();
        sqlx::query("insert into todos (title) values ('written on the new primary')")
            .execute(&mut new_primary)
            .await
            .unwrap();
        topology
            .wait_for_catch_up(Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::sleep(MS(600)).await;
    }
    // A session read without a token: its token is what lax has replayed.
    let (status, headers, body) = send(&lax_app, get_todos(None, &session)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = headers["fly-lsn"].to_str().unwrap().to_owned();
    eprintln!(
        "the session token was stamped {:?} after lax last viewed timeline 1",
        viewed.elapsed()
    );
    // The new primary judges the token: one naming timeline 1 with an LSN
    // past the switch point would read as a write lost in the failover.
    let (status, _, body) = send(&syd_app, get_todos(Some(&token), &session)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a fresh session token was judged lost: {body}"
    );
    // So does lax itself, and the read shows the write.
    let (status, _, body) = send(&lax_app, get_todos(Some(&token), &session)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.parse::<i64>().unwrap() >= 1, "{body}");
}
