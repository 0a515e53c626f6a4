//! Configuring and starting a [`Node`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::auth::{Auth, MIN_SECRET_LEN};
use crate::client::HttpClient;
use crate::discovery::{Discovery, FlyDns, StaticPeers};
use crate::error::Error;
use crate::node::{Node, Server};
use crate::peer_choice::PeerChoice;
use crate::procedure::Procedure;
use crate::regions::Regions;
use crate::registry::Registry;
use crate::state::{NodeConfig, NodeInner, PrimaryCheck};

/// The RPC port when neither code nor `FLY_RPC_PORT` sets one. Expose it on
/// the private network only (on Fly.io, do not list it in `[[services]]`).
pub const DEFAULT_PORT: u16 = 7878;

/// Configuration of a [`Node`]; from [`Node::builder`] or [`Node::from_env`].
pub struct NodeBuilder {
    regions: Regions,
    listen: SocketAddr,
    discovery: Arc<dyn Discovery>,
    secret: Option<Vec<u8>>,
    insecure: bool,
    rpc_timeout: Duration,
    connect_timeout: Duration,
    max_body: usize,
    auth_window: Duration,
    quarantine: Duration,
    version: String,
    registry: Registry,
    primary_check: Option<PrimaryCheck>,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("regions", &self.regions)
            .field("listen", &self.listen)
            .field("discovery", &self.discovery)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("insecure", &self.insecure)
            .field("procedures", &self.registry)
            .finish_non_exhaustive()
    }
}

