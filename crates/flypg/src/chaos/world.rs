//! The system under drill: a real primary (syd) and streaming replica
//! (lax), optionally a standby in syd, one or more todo app processes in
//! syd (reaching the database by the leader address, as port 5432 on Fly),
//! one in lax, and latency proxies on the RPC links and the replication
//! links.

use std::time::Duration;

use fly_postgres_testkit::{AppProcess, Delay, LatencyProxy, PgServer, PgTopology};

use super::ChaosResult;
use crate::demo::app_process::{spawn_todo_app, todo_env};

/// Whether syd has a standby to fail over to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standby {
    None,
    Asynchronous,
    Synchronous,
}

pub(crate) struct World {
    pub(crate) topology: PgTopology,
    /// The cluster's RPC secret the instances started with.
    pub(crate) secret: String,
    /// The primary-region instances.
    pub(crate) syd: Vec<AppProcess>,
    /// lax -> syd RPC links, one per syd instance, in the same order.
    pub(crate) links: Vec<LatencyProxy>,
    pub(crate) lax: AppProcess,
    pub(crate) rtt: Duration,
    /// lax -> the primary over PostgreSQL, for the consistency layer's
    /// fallback (replica-down only).
    _primary_link: Option<LatencyProxy>,
}

/// How lax's reads fall back when its replica cannot serve them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaxFallback {
    /// No fallback: the repo's replication timeout, then 503.
    None,
    /// A pool on the primary across the ocean, after 300 ms.
    PrimaryPool,
}

impl World {
    /// With `old_first`, the first syd instance runs the "old build" (no
    /// ledger mutation, version `v1`); every other instance is `v2`.
    pub(crate) async fn start(
        rtt: Duration,
        syd_instances: usize,
        standby: Standby,
        old_first: bool,
        fallback: LaxFallback,
    ) -> ChaosResult<World> {
        // WAL crosses the same ocean as the RPC, one way.
        let mut builder = PgTopology::builder("syd")
            .replica("lax")
            .rtt("syd", "lax", rtt);
        builder = match standby {
            Standby::None => builder,
            Standby::Asynchronous => builder.standby(),
            Standby::Synchronous => builder.synchronous_standby(),
        };
        let topology = builder.start().await?;
        let secret = format!("chaos-{:032x}", rand::random::<u128>());
        let common = |region: &str| {
            let mut env = todo_env(region, "syd", &secret);
            // Retries during faults are expected; the report counts them.
            env.push((
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()),
            ));
            env
        };
        let mut syd = Vec::new();
        let mut links = Vec::new();
        for i in 0..syd_instances.max(1) {
            // Bound first: the instance accepts calls signed for the link's
            // address, and keeps it across restarts.
            let link = LatencyProxy::bind(Delay::rtt(rtt)).await?;
            let mut env = common("syd");
            if old_first && i == 0 {
                env.push(("FLYPG_DRILL_OLD_BUILD", "1".into()));
                env.push(("FLY_RPC_VERSION", "v1".into()));
            } else {
                env.push(("FLY_RPC_VERSION", "v2".into()));
            }
            env.push(("DATABASE_URL", topology.leader_url()));
            env.push(("FLY_RPC_ADVERTISE", link.local_addr().to_string()));
            let instance = spawn_todo_app(env).await?;
            link.connect_to(instance.rpc());
            links.push(link);
            syd.push(instance);
        }
        topology.wait_for_catch_up(Duration::from_secs(30)).await?;
        let peers = links
            .iter()
            .map(|l| l.local_addr().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut env = common("lax");
        env.push(("FLY_RPC_VERSION", "v2".into()));
        env.push(("DATABASE_URL", topology.replica("lax")?.url()));
        env.push(("FLY_RPC_PEERS", format!("syd={peers}")));
        let primary_link = match fallback {
            LaxFallback::None => None,
            LaxFallback::PrimaryPool => {
                let link = LatencyProxy::start(topology.leader_addr(), Delay::rtt(rtt)).await?;
                env.push((
                    "PRIMARY_DATABASE_URL",
                    format!("postgres://postgres@{}/postgres", link.local_addr()),
                ));
                env.push(("FLY_POSTGRES_MAX_WAIT_MS", "300".into()));
                env.push(("FLY_POSTGRES_WAIT_FALLBACK", "primary-pool".into()));
                Some(link)
            }
        };
        let lax = spawn_todo_app(env).await?;
        Ok(World {
            topology,
            secret,
            syd,
            links,
            lax,
            rtt,
            _primary_link: primary_link,
        })
    }

    /// The lax replica.
    pub(crate) fn replica(&self) -> ChaosResult<&PgServer> {
        Ok(self.topology.replica("lax")?)
    }

    /// Rows in the ledger on the primary.
    pub(crate) async fn ledger_rows(&self) -> ChaosResult<i64> {
        use fly_postgres::sqlx;
        let mut conn = self.topology.primary().connect().await?;
        Ok(sqlx::query_scalar("select count(*) from ledger")
            .fetch_one(&mut conn)
            .await?)
    }
}
