//! A fixed region -> addresses map.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::Discovery;
use crate::error::Error;

/// Peers given in code or in `FLY_RPC_PEERS`.
///
/// The env format is `region=addr,addr;region=addr`, each address an IP and
/// port (`127.0.0.1:7878`, `[fdaa::3]:7878`):
///
/// ```
/// use fly_rpc::StaticPeers;
///
/// let peers = StaticPeers::parse("syd=127.0.0.1:7001,127.0.0.1:7002; lax=[::1]:7003")?;
/// assert_eq!(peers.get("syd").len(), 2);
/// assert!(StaticPeers::parse("syd=not-an-address").is_err());
/// # Ok::<(), fly_rpc::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticPeers {
    regions: BTreeMap<String, Vec<SocketAddr>>,
}

impl StaticPeers {
    /// No peers at all (a single instance: every call runs locally).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an instance of `region`.
    pub fn with(mut self, region: impl Into<String>, addr: SocketAddr) -> Self {
        self.regions.entry(region.into()).or_default().push(addr);
        self
    }

    /// Parses the `FLY_RPC_PEERS` format.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut peers = StaticPeers::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (region, addrs) = part.split_once('=').ok_or_else(|| {
                Error::Config(format!(
                    "FLY_RPC_PEERS entry {part:?} is not region=addr,addr"
                ))
            })?;
            let region = region.trim();
            if region.is_empty() {
                return Err(Error::Config(format!(
                    "FLY_RPC_PEERS entry {part:?} has no region"
                )));
            }
            for addr in addrs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                let addr: SocketAddr = addr.parse().map_err(|_| {
                    Error::Config(format!(
                        "FLY_RPC_PEERS address {addr:?} of region {region} is not ip:port"
                    ))
                })?;
                peers = peers.with(region, addr);
            }
        }
        Ok(peers)
    }

    /// The instances of `region`.
    pub fn get(&self, region: &str) -> &[SocketAddr] {
        self.regions.get(region).map_or(&[], Vec::as_slice)
    }
}

impl Discovery for StaticPeers {
    fn instances<'a>(&'a self, region: &'a str) -> BoxFuture<'a, Result<Vec<SocketAddr>, Error>> {
        let found = self.get(region).to_vec();
        async move { Ok(found) }.boxed()
    }

    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        let regions = self.regions.keys().cloned().collect();
        async move { Ok(regions) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let p = StaticPeers::parse(" syd = 127.0.0.1:1 , 127.0.0.1:2 ;lax=[::1]:3;").unwrap();
        assert_eq!(p.get("syd").len(), 2);
        assert_eq!(p.get("lax"), &["[::1]:3".parse::<SocketAddr>().unwrap()]);
        assert!(p.get("fra").is_empty());
        assert!(StaticPeers::parse("").unwrap().get("x").is_empty());
        for bad in ["syd", "=127.0.0.1:1", "syd=127.0.0.1", "syd=host:1"] {
            assert!(
                matches!(StaticPeers::parse(bad), Err(Error::Config(_))),
                "{bad}"
            );
        }
    }
}
