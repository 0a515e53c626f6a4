//! Ad-hoc statements: every parameter type through RETURNING, and bad input.

mod common;

use common::*;
use fly_postgres::sqlx::types::chrono::{DateTime, NaiveDate, Utc};
use fly_postgres::sqlx::types::{Decimal, Uuid};
use fly_postgres::{Error, Param, Repo, WriteOutcome, query, sqlx};
use fly_rpc::StaticPeers;
use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
struct Kinds {
    id: i64,
    b: bool,
    i: i32,
    big: i64,
    f: f64,
    t: String,
    by: Vec<u8>,
    u: Uuid,
    j: serde_json::Value,
    ts: DateTime<Utc>,
    d: NaiveDate,
    n: String,
    ia: Vec<i64>,
    ta: Vec<String>,
    ua: Vec<Uuid>,
    nothing: Option<String>,
}

const KINDS: &str = "create table kinds (
    id bigserial primary key, b bool, i int4, big int8, f float8, t text, by bytea,
    u uuid, j jsonb, ts timestamptz, d date, n numeric, ia int8[], ta text[], ua uuid[],
    nothing text)";

#[tokio::test]
async fn every_parameter_type_round_trips_through_returning_from_lax() {
    let app = with_statements().await;
    sqlx::query(KINDS).execute(app.syd.local()).await.unwrap();

    let u = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
    let ts: DateTime<Utc> = "2026-11-26T08:00:01.123456Z".parse().unwrap();
    let d = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let n: Decimal = "12345678901234.567890123".parse().unwrap();
    let j = serde_json::json!({"a": [1, 2, {"b": null}], "c": "é"});
    let row: Kinds = app
        .lax
        .write_fetch_one(
            query(
                "insert into kinds (b, i, big, f, t, by, u, j, ts, d, n, ia, ta, ua, nothing) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) returning *",
            )
            .bind(true)
            .bind(-7_i32)
            .bind(i64::MAX)
            .bind(0.1_f64)
            .bind("it's \"quoted\" ✓")
            .bind(vec![0_u8, 1, 255])
            .bind(u)
            .bind(j.clone())
            .bind(ts)
            .bind(d)
            .bind(n)
            .bind(vec![1_i64, -2, 3])
            .bind(vec!["x", "y"])
            .bind(vec![u])
            .bind(None::<String>),
        )
        .await
        .unwrap();
    assert_eq!(
        row,
        Kinds {
            id: row.id,
            b: true,
            i: -7,
            big: i64::MAX,
            f: 0.1,
            t: "it's \"quoted\" ✓".into(),
            by: vec![0, 1, 255],
            u,
            j,
            ts,
            d,
            n: "12345678901234.567890123".into(),
            ia: vec![1, -2, 3],
            ta: vec!["x".into(), "y".into()],
            ua: vec![u],
            nothing: None,
        }
    );
    // Visible on the lax replica at once, like any write.
    let seen: i64 = sqlx::query_scalar("select count(*) from kinds where id = $1")
        .bind(row.id)
        .fetch_one(app.lax.local())
        .await
        .unwrap();
    assert_eq!(seen, 1);
}

#[tokio::test]
async fn execute_write_fetch_all_and_write_fetch_optional() {
    let app = with_statements().await;
    for title in ["a", "b", "c"] {
        app.lax
            .write(CreateTodo {
                title: title.into(),
            })
            .await
            .unwrap();
    }
    let n = app
        .lax
        .execute(query("update todos set title = upper(title) where title <> $1").bind("c"))
        .await
        .unwrap();
    assert_eq!(n, 2);
    let todos: Vec<Todo> = app
        .lax
        .write_fetch_all(query(
            "update todos set title = title || '!' returning id, title",
        ))
        .await
        .unwrap();
    let mut titles: Vec<_> = todos.into_iter().map(|t| t.title).collect();
    titles.sort();
    assert_eq!(titles, vec!["A!", "B!", "c!"]);
    let none: Option<Todo> = app
        .lax
        .write_fetch_optional(
            query("delete from todos where id = $1 returning id, title").bind(-1_i64),
        )
        .await
        .unwrap();
    assert_eq!(none, None);
    let gone = app.lax.execute(query("delete from todos")).await.unwrap();
    assert_eq!(gone, 3);
    assert_eq!(count_todos(app.lax.local()).await, 0);
}

