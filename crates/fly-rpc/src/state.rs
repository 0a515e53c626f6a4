//! What every part of a node shares: identity, procedures, auth, peers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::auth::Auth;
use crate::body_budget::BodyBudget;
use crate::client::HttpClient;
use crate::coalesce::Coalescer;
use crate::discovery::Discovery;
use crate::info::NodeInfo;
use crate::peer_choice::PeerChoice;
use crate::regions::Regions;
use crate::registry::Registry;
use crate::rejections::Rejections;

/// Asks the app whether this node can serve primary-only calls right now
/// (for `fly-postgres`: whether its database is out of recovery).
pub type PrimaryCheck = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

#[derive(Debug, Clone)]
pub(crate) struct NodeConfig {
    pub(crate) rpc_timeout: Duration,
    pub(crate) version: String,
    /// Addresses callers may reach this node at besides its socket's own
    /// (a proxy, a NAT): the auth's target check accepts them.
    pub(crate) advertised: Vec<SocketAddr>,
}

pub(crate) struct NodeInner {
    pub(crate) regions: Regions,
    pub(crate) registry: Registry,
    pub(crate) auth: Arc<Auth>,
    pub(crate) config: NodeConfig,
    pub(crate) primary_check: Option<PrimaryCheck>,
    pub(crate) client: HttpClient,
    /// Outgoing calls, batched per peer when several are ready at once
    /// (when batching is on, the server answers batch requests too).
    pub(crate) coalescer: Coalescer,
    pub(crate) discovery: Arc<dyn Discovery>,
    pub(crate) choice: PeerChoice,
    pub(crate) body_budget: BodyBudget,
    pub(crate) rejections: Rejections,
}

impl NodeInner {
    /// A peer failed or hung: try it last for a while, and let discovery
    /// look the region up again.
    pub(crate) fn peer_failed(&self, region: &str, peer: SocketAddr) {
        self.choice.failed(peer);
        self.discovery.report_failure(region, peer);
    }

    pub(crate) fn info(&self) -> NodeInfo {
        NodeInfo {
            region: self.regions.my_region().to_owned(),
            primary_region: self.regions.primary_region().to_owned(),
            version: self.config.version.clone(),
            procedures: self.registry.names(),
        }
    }
}
