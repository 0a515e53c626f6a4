//! A small JSON-over-HTTP/1.1 client for the demo's requests.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// One answer: status, whether the write is already replayed locally, body,
/// and how long the round trip took.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    /// The `fly-replicated` header: `false` when the app said the write is
    /// committed but not yet replayed locally.
    pub(crate) replicated: bool,
    pub(crate) body: Value,
    pub(crate) elapsed: Duration,
    /// The `fly-lsn` header: the consistency token the response raised.
    pub(crate) lsn: Option<String>,
    /// `fly-read-from: primary`: the consistency layer sent the request's
    /// reads to the primary (its fallback).
    pub(crate) from_primary: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

pub(crate) type HttpResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

impl Http {
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Http {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> HttpResult<Answer> {
        self.send_with(method, url, body, &[]).await
    }

    /// [`Http::send`] with extra request headers.
    pub(crate) async fn send_with(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> HttpResult<Answer> {
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(payload)))?;
        let started = Instant::now();
        let response = self.client.request(request).await?;
        let status = response.status();
        let replicated = response
            .headers()
            .get("fly-replicated")
            .is_none_or(|v| v.as_bytes() != b"false");
        let lsn = response
            .headers()
            .get("fly-lsn")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let from_primary = response
            .headers()
            .get(fly_postgres::READ_FROM_HEADER)
            .is_some_and(|v| v.as_bytes() == b"primary");
        let bytes = response.into_body().collect().await?.to_bytes();
        let elapsed = started.elapsed();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            replicated,
            body,
            elapsed,
            lsn,
            from_primary,
        })
    }

    pub(crate) async fn get(&self, url: &str) -> HttpResult<Answer> {
        self.send(Method::GET, url, None).await
    }

    pub(crate) async fn post(&self, url: &str, body: Value) -> HttpResult<Answer> {
        self.send(Method::POST, url, Some(body)).await
    }
}
