//! Every `fly_postgres::Error` variant, produced by the library through its
//! public API (not built by hand), matched exactly, and answered over HTTP
//! as `ErrorResponse` says.
//!
//! Produced elsewhere, exactly, rather than here:
//! - `WriteLost`: `a_token_for_a_write_lost_in_an_async_failover_answers_gone`
//!   in consistency_modes.rs (it needs a real asynchronous failover; the
//!   test asserts the variant from `Repo::wait_for_position` and its 410).
//!
//! No test produces these three, for these reasons (their HTTP answers are
//! checked on hand-built values at the end of this file):
//! - `TrackerStart`: only when the OS refuses a new thread
//!   (`std::thread::Builder::spawn` fails) in `TrackerBuilder::start`; no
//!   public input reaches that failure without exhausting the process's
//!   threads or memory.
//! - `TrackerStopped`: only when the poller thread ends while a wait is
//!   pending. It ends when the last `Tracker` handle is dropped (impossible
//!   while a caller waits on one: the wait borrows it), or when it cannot
//!   build its runtime (the OS refusing an epoll or timer descriptor, and
//!   then only for waits already registered at that instant).
//! - `Listener`: `Repo::serve` returns it when `fly_rpc::serve_app` returns
//!   an I/O error, and `serve_app` never does: accept failures (out of
//!   descriptors) are logged and retried while it keeps serving.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::*;
use fly_postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use fly_postgres::sqlx::{self, Connection, PgConnection};
use fly_postgres::{Error, Lsn, Mutation, Repo, RepoBuilder, WriteMode, query};
use fly_postgres_testkit::{Delay, LatencyProxy, PgCluster};
use fly_rpc::{Node, Regions, StaticPeers};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Helpers

/// `error`'s HTTP answer: its status and JSON body. Checks what every
/// answer holds: a 503 says when to retry, and the body's `committed` is
/// the error's outcome class.
async fn answer(error: Error) -> (StatusCode, Value) {
    let outcome = error.outcome();
    let response = error.into_response();
    let status = response.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(response.headers()["retry-after"], "1");
    }
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["committed"], outcome.as_json(), "{body}");
    assert!(body["message"].is_string(), "{body}");
    (status, body)
}

/// Asserts `error`'s status, `error` code and `committed` value; returns
/// the body for more checks.
async fn assert_answer(error: Error, status: StatusCode, code: &str, committed: Value) -> Value {
    let (got, body) = answer(error).await;
    assert_eq!(
        (got, body["error"].as_str(), &body["committed"]),
        (status, Some(code), &committed),
        "{body}"
    );
    body
}

/// Loopback port 1 (tcpmux, a privileged port nothing here serves): a
/// connection to it is refused at once.
const NOWHERE: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

/// A lax repo with the test mutations whose database is never reached
/// (its pool points at [`NOWHERE`]) and which knows no syd instance: for
/// errors raised before any query or any call.
async fn lax_without_database(extra: impl FnOnce(RepoBuilder) -> RepoBuilder) -> Repo {
    extra(registered(Repo::builder()))
        .pool(unreachable_pool())
        .node(node("lax", StaticPeers::new()))
        .share_replay_polls(false)
        .start()
        .await
        .unwrap()
}

/// A database at [`NOWHERE`].
fn nowhere() -> PgConnectOptions {
    PgConnectOptions::new()
        .host("127.0.0.1")
        .port(NOWHERE.port())
}

fn unreachable_pool() -> sqlx::PgPool {
    fly_postgres::pool_options()
        .acquire_timeout(Duration::from_millis(200))
        .connect_lazy_with(nowhere())
}

async fn titled(cluster: &PgCluster, title: &str) -> i64 {
    let mut conn = cluster.primary().connect().await.unwrap();
    sqlx::query_scalar("select count(*) from todos where title = $1")
        .bind(title)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// Mutations that fail in the ways under test

/// Renames a todo; `fetch_one` finds no row when it does not exist.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rename {
    id: i64,
    title: String,
}

