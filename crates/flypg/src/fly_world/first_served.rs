//! How soon a machine that a deploy (re)started serves its first
//! forwarded write: watched from the region's edge through each routed
//! machine's `/stats`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fly_postgres_testkit::flynet::Routes;

use super::{FlyResult, FlyWorld};
use crate::demo::http::Http;
use crate::percentiles::millis;

/// Watches a region's routed machines: for each that comes (back) after the
/// start, how long from its first passing check to the first forwarded
/// write it served.
pub(crate) struct FirstServed {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<f64>>,
}

impl FirstServed {
    /// Starts watching `region`'s machines, from its edge machine.
    pub(crate) fn watch(world: &FlyWorld, region: &str) -> FlyResult<Self> {
        let routes = world.app.routes();
        let stop = Arc::new(AtomicBool::new(false));
        let (_, edge) = world.edge(region)?;
        let task = edge.spawn(first_served(routes, region.to_owned(), Arc::clone(&stop)))?;
        Ok(FirstServed { stop, task })
    }

    /// The times found, in ms.
    pub(crate) async fn finish(self) -> FlyResult<Vec<f64>> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

async fn first_served(routes: Routes, region: String, stop: Arc<AtomicBool>) -> Vec<f64> {
    let http = Http::new();
    // Routed now, with when it came and whether it has served yet.
    let mut known: BTreeMap<SocketAddr, (Instant, bool)> = routes
        .region(&region)
        .into_iter()
        .map(|a| (a, (Instant::now(), true)))
        .collect();
    let mut found = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = routes.region(&region);
        known.retain(|a, _| now.contains(a));
        for addr in now {
            known.entry(addr).or_insert((Instant::now(), false));
        }
        for (addr, (since, served)) in known.iter_mut().filter(|(_, (_, s))| !*s) {
            let stats = http.get(&format!("http://{addr}/stats")).await;
            if stats.is_ok_and(|a| a.body["served_writes"].as_u64() > Some(0)) {
                found.push(millis(since.elapsed()));
                *served = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    found
}
