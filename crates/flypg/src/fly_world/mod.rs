//! The template app on the testkit's emulated Fly network, deployed as the
//! deploy guide deploys it: its fly.toml, the env every Fly machine has,
//! `FLY_RPC_SECRET` and `DATABASE_URL` (the `.flycast` form `fly postgres
//! attach` writes) as secrets, discovery through the network's DNS only,
//! IPv6 only between machines; a Postgres app with the primary and a
//! standby in the primary region and a replica in each other region; and
//! Fly's proxy in front of the app in each region.

mod first_served;

use std::collections::BTreeMap;
use std::time::Duration;

use fly_postgres_testkit::flynet::{DbMachine, EdgeProxy, FlyApp, Image};
use fly_postgres_testkit::{FlyMachine, FlyNet, PgTopology};

pub(crate) use first_served::FirstServed;

pub(crate) type FlyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The database app's name: `fly postgres create --name my-todo-db`.
pub(crate) const DB_APP: &str = "my-todo-db";

/// Where the edge proxies listen.
const EDGE_PORT: u16 = 80;

/// The world; dropped in field order: the app's processes, the proxies,
/// the database machines, the servers, then the network.
pub(crate) struct FlyWorld {
    pub(crate) app: FlyApp,
    /// Per region: Fly's proxy and the machine it runs on.
    edges: BTreeMap<String, (EdgeProxy, FlyMachine)>,
    /// Held for their drop.
    _db: Vec<DbMachine>,
    pub(crate) topology: PgTopology,
    pub(crate) secret: String,
    pub(crate) net: FlyNet,
}

/// How the world is made.
pub(crate) struct Plan<'a> {
    /// The regions, the primary region (fly.toml's) first.
    pub(crate) regions: &'a [String],
    /// How many of the regions, from the first, get app machines at
    /// start (the others have a replica and an edge, for a scale-out).
    pub(crate) app_regions: usize,
    /// App machines per region.
    pub(crate) per_region: usize,
    /// The first machine of the primary region runs the old build (no
    /// ledger mutation), as in the middle of a deploy.
    pub(crate) old_first: bool,
    /// The app's log level.
    pub(crate) log: &'a str,
}

impl FlyWorld {
    pub(crate) async fn start(plan: Plan<'_>) -> FlyResult<FlyWorld> {
        let net = FlyNet::start().map_err(|e| {
            format!("the Fly world needs root (CAP_NET_ADMIN) and iproute2 (`ip`): {e}")
        })?;
        let config = fly_postgres_testkit::flynet::FlyToml::parse(fly_postgres_todo::FLY_TOML)?;
        let primary = config.primary_region.clone();
        if plan.regions.first() != Some(&primary) {
            return Err(
                format!("the first region must be fly.toml's primary_region ({primary})").into(),
            );
        }
        let mut builder = PgTopology::builder(&primary).synchronous_standby();
        for region in &plan.regions[1..] {
            builder = builder.replica(region);
        }
        let topology = builder.start().await?;
        let db = net.postgres_app(DB_APP, &topology).await?;
        let secret = format!("fly-{:032x}", rand::random::<u128>());
        let mut app = FlyApp::new(fly_postgres_todo::FLY_TOML, image("v2", plan.log, false)?)?;
        app.stage_secret("FLY_RPC_SECRET", &secret);
        app.stage_secret(
            "DATABASE_URL",
            format!("postgres://postgres@{DB_APP}.flycast:5432/postgres"),
        );
        // The primary region first: its first instance runs the migrations.
        for region in plan.regions.iter().take(plan.app_regions) {
            for i in 0..plan.per_region {
                if plan.old_first && *region == primary && i == 0 {
                    app.launch_image(&net, region, Vec::new(), image("v1", plan.log, true)?)
                        .await?;
                } else {
                    app.launch(&net, region, Vec::new()).await?;
                }
            }
        }
        let mut edges = BTreeMap::new();
        for region in plan.regions {
            let machine = net.machine("fly-proxy", region)?;
            let proxy = EdgeProxy::start(&machine, EDGE_PORT, app.routes(), region).await?;
            edges.insert(region.clone(), (proxy, machine));
        }
        topology.wait_for_catch_up(Duration::from_secs(30)).await?;
        Ok(FlyWorld {
            app,
            edges,
            _db: db,
            topology,
            secret,
            net,
        })
    }

    /// The app's URL through Fly's proxy in `region`, and the machine a
    /// client there runs on (its requests leave from inside it).
    pub(crate) fn edge(&self, region: &str) -> FlyResult<(String, &FlyMachine)> {
        let (proxy, machine) = self
            .edges
            .get(region)
            .ok_or_else(|| format!("no region {region}"))?;
        Ok((format!("http://{}", proxy.addr()), machine))
    }
}

/// The app's image: this binary's `todo-app` command, tagged `tag`; the
/// old build lacks the ledger mutation.
pub(crate) fn image(tag: &str, log: &str, old_build: bool) -> FlyResult<Image> {
    let image = Image::new(tag, std::env::current_exe()?)
        .args(["todo-app"])
        .env("RUST_LOG", log);
    Ok(if old_build {
        image.env("FLYPG_DRILL_OLD_BUILD", "1")
    } else {
        image
    })
}