#[tokio::test]
async fn bad_statements_and_parameters_are_typed_errors() {
    let app = with_statements().await;
    let err = app.lax.execute(query("updte todos")).await.unwrap_err();
    assert_eq!(
        err.as_database_error().map(|d| d.code()),
        Some("42601"),
        "{err:?}"
    );

    let err = app
        .lax
        .execute(query("select $1::numeric").bind(Param::Numeric("twelve".into())))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Primary { ref message } if message.contains("twelve")),
        "{err:?}"
    );

    let err = app
        .lax
        .execute(
            query("select $1").bind(Param::Array(vec![Param::Int(1), Param::Text("x".into())])),
        )
        .await
        .unwrap_err();
    // Refused by syd's binding, reported by the primary region.
    assert!(
        matches!(err, Error::Primary { ref message } if message.contains("array elements")),
        "{err:?}"
    );

    let err = app
        .lax
        .write_fetch_one::<serde_json::Value>(query("select point(1, 2) as p"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Primary { ref message } if message.contains("cast it")),
        "{err:?}"
    );

    // The statement ran (and would have committed): a result that does not
    // fit the requested type must not read as "not committed".
    let err = app
        .lax
        .write_fetch_one::<Todo>(query("select 'not a todo' as title"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::CommittedButUnreadable { .. }) && err.is_committed(),
        "{err:?}"
    );
    // What did commit is still there for the caller to use.
    let result: fly_postgres::StatementResult =
        err.committed_output().unwrap().expect("the output");
    assert_eq!(result.rows()[0]["title"], "not a todo");

    let err = app
        .lax
        .write_fetch_one::<Todo>(query("select id, title from todos where false"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::CommittedButUnreadable { ref reason, .. } if reason.contains("no row")),
        "{err:?}"
    );
}

/// Both regions opted in to ad-hoc statements (off by default).
async fn with_statements() -> TwoRegions {
    two_regions_with(
        |syd| syd.ad_hoc_statements(true),
        |lax| lax.ad_hoc_statements(true),
    )
    .await
}

#[tokio::test]
async fn ad_hoc_statements_are_opt_in_and_refused_before_anything_runs() {
    // Both repos as built by default: off.
    let app = two_regions().await;
    let created = app
        .lax
        .write(CreateTodo {
            title: "typed".into(),
        })
        .await
        .unwrap();
    let served = app.syd.stats().served_writes;
    for repo in [&app.lax, &app.syd] {
        let err = repo.execute(query("delete from todos")).await.unwrap_err();
        assert!(
            matches!(err, Error::AdHocStatementsDisabled { on_primary: false }),
            "{err:?}"
        );
        assert_eq!(err.outcome(), WriteOutcome::NotCommitted);
        assert!(err.to_string().contains("ad_hoc_statements(true)"), "{err}");
    }
    // lax refused it itself: nothing was sent, nothing deleted.
    assert_eq!(app.syd.stats().served_writes, served);
    assert_eq!(find_todo(app.syd.local(), created.id).await, Some(created));
}

#[tokio::test]
async fn a_primary_region_node_without_the_opt_in_refuses_forwarded_statements() {
    // lax opted in, syd (the default) did not.
    let app = two_regions_with(|syd| syd, |lax| lax.ad_hoc_statements(true)).await;
    let err = app
        .lax
        .execute(query("delete from todos"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AdHocStatementsDisabled { on_primary: true }),
        "{err:?}"
    );
    assert!(!err.is_maybe_committed());
    assert!(err.to_string().contains("ad_hoc_statements(true)"), "{err}");
    // Its registered mutations still run.
    app.lax
        .write(CreateTodo {
            title: "typed".into(),
        })
        .await
        .unwrap();
    assert_eq!(count_todos(app.syd.local()).await, 1);

    // A syd repo with the opt-in on the same database takes it.
    let syd = registered(Repo::builder())
        .ad_hoc_statements(true)
        .pool(app.syd.local().clone())
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap();
    let lax = lax_for(&syd, app.lax.local().clone(), |b| b.ad_hoc_statements(true)).await;
    assert_eq!(lax.execute(query("delete from todos")).await.unwrap(), 1);
    assert_eq!(count_todos(app.syd.local()).await, 0);
}

/// One, all and none of the `RETURNING` rows, each decoded as asked.
#[tokio::test]
async fn write_fetch_one_all_and_optional_decode_returning_rows() {
    let app = with_statements().await;
    let one: Todo = app
        .lax
        .write_fetch_one(query(
            "insert into todos (title) values ('old one') returning id, title",
        ))
        .await
        .unwrap();
    assert_eq!(one.title, "old one");
    let all: Vec<Todo> = app
        .lax
        .write_fetch_all(query(
            "update todos set title = 'old all' returning id, title",
        ))
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let none: Option<Todo> = app
        .lax
        .write_fetch_optional(query("delete from todos where false returning id, title"))
        .await
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(count_todos(app.lax.local()).await, 1);
}
