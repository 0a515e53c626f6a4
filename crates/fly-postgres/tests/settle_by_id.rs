//! Writes whose outcome the caller did not hear: a COMMIT whose answer was
//! lost in the primary region, and futures dropped mid-write. Each carries
//! a request id known up front, and a write with that id settles it
//! exactly once.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use fly_postgres::{Error, Mutation, Repo, sqlx};
use fly_postgres_testkit::{Delay, LatencyProxy, PgCluster, PgTopology};
use fly_rpc::StaticPeers;
use serde::{Deserialize, Serialize};

/// Per title: the link [`CutBeforeAnswer`] cuts, and when.
static CUTS: std::sync::Mutex<Vec<(String, Arc<LatencyProxy>, Duration)>> =
    std::sync::Mutex::new(Vec::new());

/// Inserts, then has the link to the database cut a while after its last
/// statement (once), as its test arranged.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CutBeforeAnswer {
    title: String,
}

impl Mutation for CutBeforeAnswer {
    const NAME: &'static str = "cut_before_answer";
    type Output = Todo;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<Todo, Error> {
        let todo = sqlx::query_as("insert into todos (title) values ($1) returning id, title")
            .bind(&self.title)
            .fetch_one(&mut *tx)
            .await?;
        let cut = {
            let mut cuts = CUTS.lock().unwrap();
            let at = cuts.iter().position(|(title, _, _)| *title == self.title);
            at.map(|at| cuts.remove(at))
        };
        if let Some((_, proxy, after)) = cut {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                proxy.cut();
            });
        }
        Ok(todo)
    }
}

/// The next write titled `title` has `proxy` cut `after` its last statement.
fn cut_once(title: &str, proxy: &Arc<LatencyProxy>, after: Duration) {
    CUTS.lock()
        .unwrap()
        .push((title.to_owned(), Arc::clone(proxy), after));
}

/// A primary-region repo whose one connection goes through a proxy to
/// `upstream`, and the proxy.
async fn syd_through(
    (upstream, options): (SocketAddr, sqlx::postgres::PgConnectOptions),
    records: bool,
) -> (Arc<LatencyProxy>, Repo) {
    let proxy = Arc::new(LatencyProxy::start(upstream, Delay::NONE).await.unwrap());
    let options = options.host("127.0.0.1").port(proxy.local_addr().port());
    let pool = fly_postgres::pool_options()
        .max_connections(1)
        .connect_lazy_with(options);
    let syd = registered(Repo::builder())
        .mutation::<CutBeforeAnswer>()
        .record_local_writes(records)
        // How long a local write retries with its id before it answers
        // "maybe committed" (a write takes four round trips of 300 ms).
        .rpc_timeout(Duration::from_secs(3))
        .pool(pool)
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap();
    syd.migrate().await.unwrap();
    sqlx::raw_sql(SCHEMA).execute(syd.local()).await.unwrap();
    // Warm: the connection and the first write's checks are done.
    syd.write(CreateTodo {
        title: "warm".into(),
    })
    .await
    .unwrap();
    (proxy, syd)
}

fn primary_addr(cluster: &PgCluster) -> (SocketAddr, sqlx::postgres::PgConnectOptions) {
    (
        SocketAddr::from(([127, 0, 0, 1], cluster.primary().port())),
        cluster.primary().connect_options(),
    )
}

