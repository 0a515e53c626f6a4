//! One request id, one commit: attempts that race, and late retries whose
//! mutation would now fail, answer with the first commit's output.

mod common;

use std::time::Duration;

use common::*;
use fly_postgres::{Error, Mutation, sqlx};
use serde::{Deserialize, Serialize};

/// A transfer that holds its locks a while before committing, so a second
/// attempt with the same id overlaps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SlowTransfer {
    amount: i64,
    hold_ms: u64,
}

impl Mutation for SlowTransfer {
    const NAME: &'static str = "slow_transfer";
    type Output = i64;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<i64, Error> {
        let id = Transfer {
            from: 1,
            to: 2,
            amount: self.amount,
        }
        .run(&mut *tx)
        .await?;
        sqlx::query("select pg_sleep($1)")
            .bind(self.hold_ms as f64 / 1000.0)
            .execute(&mut *tx)
            .await?;
        Ok(id)
    }
}

async fn balance(app: &TwoRegions, account: i64) -> i64 {
    sqlx::query_scalar("select balance from accounts where id = $1")
        .bind(account)
        .fetch_one(app.syd.local())
        .await
        .unwrap()
}

async fn transfers(app: &TwoRegions) -> i64 {
    sqlx::query_scalar("select count(*) from transfers")
        .fetch_one(app.syd.local())
        .await
        .unwrap()
}

#[tokio::test]
async fn racing_attempts_with_one_request_id_commit_once_and_answer_alike() {
    let app = two_regions_with(
        |b| b.mutation::<SlowTransfer>(),
        |b| b.mutation::<SlowTransfer>(),
    )
    .await;
    let write = |repo: fly_postgres::Repo| async move {
        repo.write(SlowTransfer {
            amount: 7,
            hold_ms: 300,
        })
        .request_id("race-1")
        .await
    };
    // Two in the primary region and one forwarded from lax, all at once.
    let (a, b, c) = tokio::join!(
        write(app.syd.clone()),
        write(app.syd.clone()),
        write(app.lax.clone())
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a, b, "both attempts answer with the same transfer");
    assert_eq!(a, c, "the forwarded attempt too");
    assert_eq!(transfers(&app).await, 1, "one transfer row");
    assert_eq!(balance(&app, 2).await, 7, "the amount moved once");
}

#[tokio::test]
async fn a_late_retry_answers_from_the_record_even_when_its_mutation_would_now_fail() {
    let app = two_regions().await;
    let first = app
        .lax
        .write(CreateTodo {
            title: "only once".into(),
        })
        .request_id("late-1")
        .await
        .unwrap();
    // Running it again would violate the unique title: the record answers.
    for repo in [&app.lax, &app.syd] {
        let again = repo
            .write(CreateTodo {
                title: "only once".into(),
            })
            .request_id("late-1")
            .await
            .unwrap();
        assert_eq!(again, first);
    }
    // Without the id it is a new write, and the constraint speaks.
    let fresh = app
        .lax
        .write(CreateTodo {
            title: "only once".into(),
        })
        .await
        .unwrap_err();
    assert!(fresh.is_unique_violation(), "{fresh:?}");
    assert_eq!(count_todos(app.syd.local()).await, 1);
}

#[tokio::test]
async fn a_late_retry_of_a_non_unique_write_does_not_apply_it_twice() {
    let app = two_regions().await;
    let transfer = Transfer {
        from: 1,
        to: 2,
        amount: 5,
    };
    let first = app
        .lax
        .write(transfer.clone())
        .request_id("late-2")
        .await
        .unwrap();
    let again = app.lax.write(transfer).request_id("late-2").await.unwrap();
    assert_eq!(again, first);
    assert_eq!(transfers(&app).await, 1);
    assert_eq!(balance(&app, 2).await, 5);
    // The record holds one row for the id.
    let records: i64 =
        sqlx::query_scalar("select count(*) from fly_postgres_requests where id = 'late-2'")
            .fetch_one(app.syd.local())
            .await
            .unwrap();
    assert_eq!(records, 1);
}

#[tokio::test]
async fn write_timings_add_up_to_the_total() {
    let app = two_regions().await;
    let (todo, timings) = app
        .lax
        .write(CreateTodo { title: "t".into() })
        .timed()
        .await
        .unwrap();
    assert_eq!(todo.title, "t");
    let rpc = timings.rpc.expect("a forwarded write has an RPC phase");
    let primary = timings
        .primary
        .expect("the primary region reports its time");
    let wait = timings
        .replication_wait
        .expect("the write waited for lax's replica");
    assert!(primary <= rpc, "{timings:?}");
    assert!(rpc + wait <= timings.total, "{timings:?}");
    assert!(timings.total < Duration::from_secs(5));
    assert_eq!(timings.attempts, 1);
    let (_, local) = app
        .syd
        .write(CreateTodo { title: "u".into() })
        .timed()
        .await
        .unwrap();
    assert_eq!(local.rpc, None, "no RPC in the primary region");
    assert_eq!(local.attempts, 1);
    assert!(local.primary.is_some());
}

/// Inserts a row, then swallows a failing statement: the transaction is
/// aborted although the mutation returns Ok.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SwallowsAnError {
    title: String,
}

impl Mutation for SwallowsAnError {
    const NAME: &'static str = "swallows_an_error";
    type Output = ();
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<(), Error> {
        sqlx::query("insert into todos (title) values ($1)")
            .bind(&self.title)
            .execute(&mut *tx)
            .await?;
        let _ = sqlx::query("insert into todos (title) values ($1)")
            .bind(&self.title)
            .execute(&mut *tx)
            .await;
        Ok(())
    }
}

#[tokio::test]
async fn an_aborted_transaction_is_never_reported_committed() {
    let app = two_regions_with(
        |b| b.mutation::<SwallowsAnError>(),
        |b| b.mutation::<SwallowsAnError>(),
    )
    .await;
    // In the primary region without a request id (no record statement),
    // with one, and forwarded.
    let local = app.syd.write(SwallowsAnError { title: "a".into() }).await;
    assert!(local.is_err(), "{local:?}");
    let keyed = app
        .syd
        .write(SwallowsAnError { title: "b".into() })
        .request_id("aborted-1")
        .await;
    assert!(keyed.is_err(), "{keyed:?}");
    let forwarded = app.lax.write(SwallowsAnError { title: "c".into() }).await;
    assert!(forwarded.is_err(), "{forwarded:?}");
    for e in [local, keyed, forwarded]
        .into_iter()
        .filter_map(Result::err)
    {
        // COMMIT of an aborted transaction: PostgreSQL refuses the record
        // statement (25P02), nothing committed, in every path.
        assert!(
            matches!(&e, Error::Database(db) if db.code() == "25P02"),
            "{e:?}"
        );
        assert!(!e.is_committed() && !e.is_maybe_committed(), "{e:?}");
    }
    assert_eq!(count_todos(app.syd.local()).await, 0, "nothing committed");
}