impl Mutation for Rename {
    const NAME: &'static str = "rename";
    type Output = i64;
    async fn run(self, tx: &mut PgConnection) -> Result<i64, Error> {
        Ok(
            sqlx::query_scalar("update todos set title = $2 where id = $1 returning id")
                .bind(self.id)
                .bind(self.title)
                .fetch_one(&mut *tx)
                .await?,
        )
    }
}

/// Reads a count (`bigint`) into a `String`: a column decode error.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CountAsText;

impl Mutation for CountAsText {
    const NAME: &'static str = "count_as_text";
    type Output = String;
    async fn run(self, tx: &mut PgConnection) -> Result<String, Error> {
        Ok(sqlx::query_scalar("select count(*) from todos")
            .fetch_one(&mut *tx)
            .await?)
    }
}

/// Reads a balance under repeatable read, lets another session change it,
/// then updates it: PostgreSQL refuses with a serialization failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LostUpdate;

impl Mutation for LostUpdate {
    const NAME: &'static str = "lost_update";
    type Output = ();
    async fn run(self, tx: &mut PgConnection) -> Result<(), Error> {
        sqlx::query("set transaction isolation level repeatable read")
            .execute(&mut *tx)
            .await?;
        let _: i64 = sqlx::query_scalar("select balance from accounts where id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let other = fly_postgres::state::<PgConnectOptions>()?;
        let mut conn = PgConnection::connect_with(&other).await?;
        sqlx::query("update accounts set balance = balance + 1 where id = 1")
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        sqlx::query("update accounts set balance = balance - 1 where id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// A typo in a mutation's SQL.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Typo;

impl Mutation for Typo {
    const NAME: &'static str = "typo";
    type Output = ();
    async fn run(self, tx: &mut PgConnection) -> Result<(), Error> {
        sqlx::query("selec 1").execute(&mut *tx).await?;
        Ok(())
    }
}

/// A mutation with a bug that panics.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Crashes;

impl Mutation for Crashes {
    const NAME: &'static str = "crashes";
    type Output = ();
    async fn run(self, _tx: &mut PgConnection) -> Result<(), Error> {
        panic!("a bug in the mutation (this panic is expected by the test)")
    }
}

/// Arguments that are not JSON: a map whose keys are not strings.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tally {
    counts: HashMap<(i32, i32), i64>,
}

impl Mutation for Tally {
    const NAME: &'static str = "tally";
    type Output = ();
    async fn run(self, _tx: &mut PgConnection) -> Result<(), Error> {
        Ok(())
    }
}

/// Never registered anywhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Forgotten;

impl Mutation for Forgotten {
    const NAME: &'static str = "forgotten";
    type Output = ();
    async fn run(self, _tx: &mut PgConnection) -> Result<(), Error> {
        Ok(())
    }
}

/// `create_todo` as another build defines it: its arguments have a field
/// this build's `CreateTodo` does not send.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CreateTodoWithDueDate {
    title: String,
    due: String,
}

impl Mutation for CreateTodoWithDueDate {
    const NAME: &'static str = "create_todo";
    type Output = Todo;
    async fn run(self, _tx: &mut PgConnection) -> Result<Todo, Error> {
        unreachable!("its arguments never decode in this test")
    }
}

// ---------------------------------------------------------------------------
// One test per variant (or per small group)

/// `Database`: PostgreSQL refuses a write (a duplicate, a concurrent
/// update under repeatable read, a typo in the SQL).
#[tokio::test]
async fn database_errors_are_database_with_their_sqlstate() {
    let cluster = PgCluster::start().await.unwrap();
    let other_session = cluster.primary().connect_options();
    let app = two_regions_in(
        cluster,
        |b| {
            b.mutation::<LostUpdate>()
                .mutation::<Typo>()
                .state(other_session)
        },
        |b| b,
    )
    .await;

    // A unique violation raised on the primary, seen in lax: 409.
    app.lax
        .write(CreateTodo {
            title: "milk".into(),
        })
        .await
        .unwrap();
    let err = app
        .lax
        .write(CreateTodo {
            title: "milk".into(),
        })
        .await
        .unwrap_err();
    match &err {
        Error::Database(db) => {
            assert_eq!(db.code(), "23505");
            assert_eq!(db.constraint(), Some("todos_title_key"));
        }
        other => panic!("expected Database, got {other:?}"),
    }
    let body = assert_answer(err, StatusCode::CONFLICT, "conflict", json!(false)).await;
    assert_eq!(body["constraint"], "todos_title_key");

    // A serialization failure: 503, try again.
    let err = app.syd.write(LostUpdate).await.unwrap_err();
    assert!(
        matches!(&err, Error::Database(db) if db.code() == "40001"),
        "{err:?}"
    );
    assert_answer(
        err,
        StatusCode::SERVICE_UNAVAILABLE,
        "try_again",
        json!(false),
    )
    .await;

    // An SQL mistake: 500, its text kept out of the answer.
    let err = app.syd.write(Typo).await.unwrap_err();
    assert!(
        matches!(&err, Error::Database(db) if db.code() == "42601"),
        "{err:?}"
    );
    let body = assert_answer(
        err,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        json!(false),
    )
    .await;
    assert!(!body.to_string().contains("selec"), "{body}");
}

/// `App`: the mutation refused with the app's own error type.
#[tokio::test]
async fn a_mutations_own_error_is_app() {
    let app = two_regions().await;
    let err = app
        .lax
        .write(CreateChecked { title: " ".into() })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::App(_)), "{err:?}");
    assert_eq!(err.app_error::<TodoError>(), Some(TodoError::EmptyTitle));
    let body = assert_answer(
        err,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejected",
        json!(false),
    )
    .await;
    assert_eq!(body["message"], "title must not be empty");
    assert_eq!(count_todos(app.syd.local()).await, 0, "rolled back");
}

