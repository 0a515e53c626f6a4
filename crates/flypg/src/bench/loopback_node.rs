//! The RPC nodes of the repo benchmarks: primary region syd, listening on a
//! free loopback port, one shared secret.

use std::net::SocketAddr;

use fly_postgres::sqlx::PgPool;
use fly_postgres::{Repo, RepoBuilder};
use fly_postgres_testkit::PgCluster;
use fly_rpc::{Node, NodeBuilder, Regions, StaticPeers};

use super::mutations::InsertItem;

/// Loopback only, so a fixed secret is no secret to guard.
const SECRET: &str = "flypg bench secret, loopback only";

/// syd's repo on `primary` (migrated, `configure_syd` applied) and lax's on
/// the cluster's replica, sending its writes to syd; both serve
/// [`InsertItem`].
pub(crate) async fn syd_and_lax(
    cluster: &PgCluster,
    primary: PgPool,
    configure_syd: impl FnOnce(RepoBuilder) -> RepoBuilder,
) -> Result<(Repo, Repo), Box<dyn std::error::Error>> {
    let syd = configure_syd(Repo::builder())
        .pool(primary)
        .node(node("syd", StaticPeers::new()))
        .mutation::<InsertItem>()
        .start()
        .await?;
    syd.migrate().await?;
    let lax = Repo::builder()
        .pool(
            fly_postgres::pool_options()
                .max_connections(8)
                .connect_with(cluster.replica().connect_options())
                .await?,
        )
        .node(node(
            "lax",
            StaticPeers::new().with("syd", syd.node().local_addr().ok_or("no RPC listener")?),
        ))
        .mutation::<InsertItem>()
        .start()
        .await?;
    Ok((syd, lax))
}

/// Another lax repo on the cluster's replica sending its writes to `syd`,
/// its node set up by `configure` (say, without batched calls).
pub(crate) async fn another_lax(
    cluster: &PgCluster,
    syd: &Repo,
    configure: impl FnOnce(NodeBuilder) -> NodeBuilder,
) -> Result<Repo, Box<dyn std::error::Error>> {
    let peers = StaticPeers::new().with("syd", syd.node().local_addr().ok_or("no RPC listener")?);
    Ok(Repo::builder()
        .pool(
            fly_postgres::pool_options()
                .max_connections(8)
                .connect_with(cluster.replica().connect_options())
                .await?,
        )
        .node(configure(node("lax", peers)))
        .mutation::<InsertItem>()
        .start()
        .await?)
}

/// A node in `region` (primary region syd) that reaches `peers`.
pub(crate) fn node(region: &str, peers: StaticPeers) -> NodeBuilder {
    Node::builder()
        .regions(Regions::new(region, "syd"))
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .secret(SECRET)
        .discovery(peers)
}
