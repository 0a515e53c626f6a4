//! The HTTP/2 client: one multiplexed connection per peer, cleartext (h2c)
//! or TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
#[cfg(feature = "tls")]
use hyper_rustls::{DefaultServerNameResolver, FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::connections::{Connections, CountingConnector};
use crate::head_start::{Race, Reachable};
#[cfg(feature = "tls")]
use crate::tls::TlsConfig;
#[cfg(not(feature = "tls"))]
use crate::tls_disabled::TlsConfig;

/// The connector under the client: rustls over TCP for `https` URIs when
/// the `tls` feature is on, plain TCP otherwise.
#[cfg(feature = "tls")]
type Connector = HttpsConnector<CountingConnector>;
#[cfg(not(feature = "tls"))]
type Connector = CountingConnector;

/// A failed exchange, split by whether the request may have reached the peer.
#[derive(Debug, Clone)]
pub(crate) struct TransportFailure {
    /// The connection was never established: safe to try another instance.
    pub(crate) before_sending: bool,
    pub(crate) message: String,
}

impl TransportFailure {
    /// The request may have reached the peer.
    pub(crate) fn after_sending(message: impl Into<String>) -> Self {
        TransportFailure {
            before_sending: false,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    inner: Client<Connector, Full<Bytes>>,
    max_response: usize,
    scheme: &'static str,
    connections: Arc<Connections>,
    race: Race,
}

impl HttpClient {
    pub(crate) fn new(race: Race, max_response: usize, tls: Option<&TlsConfig>) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(race.connect_timeout));
        #[cfg(feature = "tls")]
        tcp.enforce_http(false);
        let connections = Arc::new(Connections::default());
        let connector = CountingConnector::new(tcp, Arc::clone(&connections));
        let (connector, scheme) = connector_for(connector, tls);
        let inner = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            // Prior-knowledge h2c: one connection per peer carries every
            // concurrent call.
            .http2_only(true)
            .http2_keep_alive_interval(Some(Duration::from_secs(10)))
            .http2_keep_alive_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        HttpClient {
            inner,
            max_response,
            scheme,
            connections,
            race,
        }
    }

    /// `order` with the instance that connects first in front, when the
    /// first has no open connection (see [`crate::head_start`]).
    pub(crate) async fn reachable_first(
        &self,
        order: Vec<SocketAddr>,
        deadline: Instant,
    ) -> Reachable {
        self.race
            .reachable_first(&self.connections, order, deadline)
            .await
    }

    pub(crate) async fn send(
        &self,
        peer: SocketAddr,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), TransportFailure> {
        let response = self.open(peer, method, path, headers, body).await?;
        let status = response.status();
        Ok((status, self.read_body(response).await?))
    }

    /// A response's whole body, up to the size limit.
    pub(crate) async fn read_body(
        &self,
        response: Response<Incoming>,
    ) -> Result<Bytes, TransportFailure> {
        Limited::new(response.into_body(), self.max_response)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|e| {
                TransportFailure::after_sending(format!("reading the response failed: {e}"))
            })
    }

    /// Largest response body read, per call.
    pub(crate) fn max_response(&self) -> usize {
        self.max_response
    }

    /// Sends a request and returns the response as soon as its head
    /// arrives, the body still to be read (a batch's answers stream).
    pub(crate) async fn open(
        &self,
        peer: SocketAddr,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<Incoming>, TransportFailure> {
        let uri = format!("{}://{peer}{path}", self.scheme);
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| TransportFailure {
                before_sending: true,
                message: format!("cannot build request: {e}"),
            })?;
        *request.headers_mut() = headers;
        request
            .headers_mut()
            .entry(axum::http::header::CONTENT_TYPE)
            .or_insert(axum::http::HeaderValue::from_static("application/json"));
        self.inner
            .request(request)
            .await
            .map_err(|e| TransportFailure {
                before_sending: e.is_connect(),
                message: self.with_hint(error_chain(&e)),
            })
    }
}

impl HttpClient {
    /// A TLS mismatch between two nodes shows up as a closed connection or
    /// a garbled record; say what is likely wrong.
    fn with_hint(&self, message: String) -> String {
        let lower = message.to_ascii_lowercase();
        let hint = if self.scheme == "http"
            && ["broken pipe", "unexpected eof"]
                .iter()
                .any(|s| lower.contains(s))
        {
            " (if the peer serves TLS, this node needs TLS too: FLY_RPC_TLS_CERT and FLY_RPC_TLS_KEY)"
        } else if self.scheme == "https"
            && (lower.contains("corrupt") || lower.contains("invalidcontenttype"))
        {
            " (the peer does not seem to serve TLS)"
        } else {
            ""
        };
        format!("{message}{hint}")
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The connector and URI scheme for `tls`.
#[cfg(feature = "tls")]
fn connector_for(tcp: CountingConnector, tls: Option<&TlsConfig>) -> (Connector, &'static str) {
    // https URIs only with TLS configured (the TCP connector was told to
    // let them through); then TLS is required.
    let (client_config, scheme) = match tls {
        Some(tls) => (Arc::clone(&tls.client), "https"),
        None => (plaintext_only(), "http"),
    };
    let resolver: Arc<dyn hyper_rustls::ResolveServerName + Send + Sync> =
        match tls.and_then(|t| t.server_name.clone()) {
            Some(name) => Arc::new(FixedServerNameResolver::new(name)),
            None => Arc::new(DefaultServerNameResolver::default()),
        };
    let connector = HttpsConnector::new(tcp, client_config, tls.is_some(), resolver);
    (connector, scheme)
}

/// Without the `tls` feature: cleartext h2c only.
#[cfg(not(feature = "tls"))]
fn connector_for(tcp: CountingConnector, tls: Option<&TlsConfig>) -> (Connector, &'static str) {
    if let Some(never) = tls {
        match *never {}
    }
    (tcp, "http")
}

/// The TLS settings of a connector that only ever sees `http` URIs.
#[cfg(feature = "tls")]
fn plaintext_only() -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| {
        b.with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    });
    match config {
        Ok(config) => Arc::new(config),
        // ring supports the default versions; unreachable in practice.
        Err(_) => unreachable!("ring supports TLS 1.2 and 1.3"),
    }
}