/// `Sql`: the local database failed without PostgreSQL refusing a
/// statement (no row where one was expected, a column read as the wrong
/// type, a pool closed at shutdown).
/// A mutation's `fetch_one` that finds no row answers the same in every
/// region: forwarded it is still `Sql(RowNotFound)`, a 404, not a 503 that
/// a client would retry forever.
#[tokio::test]
async fn a_row_not_found_forwarded_is_what_it_is_in_the_primary_region() {
    let app = two_regions_with(|b| b.mutation::<Rename>(), |b| b.mutation::<Rename>()).await;
    let err = app
        .lax
        .write(Rename {
            id: 404,
            title: "x".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Sql(sqlx::Error::RowNotFound)),
        "{err:?}"
    );
    assert_answer(err, StatusCode::NOT_FOUND, "not_found", json!(false)).await;
}

#[tokio::test]
async fn local_database_failures_that_are_not_refusals_are_sql() {
    let app = two_regions_with(|b| b.mutation::<Rename>().mutation::<CountAsText>(), |b| b).await;

    // Renaming a todo that does not exist: 404.
    let err = app
        .syd
        .write(Rename {
            id: 404,
            title: "x".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Sql(sqlx::Error::RowNotFound)),
        "{err:?}"
    );
    assert_answer(err, StatusCode::NOT_FOUND, "not_found", json!(false)).await;

    // A bigint read into a String: 500.
    let err = app.syd.write(CountAsText).await.unwrap_err();
    assert!(
        matches!(err, Error::Sql(sqlx::Error::ColumnDecode { .. })),
        "{err:?}"
    );
    assert_answer(
        err,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        json!(false),
    )
    .await;

    // The pool closed (a shutdown under way): 503.
    app.syd.local().close().await;
    let err = app.syd.migrate().await.unwrap_err();
    assert!(
        matches!(err, Error::Sql(sqlx::Error::PoolClosed)),
        "{err:?}"
    );
    assert_answer(
        err,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        json!(false),
    )
    .await;
}

