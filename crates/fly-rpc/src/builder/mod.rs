//! Configuring a [`Node`]: the builder and its setters. Reading the
//! environment is in `from_env`, the limits' setters in `limits`, and
//! starting in `start`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::discovery::{Discovery, StaticPeers};
use crate::error::Error;
use crate::limits::Limits;
use crate::node::Node;
use crate::procedure::Procedure;
use crate::regions::Regions;
use crate::registry::Registry;
use crate::state::PrimaryCheck;
#[cfg(feature = "tls")]
use crate::tls::TlsConfig;
#[cfg(not(feature = "tls"))]
use crate::tls_disabled::TlsConfig;

mod from_env;
mod limits;
mod start;

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
    connect_head_start: Duration,
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
            connect_head_start: crate::head_start::DEFAULT_HEAD_START,
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

    /// The head start of one instance over the next when a call needs a
    /// new connection (default 150 ms). The instance a call would go to
    /// gets this long to connect; then the next one in its region is tried
    /// too (at once if the first fails), and the call is sent once, to
    /// whichever connected first. An address DNS still lists after its
    /// machine is gone (no answer, not even a refusal) then costs this,
    /// not a whole [`connect_timeout`](Self::connect_timeout). Set it
    /// above the region's connect round trip to spare the extra connect.
    pub fn connect_head_start(mut self, head_start: Duration) -> Self {
        self.connect_head_start = head_start;
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

    /// The region identity this builder will use.
    pub fn regions_ref(&self) -> &Regions {
        &self.regions
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
