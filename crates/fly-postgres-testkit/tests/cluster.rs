//! The testkit against the machine's real PostgreSQL binaries.

use std::time::{Duration, Instant};

use fly_postgres_testkit::{Delay, LatencyProxy, PgCluster, live_processes_tagged};
use sqlx::{Connection, Row};

async fn replay_lsn(cluster: &PgCluster) -> i64 {
    let mut conn = cluster.replica().connect().await.unwrap();
    sqlx::query("select (pg_last_wal_replay_lsn() - '0/0')::bigint")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn replica_streams_and_teardown_leaves_nothing() {
    let started = Instant::now();
    let cluster = PgCluster::start().await.unwrap();
    eprintln!("cluster up in {:?}", started.elapsed());
    let tag = cluster.tag().to_owned();
    let dir = cluster.dir().to_path_buf();
    assert!(
        !live_processes_tagged(&tag).is_empty(),
        "servers should be running"
    );

    let mut primary = cluster.primary().connect().await.unwrap();
    sqlx::query("create table t (id int primary key)")
        .execute(&mut primary)
        .await
        .unwrap();
    sqlx::query("insert into t values (1), (2)")
        .execute(&mut primary)
        .await
        .unwrap();
    cluster
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();

    let mut replica = cluster.replica().connect().await.unwrap();
    let in_recovery: bool = sqlx::query_scalar("select pg_is_in_recovery()")
        .fetch_one(&mut replica)
        .await
        .unwrap();
    assert!(in_recovery, "the replica must be a hot standby");
    let n: i64 = sqlx::query_scalar("select count(*) from t")
        .fetch_one(&mut replica)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let err = sqlx::query("insert into t values (3)")
        .execute(&mut replica)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("25006"),
        "writes on the replica must fail read-only"
    );
    replica.close().await.unwrap();
    primary.close().await.unwrap();

    drop(cluster);
    assert!(
        live_processes_tagged(&tag).is_empty(),
        "postgres left running"
    );
    assert!(!dir.exists(), "temp dir left behind");
}

#[tokio::test]
async fn paused_replay_holds_back_the_replica() {
    let cluster = PgCluster::start().await.unwrap();
    let mut primary = cluster.primary().connect().await.unwrap();
    sqlx::query("create table t (id int)")
        .execute(&mut primary)
        .await
        .unwrap();
    cluster
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();
    cluster.pause_replay().await.unwrap();
    let before = replay_lsn(&cluster).await;
    sqlx::query("insert into t values (1)")
        .execute(&mut primary)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        replay_lsn(&cluster).await,
        before,
        "replay advanced while paused"
    );
    assert!(
        cluster
            .wait_for_catch_up(Duration::from_millis(100))
            .await
            .is_err(),
        "catch-up must time out while paused"
    );
    cluster.resume_replay().await.unwrap();
    cluster
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(replay_lsn(&cluster).await > before);
}

#[tokio::test]
async fn kill_and_restart_both_servers() {
    let cluster = PgCluster::start().await.unwrap();
    let mut primary = cluster.primary().connect().await.unwrap();
    sqlx::query("create table t (id int)")
        .execute(&mut primary)
        .await
        .unwrap();
    drop(primary);

    cluster.replica().kill().await.unwrap();
    assert!(!cluster.replica().is_running());
    assert!(
        cluster.replica().connect().await.is_err(),
        "killed replica still answers"
    );
    cluster.replica().start().await.unwrap();

    cluster.primary().kill().await.unwrap();
    assert!(
        cluster.primary().connect().await.is_err(),
        "killed primary still answers"
    );
    cluster.primary().start().await.unwrap();
    let mut primary = cluster.primary().connect().await.unwrap();
    sqlx::query("insert into t values (7)")
        .execute(&mut primary)
        .await
        .unwrap();
    cluster
        .wait_for_catch_up(Duration::from_secs(20))
        .await
        .unwrap();
    let mut replica = cluster.replica().connect().await.unwrap();
    let n: i64 = sqlx::query_scalar("select count(*) from t where id = 7")
        .fetch_one(&mut replica)
        .await
        .unwrap();
    assert_eq!(n, 1, "replica must resume streaming after both crashed");

    cluster.replica().stop().await.unwrap();
    assert!(!cluster.replica().is_running());
    cluster.replica().start().await.unwrap();
    cluster
        .wait_for_catch_up(Duration::from_secs(20))
        .await
        .unwrap();
}

#[tokio::test]
async fn recovery_min_apply_delay_delays_replay() {
    let cluster = PgCluster::start().await.unwrap();
    cluster
        .set_recovery_min_apply_delay(Duration::from_millis(400))
        .await
        .unwrap();
    let mut primary = cluster.primary().connect().await.unwrap();
    sqlx::query("create table t (id int)")
        .execute(&mut primary)
        .await
        .unwrap();
    // The replica applies the new setting when its startup process reloads,
    // a moment after the call: probe with commits until one is delayed.
    let mut delayed = None;
    for i in 0..20 {
        let started = Instant::now();
        sqlx::query("insert into t values ($1)")
            .bind(i)
            .execute(&mut primary)
            .await
            .unwrap();
        cluster
            .wait_for_catch_up(Duration::from_secs(10))
            .await
            .unwrap();
        if started.elapsed() >= Duration::from_millis(350) {
            delayed = Some(started.elapsed());
            break;
        }
    }
    assert!(
        delayed.is_some(),
        "no commit was held back by the apply delay"
    );
}

#[tokio::test]
async fn latency_proxy_adds_delay_each_way() {
    let cluster = PgCluster::start().await.unwrap();
    let proxy = LatencyProxy::start(
        ([127, 0, 0, 1], cluster.primary().port()).into(),
        Delay::NONE,
    )
    .await
    .unwrap();
    let url = format!("postgres://postgres@{}/postgres", proxy.local_addr());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    proxy.set_delay(Delay::rtt(Duration::from_millis(100)));
    let started = Instant::now();
    let one: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let rtt = started.elapsed();
    assert_eq!(one, 1);
    assert!(
        rtt >= Duration::from_millis(100),
        "round trip took only {rtt:?}"
    );

    proxy.sever();
    assert!(
        sqlx::query("select 1").execute(&mut conn).await.is_err(),
        "a severed connection must fail"
    );
    // New connections still go through.
    let mut again = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("select 1").execute(&mut again).await.unwrap();
}

#[tokio::test]
async fn replication_through_a_delayed_link() {
    let cluster = PgCluster::builder()
        .replication_delay(Duration::from_millis(150))
        .start()
        .await
        .unwrap();
    assert!(cluster.replication_proxy().is_some());
    let mut primary = cluster.primary().connect().await.unwrap();
    let started = Instant::now();
    sqlx::query("create table t (id int)")
        .execute(&mut primary)
        .await
        .unwrap();
    cluster
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();
    let lag = started.elapsed();
    assert!(lag >= Duration::from_millis(150), "replicated in {lag:?}");
}
