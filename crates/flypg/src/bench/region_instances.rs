//! `flypg bench tracker --instances N`: what a region's replica pays as the
//! region scales out. N app instances in lax (each a `Repo` with its own
//! tracker and RPC node, sharing one replay poller as apps do by default)
//! wait on the same writes; the replica's queries per second and the
//! notification delay are compared with one instance under the same
//! writes and the same number of waiters.

use std::time::Instant;

use fly_postgres::Repo;
use fly_postgres::sqlx::PgPool;
use fly_postgres_testkit::{PgCluster, free_loopback_addrs};
use fly_rpc::StaticPeers;

use super::loopback_node::node;
use super::replay_wakes::{Measured, Observer, measure};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Writes each instance waits on before measuring, so every follower has
/// found the region's poll leader.
const WARM_UP_WRITES: usize = 30;

/// One region size's figures.
pub(super) struct RegionRun {
    /// Replay-position queries all instances sent per second of the run.
    pub(super) queries_per_s: f64,
    pub(super) measured: Measured,
}

/// `instances` lax instances on the replica, each knowing all the others.
async fn start_region(cluster: &PgCluster, instances: usize) -> BenchResult<Vec<Repo>> {
    let addrs = free_loopback_addrs(instances)?;
    let mut peers = StaticPeers::new();
    for addr in &addrs {
        peers = peers.with("lax", *addr);
    }
    let mut repos = Vec::with_capacity(instances);
    for addr in &addrs {
        let repo = Repo::builder()
            .pool(
                fly_postgres::pool_options()
                    .max_connections(1)
                    .connect_lazy_with(cluster.replica().connect_options()),
            )
            .node(node("lax", peers.clone()).listen(*addr))
            .start()
            .await?;
        repos.push(repo);
    }
    Ok(repos)
}

/// `writes` writes on `primary`, each awaited by `waiters` waiters spread
/// over `instances` lax instances.
pub(super) async fn run_region(
    cluster: &PgCluster,
    primary: &PgPool,
    observer: &Observer,
    instances: usize,
    writes: usize,
    waiters: usize,
) -> BenchResult<RegionRun> {
    let repos = start_region(cluster, instances).await?;
    let trackers: Vec<_> = repos.iter().map(|r| r.tracker().clone()).collect();
    measure(primary, &trackers, observer, WARM_UP_WRITES, waiters).await?;
    let polls = |trackers: &[fly_postgres::Tracker]| -> u64 {
        trackers.iter().map(|t| t.stats().polls).sum()
    };
    let before = polls(&trackers);
    let started = Instant::now();
    let measured = measure(primary, &trackers, observer, writes, waiters).await?;
    let queries_per_s = (polls(&trackers) - before) as f64 / started.elapsed().as_secs_f64();
    drop(trackers);
    for repo in repos {
        repo.node().shutdown().await?;
    }
    Ok(RegionRun {
        queries_per_s,
        measured,
    })
}
