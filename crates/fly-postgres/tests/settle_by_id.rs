//! Writes whose outcome the caller did not hear: a COMMIT whose answer was
//! lost in the primary region, and futures dropped mid-write. Each carries
//! a request id known up front, and a write with that id settles it
//! exactly once.

mod common;

use std::time::Duration;

use common::*;
use fly_postgres::{Error, Mutation, Repo, sqlx};
use fly_postgres_testkit::{Delay, LatencyProxy, PgCluster};
use fly_rpc::StaticPeers;
use serde::{Deserialize, Serialize};

/// The link [`CutBeforeAnswer`] cuts.
static CUT: std::sync::OnceLock<std::sync::Arc<LatencyProxy>> = std::sync::OnceLock::new();

/// Inserts, then has the link to the database cut 150 ms later (once).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CutBeforeAnswer {
    title: String,
}

impl Mutation for CutBeforeAnswer {
    const NAME: &'static str = "cut_before_answer";
    type Output = Todo;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<Todo, Error> {
        let todo = sqlx::query_as("insert into todos (title) values ($1) returning id, title")
            .bind(self.title)
            .fetch_one(&mut *tx)
            .await?;
        if let Some(proxy) = CUT.get() {
            let proxy = std::sync::Arc::clone(proxy);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                proxy.cut();
            });
        }
        Ok(todo)
    }
}

/// A primary-region repo whose one connection goes through a proxy, and
/// the proxy.
async fn syd_through(cluster: &PgCluster) -> (std::sync::Arc<LatencyProxy>, Repo) {
    let proxy = std::sync::Arc::new(
        LatencyProxy::start(
            std::net::SocketAddr::from(([127, 0, 0, 1], cluster.primary().port())),
            Delay::NONE,
        )
        .await
        .unwrap(),
    );
    let mut options = cluster.primary().connect_options();
    options = options.host("127.0.0.1").port(proxy.local_addr().port());
    let pool = fly_postgres::pool_options()
        .max_connections(1)
        .connect_lazy_with(options);
    let syd = registered(Repo::builder())
        .mutation::<CutBeforeAnswer>()
        // How long a local write retries with its id before it answers
        // "maybe committed".
        .rpc_timeout(Duration::from_secs(1))
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

async fn rows(cluster: &PgCluster, title: &str) -> i64 {
    let mut conn = cluster.primary().connect().await.unwrap();
    sqlx::query_scalar("select count(*) from todos where title = $1")
        .bind(title)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_lost_commit_answer_is_maybe_committed_with_an_id_that_settles_it() {
    let cluster = PgCluster::start().await.unwrap();
    let (proxy, syd) = syd_through(&cluster).await;
    // Every answer takes 300 ms to come back. The mutation cuts the link
    // 150 ms after its last statement: COMMIT has reached the server (bytes
    // to it are not delayed) and its answer is on the way back.
    proxy.set_delay(Delay::to_client_only(Duration::from_millis(300)));
    let _ = CUT.set(std::sync::Arc::clone(&proxy));
    let err = syd
        .write(CutBeforeAnswer {
            title: "lost answer".into(),
        })
        .await
        .unwrap_err();
    let id = match &err {
        Error::MaybeCommitted {
            request_id: Some(id),
            ..
        } => id.clone(),
        other => panic!("expected MaybeCommitted with an id, got {other:?}"),
    };
    assert!(err.is_maybe_committed());
    assert_eq!(rows(&cluster, "lost answer").await, 1, "it did commit");

    proxy.set_delay(Delay::NONE);
    proxy.restore();
    let settled = syd
        .write(CutBeforeAnswer {
            title: "lost answer".into(),
        })
        .request_id(&id)
        .await
        .expect("the retry answers from the record");
    assert_eq!(settled.title, "lost answer");
    assert_eq!(rows(&cluster, "lost answer").await, 1, "exactly once");
}

#[tokio::test]
async fn a_dropped_write_runs_to_its_end_and_its_id_settles_it() {
    let cluster = PgCluster::start().await.unwrap();
    let (proxy, syd) = syd_through(&cluster).await;
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
