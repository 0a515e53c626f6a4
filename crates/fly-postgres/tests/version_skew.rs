//! A rolling deploy that adds a mutation: lax already has it, one syd
//! instance does and the other does not yet. An instance that does not know
//! it ran nothing, so the write goes to its sibling, or waits for one, and
//! commits exactly once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fly_postgres::{Error, Mutation, Repo, sqlx};
use fly_postgres_testkit::PgCluster;
use fly_rpc::StaticPeers;
use serde::{Deserialize, Serialize};

/// The mutation the deploy adds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shout {
    title: String,
}

impl Mutation for Shout {
    const NAME: &'static str = "shout";
    type Output = Todo;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<Todo, Error> {
        Ok(
            sqlx::query_as("insert into todos (title) values (upper($1)) returning id, title")
                .bind(self.title)
                .fetch_one(&mut *tx)
                .await?,
        )
    }
}

struct Deploy {
    old: Repo,
    new: Repo,
    cluster: PgCluster,
}

async fn half_deployed() -> Deploy {
    let cluster = PgCluster::start().await.unwrap();
    let primary = pool(cluster.primary().connect_options()).await;
    let old = registered(Repo::builder())
        .pool(primary.clone())
        .node(node("syd", StaticPeers::new()).version("v1"))
        .start()
        .await
        .unwrap();
    old.migrate().await.unwrap();
    sqlx::raw_sql(SCHEMA).execute(&primary).await.unwrap();
    let new = registered(Repo::builder())
        .mutation::<Shout>()
        .pool(primary)
        .node(node("syd", StaticPeers::new()).version("v2"))
        .start()
        .await
        .unwrap();
    Deploy { old, new, cluster }
}

async fn lax(deploy: &Deploy, syd: &[&Repo], rpc_timeout: Duration) -> Repo {
    let peers = syd.iter().fold(StaticPeers::new(), |peers, repo| {
        peers.with("syd", repo.node().local_addr().expect("rpc listener"))
    });
    registered(Repo::builder())
        .mutation::<Shout>()
        .pool(pool(deploy.cluster.replica().connect_options()).await)
        .rpc_timeout(rpc_timeout)
        .node(node("lax", peers))
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_write_reaches_the_instance_that_knows_the_new_mutation() {
    let deploy = half_deployed().await;
    let lax = lax(&deploy, &[&deploy.old, &deploy.new], Duration::from_secs(5)).await;
    for i in 0..20 {
        let todo = lax
            .write(Shout {
                title: format!("hey {i}"),
            })
            .await
            .unwrap();
        assert_eq!(todo.title, format!("HEY {i}"));
    }
    assert_eq!(count_todos(deploy.new.local()).await, 20);
    assert_eq!(deploy.new.stats().served_writes, 20);
    assert_eq!(deploy.old.stats().served_writes, 0);
}

#[tokio::test]
async fn a_mutation_no_instance_knows_fails_typed_after_the_deadline() {
    let deploy = half_deployed().await;
    let lax = lax(&deploy, &[&deploy.old], Duration::from_millis(600)).await;
    let started = Instant::now();
    let err = lax
        .write(Shout {
            title: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "retried until the deadline: {:?}",
        started.elapsed()
    );
    match &err {
        Error::UnknownProcedure { name, peer_version } => {
            assert_eq!(name, "shout");
            assert!(peer_version.contains("v1"), "{peer_version}");
        }
        other => panic!("expected UnknownProcedure, got {other:?}"),
    }
    assert!(!err.is_maybe_committed() && !err.is_committed());
    assert_eq!(count_todos(deploy.old.local()).await, 0);
}
