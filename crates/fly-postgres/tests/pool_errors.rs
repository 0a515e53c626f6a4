//! When no connection can be had, the error says why, in the database's
//! words, not only "pool timed out".

mod common;

use std::time::Duration;

use common::*;
use fly_postgres::sqlx::{self, postgres::PgPoolOptions};
use fly_postgres::{Error, Mutation, Repo};
use fly_postgres_testkit::PgCluster;
use fly_rpc::StaticPeers;
use serde::{Deserialize, Serialize};

/// Holds its connection a while.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hold {
    ms: u64,
}

impl Mutation for Hold {
    const NAME: &'static str = "hold";
    type Output = ();
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<(), Error> {
        sqlx::query("select pg_sleep($1)")
            .bind(self.ms as f64 / 1000.0)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// A primary-region repo on `pool` that can run [`Hold`].
async fn syd_holding(pool: sqlx::PgPool) -> Repo {
    let syd = Repo::builder()
        .pool(pool)
        .node(node("syd", StaticPeers::new()))
        // A write that gets no connection retries until this deadline,
        // then says why.
        .rpc_timeout(Duration::from_millis(600))
        .mutation::<Hold>()
        .start()
        .await
        .unwrap();
    // Every write in the primary region keeps an exactly-once record.
    syd.migrate().await.unwrap();
    syd
}

#[tokio::test]
async fn a_database_that_refuses_more_connections_is_quoted_in_the_error() {
    let cluster = PgCluster::start().await.unwrap();
    // The server lets this role have 8 connections; its pool wants more.
    sqlx::raw_sql(
        "create role limited login connection limit 8; grant all on schema public to limited",
    )
    .execute(&pool(cluster.primary().connect_options()).await)
    .await
    .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(40)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with(cluster.primary().connect_options().username("limited"));
    let syd = syd_holding(pool).await;
    // Eight writes take the role's eight connections for 2.5 s (their
    // deadline leaves them the time)...
    let mut holders = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let syd = syd.clone();
        holders.spawn(async move {
            syd.write(Hold { ms: 2500 })
                .rpc_timeout(Duration::from_secs(20))
                .await
        });
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    // ...so sixteen more, with the repo's 600 ms, find none.
    let mut writes = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let syd = syd.clone();
        writes.spawn(async move { syd.write(Hold { ms: 0 }).await });
    }
    let mut refused = Vec::new();
    while let Some(result) = writes.join_next().await {
        if let Err(e) = result.unwrap() {
            refused.push(e);
        }
    }
    let mut ok = 0;
    while let Some(result) = holders.join_next().await {
        result.unwrap().unwrap();
        ok += 1;
    }
    assert_eq!(ok, 8, "the writes that got a connection commit");
    assert!(!refused.is_empty(), "24 writes cannot fit in 8 connections");
    for e in &refused {
        assert!(
            matches!(e, Error::NoConnection { .. }),
            "a typed error, not a bare pool timeout: {e:?}"
        );
        assert!(
            e.to_string().contains("too many connections for role"),
            "the database's reason is named: {e}"
        );
    }
}

#[tokio::test]
async fn a_pool_too_small_for_its_callers_says_so() {
    let cluster = PgCluster::start().await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy_with(cluster.primary().connect_options());
    let syd = syd_holding(pool).await;
    let long = Duration::from_secs(20);
    let (a, b, c) = tokio::join!(
        syd.write(Hold { ms: 1500 }).rpc_timeout(long),
        syd.write(Hold { ms: 1500 }).rpc_timeout(long),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            syd.write(Hold { ms: 0 }).await
        }
    );
    a.unwrap();
    b.unwrap();
    let e = c.unwrap_err();
    match &e {
        Error::NoConnection { in_use, max, .. } => assert_eq!((*in_use, *max), (2, 2)),
        other => panic!("expected NoConnection, got {other:?}"),
    }
    assert!(e.to_string().contains("all 2 connections"), "{e}");
}
