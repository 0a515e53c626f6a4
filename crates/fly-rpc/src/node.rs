//! The node: one per app instance; serves procedures and calls peers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::auth::{Auth, Extra, MIN_SECRET_LEN};
use crate::client::HttpClient;
use crate::discovery::{Discovery, FlyDns, StaticPeers};
use crate::error::Error;
use crate::info::NodeInfo;
use crate::peer_choice::PeerChoice;
use crate::procedure::{CallContext, Procedure};
use crate::regions::Regions;
use crate::registry::Registry;
use crate::remote_error::RemoteError;
use crate::wire::{
    CALL_PATH, H_CALLER_REGION, H_IDEMPOTENCY_KEY, H_REQUIRE_PRIMARY, INFO_PATH, WireError,
    WireErrorKind,
};

/// The RPC port when neither code nor `FLY_RPC_PORT` sets one. Expose it on
/// the private network only (on Fly.io, do not list it in `[[services]]`).
pub const DEFAULT_PORT: u16 = 7878;

/// Asks the app whether this node can serve primary-only calls right now
/// (for `fly-postgres`: whether its database is out of recovery).
pub type PrimaryCheck = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

#[derive(Debug, Clone)]
pub(crate) struct NodeConfig {
    pub(crate) rpc_timeout: Duration,
    pub(crate) max_body: usize,
    pub(crate) version: String,
}

pub(crate) struct NodeInner {
    pub(crate) regions: Regions,
    pub(crate) registry: Registry,
    pub(crate) auth: Auth,
    pub(crate) config: NodeConfig,
    pub(crate) primary_check: Option<PrimaryCheck>,
    client: HttpClient,
    discovery: Arc<dyn Discovery>,
    choice: PeerChoice,
}

