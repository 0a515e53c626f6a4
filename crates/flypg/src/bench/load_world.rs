//! The world the long runs load: the demo's regions, each app as the
//! clients and the samplers see it, and a run that stops everything on
//! Ctrl-C.

use std::future::Future;
use std::time::Duration;

use super::app_usage::AppUsage;
use crate::demo::world::{World, WorldSpec};

type LoadResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One app instance: its region, its base URL and its process.
pub(super) struct LoadApp {
    pub(super) region: String,
    pub(super) base: String,
    pub(super) pid: Option<u32>,
}

/// One look at every app process, in `apps`' order.
pub(super) fn usage(apps: &[LoadApp]) -> Vec<AppUsage> {
    apps.iter()
        .map(|app| AppUsage::of(&app.region, app.pid))
        .collect()
}

/// The demo's regions with one app per region, quiet logs, and the apps
/// in the primary region's first order.
pub(super) async fn start(regions: &[String], rtt: Duration) -> LoadResult<(World, Vec<LoadApp>)> {
    let world = World::start(WorldSpec {
        regions,
        rtt,
        apply: Duration::from_millis(10),
        primary_instances: 1,
        third_region_max_wait: Duration::from_millis(500),
        app_env: vec![("RUST_LOG", "error".to_owned())],
    })
    .await?;
    let apps = world
        .apps(regions)
        .map(|(region, app)| LoadApp {
            region: region.to_owned(),
            base: app.url(""),
            pid: app.pid(),
        })
        .collect();
    Ok((world, apps))
}

/// Runs `run` until it ends or Ctrl-C (or SIGTERM) asks to stop; either
/// way its world is dropped, which stops the apps and PostgreSQL.
pub(super) async fn interruptible<T>(
    run: impl Future<Output = LoadResult<T>>,
) -> Result<T, Box<dyn std::error::Error>> {
    fly_postgres_testkit::PgBinaries::locate()?;
    let result = tokio::select! {
        result = run => result,
        _ = crate::signal::stop_requested() => Err("interrupted: stopping the apps and PostgreSQL".into()),
    };
    result.map_err(|e| -> Box<dyn std::error::Error> { e.to_string().into() })
}
