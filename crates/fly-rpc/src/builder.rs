//! Configuring and starting a [`Node`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::auth::{Auth, MIN_SECRET_LEN};
use crate::body_budget::BodyBudget;
use crate::client::HttpClient;
use crate::coalesce::Coalescer;
use crate::discovery::{Discovery, StaticPeers};
use crate::error::Error;
use crate::limits::Limits;
use crate::node::{Node, Server};
use crate::peer_choice::PeerChoice;
use crate::procedure::Procedure;
use crate::regions::Regions;
use crate::registry::Registry;
use crate::rejections::Rejections;
use crate::state::{NodeConfig, NodeInner, PrimaryCheck};
#[cfg(feature = "tls")]
use crate::tls::TlsConfig;
#[cfg(not(feature = "tls"))]
use crate::tls_disabled::TlsConfig;

/// The RPC port when neither code nor `FLY_RPC_PORT` sets one. Expose it on
/// the private network only (on Fly.io, do not list it in `[[services]]`).
pub const DEFAULT_PORT: u16 = 7878;

/// How far a request's timestamp may be from the node's clock, by default.
pub const DEFAULT_AUTH_WINDOW: Duration = Duration::from_secs(15);

// The constructors of a node live beside its builder, so that `node` does
// not depend on `builder` (which depends on `node`).
impl Node {
    /// A builder with defaults: region `local`, no peers, no secret, port
    /// 7878. Started as it is, it is a single-region node with no listener
    /// (see [`NodeBuilder::start`]).
    pub fn builder() -> NodeBuilder {
        NodeBuilder::new(Regions::new(crate::DEFAULT_REGION, crate::DEFAULT_REGION))
    }

    /// A builder configured from the environment, as on Fly.io:
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `FLY_REGION` / `MY_REGION`, `PRIMARY_REGION` | see [`Regions::from_env`] |
    /// | `FLY_RPC_PORT` | port to listen on (default 7878), on all interfaces (loopback when insecure) |
    /// | `FLY_RPC_LISTEN` | full listen address instead, e.g. `127.0.0.1:7001` |
    /// | `FLY_RPC_PEERS` | static peers, `region=ip:port,ip:port;region=...` ([`crate::StaticPeers`]) |
    /// | `FLY_APP_NAME` | without `FLY_RPC_PEERS`: discover peers by Fly DNS ([`crate::FlyDns`]) |
    /// | `FLY_RPC_SECRET` | the cluster's shared secret (at least 16 bytes) |
    /// | `FLY_RPC_INSECURE` | `true`: run without a secret, on loopback only (development only) |
    /// | `FLY_RPC_VERSION`, else `FLY_IMAGE_REF` | the build version this node reports |
    ///
    /// With none of the RPC variables set and this instance in the primary
    /// region (a laptop, CI, a single-region app), the node needs no secret
    /// and opens no port: see [`NodeBuilder::start`].
    pub fn from_env() -> Result<NodeBuilder, Error> {
        NodeBuilder::from_env()
    }
}

/// Configuration of a [`Node`]; from [`Node::builder`] or [`Node::from_env`].
pub struct NodeBuilder {
    regions: Regions,
    /// `None`: the default address for the mode (all interfaces with a
    /// secret, loopback when insecure).
    listen: Option<SocketAddr>,
    port: Option<u16>,
    discovery: Arc<dyn Discovery>,
    /// Whether peers were configured (static or DNS): a node that may be
    /// called needs a listener and a secret.
    discovery_set: bool,
    secret: Option<Vec<u8>>,
    previous_secrets: Vec<Vec<u8>>,
    insecure: bool,
    rpc_timeout: Duration,
    connect_timeout: Duration,
    max_body: usize,
    auth_window: Duration,
    quarantine: Duration,
    version: String,
    registry: Registry,
    primary_check: Option<PrimaryCheck>,
    limits: Limits,
    advertised: Vec<SocketAddr>,
    tls: Option<TlsConfig>,
    batch_calls: bool,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("regions", &self.regions)
            .field("listen", &self.listen)
            .field("port", &self.port)
            .field("discovery", &self.discovery)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("previous_secrets", &self.previous_secrets.len())
            .field("insecure", &self.insecure)
            .field("procedures", &self.registry)
            .field("limits", &self.limits)
            .field("advertised", &self.advertised)
            .field("tls", &self.tls.is_some())
            .field("batch_calls", &self.batch_calls)
            .finish_non_exhaustive()
    }
}

