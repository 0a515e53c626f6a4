//! The node: one per app instance; serves procedures and calls peers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::answer::wire_error_to_error;
use crate::auth::Extra;
use crate::call::CallOptions;
use crate::error::Error;
use crate::info::NodeInfo;
use crate::procedure::Procedure;
use crate::regions::Regions;
use crate::state::NodeInner;
use crate::wire::INFO_PATH;

/// Stops the server when the last [`Node`] clone is dropped.
pub(crate) struct Server {
    pub(crate) stop: watch::Sender<bool>,
    /// Held across the whole shutdown, so a second caller returns only once
    /// the first one's shutdown is complete.
    pub(crate) task: tokio::sync::Mutex<Option<JoinHandle<Result<(), std::io::Error>>>>,
    pub(crate) local_addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One app instance's RPC node: serves the registered procedures over
/// HTTP/2 (h2c) and HTTP/1.1, and calls the instances of other regions.
/// Cheap to clone; the server stops when the last clone is dropped or on
/// [`Node::shutdown`]. A single-region node has no server at all (see
/// [`NodeBuilder::start`](crate::NodeBuilder::start)).
///
// Not run as a doctest: calls peers over the network.
/// ```no_run
/// # use std::sync::Arc;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Ping;
/// # impl fly_rpc::Procedure for Ping {
/// #     const NAME: &'static str = "ping"; type Output = String; type Error = String; type State = ();
/// #     async fn run(self, _: Arc<()>, _: fly_rpc::CallContext) -> Result<String, String> { Ok("pong".into()) }
/// # }
/// # async fn demo() -> Result<(), fly_rpc::Error> {
/// let node = fly_rpc::Node::from_env()?   // FLY_REGION, PRIMARY_REGION, FLY_RPC_SECRET, ...
///     .procedure::<Ping>(Arc::new(()))
///     .start()
///     .await?;
/// let pong = node.call_primary(Ping).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
    server: Option<Arc<Server>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("regions", &self.inner.regions)
            .field("local_addr", &self.local_addr())
            .field("procedures", &self.inner.registry)
            .finish_non_exhaustive()
    }
}

impl Node {
    pub(crate) fn new(inner: Arc<NodeInner>, server: Option<Server>) -> Self {
        Node {
            inner,
            server: server.map(Arc::new),
        }
    }

    /// This node's regions.
    pub fn regions(&self) -> &Regions {
        &self.inner.regions
    }

