//! Starting a [`Node`] from a [`NodeBuilder`]: checking the secrets,
//! choosing the listen address, and spawning the server.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{DEFAULT_PORT, NodeBuilder};
use crate::auth::{Auth, MIN_SECRET_LEN};
use crate::body_budget::BodyBudget;
use crate::client::HttpClient;
use crate::coalesce::Coalescer;
use crate::error::Error;
use crate::head_start::Race;
use crate::limits::Limits;
use crate::node::{Node, Server};
use crate::peer_choice::PeerChoice;
use crate::rejections::Rejections;
use crate::serve::Acceptor;
use crate::state::{NodeConfig, NodeInner};
#[cfg(feature = "tls")]
use crate::tls::TlsConfig;
#[cfg(not(feature = "tls"))]
use crate::tls_disabled::TlsConfig;

impl NodeBuilder {
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
            return Ok(self.start_without_listener());
        }
        self.check_previous_secrets()?;
        let key = self.signing_key()?;
        let listen = self.listen_address(key.is_none())?;
        if key.is_none() {
            tracing::warn!(
                %listen,
                "fly-rpc node running INSECURE: no authentication, loopback only; development only"
            );
        }
        let listener = TcpListener::bind(listen).await?;
        self.start_serving(listener, key)
    }

    /// A node nobody else can call: its calls to its own region run here.
    fn start_without_listener(self) -> Node {
        tracing::info!(
            region = self.regions.my_region(),
            "fly-rpc: one region and no peers configured: no RPC listener, \
             calls to this region run here; set FLY_RPC_SECRET and peers to add regions"
        );
        let (inner, _) = self.into_inner(None);
        Node::new(inner, None)
    }

    /// Previous secrets are as long as the secret must be, and only
    /// verify: they need a current secret to sign with.
    fn check_previous_secrets(&self) -> Result<(), Error> {
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
        Ok(())
    }

    /// The secret that signs and verifies; `None` only when insecure.
    fn signing_key(&self) -> Result<Option<Vec<u8>>, Error> {
        match (self.secret.clone(), self.insecure) {
            (Some(secret), _) if secret.len() < MIN_SECRET_LEN => Err(Error::Config(format!(
                "the cluster secret must be at least {MIN_SECRET_LEN} bytes"
            ))),
            (Some(secret), _) => Ok(Some(secret)),
            (None, true) => Ok(None),
            (None, false) => Err(Error::Config(
                "no cluster secret: set FLY_RPC_SECRET (at least 16 bytes) or \
                 NodeBuilder::secret, or NodeBuilder::insecure() for local development"
                    .into(),
            )),
        }
    }

    /// Where to listen: the configured address, else all interfaces, or
    /// loopback only when `insecure` (nobody else may reach an
    /// unauthenticated node).
    fn listen_address(&self, insecure: bool) -> Result<SocketAddr, Error> {
        let port = self.port.unwrap_or(DEFAULT_PORT);
        match (self.listen, insecure) {
            (Some(addr), true) if !addr.ip().to_canonical().is_loopback() => {
                Err(Error::Config(format!(
                    "FLY_RPC_INSECURE / NodeBuilder::insecure() runs without authentication, so \
                     it listens on loopback only, but FLY_RPC_LISTEN / NodeBuilder::listen asks \
                     for {addr}: set FLY_RPC_SECRET to listen there, or listen on 127.0.0.1 or [::1]"
                )))
            }
            (Some(addr), _) => Ok(addr),
            (None, true) => Ok(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port))),
            (None, false) => Ok(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))),
        }
    }

    /// Spawns the accept loop on `listener` and wraps it in a [`Node`].
    fn start_serving(self, listener: TcpListener, key: Option<Vec<u8>>) -> Result<Node, Error> {
        let local_addr = listener.local_addr()?;
        let tls = self.tls.clone();
        let (inner, limits) = self.into_inner(key);
        let (stop, stopped) = watch::channel(false);
        let app = crate::server::router(Arc::clone(&inner));
        let task = tokio::spawn(crate::serve::serve(
            "rpc",
            listener,
            app,
            limits,
            acceptor(tls.as_ref()),
            stopped,
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
        let race = Race {
            head_start: self.connect_head_start,
            connect_timeout: self.connect_timeout,
        };
        let client = HttpClient::new(race, self.max_body, self.tls.as_ref());
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

/// What accepts TLS connections, when TLS is configured.
#[cfg(feature = "tls")]
fn acceptor(tls: Option<&TlsConfig>) -> Option<Acceptor> {
    tls.map(|tls| tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.server)))
}

/// Without the `tls` feature there is no [`TlsConfig`] to accept with.
#[cfg(not(feature = "tls"))]
fn acceptor(tls: Option<&TlsConfig>) -> Option<Acceptor> {
    tls.map(|never| match *never {})
}