impl NodeInner {
    /// A peer failed or hung: try it last for a while, and let discovery
    /// look the region up again.
    fn peer_failed(&self, region: &str, peer: SocketAddr) {
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

/// Stops the server when the last [`Node`] clone is dropped.
struct Server {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<Result<(), std::io::Error>>>>,
    local_addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Per-call options; the defaults come from the node.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    timeout: Option<Duration>,
    idempotency_key: Option<String>,
    require_primary: bool,
}

impl CallOptions {
    /// Options with the node's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole call's deadline, every failover included (default: the
    /// node's `rpc_timeout`, 5 s unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A key that stays the same across retries of one logical call. The
    /// handler sees it in [`CallContext::idempotency_key`]; a call that
    /// carries one is retried on another instance after a broken connection.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Only an instance whose [`PrimaryCheck`] passes may serve the call;
    /// others answer "not primary" and the next instance is tried. (A call
    /// to the node's own region runs locally, without the check.)
    pub fn require_primary(mut self) -> Self {
        self.require_primary = true;
        self
    }
}

/// One app instance's RPC node: serves the registered procedures over
/// HTTP/2 (h2c) and HTTP/1.1, and calls the instances of other regions.
/// Cheap to clone; the server stops when the last clone is dropped or on
/// [`Node::shutdown`].
///
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
    server: Arc<Server>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("regions", &self.inner.regions)
            .field("local_addr", &self.server.local_addr)
            .field("procedures", &self.inner.registry)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A builder with defaults: region `local`, listen on `[::]:7878`, no
    /// peers, no secret (set one, or call [`NodeBuilder::insecure`]).
    pub fn builder() -> NodeBuilder {
        NodeBuilder::new(Regions::new(crate::DEFAULT_REGION, crate::DEFAULT_REGION))
    }

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
    pub fn from_env() -> Result<NodeBuilder, Error> {
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

    /// This node's regions.
    pub fn regions(&self) -> &Regions {
        &self.inner.regions
    }

    /// The address the RPC endpoint listens on (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr
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
    /// primary-only calls (see [`NodeBuilder::primary_check`]). In the
    /// primary region itself it runs here, without the check.
    pub async fn call_primary<P: Procedure>(&self, procedure: P) -> Result<P::Output, Error> {
        let primary = self.inner.regions.primary_region().to_owned();
        self.call(&primary, procedure, CallOptions::new().require_primary())
            .await
    }

    /// Runs `procedure` in `region` with per-call options.
    pub async fn call<P: Procedure>(
        &self,
        region: &str,
        procedure: P,
        options: CallOptions,
    ) -> Result<P::Output, Error> {
        let timeout = options.timeout.unwrap_or(self.inner.config.rpc_timeout);
        let local = region == self.inner.regions.my_region();
        let span = tracing::info_span!(
            "fly_rpc.call",
            procedure = P::NAME,
            region,
            local,
            peer = tracing::field::Empty,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let deadline = started + timeout;
        let work = async {
            if local {
                self.call_local(procedure, options).await
            } else {
                self.call_remote::<P>(region, procedure, &options, timeout, deadline)
                    .await
            }
        };
        let result = match tokio::time::timeout(timeout, work.instrument(span.clone())).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                procedure: P::NAME,
                region: region.to_owned(),
                after: timeout,
            }),
        };
        let elapsed = started.elapsed();
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => error_kind(e),
        };
        span.record("outcome", outcome);
        span.record("duration_ms", elapsed.as_secs_f64() * 1e3);
        metrics::histogram!(
            "fly_rpc_call_duration_seconds",
            "procedure" => P::NAME, "region" => region.to_owned(), "outcome" => outcome
        )
        .record(elapsed.as_secs_f64());
        if let Err(e) = &result {
            metrics::counter!(
                "fly_rpc_call_failures_total",
                "procedure" => P::NAME, "region" => region.to_owned(), "kind" => error_kind(e)
            )
            .increment(1);
        }
        result
    }

    async fn call_local<P: Procedure>(
        &self,
        procedure: P,
        options: CallOptions,
    ) -> Result<P::Output, Error> {
        let Some(state) = self.inner.registry.state::<P>() else {
            let info = self.inner.info();
            return Err(Error::UnknownProcedure {
                name: P::NAME.to_owned(),
                peer: "this node".to_owned(),
                peer_version: info.version,
                peer_procedures: info.procedures,
            });
        };
        let ctx = CallContext {
            caller_region: self.inner.regions.my_region().to_owned(),
            idempotency_key: options.idempotency_key,
            local: true,
        };
        // Spawned for the same isolation as a remote call: a panic becomes
        // an error and a timed-out caller does not cancel the handler.
        match tokio::spawn(procedure.run(state, ctx)).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(error)) => Err(Error::Remote(RemoteError::new(
                P::NAME.to_owned(),
                error.to_string(),
                serde_json::to_value(&error).unwrap_or(serde_json::Value::Null),
            ))),
            Err(_) => Err(Error::HandlerPanicked {
                procedure: P::NAME.to_owned(),
                peer: "this node".to_owned(),
            }),
        }
    }

    async fn call_remote<P: Procedure>(
        &self,
        region: &str,
        procedure: P,
        options: &CallOptions,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<P::Output, Error> {
        let body = Bytes::from(serde_json::to_vec(&procedure).map_err(|e| Error::Codec {
            procedure: P::NAME,
            message: e.to_string(),
        })?);
        let inner = &self.inner;
        let instances = inner.discovery.instances(region).await?;
        let path = format!("{CALL_PATH}{}", P::NAME);
        let retry_safe = P::RETRY_SAFE || options.idempotency_key.is_some();
        let mut tried = 0;
        for peer in inner.choice.order(instances) {
            tried += 1;
            tracing::Span::current().record("peer", tracing::field::display(peer));
            let idempotency_key = options.idempotency_key.as_deref();
            let extra = Extra {
                idempotency_key,
                caller_region: Some(inner.regions.my_region()),
                require_primary: options.require_primary,
            };
            let mut headers = HeaderMap::new();
            inner
                .auth
                .sign("POST", &path, extra, &body)
                .apply(&mut headers);
            if let Ok(v) = HeaderValue::from_str(inner.regions.my_region()) {
                headers.insert(H_CALLER_REGION, v);
            }
            if let Some(key) = idempotency_key.and_then(|k| HeaderValue::from_str(k).ok()) {
                headers.insert(H_IDEMPOTENCY_KEY, key);
            }
            if options.require_primary {
                headers.insert(H_REQUIRE_PRIMARY, HeaderValue::from_static("1"));
            }
            let sent = tokio::time::timeout_at(
                deadline.into(),
                inner
                    .client
                    .send(peer, Method::POST, &path, headers, body.clone()),
            )
            .await;
            let Ok(sent) = sent else {
                // A peer that accepts and never answers goes to the back of
                // the line, so a retry tries another one first.
                inner.peer_failed(region, peer);
                return Err(Error::Timeout {
                    procedure: P::NAME,
                    region: region.to_owned(),
                    after: timeout,
                });
            };
            match sent {
                Err(failure) if failure.before_sending || retry_safe => {
                    tracing::warn!(%peer, region, error = %failure.message, "RPC peer failed; trying the next instance");
                    inner.peer_failed(region, peer);
                    metrics::counter!("fly_rpc_failovers_total", "region" => region.to_owned())
                        .increment(1);
                }
                Err(failure) => {
                    inner.peer_failed(region, peer);
                    return Err(Error::Transport {
                        peer: peer.to_string(),
                        message: format!(
                            "{} (the call may have run; `{}` is not marked retry-safe)",
                            failure.message,
                            P::NAME
                        ),
                    });
                }
                Ok((status, body)) => {
                    if status == StatusCode::SERVICE_UNAVAILABLE
                        && parse_wire_error(&body)
                            .is_some_and(|e| e.kind == WireErrorKind::NotPrimary)
                    {
                        tracing::info!(%peer, region, "peer is not primary; trying the next instance");
                        inner.choice.failed(peer);
                        metrics::counter!("fly_rpc_failovers_total", "region" => region.to_owned())
                            .increment(1);
                        continue;
                    }
                    inner.choice.succeeded(peer);
                    return decode_response::<P>(peer, status, &body);
                }
            }
        }
        Err(Error::NoNodeInRegion {
            region: region.to_owned(),
            tried,
        })
    }

    /// Asks the instance at `peer` to describe itself.
    pub async fn peer_info(&self, peer: SocketAddr) -> Result<NodeInfo, Error> {
        let mut headers = HeaderMap::new();
        self.inner
            .auth
            .sign("GET", INFO_PATH, Extra::default(), b"")
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

    /// Stops accepting calls, lets calls in flight finish (at most 5 s), and
    /// returns once the server is down.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let _ = self.server.stop.send(true);
        let task = self
            .server
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut task) = task {
            match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
                Ok(Ok(result)) => result?,
                Ok(Err(_)) => {}
                Err(_) => task.abort(),
            }
        }
        Ok(())
    }
}

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

fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::Timeout { .. } => "timeout",
        Error::NoNodeInRegion { .. } => "no_node",
        Error::Unauthorized { .. } => "unauthorized",
        Error::UnknownProcedure { .. } => "unknown_procedure",
        Error::BadRequest { .. } => "bad_request",
        Error::Remote(_) => "remote",
        Error::HandlerPanicked { .. } => "panic",
        Error::Transport { .. } => "transport",
        Error::Discovery { .. } => "discovery",
        Error::Config(_) => "config",
        Error::Io(_) => "io",
        Error::Codec { .. } => "codec",
    }
}

fn parse_wire_error(body: &[u8]) -> Option<WireError> {
    serde_json::from_slice(body).ok()
}

fn decode_response<P: Procedure>(
    peer: SocketAddr,
    status: StatusCode,
    body: &[u8],
) -> Result<P::Output, Error> {
    if status == StatusCode::OK {
        return serde_json::from_slice(body).map_err(|e| Error::Codec {
            procedure: P::NAME,
            message: format!("the output from {peer} does not decode: {e}"),
        });
    }
    Err(wire_error_to_error(peer, status, body, P::NAME))
}

fn wire_error_to_error(
    peer: SocketAddr,
    status: StatusCode,
    body: &[u8],
    procedure: &str,
) -> Error {
    let Some(error) = parse_wire_error(body) else {
        let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Error::Transport {
            peer: peer.to_string(),
            message: format!("unexpected answer {status}: {snippet}"),
        };
    };
    let peer_text = peer.to_string();
    match error.kind {
        WireErrorKind::Unauthorized => Error::Unauthorized {
            peer,
            reason: error.message,
        },
        WireErrorKind::UnknownProcedure => Error::UnknownProcedure {
            name: error.procedure.unwrap_or_else(|| procedure.to_owned()),
            peer: peer_text,
            peer_version: error.version.unwrap_or_else(|| "unknown".into()),
            peer_procedures: error.procedures.unwrap_or_default(),
        },
        WireErrorKind::BadRequest | WireErrorKind::PayloadTooLarge => Error::BadRequest {
            peer: peer_text,
            status: status.as_u16(),
            message: error.message,
        },
        WireErrorKind::Remote => Error::Remote(RemoteError::new(
            error.procedure.unwrap_or_else(|| procedure.to_owned()),
            error.message,
            error.payload.unwrap_or(serde_json::Value::Null),
        )),
        WireErrorKind::Panic => Error::HandlerPanicked {
            procedure: procedure.to_owned(),
            peer: peer_text,
        },
        WireErrorKind::NotPrimary | WireErrorKind::Internal => Error::Transport {
            peer: peer_text,
            message: error.message,
        },
    }
}

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
    fn new(regions: Regions) -> Self {
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
        Ok(Node {
            inner,
            server: Arc::new(Server {
                stop,
                task: Mutex::new(Some(task)),
                local_addr,
            }),
        })
    }
}