    /// The address the RPC endpoint listens on (the real port when 0 was
    /// asked); `None` for a single-region node, which has no listener.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|server| server.local_addr)
    }

    /// Keys for `context` (a purpose, such as signing consistency tokens)
    /// derived from the cluster secret: the current secret's first, then
    /// one per previous secret still accepted, so values signed before a
    /// rotation still verify. The secret itself is never handed out. A node
    /// without a secret (one region, or insecure mode) gets one random key
    /// per process.
    pub fn derive_keys(&self, context: &str) -> Vec<[u8; 32]> {
        self.inner.auth.derive_keys(context)
    }

    /// How many HTTP requests this node's calls to peers took, and how
    /// many calls shared a batch request (see
    /// [`NodeBuilder::batch_calls`](crate::NodeBuilder::batch_calls)).
    pub fn call_counts(&self) -> crate::CallCounts {
        self.inner.coalescer.counts()
    }

    /// What this node reports about itself.
    pub fn info(&self) -> NodeInfo {
        self.inner.info()
    }

    /// Runs `procedure` on an instance of `region` (here, without a network
    /// hop, when `region` is this node's own).
    pub async fn call_region<P: Procedure>(
        &self,
        region: &str,
        procedure: P,
    ) -> Result<P::Output, Error> {
        self.call(region, procedure, CallOptions::new()).await
    }

    /// Runs `procedure` on an instance of the primary region that can serve
    /// primary-only calls (see [`NodeBuilder::primary_check`](crate::NodeBuilder::primary_check)). In the
    /// primary region itself it runs here, without the check.
    pub async fn call_primary<P: Procedure>(&self, procedure: P) -> Result<P::Output, Error> {
        let primary = self.inner.regions.primary_region().to_owned();
        self.call(&primary, procedure, CallOptions::new().require_primary())
            .await
    }

    /// Runs `procedure` in `region` with per-call options. On failure,
    /// [`Error::may_have_run`] tells a definite "it did not run" from an
    /// unknown outcome.
    pub async fn call<P: Procedure>(
        &self,
        region: &str,
        procedure: P,
        options: CallOptions,
    ) -> Result<P::Output, Error> {
        crate::call::call(&self.inner, region, procedure, options).await
    }

    /// Runs `procedure` on the one instance at `peer` (an address from
    /// [`Node::instances`]), without trying another: for work between the
    /// instances of a region, where the caller chooses which one. On
    /// failure, [`Error::may_have_run`] tells whether it may have run.
    pub async fn call_instance<P: Procedure>(
        &self,
        peer: SocketAddr,
        procedure: P,
        options: CallOptions,
    ) -> Result<P::Output, Error> {
        crate::call::call_instance(&self.inner, peer, procedure, options).await
    }

    /// The RPC addresses of `region`'s instances as discovery knows them
    /// now (this node's own among them, when discovery lists it).
    pub async fn instances(&self, region: &str) -> Result<Vec<SocketAddr>, Error> {
        self.inner.discovery.instances(region).await
    }

    /// Asks the instance at `peer` to describe itself.
    pub async fn peer_info(&self, peer: SocketAddr) -> Result<NodeInfo, Error> {
        let mut headers = HeaderMap::new();
        self.inner
            .auth
            .sign("GET", INFO_PATH, &peer.to_string(), Extra::default(), b"")
            .apply(&mut headers);
        let (status, body) = self
            .inner
            .client
            .send(peer, Method::GET, INFO_PATH, headers, Bytes::new())
            .await
            .map_err(|f| Error::Transport {
                peer: peer.to_string(),
                message: f.message,
            })?;
        if status != StatusCode::OK {
            return Err(wire_error_to_error(peer, status, &body, "info"));
        }
        serde_json::from_slice(&body).map_err(|e| Error::Transport {
            peer: peer.to_string(),
            message: format!("malformed info answer: {e}"),
        })
    }

    /// The regions discovery knows now.
    pub async fn known_regions(&self) -> Result<Vec<String>, Error> {
        self.inner.discovery.regions().await
    }

    /// Every instance discovery knows, by region, with what each says about
    /// itself (or why it could not be asked).
    pub async fn peers(&self) -> Result<Vec<PeerReport>, Error> {
        let mut reports = Vec::new();
        for region in self.inner.discovery.regions().await? {
            for addr in self.inner.discovery.instances(&region).await? {
                let info =
                    tokio::time::timeout(self.inner.config.rpc_timeout, self.peer_info(addr))
                        .await
                        .unwrap_or_else(|_| {
                            Err(Error::Transport {
                                peer: addr.to_string(),
                                message: "timed out".into(),
                            })
                        });
                reports.push(PeerReport {
                    region: region.clone(),
                    addr,
                    info,
                });
            }
        }
        Ok(reports)
    }

    /// Graceful stop, as on a deploy's SIGTERM: stops accepting connections
    /// (callers fail over to a sibling instance), lets the calls in flight
    /// finish and send their replies (at most `grace`; [`Node::shutdown`]
    /// uses [`DEFAULT_GRACE`]), then returns once the server is down.
    /// Calling it again, or from another clone, waits for the same
    /// shutdown; a single-region node returns at once.
    pub async fn shutdown_within(&self, grace: Duration) -> Result<(), Error> {
        let Some(server) = &self.server else {
            return Ok(());
        };
        let _ = server.stop.send(true);
        let mut task = server.task.lock().await;
        if let Some(mut task) = task.take() {
            match tokio::time::timeout(grace, &mut task).await {
                Ok(Ok(result)) => result?,
                Ok(Err(_)) => {}
                Err(_) => {
                    tracing::warn!(
                        ?grace,
                        "fly-rpc calls still running after the grace period; stopping them"
                    );
                    task.abort();
                }
            }
        }
        Ok(())
    }

    /// [`Node::shutdown_within`] [`DEFAULT_GRACE`]. Fly.io sends SIGKILL
    /// `kill_timeout` after SIGTERM (5 s unless fly.toml says otherwise):
    /// keep it above your longest write.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.shutdown_within(DEFAULT_GRACE).await
    }
}

/// How long [`Node::shutdown`] lets calls in flight finish.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// One discovered instance, for `flypg status`.
#[derive(Debug)]
#[non_exhaustive]
pub struct PeerReport {
    /// Its region.
    pub region: String,
    /// Its RPC address.
    pub addr: SocketAddr,
    /// What it said about itself, or why it could not be asked.
    pub info: Result<NodeInfo, Error>,
}
