//! Migrations, jobs and several repos: what runs where.

mod common;

use std::time::Duration;

use common::*;
use fly_postgres::sqlx;
use fly_postgres::{Error, Repo};
use fly_rpc::StaticPeers;

#[tokio::test]
async fn migrations_and_jobs_use_the_local_pool_in_the_primary_region() {
    let app = two_regions().await;
    // In the primary region the local pool is the primary: DDL and job-queue
    // style updates run on it directly.
    sqlx::query("create table jobs (id serial primary key, state text not null default 'new')")
        .execute(app.syd.local())
        .await
        .unwrap();
    sqlx::query("insert into jobs default values")
        .execute(app.syd.local())
        .await
        .unwrap();
    let claimed: i32 = sqlx::query_scalar(
        "update jobs set state = 'running' where id = (select id from jobs where state = 'new' \
         for update skip locked limit 1) returning id",
    )
    .fetch_one(app.syd.local())
    .await
    .unwrap();
    assert_eq!(claimed, 1);
    app.syd.migrate().await.unwrap(); // idempotent

    // In a replica region the local pool is read-only: a migration there
    // fails with a typed read-only error instead of doing harm.
    let err = app.lax.migrate().await.unwrap_err();
    assert!(
        err.as_database_error()
            .is_some_and(|d| d.is_read_only_transaction()),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_missing_migration_is_a_clear_error() {
    let cluster = fly_postgres_testkit::PgCluster::start().await.unwrap();
    let syd = registered(Repo::builder())
        .pool(pool(cluster.primary().connect_options()).await)
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap();
    sqlx::raw_sql(SCHEMA).execute(syd.local()).await.unwrap();
    let lax = registered(Repo::builder())
        .pool(pool(cluster.replica().connect_options()).await)
        .node(node(
            "lax",
            StaticPeers::new().with("syd", syd.node().local_addr().expect("rpc listener")),
        ))
        .start()
        .await
        .unwrap();
    let err = lax
        .write(CreateTodo { title: "x".into() })
        .await
        .unwrap_err();
    // syd's configuration error, as the primary region reports it.
    assert!(
        matches!(err, Error::Primary { ref message } if message.contains("migrate")),
        "{err:?}"
    );
}

#[tokio::test]
async fn two_repos_in_one_app_each_have_their_node_and_tracker() {
    let app = two_regions().await;
    // A second database on the same cluster, as a second repo of the app.
    sqlx::query("create database billing")
        .execute(app.syd.local())
        .await
        .unwrap();
    app.cluster
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();
    let billing_primary = app.cluster.primary().connect_options().database("billing");
    let billing_replica = app.cluster.replica().connect_options().database("billing");
    let syd_billing = registered(Repo::builder())
        .name("billing")
        .pool(pool(billing_primary).await)
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap();
    syd_billing.migrate().await.unwrap();
    sqlx::raw_sql(SCHEMA)
        .execute(syd_billing.local())
        .await
        .unwrap();
    let lax_billing = registered(Repo::builder())
        .name("billing")
        .pool(pool(billing_replica).await)
        .node(node(
            "lax",
            StaticPeers::new().with(
                "syd",
                syd_billing.node().local_addr().expect("rpc listener"),
            ),
        ))
        .start()
        .await
        .unwrap();
    assert_ne!(
        lax_billing.node().local_addr().expect("rpc listener"),
        app.lax.node().local_addr().expect("rpc listener")
    );

    lax_billing
        .write(CreateTodo {
            title: "invoice".into(),
        })
        .await
        .unwrap();
    app.lax
        .write(CreateTodo {
            title: "todo".into(),
        })
        .await
        .unwrap();
    let titles = |pool| async move {
        sqlx::query_scalar::<_, String>("select title from todos")
            .fetch_all(pool)
            .await
            .unwrap()
    };
    assert_eq!(titles(lax_billing.local()).await, vec!["invoice"]);
    assert_eq!(titles(app.lax.local()).await, vec!["todo"]);
    assert!(lax_billing.tracker().stats().waits + lax_billing.tracker().stats().polls > 0);
}

#[tokio::test]
async fn expired_exactly_once_records_are_swept_and_kept_by_kind() {
    let app = two_regions_with(|b| b.request_retention(Duration::from_secs(3600)), |b| b).await;
    for i in 0..5 {
        app.lax
            .write(CreateTodo {
                title: format!("t{i}"),
            })
            .await
            .unwrap();
    }
    for i in 0..2 {
        app.lax
            .write(CreateTodo {
                title: format!("keyed {i}"),
            })
            .request_id(format!("client-key-{i}"))
            .await
            .unwrap();
    }
    // Generated ids are kept for the retries of one call (10 minutes by
    // default), caller-chosen ones for the request retention (1 h here).
    let kept: Vec<(String, f64)> = sqlx::query_as(
        "select id, extract(epoch from keep_until - now())::float8 from fly_postgres_requests",
    )
    .fetch_all(app.syd.local())
    .await
    .unwrap();
    assert_eq!(kept.len(), 7);
    for (id, secs) in &kept {
        let expected = if id.starts_with("client-key-") {
            3600.0
        } else {
            600.0
        };
        assert!((secs - expected).abs() < 30.0, "{id}: kept {secs} s");
    }
    sqlx::query("update fly_postgres_requests set keep_until = now() - interval '1 second' where id in (select id from fly_postgres_requests where id not like 'client-key-%' limit 3)")
        .execute(app.syd.local())
        .await
        .unwrap();
    assert_eq!(app.syd.sweep().await.unwrap(), Some(3));
    let left: i64 = sqlx::query_scalar("select count(*) from fly_postgres_requests")
        .fetch_one(app.syd.local())
        .await
        .unwrap();
    assert_eq!(left, 4);
}

#[tokio::test]
async fn sweeps_delete_in_batches_and_one_instance_at_a_time() {
    let app = two_regions().await;
    // 12,000 expired records, and 3 from before `keep_until` existed.
    sqlx::raw_sql(
        "insert into fly_postgres_requests (id, mutation, keep_until)
           select 'old-' || n, 'm', now() - interval '1 minute' from generate_series(1, 12000) n;
         insert into fly_postgres_requests (id, mutation, created_at)
           select 'legacy-' || n, 'm', now() - interval '2 days' from generate_series(1, 3) n;",
    )
    .execute(app.syd.local())
    .await
    .unwrap();
    // Another instance is sweeping: this one skips.
    let mut other = app.syd.local().acquire().await.unwrap();
    sqlx::query("select pg_advisory_lock($1)")
        .bind(SWEEP_LOCK)
        .execute(&mut *other)
        .await
        .unwrap();
    assert_eq!(app.syd.sweep().await.unwrap(), None);
    sqlx::query("select pg_advisory_unlock($1)")
        .bind(SWEEP_LOCK)
        .execute(&mut *other)
        .await
        .unwrap();
    assert_eq!(app.syd.sweep().await.unwrap(), Some(12_003));
    let stats = app.syd.stats();
    assert_eq!(stats.largest_sweep_batch, 100, "no statement deleted more");
    assert_eq!(stats.swept_records, 12_003);
    assert_eq!(stats.sweeps_skipped, 1);
}

/// The advisory lock key the sweeper takes ("flypg_sw").
const SWEEP_LOCK: i64 = 0x666c_7970_675f_7377;

#[tokio::test]
async fn a_repo_without_a_database_is_a_config_error() {
    let err = Repo::builder()
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let err = Repo::builder()
        .database_url("mysql://nope")
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidDatabaseUrl { .. }), "{err:?}");
}
