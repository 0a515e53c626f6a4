//! The demo's regions on one machine: a real primary and one streaming
//! replica per other region, latency proxies on the replication links and
//! between the regions, and todo app processes configured by env as on
//! Fly.io. The soak and session benchmarks run on the same world.

use std::net::SocketAddr;
use std::time::Duration;

use fly_postgres_testkit::{AppProcess, Delay, LatencyProxy, PgTopology};

use super::app_process::{spawn_todo_app, todo_env};
use super::{DemoResult, Progress, rtt_between};

/// What shapes the world.
pub(crate) struct WorldSpec<'a> {
    /// The regions, the primary's first.
    pub(crate) regions: &'a [String],
    pub(crate) rtt: Duration,
    /// A replica's apply lag, added to each replication link's half RTT.
    pub(crate) apply: Duration,
    /// App instances in the primary region.
    pub(crate) primary_instances: usize,
    /// The third region reads from the primary when a token keeps it
    /// waiting longer than this.
    pub(crate) third_region_max_wait: Duration,
    /// Extra environment for every app instance.
    pub(crate) app_env: Vec<(&'static str, String)>,
}

/// The running regions; dropping it stops the apps and PostgreSQL.
pub(crate) struct World {
    // Apps first: they stop before the databases and links they use.
    /// The primary region's instances.
    pub(crate) primaries: Vec<AppProcess>,
    /// One instance per replica region, in `regions[1..]` order.
    pub(crate) replicas: Vec<AppProcess>,
    pub(crate) topology: PgTopology,
    _links: Vec<Vec<LatencyProxy>>,
    _primary_links: Vec<LatencyProxy>,
}

impl World {
    pub(crate) async fn start(spec: WorldSpec<'_>) -> DemoResult<World> {
        let regions = spec.regions;
        let rtt = spec.rtt;
        let primary = regions[0].as_str();
        let step = Progress::start(&format!(
            "starting PostgreSQL: primary ({primary}), streaming replicas ({})",
            regions[1..].join(", ")
        ));
        let mut builder = PgTopology::builder(primary).apply_delay(spec.apply);
        for region in &regions[1..] {
            builder = builder.replica(region);
        }
        for i in 0..regions.len() {
            for j in i + 1..regions.len() {
                builder = builder.rtt(&regions[i], &regions[j], rtt_between(rtt, i, j));
            }
        }
        let topology = builder.start().await?;
        step.done();

        let secret = format!("demo-{:032x}", rand::random::<u128>());
        let common = |region: &str| {
            let mut env = todo_env(region, primary, &secret);
            env.extend(spec.app_env.iter().cloned());
            env
        };

        let instances = spec.primary_instances.max(1);
        let step = Progress::start(&format!(
            "starting {instances} todo app instance(s) in {primary} (migrates the schema)"
        ));
        // Each replica region reaches each primary-region instance through
        // its own link (links[region - 1][instance]); an instance accepts
        // calls signed for any of its links.
        let mut links: Vec<Vec<LatencyProxy>> = Vec::new();
        for j in 1..regions.len() {
            let mut per_instance = Vec::new();
            for _ in 0..instances {
                per_instance.push(LatencyProxy::bind(Delay::rtt(rtt_between(rtt, 0, j))).await?);
            }
            links.push(per_instance);
        }
        let mut primaries = Vec::new();
        for k in 0..instances {
            let mut env = common(primary);
            env.push(("DATABASE_URL", topology.leader_url()));
            env.push((
                "FLY_RPC_ADVERTISE",
                links
                    .iter()
                    .map(|per_instance| per_instance[k].local_addr().to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ));
            let instance = spawn_todo_app(env).await?;
            for per_instance in &links {
                per_instance[k].connect_to(instance.rpc());
            }
            primaries.push(instance);
        }
        step.done();

        let mut primary_links = Vec::new();
        let mut replicas = Vec::new();
        for (j, region) in regions.iter().enumerate().skip(1) {
            let step = Progress::start(&format!(
                "starting the todo app in {region} (reads its replica, writes via {primary})"
            ));
            topology.wait_for_catch_up(Duration::from_secs(30)).await?;
            let mut env = common(region);
            env.push(("DATABASE_URL", topology.replica(region)?.url()));
            env.push((
                "FLY_RPC_PEERS",
                format!(
                    "{primary}={}",
                    links[j - 1]
                        .iter()
                        .map(|l| l.local_addr().to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ));
            if j == 2 {
                let link = LatencyProxy::start(
                    SocketAddr::from(([127, 0, 0, 1], topology.primary().port())),
                    Delay::rtt(rtt_between(rtt, 0, j)),
                )
                .await?;
                env.push((
                    "PRIMARY_DATABASE_URL",
                    format!("postgres://postgres@{}/postgres", link.local_addr()),
                ));
                env.push((
                    "FLY_POSTGRES_MAX_WAIT_MS",
                    spec.third_region_max_wait.as_millis().to_string(),
                ));
                env.push(("FLY_POSTGRES_WAIT_FALLBACK", "primary-pool".to_owned()));
                primary_links.push(link);
            }
            replicas.push(spawn_todo_app(env).await?);
            step.done();
        }
        Ok(World {
            primaries,
            replicas,
            topology,
            _links: links,
            _primary_links: primary_links,
        })
    }

    /// Every app instance with its region: the primary region's first.
    pub(crate) fn apps<'a>(
        &'a self,
        regions: &'a [String],
    ) -> impl Iterator<Item = (&'a str, &'a AppProcess)> + 'a {
        self.primaries
            .iter()
            .map(|app| (regions[0].as_str(), app))
            .chain(
                regions[1..]
                    .iter()
                    .map(String::as_str)
                    .zip(self.replicas.iter()),
            )
    }
}
