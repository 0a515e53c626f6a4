//! Finding the instances of a region.

#[cfg(feature = "fly-dns")]
mod fly_dns;
mod static_peers;

use std::fmt;
use std::net::SocketAddr;

use futures_util::future::BoxFuture;

use crate::error::Error;

#[cfg(feature = "fly-dns")]
pub use fly_dns::FlyDns;
pub use static_peers::StaticPeers;

/// Where the instances of each region are.
///
/// Two built-ins: [`FlyDns`] (Fly.io's private network DNS) and
/// [`StaticPeers`] (a fixed map, for local runs, tests and other platforms).
pub trait Discovery: Send + Sync + fmt::Debug + 'static {
    /// The RPC addresses of the instances of `region` (may be empty).
    fn instances<'a>(&'a self, region: &'a str) -> BoxFuture<'a, Result<Vec<SocketAddr>, Error>>;

    /// The regions with instances, when the discovery can tell (for status).
    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, Error>>;

    /// A connection to `addr` of `region` failed: a caching discovery should
    /// look the region up again next time.
    fn report_failure(&self, region: &str, addr: SocketAddr) {
        let _ = (region, addr);
    }
}
