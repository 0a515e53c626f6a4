//! One call as it travels to a peer, lone or in a batch.

use axum::http::HeaderMap;
use bytes::Bytes;

use crate::batch_wire::item_headers;
use crate::wire::{H_IDEMPOTENCY_KEY, H_REQUIRE_PRIMARY};

/// One call on its way to a peer.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) procedure: &'static str,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) require_primary: bool,
    /// The caller's trace context (`traceparent`, `tracestate`).
    pub(crate) trace: HeaderMap,
    pub(crate) body: Bytes,
}

impl Outgoing {
    /// A call with the caller's current trace context.
    pub(crate) fn new(
        procedure: &'static str,
        idempotency_key: Option<String>,
        require_primary: bool,
        body: Bytes,
    ) -> Self {
        let mut trace = HeaderMap::new();
        crate::trace_context::inject(&mut trace);
        Outgoing {
            procedure,
            idempotency_key,
            require_primary,
            trace,
            body,
        }
    }

    /// The call's own headers, as a batch item carries them.
    pub(super) fn batch_headers(&self) -> Vec<(String, String)> {
        let mut headers = item_headers(&self.trace);
        if let Some(key) = &self.idempotency_key {
            headers.push((H_IDEMPOTENCY_KEY.to_owned(), key.clone()));
        }
        if self.require_primary {
            headers.push((H_REQUIRE_PRIMARY.to_owned(), "1".to_owned()));
        }
        headers
    }
}
