//! Three regions, a standby in the primary region, and failovers: the
//! leader address follows the promoted server and the other replicas follow
//! its timeline.

use std::time::{Duration, Instant};

use fly_postgres_testkit::{PgServer, PgTopology, live_processes_tagged};
use sqlx::{Connection, PgConnection};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn three_regions() -> PgTopology {
    PgTopology::builder("syd")
        .replica("lax")
        .replica("fra")
        .standby()
        .rtt("syd", "lax", ms(60))
        .rtt("syd", "fra", ms(120))
        .rtt("lax", "fra", ms(140))
        .start()
        .await
        .unwrap()
}

async fn leader(topology: &PgTopology) -> PgConnection {
    PgConnection::connect_with(&topology.leader_options())
        .await
        .unwrap()
}

/// Waits until `server` shows `value` in table `t`; returns how long it took.
/// Table `t` with the row 1, replayed by every standby; then kill -9 the
/// primary.
async fn seed_everywhere_then_kill_the_primary(topology: &PgTopology) {
    let mut conn = leader(topology).await;
    sqlx::raw_sql("create table t (v int); insert into t values (1)")
        .execute(&mut conn)
        .await
        .unwrap();
    topology.wait_for_catch_up(ms(10_000)).await.unwrap();
    drop(conn);
    topology.primary().kill().await.unwrap();
}

async fn seen_on(server: &PgServer, value: i32) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(mut conn) = server.connect().await {
            let n: Result<i64, _> = sqlx::query_scalar("select count(*) from t where v = $1")
                .bind(value)
                .fetch_one(&mut conn)
                .await;
            if n.is_ok_and(|n| n == 1) {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} never saw {value}",
            server.name()
        );
        tokio::time::sleep(ms(5)).await;
    }
}

#[tokio::test]
async fn each_region_replays_after_its_own_ocean() {
    let topology = three_regions().await;
    assert_eq!(topology.members().len(), 4);
    let mut conn = leader(&topology).await;
    sqlx::raw_sql("create table t (v int); insert into t values (1)")
        .execute(&mut conn)
        .await
        .unwrap();
    let (lax, fra, standby) = tokio::join!(
        seen_on(topology.replica("lax").unwrap(), 1),
        seen_on(topology.replica("fra").unwrap(), 1),
        seen_on(topology.member("syd-standby").unwrap().server(), 1)
    );
    // The WAL reaches lax 30 ms and fra 60 ms after the commit.
    assert!(lax >= ms(20), "lax replayed after {lax:?}");
    assert!(fra >= ms(45), "fra replayed after {fra:?}");
    // Same run: the standby's undelayed link beats lax's 30 ms one.
    assert!(
        standby < lax,
        "the standby is next door: {standby:?} vs lax {lax:?}"
    );
    let tag = topology.tag().to_owned();
    drop(topology);
    assert!(
        live_processes_tagged(&tag).is_empty(),
        "dropping the topology stops every server"
    );
}

#[tokio::test]
async fn a_failover_in_the_primary_region_moves_the_leader_and_the_replicas_follow() {
    let topology = three_regions().await;
    seed_everywhere_then_kill_the_primary(&topology).await;
    topology.promote("syd-standby").await.unwrap();
    assert_eq!(topology.primary().name(), "syd-standby");
    assert_eq!(topology.primary_region(), "syd");

    // The leader address reaches the new primary, which takes writes.
    let mut conn = leader(&topology).await;
    let in_recovery: bool = sqlx::query_scalar("select pg_is_in_recovery()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!in_recovery);
    sqlx::query("insert into t values (2)")
        .execute(&mut conn)
        .await
        .unwrap();
    // The other regions follow the new timeline.
    seen_on(topology.replica("lax").unwrap(), 2).await;
    seen_on(topology.replica("fra").unwrap(), 2).await;
    let mut lax = topology.replica("lax").unwrap().connect().await.unwrap();
    let timeline: i32 = sqlx::query_scalar("select received_tli from pg_stat_wal_receiver")
        .fetch_one(&mut lax)
        .await
        .unwrap();
    assert_eq!(timeline, 2, "lax streams the promoted server's timeline");
}

#[tokio::test]
async fn a_replica_region_can_be_promoted_and_the_others_follow_it() {
    let topology = PgTopology::builder("syd")
        .replica("lax")
        .replica("fra")
        .rtt("syd", "lax", ms(20))
        .rtt("lax", "fra", ms(40))
        .start()
        .await
        .unwrap();
    seed_everywhere_then_kill_the_primary(&topology).await;
    topology.promote("lax").await.unwrap();
    assert_eq!(topology.primary_region(), "lax");
    let mut conn = leader(&topology).await;
    sqlx::query("insert into t values (3)")
        .execute(&mut conn)
        .await
        .unwrap();
    // fra now streams from lax, 20 ms one way.
    let fra = seen_on(topology.replica("fra").unwrap(), 3).await;
    assert!(fra >= ms(15), "fra replayed after {fra:?}");
    assert_eq!(topology.link("fra").unwrap().delay().to_client, ms(20));
}