impl NodeBuilder {
    /// A builder configured from the environment, as on Fly.io:
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `FLY_REGION` / `MY_REGION`, `PRIMARY_REGION` | see [`Regions::from_env`] |
    /// | `FLY_RPC_PORT` | port to listen on (default 7878), on all interfaces |
    /// | `FLY_RPC_LISTEN` | full listen address instead, e.g. `127.0.0.1:7001` |
    /// | `FLY_RPC_PEERS` | static peers, `region=ip:port,ip:port;region=...` ([`StaticPeers`]) |
    /// | `FLY_APP_NAME` | without `FLY_RPC_PEERS`: discover peers by Fly DNS ([`FlyDns`]) |
    /// | `FLY_RPC_SECRET` | the cluster's shared secret (at least 16 bytes) |
    /// | `FLY_RPC_INSECURE` | `true`: run without a secret (development only) |
    /// | `FLY_RPC_VERSION`, else `FLY_IMAGE_REF` | the build version this node reports |
    pub(crate) fn from_env() -> Result<NodeBuilder, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let port = match var("FLY_RPC_PORT") {
            Some(p) => p
                .trim()
                .parse::<u16>()
                .map_err(|_| Error::Config(format!("FLY_RPC_PORT {p:?} is not a port number")))?,
            None => DEFAULT_PORT,
        };
        let listen = match var("FLY_RPC_LISTEN") {
            Some(addr) => addr.trim().parse::<SocketAddr>().map_err(|_| {
                Error::Config(format!("FLY_RPC_LISTEN {addr:?} is not an ip:port address"))
            })?,
            None => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
        };
        let mut builder = NodeBuilder::new(Regions::from_env()).listen(listen);
        builder = if let Some(peers) = var("FLY_RPC_PEERS") {
            builder.discovery(StaticPeers::parse(&peers)?)
        } else if let Some(app) = var("FLY_APP_NAME") {
            builder.discovery(FlyDns::new(app, listen.port())?)
        } else {
            builder
        };
        if let Some(secret) = var("FLY_RPC_SECRET") {
            builder = builder.secret(secret);
        }
        match var("FLY_RPC_INSECURE").as_deref().map(str::trim) {
            Some("1" | "true" | "yes") => builder = builder.insecure(),
            Some("0" | "false" | "no") | None => {}
            Some(other) => {
                return Err(Error::Config(format!(
                    "FLY_RPC_INSECURE must be true or false, not {other:?}"
                )));
            }
        }
        if let Some(version) = var("FLY_RPC_VERSION").or_else(|| var("FLY_IMAGE_REF")) {
            builder = builder.version(version);
        }
        Ok(builder)
    }

    pub(crate) fn new(regions: Regions) -> Self {
        NodeBuilder {
            regions,
            listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, DEFAULT_PORT)),
            discovery: Arc::new(StaticPeers::new()),
            secret: None,
            insecure: false,
            rpc_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            max_body: 8 * 1024 * 1024,
            auth_window: Duration::from_secs(60),
            quarantine: Duration::from_secs(5),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            registry: Registry::default(),
            primary_check: None,
        }
    }

    /// This node's region and the primary region (default: both `local`).
    pub fn regions(mut self, regions: Regions) -> Self {
        self.regions = regions;
        self
    }

    /// Where to listen (default `[::]:7878`; port 0 picks a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// How to find the instances of a region (default: no peers).
    pub fn discovery(mut self, discovery: impl Discovery) -> Self {
        self.discovery = Arc::new(discovery);
        self
    }

    /// The cluster's shared secret, at least 16 bytes (default: none, and
    /// the node refuses to start without one unless [`NodeBuilder::insecure`]).
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Runs without authentication. Development only: anyone who reaches the
    /// port can run every procedure. Logs a warning at start.
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Default deadline of a call, failovers included (default 5 s).
    pub fn rpc_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_timeout = timeout;
        self
    }

    /// How long to wait for a TCP connection to a peer (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Largest request body served, and response body read (default 8 MiB).
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body = limit;
        self
    }

    /// How far a request's timestamp may be from this node's clock
    /// (default 60 s).
    pub fn auth_window(mut self, window: Duration) -> Self {
        self.auth_window = window;
        self
    }

    /// How long a failed instance is tried last (default 5 s).
    pub fn failure_quarantine(mut self, quarantine: Duration) -> Self {
        self.quarantine = quarantine;
        self
    }

    /// The build version this node reports (default: this crate's version;
    /// pass your app's, e.g. `env!("CARGO_PKG_VERSION")`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Serves procedure `P` with `state`.
    pub fn procedure<P: Procedure>(mut self, state: Arc<P::State>) -> Self {
        self.registry.register::<P>(state);
        self
    }

    /// Decides whether this node may serve primary-only calls (default:
    /// always). `fly-postgres` checks that the local database is not in
    /// recovery.
    pub fn primary_check(mut self, check: PrimaryCheck) -> Self {
        self.primary_check = Some(check);
        self
    }

    /// The region identity this builder will use.
    pub fn regions_ref(&self) -> &Regions {
        &self.regions
    }

    /// Binds the endpoint and starts serving.
    pub async fn start(self) -> Result<Node, Error> {
        let key = match (self.secret, self.insecure) {
            (Some(secret), _) if secret.len() < MIN_SECRET_LEN => {
                return Err(Error::Config(format!(
                    "the cluster secret must be at least {MIN_SECRET_LEN} bytes"
                )));
            }
            (Some(secret), _) => Some(secret),
            (None, true) => {
                tracing::warn!(
                    "fly-rpc node running INSECURE: no authentication; development only"
                );
                None
            }
            (None, false) => {
                return Err(Error::Config(
                    "no cluster secret: set FLY_RPC_SECRET (at least 16 bytes) or \
                     NodeBuilder::secret, or NodeBuilder::insecure() for local development"
                        .into(),
                ));
            }
        };
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        let local_addr = listener.local_addr()?;
        let inner = Arc::new(NodeInner {
            regions: self.regions,
            registry: self.registry,
            auth: Auth::new(key, self.auth_window),
            config: NodeConfig {
                rpc_timeout: self.rpc_timeout,
                max_body: self.max_body,
                version: self.version,
            },
            primary_check: self.primary_check,
            client: HttpClient::new(self.connect_timeout, self.max_body),
            discovery: self.discovery,
            choice: PeerChoice::new(self.quarantine),
        });
        let (stop, mut stopped) = watch::channel(false);
        let app = crate::server::router(Arc::clone(&inner));
        // Without TCP_NODELAY, Nagle plus delayed ACKs stall small HTTP/2
        // frames for ~40 ms.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        });
        tracing::info!(%local_addr, regions = %inner.regions, "fly-rpc node listening");
        Ok(Node::new(
            inner,
            Server {
                stop,
                task: Mutex::new(Some(task)),
                local_addr,
            },
        ))
    }
}
