//! What sending needs, shared by the coalescer and the tasks that carry
//! its batches: the client, the signing, and which peers take no batches.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, Method};

use super::{Answer, Outgoing, lock};
use crate::auth::{Auth, Extra};
use crate::client::HttpClient;
use crate::wire::{CALL_PATH, H_CALLER_REGION, H_IDEMPOTENCY_KEY, H_REQUIRE_PRIMARY};

/// What sending needs, shared with the tasks that carry batches.
pub(super) struct Link {
    pub(super) client: HttpClient,
    pub(super) auth: Arc<Auth>,
    pub(super) region: String,
    /// Peers that answered a batch like a version without batches, until
    /// when they are sent lone requests.
    pub(super) unbatched: Mutex<HashMap<SocketAddr, Instant>>,
    pub(super) requests: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) batched_calls: AtomicU64,
}

impl Link {
    pub(super) fn new(client: HttpClient, auth: Arc<Auth>, region: String) -> Self {
        Link {
            client,
            auth,
            region,
            unbatched: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batched_calls: AtomicU64::new(0),
        }
    }

    /// Whether `peer` is, for now, sent lone requests only.
    pub(super) fn unbatched(&self, peer: SocketAddr) -> bool {
        let mut unbatched = lock(&self.unbatched);
        match unbatched.get(&peer) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                unbatched.remove(&peer);
                false
            }
            None => false,
        }
    }

    /// One call, one request.
    pub(super) async fn send_alone(&self, peer: SocketAddr, call: &Outgoing) -> Answer {
        let path = format!("{CALL_PATH}{}", call.procedure);
        let extra = Extra {
            idempotency_key: call.idempotency_key.as_deref(),
            caller_region: Some(&self.region),
            require_primary: call.require_primary,
        };
        let mut headers = self.signed(&path, peer, extra, &call.body);
        if let Some(key) = call
            .idempotency_key
            .as_deref()
            .and_then(|k| HeaderValue::from_str(k).ok())
        {
            headers.insert(H_IDEMPOTENCY_KEY, key);
        }
        if call.require_primary {
            headers.insert(H_REQUIRE_PRIMARY, HeaderValue::from_static("1"));
        }
        headers.extend(call.trace.clone());
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.client
            .send(peer, Method::POST, &path, headers, call.body.clone())
            .await
    }

    /// The signature's headers and the caller's region.
    pub(super) fn signed(
        &self,
        path: &str,
        peer: SocketAddr,
        extra: Extra<'_>,
        body: &[u8],
    ) -> HeaderMap {
        let mut headers = HeaderMap::new();
        self.auth
            .sign("POST", path, &peer.to_string(), extra, body)
            .apply(&mut headers);
        if let Ok(v) = HeaderValue::from_str(&self.region) {
            headers.insert(H_CALLER_REGION, v);
        }
        headers
    }
}
