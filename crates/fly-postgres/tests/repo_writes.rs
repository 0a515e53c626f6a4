//! Writes from a replica region: forwarded, committed once, read back at once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fly_postgres::sqlx;
use fly_postgres::{Error, Lsn};

#[tokio::test]
async fn a_thousand_writes_from_lax_are_each_readable_at_once() {
    let app = two_regions().await;
    let mut stale = 0;
    for i in 0..1000 {
        let todo = app
            .lax
            .write(CreateTodo {
                title: format!("todo {i}"),
            })
            .await
            .unwrap();
        let seen: Option<Todo> = sqlx::query_as("select id, title from todos where id = $1")
            .bind(todo.id)
            .fetch_optional(app.lax.local())
            .await
            .unwrap();
        if seen.as_ref() != Some(&todo) {
            stale += 1;
        }
    }
    assert_eq!(stale, 0, "stale reads after waiting");
    assert_eq!(app.lax.stats().forwarded_writes, 1000);
    assert_eq!(app.syd.stats().served_writes, 1000);
}

#[tokio::test]
async fn without_the_wait_a_paused_replica_reads_stale() {
    let app = two_regions().await;
    app.cluster.pause_replay().await.unwrap();
    let todo = app
        .lax
        .write(CreateTodo {
            title: "fast".into(),
        })
        .no_wait()
        .await
        .unwrap();
    let seen: Option<Todo> = sqlx::query_as("select id, title from todos where id = $1")
        .bind(todo.id)
        .fetch_optional(app.lax.local())
        .await
        .unwrap();
    assert_eq!(
        seen, None,
        "no_wait returned, and the paused replica has not got the row"
    );
    // It did commit on the primary.
    assert_eq!(count_todos(app.syd.local()).await, 1);
    app.cluster.resume_replay().await.unwrap();
}

#[tokio::test]
async fn paused_replay_gives_a_replication_timeout_that_carries_the_output() {
    let app = two_regions().await;
    app.cluster.pause_replay().await.unwrap();
    let started = Instant::now();
    let err = app
        .lax
        .write(CreateTodo {
            title: "slow".into(),
        })
        .replication_timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(8));
    let Error::ReplicationTimeout { committed_lsn, .. } = &err else {
        panic!("expected ReplicationTimeout, got {err:?}");
    };
    assert!(*committed_lsn > Lsn::ZERO);
    let todo: Todo = err
        .committed_output()
        .unwrap()
        .expect("the committed output");
    assert_eq!(todo.title, "slow");
    assert!(err.to_string().contains("committed"), "{err}");
    assert_eq!(count_todos(app.lax.local()).await, 0);

    app.cluster.resume_replay().await.unwrap();
    app.lax.wait_for(*committed_lsn).await.unwrap();
    let seen: Todo = sqlx::query_as("select id, title from todos where id = $1")
        .bind(todo.id)
        .fetch_one(app.lax.local())
        .await
        .unwrap();
    assert_eq!(seen, todo);
}

#[tokio::test]
async fn a_unique_violation_in_syd_is_matchable_in_lax_and_leaves_no_row() {
    let app = two_regions().await;
    app.lax
        .write(CreateTodo {
            title: "same".into(),
        })
        .await
        .unwrap();
    let err = app
        .lax
        .write(CreateTodo {
            title: "same".into(),
        })
        .await
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err:?}");
    let db = err.as_database_error().unwrap();
    assert_eq!(db.code(), "23505");
    assert_eq!(db.constraint(), Some("todos_title_key"));
    assert_eq!(db.table(), Some("todos"));
    assert!(matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation));
    assert_eq!(count_todos(app.syd.local()).await, 1);

    // The same error, the same way, in the primary region.
    let err = app
        .syd
        .write(CreateTodo {
            title: "same".into(),
        })
        .await
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err:?}");
}

#[tokio::test]
async fn the_apps_own_error_comes_back_typed_and_rolls_back() {
    let app = two_regions().await;
    let err = app
        .lax
        .write(CreateChecked { title: "  ".into() })
        .await
        .unwrap_err();
    assert_eq!(
        err.app_error::<TodoError>(),
        Some(TodoError::EmptyTitle),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "title must not be empty");
    assert_eq!(
        count_todos(app.syd.local()).await,
        0,
        "the insert before the error was rolled back"
    );
}

#[tokio::test]
async fn writes_in_the_primary_region_make_no_rpc() {
    let app = two_regions().await;
    for i in 0..20 {
        app.syd
            .write(CreateTodo {
                title: format!("local {i}"),
            })
            .await
            .unwrap();
    }
    let stats = app.syd.stats();
    assert_eq!(stats.local_writes, 20);
    assert_eq!(stats.forwarded_writes, 0);
    assert_eq!(
        stats.served_writes, 0,
        "a local write went through the RPC endpoint"
    );
    assert_eq!(count_todos(app.syd.local()).await, 20);
}

#[tokio::test]
async fn a_three_statement_mutation_is_one_transaction() {
    let app = two_regions().await;
    let id = app
        .lax
        .write(Transfer {
            from: 1,
            to: 2,
            amount: 250,
        })
        .await
        .unwrap();
    let balances: Vec<(i64, i64)> = sqlx::query_as("select id, balance from accounts order by id")
        .fetch_all(app.lax.local())
        .await
        .unwrap();
    assert_eq!(balances, vec![(1, 999_750), (2, 250)]);
    let n: i64 = sqlx::query_scalar("select count(*) from transfers where id = $1")
        .bind(id)
        .fetch_one(app.lax.local())
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn sixty_four_concurrent_callers_lose_and_double_nothing() {
    let app = two_regions().await;
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..64 {
        let lax = app.lax.clone();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for i in 0..50 {
                let todo = lax
                    .write(CreateTodo {
                        title: format!("{caller}-{i}"),
                    })
                    .await?;
                ids.push(todo.id);
            }
            Ok::<_, Error>(ids)
        });
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        ids.extend(r.unwrap().unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 64 * 50, "duplicate outputs");
    assert_eq!(count_todos(app.syd.local()).await, 64 * 50);
    assert_eq!(
        count_todos(app.lax.local()).await,
        64 * 50,
        "every write visible in lax"
    );
    let records: i64 = sqlx::query_scalar("select count(*) from fly_postgres_requests")
        .fetch_one(app.syd.local())
        .await
        .unwrap();
    assert_eq!(records, 64 * 50);
}

#[tokio::test]
async fn asynchronous_commit_on_the_primary_does_not_break_read_your_writes() {
    // With synchronous_commit = off a commit returns before its WAL is
    // flushed; the write path asks for a local flush so the LSN it returns
    // covers the commit.
    let cluster = fly_postgres_testkit::PgCluster::builder()
        .setting("synchronous_commit", "off")
        .start()
        .await
        .unwrap();
    let app = two_regions_in(cluster, |b| b, |b| b).await;
    let setting: String = sqlx::query_scalar("show synchronous_commit")
        .fetch_one(app.syd.local())
        .await
        .unwrap();
    assert_eq!(setting, "off");
    for i in 0..300 {
        let todo = app
            .lax
            .write(CreateTodo {
                title: format!("async {i}"),
            })
            .await
            .unwrap();
        let seen: i64 = sqlx::query_scalar("select count(*) from todos where id = $1")
            .bind(todo.id)
            .fetch_one(app.lax.local())
            .await
            .unwrap();
        assert_eq!(seen, 1, "stale read after write {i}");
    }
}
