//! Faults around forwarded writes: a reply lost after COMMIT, a replica
//! database in the primary region, the local replica down.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use fly_postgres::sqlx;
use fly_postgres::{Error, Repo};
use fly_postgres_testkit::{Delay, LatencyProxy};
use fly_rpc::StaticPeers;

#[tokio::test]
async fn a_reply_lost_after_commit_is_retried_once_and_not_run_twice() {
    let app = two_regions().await;

    // A second primary-region node whose connection is cut right after the
    // write commits, before the reply leaves: the worst moment to crash.
    let proxy: Arc<OnceLock<LatencyProxy>> = Arc::default();
    let cut_once = Arc::new(AtomicBool::new(true));
    let hook_proxy = Arc::clone(&proxy);
    let hook_cut = Arc::clone(&cut_once);
    // The proxy is bound first: the node must know the address callers
    // sign their requests for.
    let cut = LatencyProxy::bind(Delay::NONE).await.unwrap();
    let doomed = registered(Repo::builder())
        .pool(pool(app.cluster.primary().connect_options()).await)
        .node(node("syd", StaticPeers::new()).advertise(cut.local_addr()))
        .after_commit_hook(Arc::new(move |_| {
            if hook_cut.swap(false, Ordering::SeqCst)
                && let Some(p) = hook_proxy.get()
            {
                p.sever();
            }
        }))
        .start()
        .await
        .unwrap();
    cut.connect_to(doomed.node().local_addr().expect("rpc listener"));
    let cut_addr = cut.local_addr();
    assert!(proxy.set(cut).is_ok());

    // lax tries the doomed node first, then the healthy one.
    let lax = registered(Repo::builder())
        .pool(pool(app.cluster.replica().connect_options()).await)
        .node(
            node(
                "lax",
                StaticPeers::new()
                    .with("syd", cut_addr)
                    .with("syd", app.syd.node().local_addr().expect("rpc listener")),
            )
            .failure_quarantine(Duration::ZERO),
        )
        .start()
        .await
        .unwrap();

    let todo = lax
        .write(CreateTodo {
            title: "exactly once".into(),
        })
        .await
        .unwrap();
    assert!(
        !cut_once.load(Ordering::SeqCst),
        "the fault was never injected"
    );
    let rows: Vec<Todo> =
        sqlx::query_as("select id, title from todos where title = 'exactly once'")
            .fetch_all(app.syd.local())
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![todo.clone()],
        "the write ran twice or the caller got another output"
    );
    assert_eq!(doomed.stats().served_writes, 1);
    assert_eq!(
        app.syd.stats().served_writes,
        1,
        "the retry reached the second node"
    );
    // And the caller reads it at once.
    let seen: Todo = sqlx::query_as("select id, title from todos where id = $1")
        .bind(todo.id)
        .fetch_one(lax.local())
        .await
        .unwrap();
    assert_eq!(seen, todo);
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried_with_the_same_id() {
    // The first attempt's reply is delayed past the RPC timeout by a slow
    // link; the retry (same request id) is answered from the record.
    let app = two_regions().await;
    // A second primary-region node behind a link whose speed the test sets.
    let slow = LatencyProxy::bind(Delay::NONE).await.unwrap();
    let syd = registered(Repo::builder())
        .pool(pool(app.cluster.primary().connect_options()).await)
        .node(node("syd", StaticPeers::new()).advertise(slow.local_addr()))
        .start()
        .await
        .unwrap();
    slow.connect_to(syd.node().local_addr().expect("rpc listener"));
    let lax = registered(Repo::builder())
        .pool(pool(app.cluster.replica().connect_options()).await)
        .node(node(
            "lax",
            StaticPeers::new().with("syd", slow.local_addr()),
        ))
        .rpc_timeout(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    // Warm the connection, then make replies slow for one write only.
    lax.write(CreateTodo {
        title: "warm".into(),
    })
    .await
    .unwrap();
    slow.set_delay(Delay {
        to_upstream: Duration::ZERO,
        to_client: Duration::from_millis(1500),
    });
    let write = tokio::spawn({
        let lax = lax.clone();
        async move {
            lax.write(CreateTodo {
                title: "slow reply".into(),
            })
            .await
        }
    });
    // The first attempt gets half of the 2 s budget and times out; the
    // retry goes over a fast link again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    slow.set_delay(Delay::NONE);
    let todo = write.await.unwrap().unwrap();
    assert!(lax.stats().retries >= 1, "no retry happened");
    let n: i64 = sqlx::query_scalar("select count(*) from todos where title = 'slow reply'")
        .fetch_one(app.syd.local())
        .await
        .unwrap();
    assert_eq!(n, 1, "the retried write ran twice");
    assert_eq!(todo.title, "slow reply");
}

#[tokio::test]
async fn a_primary_region_node_on_a_replica_is_skipped() {
    let app = two_regions().await;
    // Misconfigured: in the primary region, but its pool reads the replica.
    let wrong = registered(Repo::builder())
        .pool(pool(app.cluster.replica().connect_options()).await)
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap();
    let lax = registered(Repo::builder())
        .pool(pool(app.cluster.replica().connect_options()).await)
        .node(
            node(
                "lax",
                StaticPeers::new()
                    .with("syd", wrong.node().local_addr().expect("rpc listener"))
                    .with("syd", app.syd.node().local_addr().expect("rpc listener")),
            )
            .failure_quarantine(Duration::ZERO),
        )
        .start()
        .await
        .unwrap();
    for i in 0..6 {
        lax.write(CreateTodo {
            title: format!("t{i}"),
        })
        .await
        .unwrap();
    }
    assert_eq!(
        wrong.stats().served_writes,
        0,
        "a node on a replica ran a write"
    );
    assert_eq!(app.syd.stats().served_writes, 6);

    // With only the wrong node: a typed error, quickly.
    let alone = registered(Repo::builder())
        .pool(pool(app.cluster.replica().connect_options()).await)
        .node(node(
            "lax",
            StaticPeers::new().with("syd", wrong.node().local_addr().expect("rpc listener")),
        ))
        .rpc_timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    let err = alone
        .write(CreateTodo { title: "x".into() })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NoPrimaryNode { .. }),
        "a node that answers 'not primary' ran nothing: {err:?}"
    );
    assert!(!err.is_maybe_committed());
}