/// `ReplicationTimeout`: the write committed, and the local replica did
/// not replay it in time (replication lag).
#[tokio::test]
async fn a_replica_that_does_not_replay_in_time_is_replication_timeout() {
    let app = two_regions_with(|b| b, |b| b.replication_timeout(Duration::from_millis(300))).await;
    app.cluster.pause_replay().await.unwrap();
    let err = app
        .lax
        .write(CreateTodo {
            title: "late".into(),
        })
        .await
        .unwrap_err();
    let Error::ReplicationTimeout {
        committed_lsn,
        replayed,
        ..
    } = &err
    else {
        panic!("expected ReplicationTimeout, got {err:?}");
    };
    assert!(replayed.is_none_or(|r| r < *committed_lsn), "{err:?}");
    let todo: Todo = err.committed_output().unwrap().expect("the output");
    assert_eq!(todo.title, "late");
    assert_answer(err, StatusCode::ACCEPTED, "committed", json!(true)).await;
    app.cluster.resume_replay().await.unwrap();
}

/// `CommittedButUnreadable`: the write committed, and its output does not
/// fit the type asked for. `Decode`: that output read as another type, or
/// arguments that cannot travel as JSON.
#[tokio::test]
async fn an_unreadable_output_is_committed_but_unreadable_and_its_wrong_reading_decode() {
    let app = two_regions_with(|b| b.ad_hoc_statements(true), |b| b.ad_hoc_statements(true)).await;
    let err = app
        .lax
        .write_fetch_one::<Todo>(query(
            "insert into todos (title) values ('no id') returning title",
        ))
        .await
        .unwrap_err();
    let Error::CommittedButUnreadable { reason, output } = &err else {
        panic!("expected CommittedButUnreadable, got {err:?}");
    };
    assert!(reason.contains("id"), "{reason}");
    assert!(output.is_some(), "the statement's result is kept");
    assert_eq!(titled(&app.cluster, "no id").await, 1, "it committed");

    // Reading that output as the wrong type.
    let misread = err.committed_output::<Vec<Todo>>().unwrap_err();
    let Error::Decode { message } = &misread else {
        panic!("expected Decode, got {misread:?}");
    };
    assert!(message.contains("committed output"), "{message}");
    assert_answer(
        misread,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        json!(false),
    )
    .await;
    assert_answer(err, StatusCode::ACCEPTED, "committed", json!(true)).await;
}

/// `Decode`: a mutation whose arguments cannot be JSON; nothing is sent.
#[tokio::test]
async fn arguments_that_are_not_json_are_decode() {
    let lax = lax_without_database(|b| b.mutation::<Tally>()).await;
    let err = lax
        .write(Tally {
            counts: HashMap::from([((1, 2), 3)]),
        })
        .await
        .unwrap_err();
    let Error::Decode { message } = &err else {
        panic!("expected Decode, got {err:?}");
    };
    assert!(message.contains("tally"), "{message}");
    assert_answer(
        err,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        json!(false),
    )
    .await;
}