async fn count(options: sqlx::postgres::PgConnectOptions, sql: &'static str, arg: &str) -> i64 {
    let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
    sqlx::query_scalar(sql)
        .bind(arg)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

async fn rows_at(options: sqlx::postgres::PgConnectOptions, title: &str) -> i64 {
    count(
        options,
        "select count(*) from todos where title = $1",
        title,
    )
    .await
}

/// Request records whose id starts with `id`.
async fn records_at(options: sqlx::postgres::PgConnectOptions, id: &str) -> i64 {
    count(
        options,
        "select count(*) from fly_postgres_requests where starts_with(id, $1)",
        id,
    )
    .await
}

async fn rows(cluster: &PgCluster, title: &str) -> i64 {
    rows_at(cluster.primary().connect_options(), title).await
}

/// Every answer takes 300 ms to come back, and the link is cut while
/// COMMIT's answer is on its way: COMMIT reached the server. The write
/// must answer "maybe committed" with an id. Without a record, COMMIT
/// goes out one round trip (the transaction's probe) after the mutation.
async fn lose_commit_answer(
    proxy: &Arc<LatencyProxy>,
    syd: &Repo,
    title: &str,
    records: bool,
) -> String {
    proxy.set_delay(Delay::to_client_only(Duration::from_millis(300)));
    let after = if records { 150 } else { 450 };
    cut_once(title, proxy, Duration::from_millis(after));
    maybe_committed_id(syd, title).await
}

/// Bytes to the server take 300 ms, and the link is cut while COMMIT is
/// on its way there: it never arrives.
async fn lose_commit(proxy: &Arc<LatencyProxy>, syd: &Repo, title: &str) -> String {
    proxy.set_delay(Delay {
        to_upstream: Duration::from_millis(300),
        to_client: Duration::ZERO,
    });
    cut_once(title, proxy, Duration::from_millis(450));
    maybe_committed_id(syd, title).await
}

/// Writes `title`, which must end "maybe committed" with an id: the id.
async fn maybe_committed_id(syd: &Repo, title: &str) -> String {
    let err = syd
        .write(CutBeforeAnswer {
            title: title.into(),
        })
        .await
        .unwrap_err();
    assert!(err.is_maybe_committed(), "{err:?}");
    match err {
        Error::MaybeCommitted {
            request_id: Some(id),
            ..
        } => id,
        other => panic!("expected MaybeCommitted with an id, got {other:?}"),
    }
}

/// The link heals: no delay, no cut.
fn heal(proxy: &LatencyProxy) {
    proxy.set_delay(Delay::NONE);
    proxy.restore();
}

async fn settle(syd: &Repo, title: &str, id: &str) -> Todo {
    syd.write(CutBeforeAnswer {
        title: title.into(),
    })
    .request_id(id)
    .await
    .expect("the id settles the write")
}

#[tokio::test]
async fn a_lost_commit_answer_is_maybe_committed_with_an_id_that_settles_it() {
    for records in [false, true] {
        let cluster = PgCluster::start().await.unwrap();
        let (proxy, syd) = syd_through(primary_addr(&cluster), records).await;
        let title = format!("lost answer, records: {records}");
        let id = lose_commit_answer(&proxy, &syd, &title, records).await;
        assert_eq!(rows(&cluster, &title).await, 1, "it did commit");
        heal(&proxy);
        let settled = settle(&syd, &title, &id).await;
        assert_eq!(settled.title, title);
        // Settling again answers alike.
        assert_eq!(settle(&syd, &title, &id).await, settled);
        assert_eq!(rows(&cluster, &title).await, 1, "exactly once");
        syd.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_lost_commit_answer_settles_as_committed_without_a_record() {
    let cluster = PgCluster::start().await.unwrap();
    let (proxy, syd) = syd_through(primary_addr(&cluster), false).await;
    let title = "committed, no record";
    let id = lose_commit_answer(&proxy, &syd, title, false).await;
    let base = id.split(":x").next().unwrap().to_owned();
    assert_ne!(base, id, "the id names the transaction: {id}");
    heal(&proxy);
    assert_eq!(settle(&syd, title, &id).await.title, title);
    // So does the write's own id, in this process.
    assert_eq!(settle(&syd, title, &base).await.title, title);
    assert_eq!(rows(&cluster, title).await, 1, "exactly once");
    let primary = cluster.primary().connect_options();
    assert_eq!(
        records_at(primary, &base).await,
        0,
        "no request record was written"
    );

    // Another process (another repo on the same database) settles it by
    // the id too: committed, its output kept only where it ran.
    let other = registered(Repo::builder())
        .mutation::<CutBeforeAnswer>()
        .pool(pool(cluster.primary().connect_options()).await)
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap();
    let err = other
        .write(CutBeforeAnswer {
            title: title.into(),
        })
        .request_id(&id)
        .await
        .unwrap_err();
    assert!(err.is_committed(), "{err:?}");
    assert_eq!(rows(&cluster, title).await, 1, "still once");
    other.shutdown().await.unwrap();
    syd.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_commit_that_never_arrived_settles_as_not_committed_and_runs_once() {
    let cluster = PgCluster::start().await.unwrap();
    let (proxy, syd) = syd_through(primary_addr(&cluster), false).await;
    let title = "never arrived";
    let id = lose_commit(&proxy, &syd, title).await;
    assert_eq!(rows(&cluster, title).await, 0, "nothing committed");
    heal(&proxy);
    let settled = settle(&syd, title, &id).await;
    assert_eq!(settled.title, title);
    assert_eq!(rows(&cluster, title).await, 1, "ran once, on settling");
    // A second settle answers from the record the run kept.
    assert_eq!(settle(&syd, title, &id).await, settled);
    assert_eq!(rows(&cluster, title).await, 1, "exactly once");
    syd.shutdown().await.unwrap();
}

#[tokio::test]
async fn lost_commits_settle_across_a_failover_to_a_synchronous_standby() {
    let topology = PgTopology::builder("syd")
        .synchronous_standby()
        .start()
        .await
        .unwrap();
    let (proxy, syd) =
        syd_through((topology.leader_addr(), topology.leader_options()), false).await;
    topology
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();
    let committed = lose_commit_answer(&proxy, &syd, "committed, then failover", false).await;
    heal(&proxy);
    // The link heals: a write goes through on a fresh connection.
    syd.write(CreateTodo {
        title: "healed".into(),
    })
    .await
    .unwrap();
    let lost = lose_commit(&proxy, &syd, "never arrived, then failover").await;
    assert_eq!(
        rows_at(topology.leader_options(), "committed, then failover").await,
        1
    );
    assert_eq!(
        rows_at(topology.leader_options(), "never arrived, then failover").await,
        0
    );

    topology.primary().kill().await.unwrap();
    topology.promote("syd-standby").await.unwrap();
    heal(&proxy);

    // The new primary has the commit that reached the old one (synchronous
    // replication): settled as committed, not run again.
    let settled = settle(&syd, "committed, then failover", &committed).await;
    assert_eq!(settled.title, "committed, then failover");
    // The COMMIT that never arrived: not committed, so it runs now.
    let ran = settle(&syd, "never arrived, then failover", &lost).await;
    assert_eq!(ran.title, "never arrived, then failover");
    let leader = topology.leader_options();
    assert_eq!(rows_at(leader.clone(), "committed, then failover").await, 1);
    assert_eq!(
        rows_at(leader.clone(), "never arrived, then failover").await,
        1
    );
    let base = committed.split(":x").next().unwrap();
    assert_eq!(
        records_at(leader, base).await,
        0,
        "no request record was written"
    );
    syd.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dropped_write_runs_to_its_end_and_its_id_settles_it() {
    let cluster = PgCluster::start().await.unwrap();
    let (proxy, syd) = syd_through(primary_addr(&cluster), false).await;
    proxy.set_delay(Delay::to_client_only(Duration::from_millis(150)));
    let write = syd.write(CreateTodo {
        title: "dropped".into(),
    });
    let id = write.id().to_owned();
    // The caller gives up mid-write; the write goes on in its own task.
    let gave_up = tokio::time::timeout(Duration::from_millis(200), write).await;
    assert!(gave_up.is_err(), "the write was still running");
    proxy.set_delay(Delay::NONE);
    let settled = syd
        .write(CreateTodo {
            title: "dropped".into(),
        })
        .request_id(&id)
        .await
        .expect("settled by its id");
    assert_eq!(settled.title, "dropped");
    assert_eq!(rows(&cluster, "dropped").await, 1, "exactly once");
}

#[tokio::test]
async fn a_dropped_forwarded_write_is_settled_by_its_id() {
    let app = two_regions().await;
    let write = app.lax.write(CreateTodo {
        title: "dropped in lax".into(),
    });
    let id = write.id().to_owned();
    assert_eq!(id.len(), 32, "a generated id, known before awaiting: {id}");
    // Dropped before it was ever polled: nothing was sent.
    drop(write);
    let first = app
        .lax
        .write(CreateTodo {
            title: "dropped in lax".into(),
        })
        .request_id(&id)
        .await
        .unwrap();
    // Settling again returns the same write, not a second one.
    let again = app
        .lax
        .write(CreateTodo {
            title: "dropped in lax".into(),
        })
        .request_id(&id)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(count_todos(app.syd.local()).await, 1);
}