#[tokio::test]
async fn with_the_local_replica_down_a_write_commits_and_says_so_without_hanging() {
    let app = two_regions().await;
    app.cluster.replica().kill().await.unwrap();
    let started = Instant::now();
    let err = app
        .lax
        .write(CreateTodo {
            title: "while down".into(),
        })
        .replication_timeout(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "hung for {:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::ReplicationTimeout { .. }), "{err:?}");
    let todo: Todo = err.committed_output().unwrap().unwrap();
    assert_eq!(count_todos(app.syd.local()).await, 1, "the write committed");
    // Reads get the pool's error, not a hang.
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::query("select 1").execute(app.lax.local()),
    )
    .await
    .expect("a read hung");
    assert!(read.is_err());
    // Back up: the row arrives and the next write waits normally.
    app.cluster.replica().start().await.unwrap();
    app.lax
        .write(CreateTodo {
            title: "after".into(),
        })
        .await
        .unwrap();
    let seen: i64 = sqlx::query_scalar("select count(*) from todos where id = $1")
        .bind(todo.id)
        .fetch_one(app.lax.local())
        .await
        .unwrap();
    assert_eq!(seen, 1);
}

#[tokio::test]
async fn without_any_primary_region_node_the_error_is_typed_and_fast() {
    let app = two_regions().await;
    let nowhere = registered(Repo::builder())
        .pool(pool(app.cluster.replica().connect_options()).await)
        .node(node(
            "lax",
            StaticPeers::new().with("syd", SocketAddr::from(([127, 0, 0, 1], 1))),
        ))
        .rpc_timeout(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let err = nowhere
        .write(CreateTodo { title: "x".into() })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoPrimaryNode { .. }), "{err:?}");
    assert!(!err.is_maybe_committed(), "nothing was sent");
    assert!(started.elapsed() < Duration::from_secs(8));
    // Retried (refused connections are transient) until the 1 s budget.
    assert!(nowhere.stats().retries >= 3, "{:?}", nowhere.stats());
}