impl NodeBuilder {
    /// A builder configured from the environment, as on Fly.io:
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `FLY_REGION` / `MY_REGION`, `PRIMARY_REGION` | see [`Regions::from_env`] |
    /// | `FLY_RPC_PORT` | port to listen on (default 7878), on all interfaces (loopback when insecure) |
    /// | `FLY_RPC_LISTEN` | full listen address instead, e.g. `127.0.0.1:7001` |
    /// | `FLY_RPC_PEERS` | static peers, `region=ip:port,ip:port;region=...` ([`StaticPeers`]) |
    /// | `FLY_APP_NAME` | without `FLY_RPC_PEERS`: discover peers by Fly DNS ([`FlyDns`]) |
    /// | `FLY_RPC_SECRET` | the cluster's shared secret (at least 16 bytes) |
    /// | `FLY_RPC_SECRET_PREVIOUS` | secrets that still verify, comma-separated (a rotation in progress) |
    /// | `FLY_RPC_INSECURE` | `true`: run without a secret, on loopback only (development only) |
    /// | `FLY_RPC_VERSION`, else `FLY_IMAGE_REF` | the build version this node reports |
    /// | `FLY_RPC_ADVERTISE` | other `ip:port`s callers reach this node at (a proxy, a NAT), comma-separated |
    /// | `FLY_RPC_MAX_CONNECTIONS` | cap on open connections (default: half the fd limit) |
    /// | `FLY_RPC_BATCH_CALLS` | `false`: one request per call ([`NodeBuilder::batch_calls`]) |
    /// | `FLY_RPC_TLS_CERT`, `FLY_RPC_TLS_KEY` | PEM files: serve and call over TLS ([`TlsConfig`]) |
    /// | `FLY_RPC_TLS_CA` | PEM file: mutual TLS, peers must have a certificate from this CA |
    /// | `FLY_RPC_TLS_SERVER_NAME` | verify peers' certificates for this name instead of their IP |
    pub(crate) fn from_env() -> Result<NodeBuilder, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let port = var("FLY_RPC_PORT")
            .map(|p| {
                p.trim()
                    .parse::<u16>()
                    .map_err(|_| Error::Config(format!("FLY_RPC_PORT {p:?} is not a port number")))
            })
            .transpose()?;
        let listen = var("FLY_RPC_LISTEN")
            .map(|addr| {
                addr.trim().parse::<SocketAddr>().map_err(|_| {
                    Error::Config(format!("FLY_RPC_LISTEN {addr:?} is not an ip:port address"))
                })
            })
            .transpose()?;
        let mut builder = NodeBuilder::new(Regions::from_env());
        if let Some(port) = port {
            builder = builder.port(port);
        }
        if let Some(addr) = listen {
            builder = builder.listen(addr);
        }
        // The port peers dial: the listen address's, else the port's.
        let port = listen.map_or(port.unwrap_or(DEFAULT_PORT), |addr| addr.port());
        builder = if let Some(peers) = var("FLY_RPC_PEERS") {
            builder.discovery(StaticPeers::parse(&peers)?)
        } else if let Some(app) = var("FLY_APP_NAME") {
            fly_dns(builder, app, port)?
        } else {
            builder
        };
        if let Some(secret) = var("FLY_RPC_SECRET") {
            builder = builder.secret(secret);
        }
        if let Some(list) = var("FLY_RPC_SECRET_PREVIOUS") {
            for (i, secret) in list.split(',').enumerate() {
                if secret.trim().is_empty() {
                    return Err(Error::Config(format!(
                        "FLY_RPC_SECRET_PREVIOUS entry {} is empty (comma-separated secrets, \
                         each at least {MIN_SECRET_LEN} bytes)",
                        i + 1
                    )));
                }
                builder = builder.previous_secret(secret.trim());
            }
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
        if let Some(list) = var("FLY_RPC_ADVERTISE") {
            for addr in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                let addr = addr.parse::<SocketAddr>().map_err(|_| {
                    Error::Config(format!(
                        "FLY_RPC_ADVERTISE: {addr:?} is not an ip:port address"
                    ))
                })?;
                builder = builder.advertise(addr);
            }
        }
        if let Some(n) = var("FLY_RPC_MAX_CONNECTIONS") {
            let n = n
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "FLY_RPC_MAX_CONNECTIONS {n:?} is not a positive number"
                    ))
                })?;
            builder = builder.max_connections(n);
        }
        match var("FLY_RPC_BATCH_CALLS").as_deref().map(str::trim) {
            None => {}
            Some("true" | "1") => builder = builder.batch_calls(true),
            Some("false" | "0") => builder = builder.batch_calls(false),
            Some(other) => {
                return Err(Error::Config(format!(
                    "FLY_RPC_BATCH_CALLS must be true or false, not {other:?}"
                )));
            }
        }
        builder = tls_from_env(builder, &var)?;
        Ok(builder)
    }

    pub(crate) fn new(regions: Regions) -> Self {
        NodeBuilder {
            regions,
            listen: None,
            port: None,
            discovery: Arc::new(StaticPeers::new()),
            discovery_set: false,
            secret: None,
            previous_secrets: Vec::new(),
            insecure: false,
            rpc_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            max_body: 8 * 1024 * 1024,
            auth_window: DEFAULT_AUTH_WINDOW,
            quarantine: Duration::from_secs(5),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            registry: Registry::default(),
            primary_check: None,
            limits: Limits::default(),
            advertised: Vec::new(),
            tls: None,
            batch_calls: true,
        }
    }

    /// This node's region and the primary region (default: both `local`).
    pub fn regions(mut self, regions: Regions) -> Self {
        self.regions = regions;
        self
    }

    /// Where to listen (default `[::]:7878`, or `127.0.0.1:7878` when
    /// [`NodeBuilder::insecure`]; port 0 picks a free port). An insecure
    /// node refuses to start on an address that is not loopback.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// The port to listen on at the default address (default 7878);
    /// [`NodeBuilder::listen`] overrides it.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// How to find the instances of a region (default: no peers).
    pub fn discovery(mut self, discovery: impl Discovery) -> Self {
        self.discovery = Arc::new(discovery);
        self.discovery_set = true;
        self
    }

    /// The cluster's shared secret, at least 16 bytes (default: none, and
    /// the node refuses to start without one unless [`NodeBuilder::insecure`]).
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// A secret that still verifies incoming calls but no longer signs
    /// outgoing ones, for rotating the cluster secret without a failed
    /// call (see README's Security section); call it once per secret. Each
    /// must be at least 16 bytes, like the secret (default: none).
    pub fn previous_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.previous_secrets.push(secret.as_ref().to_vec());
        self
    }

    /// Runs without authentication. Development only: anyone who reaches the
    /// port can run every procedure, so the node listens on loopback
    /// (`127.0.0.1:7878` unless told otherwise) and refuses to start on any
    /// other address. Logs a warning at start.
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

    /// Whether calls to one peer that are ready at the same moment share
    /// one HTTP/2 request (default: on). Each call still runs in its own
    /// handler task on the peer and gets its own answer as soon as it is
    /// ready; what they share is the request's stream, headers and
    /// signature, which under load is most of a call's cost. A lone call
    /// goes as a request of its own. Peers without batches (older versions)
    /// are detected and sent lone requests. Off: one request per call, and
    /// this node answers batch requests as such a version does, so its
    /// peers send it lone requests too. `FLY_RPC_BATCH_CALLS=false` in
    /// [`Node::from_env`](crate::Node::from_env).
    pub fn batch_calls(mut self, on: bool) -> Self {
        self.batch_calls = on;
        self
    }

    /// Largest request body served, and response body read (default 8 MiB).
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body = limit;
        self
    }

    /// How far a request's timestamp may be from this node's clock
    /// (default 15 s: a call's 5 s budget plus 10 s of clock skew between
    /// instances, which NTP keeps to milliseconds). A captured request can
    /// be replayed within it only to this node (the signature names it),
    /// only until the request id is seen, and never across a restart.
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

    /// Another address callers reach this node at (a TCP proxy, a NAT, a
    /// load balancer). Signed requests name the address they were sent to;
    /// this node accepts its own socket's address and these, and refuses a
    /// request meant for another node (default: none).
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertised.push(addr);
        self
    }

    /// Serve and call over TLS (default: cleartext h2c, for a private
    /// network). See [`TlsConfig`].
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Open connections at most (default: half the process's file
    /// descriptor limit at start, between 64 and 16,384). Past it the
    /// longest-idle connection is closed to make room; a new one is refused
    /// only if every open one is busy.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = n.max(1);
        self
    }

    /// How long a client may take to send a request's headers (HTTP/1.1)
    /// or finish the TLS handshake (default 5 s).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// A connection with no request in flight for this long is closed
    /// (default 120 s; callers' pooled connections idle out at 90 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle_timeout = timeout;
        self
    }

    /// How long after accept a connection may take to deliver its first
    /// complete request head (default 10 s); a silent socket, a partial
    /// head or a lone HTTP/2 preface is closed then. Connections that have
    /// served a request are governed by the idle timeout instead.
    pub fn first_request_timeout(mut self, timeout: Duration) -> Self {
        self.limits.first_request_timeout = timeout;
        self
    }

    /// How long a request body may take to arrive once its headers passed
    /// the auth checks (default 10 s); slower is HTTP 408.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.body_read_timeout = timeout;
        self
    }

    /// Request body bytes being read or handled at once, across all
    /// connections (default 64 MiB); a request that does not fit is HTTP 503
    /// at once, before its body is read.
    pub fn body_budget_bytes(mut self, bytes: usize) -> Self {
        self.limits.body_budget = bytes;
        self
    }

    /// Concurrent HTTP/2 streams per connection (default 512): calls from
    /// one peer past it wait for a stream on the caller's side.
    pub fn max_concurrent_streams(mut self, n: u32) -> Self {
        self.limits.max_concurrent_streams = n.max(1);
        self
    }

    /// The region identity this builder will use.
    pub fn regions_ref(&self) -> &Regions {
        &self.regions
    }

    /// Whether this node can only ever be called by itself: it is in the
    /// primary region and nothing about RPC was configured (no peers, no
    /// listen address or port, no secret, not insecure).
    fn is_single_region(&self) -> bool {
        self.regions.is_primary()
            && !self.discovery_set
            && self.listen.is_none()
            && self.port.is_none()
            && self.secret.is_none()
            && self.previous_secrets.is_empty()
            && !self.insecure
    }

    /// Binds the endpoint and starts serving.
    ///
    /// A node in the primary region with nothing about RPC configured (no
    /// peers, listen address, port, secret or insecure flag: a laptop, CI,
    /// a single-region app) starts without a listener: no other instance
    /// can call it, so it needs no secret, and its calls to its own region
    /// run here. It says so once in the log. As soon as peers, a listen
    /// address or another region are configured, it needs a secret (or
    /// [`NodeBuilder::insecure`], on loopback only).
    pub async fn start(self) -> Result<Node, Error> {
        if self.is_single_region() {
            tracing::info!(
                region = self.regions.my_region(),
                "fly-rpc: one region and no peers configured: no RPC listener, \
                 calls to this region run here; set FLY_RPC_SECRET and peers to add regions"
            );
            let (inner, _) = self.into_inner(None);
            return Ok(Node::new(inner, None));
        }
        if let Some(position) = self
            .previous_secrets
            .iter()
            .position(|s| s.len() < MIN_SECRET_LEN)
        {
            return Err(Error::Config(format!(
                "previous secret #{} (FLY_RPC_SECRET_PREVIOUS entry {}) is shorter than \
                 {MIN_SECRET_LEN} bytes",
                position + 1,
                position + 1
            )));
        }
        if !self.previous_secrets.is_empty() && self.secret.is_none() {
            return Err(Error::Config(
                "FLY_RPC_SECRET_PREVIOUS / NodeBuilder::previous_secret needs a current secret \
                 (FLY_RPC_SECRET) to sign with"
                    .into(),
            ));
        }
        let key = match (self.secret.clone(), self.insecure) {
            (Some(secret), _) if secret.len() < MIN_SECRET_LEN => {
                return Err(Error::Config(format!(
                    "the cluster secret must be at least {MIN_SECRET_LEN} bytes"
                )));
            }
            (Some(secret), _) => Some(secret),
            (None, true) => None,
            (None, false) => {
                return Err(Error::Config(
                    "no cluster secret: set FLY_RPC_SECRET (at least 16 bytes) or \
                     NodeBuilder::secret, or NodeBuilder::insecure() for local development"
                        .into(),
                ));
            }
        };
        let port = self.port.unwrap_or(DEFAULT_PORT);
        let listen = match (self.listen, key.is_none()) {
            (Some(addr), true) if !addr.ip().to_canonical().is_loopback() => {
                return Err(Error::Config(format!(
                    "FLY_RPC_INSECURE / NodeBuilder::insecure() runs without authentication, so \
                     it listens on loopback only, but FLY_RPC_LISTEN / NodeBuilder::listen asks \
                     for {addr}: set FLY_RPC_SECRET to listen there, or listen on 127.0.0.1 or [::1]"
                )));
            }
            (Some(addr), _) => addr,
            (None, true) => SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)),
            (None, false) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
        };
        if key.is_none() {
            tracing::warn!(
                %listen,
                "fly-rpc node running INSECURE: no authentication, loopback only; development only"
            );
        }
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let tls = self.tls.clone();
        let (inner, limits) = self.into_inner(key);
        let (stop, stopped) = watch::channel(false);
        let app = crate::server::router(Arc::clone(&inner));
        #[cfg(feature = "tls")]
        let acceptor = tls
            .as_ref()
            .map(|tls| tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.server)));
        #[cfg(not(feature = "tls"))]
        let acceptor: Option<crate::tls_disabled::TlsAcceptor> =
            tls.as_ref().map(|never| match *never {});
        let task = tokio::spawn(crate::serve::serve(
            "rpc", listener, app, limits, acceptor, stopped,
        ));
        tracing::info!(
            %local_addr,
            regions = %inner.regions,
            tls = tls.is_some(),
            max_connections = limits.max_connections,
            "fly-rpc node listening"
        );
        Ok(Node::new(
            inner,
            Some(Server {
                stop,
                task: tokio::sync::Mutex::new(Some(task)),
                local_addr,
            }),
        ))
    }

    /// The node's shared state, with or without a server around it.
    fn into_inner(self, key: Option<Vec<u8>>) -> (Arc<NodeInner>, Limits) {
        let limits = self.limits;
        let auth = Arc::new(Auth::rotating(key, self.previous_secrets, self.auth_window));
        let client = HttpClient::new(self.connect_timeout, self.max_body, self.tls.as_ref());
        let coalescer = Coalescer::new(
            self.batch_calls,
            client.clone(),
            Arc::clone(&auth),
            self.regions.my_region().to_owned(),
        );
        let inner = Arc::new(NodeInner {
            regions: self.regions,
            registry: self.registry,
            auth,
            config: NodeConfig {
                rpc_timeout: self.rpc_timeout,
                version: self.version,
                advertised: self.advertised,
            },
            primary_check: self.primary_check,
            client,
            coalescer,
            discovery: self.discovery,
            choice: PeerChoice::new(self.quarantine),
            body_budget: BodyBudget::new(
                limits.body_budget,
                self.max_body,
                limits.body_read_timeout,
            ),
            rejections: Rejections::default(),
        });
        (inner, limits)
    }
}