/// `RpcTimeout`: the write reached the primary region (and committed),
/// and no answer came back before the RPC deadline (a link that went
/// silent). Both it and `MaybeCommitted` truthfully say "may have
/// committed: settle with the id"; which one a write gets is the last
/// attempt's failure: a timeout after sending (here, every attempt) is
/// `RpcTimeout`, a fast failure after an earlier attempt was sent (a reset,
/// a panic, an instance that went down) is `MaybeCommitted`. When the
/// deadline can fall in either kind of attempt (a crash mid-retry), a test
/// can only expect one of the two; this test and the next are the
/// deterministic cases.
#[tokio::test]
async fn a_write_whose_answers_never_come_back_is_rpc_timeout() {
    let cluster = PgCluster::start().await.unwrap();
    // lax reaches syd through a link that delivers requests at once and
    // holds every answer for an hour. syd advertises the link's address,
    // the one lax's signed requests name.
    let link = LatencyProxy::bind(Delay::to_client_only(Duration::from_secs(3600)))
        .await
        .unwrap();
    let syd = registered(Repo::builder())
        .pool(pool(cluster.primary().connect_options()).await)
        .node(node("syd", StaticPeers::new()).advertise(link.local_addr()))
        .start()
        .await
        .unwrap();
    syd.migrate().await.unwrap();
    sqlx::raw_sql(SCHEMA).execute(syd.local()).await.unwrap();
    link.connect_to(syd.node().local_addr().unwrap());
    let lax = registered(Repo::builder())
        .pool(pool(cluster.replica().connect_options()).await)
        .node(node(
            "lax",
            StaticPeers::new().with("syd", link.local_addr()),
        ))
        .rpc_timeout(Duration::from_secs(1))
        .share_replay_polls(false)
        .start()
        .await
        .unwrap();
    let write = lax.write(CreateTodo {
        title: "held".into(),
    });
    let id = write.id().to_owned();
    let err = write.await.unwrap_err();
    // Every attempt timed out after its request was sent, so the last
    // failure is a sent timeout: RpcTimeout, never MaybeCommitted here.
    match &err {
        Error::RpcTimeout {
            mutation,
            after,
            request_id,
        } => {
            assert_eq!(mutation, "create_todo");
            assert_eq!(*after, Duration::from_secs(1));
            assert_eq!(request_id, &id);
        }
        other => panic!("expected RpcTimeout, got {other:?}"),
    }
    let body = assert_answer(
        err,
        StatusCode::SERVICE_UNAVAILABLE,
        "maybe_committed",
        json!("unknown"),
    )
    .await;
    assert_eq!(body["request_id"], id.as_str());

    // It did commit (once); its id settles it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while titled(&cluster, "held").await == 0 {
        assert!(Instant::now() < deadline, "the held write never committed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let settled = syd
        .write(CreateTodo {
            title: "held".into(),
        })
        .request_id(&id)
        .await
        .expect("answered from the record");
    assert_eq!(settled.title, "held");
    assert_eq!(titled(&cluster, "held").await, 1, "exactly once");
    drop(link);
}

/// `MaybeCommitted`: the primary region ran the write and gave no
/// definite answer (here its handler panicked). The other deterministic
/// case, a COMMIT whose answer was lost, is
/// `a_lost_commit_answer_is_maybe_committed_with_an_id_that_settles_it`
/// in settle_by_id.rs.
#[tokio::test]
async fn a_write_that_crashes_the_primary_regions_handler_is_maybe_committed() {
    let app = two_regions_with(|b| b.mutation::<Crashes>(), |b| b.mutation::<Crashes>()).await;
    let write = app.lax.write(Crashes);
    let id = write.id().to_owned();
    let err = write.await.unwrap_err();
    match &err {
        Error::MaybeCommitted {
            mutation,
            request_id,
            attempts,
            ..
        } => {
            assert_eq!(mutation, "crashes");
            assert_eq!(request_id.as_deref(), Some(id.as_str()));
            assert_eq!(*attempts, 1);
        }
        other => panic!("expected MaybeCommitted, got {other:?}"),
    }
    let body = assert_answer(
        err,
        StatusCode::SERVICE_UNAVAILABLE,
        "maybe_committed",
        json!("unknown"),
    )
    .await;
    assert_eq!(body["request_id"], id.as_str());
    // The syd instance keeps serving.
    app.lax
        .write(CreateTodo {
            title: "after".into(),
        })
        .await
        .unwrap();
}

/// `NoPrimaryNode`: no primary-region instance could be reached (all down,
/// or none discovered); nothing was sent.
#[tokio::test]
async fn a_primary_region_that_refuses_every_connection_is_no_primary_node() {
    let lax = registered(Repo::builder())
        .pool(unreachable_pool())
        .node(node("lax", StaticPeers::new().with("syd", NOWHERE)))
        .rpc_timeout(Duration::from_millis(500))
        .share_replay_polls(false)
        .start()
        .await
        .unwrap();
    let err = lax
        .write(CreateTodo { title: "x".into() })
        .await
        .unwrap_err();
    match &err {
        Error::NoPrimaryNode { region, tried, .. } => {
            assert_eq!(region, "syd");
            assert!(*tried >= 1);
        }
        other => panic!("expected NoPrimaryNode, got {other:?}"),
    }
    let body = assert_answer(
        err,
        StatusCode::SERVICE_UNAVAILABLE,
        "primary_unreachable",
        json!(false),
    )
    .await;
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
}

/// `RequestIdReused`: a client reused its idempotency key for another
/// request. `InvalidRequestId`: a key that is not acceptable.
#[tokio::test]
async fn request_ids_reused_or_invalid_are_refused() {
    let app = two_regions().await;
    app.lax
        .write(CreateTodo {
            title: "first".into(),
        })
        .request_id("key-1")
        .await
        .unwrap();
    let err = app
        .lax
        .write(CreateTodo {
            title: "second".into(),
        })
        .request_id("key-1")
        .await
        .unwrap_err();
    match &err {
        Error::RequestIdReused {
            request_id,
            recorded_mutation,
        } => {
            assert_eq!(request_id, "key-1");
            assert_eq!(recorded_mutation, "create_todo");
        }
        other => panic!("expected RequestIdReused, got {other:?}"),
    }
    assert_answer(
        err,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        json!(false),
    )
    .await;

    let err = app
        .lax
        .write(CreateTodo {
            title: "third".into(),
        })
        .request_id("has spaces")
        .await
        .unwrap_err();
    let Error::InvalidRequestId { reason } = &err else {
        panic!("expected InvalidRequestId, got {err:?}");
    };
    assert!(reason.contains("' '"), "{reason}");
    assert_answer(err, StatusCode::BAD_REQUEST, "bad_request", json!(false)).await;
    assert_eq!(count_todos(app.syd.local()).await, 1);
}

/// `AdHocStatementsDisabled`: `Repo::execute` in an app that did not opt
/// in (the primary region's refusal, `on_primary: true`, is in
/// repo_statements.rs).
#[tokio::test]
async fn an_ad_hoc_statement_without_the_opt_in_is_ad_hoc_statements_disabled() {
    let lax = lax_without_database(|b| b).await;
    let err = lax.execute(query("delete from todos")).await.unwrap_err();
    assert!(
        matches!(err, Error::AdHocStatementsDisabled { on_primary: false }),
        "{err:?}"
    );
    assert_answer(
        err,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        json!(false),
    )
    .await;
}

/// `UnknownProcedure`: a mutation this build never registered.
#[tokio::test]
async fn an_unregistered_mutation_is_unknown_procedure() {
    let lax = lax_without_database(|b| b).await;
    let err = lax.write(Forgotten).await.unwrap_err();
    match &err {
        Error::UnknownProcedure { name, peer_version } => {
            assert_eq!(name, "forgotten");
            assert_eq!(peer_version, &lax.node().info().version);
        }
        other => panic!("expected UnknownProcedure, got {other:?}"),
    }
    assert_answer(
        err,
        StatusCode::SERVICE_UNAVAILABLE,
        "primary_unreachable",
        json!(false),
    )
    .await;
}

/// `Unauthorized`: this instance's RPC secret is not the primary
/// region's (a secret rotated in one region only).
#[tokio::test]
async fn a_node_with_another_secret_is_unauthorized() {
    let app = two_regions().await;
    let lax = registered(Repo::builder())
        .pool(pool(app.cluster.replica().connect_options()).await)
        .node(
            Node::builder()
                .regions(Regions::new("lax", "syd"))
                .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
                .secret("not the cluster's secret 0123456789")
                .discovery(StaticPeers::new().with("syd", app.syd.node().local_addr().unwrap())),
        )
        .share_replay_polls(false)
        .start()
        .await
        .unwrap();
    let err = lax
        .write(CreateTodo { title: "x".into() })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert_answer(
        err,
        StatusCode::SERVICE_UNAVAILABLE,
        "primary_unreachable",
        json!(false),
    )
    .await;
    assert_eq!(count_todos(app.syd.local()).await, 0);
}

/// `Rpc`: the RPC layer itself failed: the node's port is taken at start,
/// or a primary-region build of another version cannot read the write's
/// arguments.
#[tokio::test]
async fn rpc_failures_are_rpc() {
    // The RPC port is already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = registered(Repo::builder())
        .pool(unreachable_pool())
        .node(
            Node::builder()
                .regions(Regions::new("lax", "syd"))
                .listen(taken.local_addr().unwrap())
                .secret(SECRET)
                .discovery(StaticPeers::new()),
        )
        .start()
        .await
        .unwrap_err();
    match &err {
        Error::Rpc(fly_rpc::Error::Io(io)) => {
            assert_eq!(io.kind(), std::io::ErrorKind::AddrInUse, "{io}");
        }
        other => panic!("expected Rpc(Io), got {other:?}"),
    }
    assert_answer(
        err,
        StatusCode::SERVICE_UNAVAILABLE,
        "primary_unreachable",
        json!(false),
    )
    .await;

    // syd runs a build whose `create_todo` takes a due date too.
    let cluster = PgCluster::start().await.unwrap();
    let syd = Repo::builder()
        .mutation::<CreateTodoWithDueDate>()
        .pool(pool(cluster.primary().connect_options()).await)
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap();
    syd.migrate().await.unwrap();
    sqlx::raw_sql(SCHEMA).execute(syd.local()).await.unwrap();
    let lax = lax_for(&syd, pool(cluster.replica().connect_options()).await, |b| b).await;
    let err = lax
        .write(CreateTodo { title: "x".into() })
        .await
        .unwrap_err();
    match &err {
        Error::Rpc(fly_rpc::Error::BadRequest {
            status, message, ..
        }) => {
            assert_eq!(*status, 400);
            assert!(message.contains("due"), "{message}");
        }
        other => panic!("expected Rpc(BadRequest), got {other:?}"),
    }
    assert_answer(
        err,
        StatusCode::SERVICE_UNAVAILABLE,
        "primary_unreachable",
        json!(false),
    )
    .await;
    assert_eq!(count_todos(syd.local()).await, 0);
}

/// `Primary`: the primary region failed outside PostgreSQL (here its
/// database lacks the library's table: `Repo::migrate` was never run).
#[tokio::test]
async fn a_primary_region_without_the_migration_is_primary() {
    let cluster = PgCluster::start().await.unwrap();
    let syd = registered(Repo::builder())
        .pool(pool(cluster.primary().connect_options()).await)
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap();
    sqlx::raw_sql(SCHEMA).execute(syd.local()).await.unwrap();
    let lax = lax_for(&syd, pool(cluster.replica().connect_options()).await, |b| b).await;
    let err = lax
        .write(CreateTodo { title: "x".into() })
        .await
        .unwrap_err();
    let Error::Primary { message } = &err else {
        panic!("expected Primary, got {err:?}");
    };
    assert!(message.contains("migrate"), "{message}");
    assert_answer(
        err,
        StatusCode::SERVICE_UNAVAILABLE,
        "primary_unreachable",
        json!(false),
    )
    .await;
    assert_eq!(count_todos(syd.local()).await, 0);
}

/// `NoConnection`: the pool got no connection in time (the database is
/// down, or refuses more clients). Here a lax instance that writes
/// straight to the primary over PostgreSQL (`WriteMode::Direct`) finds it
/// down: one attempt, nothing sent.
#[tokio::test]
async fn a_primary_database_that_is_down_is_no_connection() {
    let lax = lax_without_database(|b| {
        b.write_mode(WriteMode::Direct).primary_pool(
            PgPoolOptions::new()
                .max_connections(3)
                .acquire_timeout(Duration::from_millis(300))
                .connect_lazy_with(nowhere()),
        )
    })
    .await;
    let err = lax
        .write(CreateTodo { title: "x".into() })
        .await
        .unwrap_err();
    match &err {
        Error::NoConnection {
            in_use,
            max,
            reason,
        } => {
            assert_eq!((*in_use, *max), (0, 3));
            assert!(reason.contains("cannot be reached"), "{reason}");
        }
        other => panic!("expected NoConnection, got {other:?}"),
    }
    let body = assert_answer(
        err,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        json!(false),
    )
    .await;
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
}

/// `Config`: the repo was built without a database. `InvalidDatabaseUrl`:
/// `DATABASE_URL` is not a PostgreSQL URL.
#[tokio::test]
async fn bad_configuration_is_config_or_invalid_database_url() {
    let err = Repo::builder()
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap_err();
    let Error::Config(message) = &err else {
        panic!("expected Config, got {err:?}");
    };
    assert!(message.contains("database_url"), "{message}");
    assert_answer(
        err,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        json!(false),
    )
    .await;

    let err = Repo::builder()
        .database_url("mysql://app:secret@db.internal/app")
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap_err();
    let Error::InvalidDatabaseUrl { reason } = &err else {
        panic!("expected InvalidDatabaseUrl, got {err:?}");
    };
    assert!(reason.contains("mysql"), "{reason}");
    assert!(!reason.contains("secret"), "{reason}");
    let body = assert_answer(
        err,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        json!(false),
    )
    .await;
    assert!(!body.to_string().contains("secret"), "{body}");
}

/// `InvalidLsn`: a WAL position from a client or a peer that is not one,
/// read with `?` into `fly_postgres::Error`.
#[tokio::test]
async fn a_malformed_lsn_is_invalid_lsn() {
    fn from_client(text: &str) -> Result<Lsn, Error> {
        Ok(text.parse::<Lsn>()?)
    }
    assert_eq!(from_client("0/16B3748").unwrap(), Lsn::new(0x16B_3748));
    let err = from_client("16B3748").unwrap_err();
    assert!(
        matches!(&err, Error::InvalidLsn(fly_postgres::LsnParseError::MissingSlash(text)) if text == "16B3748"),
        "{err:?}"
    );
    assert_answer(
        err,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        json!(false),
    )
    .await;
}

/// Set in the child process that [`missing_env_for_an_unset_or_blank_database_url`]
/// starts, to the test's case.
const CHILD_CASE: &str = "FLY_POSTGRES_ERROR_VARIANTS_CHILD";

/// `MissingEnv`: `DATABASE_URL` is not set, or blank. The environment is
/// the process's, shared by the tests running in parallel, so each case
/// runs in a child process of this test binary with its own environment.
#[tokio::test]
async fn missing_env_for_an_unset_or_blank_database_url() {
    if std::env::var_os(CHILD_CASE).is_some() {
        let err = fly_postgres::database_url_from_env().unwrap_err();
        assert!(
            matches!(
                err,
                Error::MissingEnv {
                    name: "DATABASE_URL",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_answer(
            err,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            json!(false),
        )
        .await;
        println!("checked MissingEnv in the child");
        return;
    }
    for (case, value) in [("unset", None), ("blank", Some("  "))] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child
            .args([
                "--exact",
                "missing_env_for_an_unset_or_blank_database_url",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_CASE, case);
        match value {
            None => child.env_remove("DATABASE_URL"),
            Some(value) => child.env("DATABASE_URL", value),
        };
        let output = child.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("checked MissingEnv in the child"),
            "{case}: {}\n{stdout}\n{stderr}",
            output.status
        );
    }
}

/// The variants no test can produce (see the file's header) answer 500,
/// nothing committed: checked on hand-built values.
#[tokio::test]
async fn the_variants_no_test_can_produce_answer_internal() {
    for error in [
        Error::TrackerStart(std::io::Error::other("thread limit")),
        Error::TrackerStopped,
        Error::Listener(std::io::Error::other("accept failed")),
    ] {
        let name = format!("{error:?}");
        let (status, body) = answer(error).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{name}");
        assert_eq!(body["error"], "internal", "{name}");
        assert_eq!(body["committed"], json!(false), "{name}");
    }
}