#[tokio::test]
async fn a_primary_region_node_that_never_answers_is_left_for_another() {
    let app = two_regions().await;
    // Accepts connections and then says nothing, like a wedged instance.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = black_hole.local_addr().unwrap();
    let _holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = black_hole.accept().await {
            held.push(socket);
        }
    });
    let lax = registered(Repo::builder())
        .pool(pool(app.cluster.replica().connect_options()).await)
        .node(node(
            "lax",
            StaticPeers::new()
                .with("syd", hole_addr)
                .with("syd", app.syd.node().local_addr().expect("rpc listener")),
        ))
        .rpc_timeout(Duration::from_millis(1500))
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let mut wrote = 0;
    for i in 0..4 {
        lax.write(CreateTodo {
            title: format!("around the hole {i}"),
        })
        .await
        .unwrap();
        wrote += 1;
    }
    assert_eq!(wrote, 4);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(lax.stats().retries >= 1, "the hung node was never tried");
    assert!(
        lax.stats().retries <= 2,
        "the hung node was not quarantined"
    );
    assert_eq!(count_todos(app.syd.local()).await, 4);
}

/// Speaks the forwarded-write wire format with arguments of the wrong shape,
/// as an older or newer build of the app might.
#[derive(serde::Serialize, serde::Deserialize)]
struct SkewedCreate {
    args: serde_json::Value,
}

impl fly_rpc::Procedure for SkewedCreate {
    const NAME: &'static str = "create_todo";
    type Output = serde_json::Value;
    type Error = String;
    type State = ();
    async fn run(self, _: Arc<()>, _: fly_rpc::CallContext) -> Result<serde_json::Value, String> {
        Err("only ever called".into())
    }
}

#[tokio::test]
async fn a_write_with_arguments_of_the_wrong_shape_is_a_400_before_any_transaction() {
    let app = two_regions().await;
    let err = app
        .lax
        .node()
        .call_region(
            "syd",
            SkewedCreate {
                args: serde_json::json!({"name": 7}),
            },
        )
        .await
        .unwrap_err();
    match &err {
        fly_rpc::Error::BadRequest {
            status, message, ..
        } => {
            assert_eq!(*status, 400);
            assert!(message.contains("create_todo"), "{message}");
        }
        other => panic!("expected BadRequest, got {other:?}"),
    }
    assert_eq!(app.syd.stats().served_writes, 0);
    assert_eq!(count_todos(app.syd.local()).await, 0);
}

#[tokio::test]
async fn a_request_id_that_failed_for_good_never_commits_later() {
    let app = two_regions().await;
    sqlx::query("insert into todos (title) values ('taken')")
        .execute(app.syd.local())
        .await
        .unwrap();
    let first = app
        .lax
        .write(CreateTodo {
            title: "taken".into(),
        })
        .request_id("settled-as-failed")
        .await
        .unwrap_err();
    assert!(first.is_unique_violation(), "{first:?}");
    // What made it fail goes away; an attempt with the same id arriving late
    // (a retry still in flight when the caller was told "not committed")
    // must not commit now: it gets the recorded failure.
    sqlx::query("delete from todos where title = 'taken'")
        .execute(app.syd.local())
        .await
        .unwrap();
    let late = app
        .lax
        .write(CreateTodo {
            title: "taken".into(),
        })
        .request_id("settled-as-failed")
        .await
        .unwrap_err();
    assert!(late.is_unique_violation(), "{late:?}");
    assert_eq!(
        count_todos(app.syd.local()).await,
        0,
        "the late attempt ran"
    );
}
