//! Writes that go straight to the primary over PostgreSQL: as a fallback
//! when no primary-region instance takes them, and as the write mode of an
//! app with no instance in the primary region.

mod common;

use std::time::Duration;

use common::*;
use fly_postgres::{Error, Repo, WriteMode, sqlx};
use fly_postgres_testkit::PgCluster;
use fly_rpc::StaticPeers;

#[tokio::test]
async fn with_the_primary_region_instance_gone_a_write_falls_back_to_the_primary() {
    let cluster = PgCluster::start().await.unwrap();
    let primary = pool(cluster.primary().connect_options()).await;
    let app = two_regions_in(
        cluster,
        |b| b,
        |b| {
            b.primary_pool(primary)
                .direct_fallback(true)
                .rpc_timeout(Duration::from_millis(600))
        },
    )
    .await;
    app.syd.node().shutdown().await.unwrap();

    // Without the fallback for this call: nobody takes it.
    let refused = app
        .lax
        .write(CreateTodo {
            title: "no fallback".into(),
        })
        .direct_fallback(false)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::NoPrimaryNode { .. }),
        "{refused:?}"
    );

    let (todo, timings) = app
        .lax
        .write(CreateTodo {
            title: "direct".into(),
        })
        .timed()
        .await
        .unwrap();
    assert_eq!(
        find_todo(app.lax.local(), todo.id).await,
        Some(todo.clone())
    );
    assert_eq!(app.lax.stats().direct_writes, 1);
    assert!(timings.rpc.is_some(), "the forwarded attempts took time");
    assert!(timings.replication_wait.is_some());
    assert_eq!(count_todos(app.syd.local()).await, 1);
}

#[tokio::test]
async fn direct_mode_writes_without_any_primary_region_instance_exactly_once() {
    let cluster = PgCluster::start().await.unwrap();
    let primary = pool(cluster.primary().connect_options()).await;
    Repo::builder()
        .pool(primary.clone())
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    sqlx::raw_sql(SCHEMA).execute(&primary).await.unwrap();
    // An app that runs only in lax: no peers at all.
    let lax = registered(Repo::builder())
        .pool(pool(cluster.replica().connect_options()).await)
        .primary_pool(primary.clone())
        .write_mode(WriteMode::Direct)
        .node(node("lax", StaticPeers::new()))
        .start()
        .await
        .unwrap();
    let transfer = Transfer {
        from: 1,
        to: 2,
        amount: 3,
    };
    let first = lax
        .write(transfer.clone())
        .request_id("direct-1")
        .await
        .unwrap();
    let seen: i64 = sqlx::query_scalar("select count(*) from transfers where id = $1")
        .bind(first)
        .fetch_one(lax.local())
        .await
        .unwrap();
    assert_eq!(seen, 1, "read-your-writes on lax's replica");
    let again = lax.write(transfer).request_id("direct-1").await.unwrap();
    assert_eq!(again, first);
    let transfers: i64 = sqlx::query_scalar("select count(*) from transfers")
        .fetch_one(&primary)
        .await
        .unwrap();
    assert_eq!(transfers, 1, "the retry did not apply it twice");
    assert_eq!(lax.stats().forwarded_writes, 0);
    assert_eq!(lax.stats().direct_writes, 2);
}

#[tokio::test]
async fn direct_writes_without_a_primary_url_are_refused_at_start() {
    let cluster = PgCluster::start().await.unwrap();
    let built = Repo::builder()
        .pool(pool(cluster.replica().connect_options()).await)
        .write_mode(WriteMode::Direct)
        .node(node("lax", StaticPeers::new()))
        .start()
        .await;
    match built {
        Err(Error::Config(message)) => assert!(message.contains("primary_url"), "{message}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}
