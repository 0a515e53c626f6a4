//! The two regions every todo test runs against: a real primary (syd) and
//! its streaming replica (lax), each with its app instance's repo.

#![allow(dead_code)] // each test file uses its own part

use std::net::SocketAddr;
use std::time::Duration;

use fly_postgres::sqlx::postgres::PgPoolOptions;
use fly_postgres::{Repo, RepoBuilder};
use fly_postgres_testkit::PgCluster;
use fly_postgres_todo::{migrate, mutations};
use fly_rpc::{Node, Regions, StaticPeers};

pub(crate) const SECRET: &str = "todo test secret 0123456789abcdef";

/// A node of `region`, with syd as the primary region.
pub(crate) fn node(region: &str, peers: StaticPeers) -> fly_rpc::NodeBuilder {
    Node::builder()
        .regions(Regions::new(region, "syd"))
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .secret(SECRET)
        .discovery(peers)
}

pub(crate) struct App {
    pub(crate) syd: Repo,
    pub(crate) lax: Repo,
    pub(crate) cluster: PgCluster,
}

/// The todo app's repos on `cluster`, migrated and caught up.
pub(crate) async fn app_on(cluster: PgCluster) -> App {
    let syd = mutations(Repo::builder())
        .pool(pool(cluster.primary().connect_options()).await)
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap();
    migrate(&syd).await.unwrap();
    let lax = lax_repo(
        &cluster,
        syd.node().local_addr().expect("rpc listener"),
        |b| b,
    )
    .await;
    migrate(&lax).await.unwrap(); // a no-op outside the primary region
    cluster
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();
    App { syd, lax, cluster }
}

/// Another lax instance on the replica that sends its writes to `syd`,
/// with `configure` applied to its builder.
pub(crate) async fn lax_repo(
    cluster: &PgCluster,
    syd: SocketAddr,
    configure: impl FnOnce(RepoBuilder) -> RepoBuilder,
) -> Repo {
    configure(mutations(Repo::builder()))
        .pool(pool(cluster.replica().connect_options()).await)
        .node(node("lax", StaticPeers::new().with("syd", syd)))
        .start()
        .await
        .unwrap()
}

async fn pool(
    options: fly_postgres::sqlx::postgres::PgConnectOptions,
) -> fly_postgres::sqlx::PgPool {
    PgPoolOptions::new().connect_with(options).await.unwrap()
}
