//! The HTTP/2 client: one multiplexed cleartext connection per peer.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// A failed exchange, split by whether the request may have reached the peer.
#[derive(Debug)]
pub(crate) struct TransportFailure {
    /// The connection was never established: safe to try another instance.
    pub(crate) before_sending: bool,
    pub(crate) message: String,
}

#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    max_response: usize,
}

impl HttpClient {
    pub(crate) fn new(connect_timeout: Duration, max_response: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
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
        }
    }

    pub(crate) async fn send(
        &self,
        peer: SocketAddr,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), TransportFailure> {
        let uri = format!("http://{peer}{path}");
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| TransportFailure {
                before_sending: true,
                message: format!("cannot build request: {e}"),
            })?;
        *request.headers_mut() = headers;
        request.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|e| TransportFailure {
                before_sending: e.is_connect(),
                message: error_chain(&e),
            })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), self.max_response)
            .collect()
            .await
            .map_err(|e| TransportFailure {
                before_sending: false,
                message: format!("reading the response failed: {e}"),
            })?
            .to_bytes();
        Ok((status, body))
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