/// `FLY_RPC_TLS_CERT`, `FLY_RPC_TLS_KEY`, `FLY_RPC_TLS_CA` and
/// `FLY_RPC_TLS_SERVER_NAME`.
#[cfg(feature = "tls")]
fn tls_from_env(
    builder: NodeBuilder,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<NodeBuilder, Error> {
    match (var("FLY_RPC_TLS_CERT"), var("FLY_RPC_TLS_KEY")) {
        (Some(cert), Some(key)) => {
            let ca = var("FLY_RPC_TLS_CA");
            let mut tls = TlsConfig::from_files(
                std::path::Path::new(&cert),
                std::path::Path::new(&key),
                ca.as_deref().map(std::path::Path::new),
            )?;
            if let Some(name) = var("FLY_RPC_TLS_SERVER_NAME") {
                tls = tls.server_name(&name)?;
            }
            Ok(builder.tls(tls))
        }
        (None, None) if var("FLY_RPC_TLS_CA").is_some() => Err(Error::Config(
            "FLY_RPC_TLS_CA needs FLY_RPC_TLS_CERT and FLY_RPC_TLS_KEY".into(),
        )),
        (None, None) => Ok(builder),
        _ => Err(Error::Config(
            "set both FLY_RPC_TLS_CERT and FLY_RPC_TLS_KEY, or neither".into(),
        )),
    }
}

/// Without the `tls` feature a TLS setting is an error, never a silent
/// fall back to cleartext.
#[cfg(not(feature = "tls"))]
fn tls_from_env(
    builder: NodeBuilder,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<NodeBuilder, Error> {
    for name in [
        "FLY_RPC_TLS_CERT",
        "FLY_RPC_TLS_KEY",
        "FLY_RPC_TLS_CA",
        "FLY_RPC_TLS_SERVER_NAME",
    ] {
        if var(name).is_some() {
            return Err(Error::Config(format!(
                "{name} is set, but fly-rpc was built without its `tls` feature"
            )));
        }
    }
    Ok(builder)
}

/// Peers by Fly.io's private DNS, for `FLY_APP_NAME`.
#[cfg(feature = "fly-dns")]
fn fly_dns(builder: NodeBuilder, app: String, port: u16) -> Result<NodeBuilder, Error> {
    Ok(builder.discovery(crate::discovery::FlyDns::new(app, port)?))
}

/// Without the `fly-dns` feature `FLY_APP_NAME` alone cannot find peers.
#[cfg(not(feature = "fly-dns"))]
fn fly_dns(_builder: NodeBuilder, _app: String, _port: u16) -> Result<NodeBuilder, Error> {
    Err(Error::Config(
        "FLY_APP_NAME asks for Fly DNS discovery, but fly-rpc was built without its `fly-dns` \
         feature: set FLY_RPC_PEERS, or enable the feature"
            .into(),
    ))
}

#[cfg(test)]
mod feature_tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn builder() -> NodeBuilder {
        NodeBuilder::new(Regions::new("syd", "syd"))
    }

    #[test]
    fn no_tls_settings_need_no_feature() {
        assert!(tls_from_env(builder(), &env(&[])).is_ok());
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_settings_without_the_feature_are_refused_by_name() {
        let err = tls_from_env(builder(), &env(&[("FLY_RPC_TLS_CERT", "/c.pem")])).unwrap_err();
        assert!(
            err.to_string().contains("FLY_RPC_TLS_CERT") && err.to_string().contains("`tls`"),
            "{err}"
        );
    }

    #[cfg(feature = "tls")]
    #[test]
    fn half_a_tls_setting_is_refused() {
        let err = tls_from_env(builder(), &env(&[("FLY_RPC_TLS_CERT", "/c.pem")])).unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
    }

    #[cfg(not(feature = "fly-dns"))]
    #[test]
    fn fly_dns_without_the_feature_is_refused_with_the_way_out() {
        let err = fly_dns(builder(), "app".into(), 7878).unwrap_err();
        assert!(
            err.to_string().contains("FLY_RPC_PEERS") && err.to_string().contains("`fly-dns`"),
            "{err}"
        );
    }

    #[cfg(feature = "fly-dns")]
    #[test]
    // Discovery through real DNS answers: tests/fly_dns.rs.
    fn fly_dns_with_the_feature_builds_a_resolver() {
        assert!(fly_dns(builder(), "app".into(), 7878).is_ok());
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let builder = NodeBuilder::new(Regions::new("syd", "syd"))
            .secret("current-secret-0123")
            .previous_secret("previous-secret-4567");
        let shown = format!("{builder:?}");
        for secret in ["current-secret-0123", "previous-secret-4567"] {
            assert!(!shown.contains(secret), "{shown}");
            // Nor the bytes as a derived Debug prints them (`[99, 117, ...`).
            let bytes = format!("{:?}", &secret.as_bytes()[..4]);
            assert!(!shown.contains(bytes.trim_matches(['[', ']'])), "{shown}");
        }
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
