//! One trace across regions: the caller's trace context reaches the
//! serving node, with and without an OpenTelemetry tracer.

mod common;

use std::sync::Arc;

use common::*;
use fly_rpc::{CallContext, Procedure, StaticPeers, TraceParent, with_trace_context};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// Answers with the trace ids the serving side sees.
#[derive(Serialize, Deserialize)]
struct WhichTrace;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct SeenTrace {
    /// From the call's `traceparent`.
    header: Option<String>,
    /// Of the serving span, as OpenTelemetry knows it.
    span: String,
}

impl Procedure for WhichTrace {
    const NAME: &'static str = "which_trace";
    type Output = SeenTrace;
    type Error = String;
    type State = ();
    async fn run(self, _: Arc<()>, ctx: CallContext) -> Result<SeenTrace, String> {
        let span = tracing::Span::current()
            .context()
            .span()
            .span_context()
            .trace_id()
            .to_string();
        Ok(SeenTrace {
            header: ctx.trace_context.map(|t| t.trace_id().to_owned()),
            span,
        })
    }
}

async fn two_nodes() -> (fly_rpc::Node, fly_rpc::Node) {
    let syd = start(
        node("syd", "syd", &Counters::named("syd")).procedure::<WhichTrace>(Arc::new(())),
        StaticPeers::new(),
    )
    .await;
    let lax = start(
        node("lax", "syd", &Counters::named("lax")),
        StaticPeers::new().with("syd", syd.local_addr()),
    )
    .await;
    (syd, lax)
}

#[tokio::test]
async fn a_trace_context_in_scope_is_forwarded_and_seen_by_the_handler() {
    let (_syd, lax) = two_nodes().await;
    let parent = TraceParent::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        None,
    )
    .unwrap();
    let seen = with_trace_context(parent, lax.call_primary(WhichTrace))
        .await
        .unwrap();
    assert_eq!(
        seen.header.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    // Without one, nothing is invented.
    let seen = lax.call_primary(WhichTrace).await.unwrap();
    assert_eq!(seen.header, None);
}

#[tokio::test]
async fn an_opentelemetry_span_continues_on_the_serving_node() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("fly-rpc-test")));
    // The current-thread runtime runs every task of both nodes on this
    // thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let (_syd, lax) = two_nodes().await;

    let request = tracing::info_span!("lax.request");
    let caller_trace = request
        .context()
        .span()
        .span_context()
        .trace_id()
        .to_string();
    assert_ne!(caller_trace, "00000000000000000000000000000000");
    let seen = lax
        .call_primary(WhichTrace)
        .instrument(request)
        .await
        .unwrap();
    assert_eq!(seen.header.as_deref(), Some(caller_trace.as_str()));
    assert_eq!(
        seen.span, caller_trace,
        "the serving span is in the same trace"
    );
}
