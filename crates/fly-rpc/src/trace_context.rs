//! W3C trace context (`traceparent`, `tracestate`) across regions, so a
//! forwarded write is one trace from the caller's handler through the
//! primary region's transaction and back.
//!
//! With the `opentelemetry` feature the caller's current span context goes
//! out (through `tracing-opentelemetry`) and the serving span becomes its
//! child. Without it, a context the app put in scope with
//! [`with_trace_context`] (say, the `traceparent` its own HTTP request
//! came with) is forwarded as is, and the serving span records its trace id.
//!
//! The trace headers are not covered by the request's MAC: they steer
//! observability only, never what runs.

use std::future::Future;

use axum::http::{HeaderMap, HeaderValue};

pub(crate) const TRACEPARENT: &str = "traceparent";
pub(crate) const TRACESTATE: &str = "tracestate";

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// A validated W3C `traceparent` (and its `tracestate`, if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    traceparent: String,
    tracestate: Option<String>,
}

impl TraceParent {
    /// Parses `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`;
    /// `None` for anything else (including the all-zero ids the spec
    /// forbids), so a malformed header is ignored, never forwarded.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let parts: Vec<&str> = traceparent.trim().split('-').collect();
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        let valid = parts.len() == 4
            && hex(parts[0], 2)
            && !parts[0].eq_ignore_ascii_case("ff")
            && hex(parts[1], 32)
            && parts[1].bytes().any(|b| b != b'0')
            && hex(parts[2], 16)
            && parts[2].bytes().any(|b| b != b'0')
            && hex(parts[3], 2);
        valid.then(|| TraceParent {
            traceparent: parts.join("-").to_ascii_lowercase(),
            tracestate: tracestate
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= 512)
                .map(str::to_owned),
        })
    }

    /// From a request's headers.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        TraceParent::parse(value(TRACEPARENT)?, value(TRACESTATE))
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    fn put(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.traceparent) {
            headers.insert(TRACEPARENT, v);
        }
        if let Some(v) = self
            .tracestate
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            headers.insert(TRACESTATE, v);
        }
    }
}

/// Runs `future` with `parent` as the trace context its RPCs carry (unless
/// the `opentelemetry` feature finds a current span context, which wins).
/// Handlers already run inside the context their call came with.
pub async fn with_trace_context<F: Future>(parent: TraceParent, future: F) -> F::Output {
    CURRENT.scope(parent, future).await
}

/// The trace context in scope, if any.
pub fn current_trace_context() -> Option<TraceParent> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Adds the outgoing call's trace context to `headers`.
pub(crate) fn inject(headers: &mut HeaderMap) {
    #[cfg(feature = "opentelemetry")]
    if otel::inject(headers) {
        return;
    }
    if let Some(parent) = current_trace_context() {
        parent.put(headers);
    }
}

/// The serving span of a call that came with `headers`, and its trace
/// context (for the handler's own outgoing calls).
pub(crate) fn serving_span(
    procedure: &str,
    headers: &HeaderMap,
) -> (tracing::Span, Option<TraceParent>) {
    let incoming = TraceParent::from_headers(headers);
    let span = tracing::info_span!("fly_rpc.serve", procedure, trace_id = tracing::field::Empty,);
    if let Some(parent) = &incoming {
        span.record("trace_id", parent.trace_id());
    }
    #[cfg(feature = "opentelemetry")]
    otel::set_parent(&span, headers);
    (span, incoming)
}

/// Runs a handler inside its call's trace context.
pub(crate) async fn within<F: Future>(parent: Option<TraceParent>, future: F) -> F::Output {
    match parent {
        Some(parent) => CURRENT.scope(parent, future).await,
        None => future.await,
    }
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    struct Out<'a>(&'a mut HeaderMap);

    impl Injector for Out<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(key.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                self.0.insert(name, value);
            }
        }
    }

    struct In<'a>(&'a HeaderMap);

    impl Extractor for In<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(HeaderName::as_str).collect()
        }
    }

    /// Injects the current span's context; false if it has none.
    pub(super) fn inject(headers: &mut HeaderMap) -> bool {
        let cx = tracing::Span::current().context();
        if !cx.span().span_context().is_valid() {
            return false;
        }
        TraceContextPropagator::new().inject_context(&cx, &mut Out(headers));
        true
    }

    pub(super) fn set_parent(span: &tracing::Span, headers: &HeaderMap) {
        let cx = TraceContextPropagator::new().extract(&In(headers));
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_traceparents_are_kept() {
        let tp = TraceParent::parse(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            Some("congo=t61rcWkgMzE"),
        )
        .unwrap();
        assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "FF-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad, None).is_none(), "{bad:?}");
        }
    }
}
